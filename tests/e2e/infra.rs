//! infra/ declares what the code applies: one source of truth for the
//! bucket's lifecycle rules.
#![allow(clippy::unwrap_used)]

#[test]
fn terraform_lifecycle_rules_match_the_code() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/infra/modules/lake/lifecycle.tf.json"
    );
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rules = retention::lifecycle::rules(chrono::Duration::days(7));
    assert_eq!(
        committed,
        retention::lifecycle::terraform(&rules),
        "regenerate: imgpipe retention lifecycle --print --format terraform > infra/modules/lake/lifecycle.tf.json"
    );
    // The shape the AWS provider documents: enabled, bucket-wide, a current
    // expiry within the retention, and the two cleanups.
    let blocks = committed["resource"]["aws_s3_bucket_lifecycle_configuration"]["lake"]["rule"]
        .as_array()
        .unwrap();
    assert!(
        blocks
            .iter()
            .all(|b| b["status"] == "Enabled" && b["filter"][0]["prefix"] == "")
    );
    assert!(blocks.iter().any(|b| b["expiration"][0]["days"] == 7));
    assert!(
        blocks
            .iter()
            .any(|b| b["expiration"][0]["expired_object_delete_marker"] == true)
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 1)
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["noncurrent_version_expiration"][0]["noncurrent_days"] == 1)
    );
}

#[test]
fn terraform_lake_formation_grants_match_the_policy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/infra/modules/analytics/lakeformation.tf.json"
    );
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let policy = policies::Policy::load(None).unwrap();
    assert_eq!(
        committed,
        policies::terraform::render(&policy),
        "regenerate: imgpipe policies render --format terraform > infra/modules/analytics/lakeformation.tf.json"
    );
}

#[test]
fn glue_table_matches_the_schema_the_processor_writes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/infra/modules/analytics/glue.tf.json"
    );
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        committed,
        policies::glue::table_terraform(),
        "regenerate: imgpipe policies glue-table > infra/modules/analytics/glue.tf.json"
    );
    // Partition projection covers exactly the lake's dt/hr keys.
    let params = &committed["resource"]["aws_glue_catalog_table"]["images"]["parameters"];
    assert_eq!(params["projection.hr.digits"], "2");
    assert!(
        params["storage.location.template"]
            .as_str()
            .unwrap()
            .ends_with("metadata/dt=$${dt}/hr=$${hr}/")
    );
}

#[test]
fn task_roles_grant_what_the_code_declares() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/infra/modules/compute/access.tf.json"
    );
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        committed,
        lake::access::terraform(),
        "regenerate: imgpipe policies task-access > infra/modules/compute/access.tf.json"
    );
    // The areas the issue found missing are there: admission writes expiry/
    // markers, direct uploads use uploads/, the processor reads its
    // recorded event under idempotency/.
    let access = &committed["locals"]["lake_access"];
    for mode in ["api", "bridge"] {
        assert!(
            access[mode]["write"]
                .as_array()
                .unwrap()
                .contains(&"expiry/".into())
        );
    }
    assert!(
        access["api"]["write"]
            .as_array()
            .unwrap()
            .contains(&"uploads/".into())
    );
    assert!(
        access["processor"]["read"]
            .as_array()
            .unwrap()
            .contains(&"idempotency/".into())
    );
}
