//! `imgpipe query` enforces the policy's grants on a lake made by the real
//! pipeline; `imgpipe policies render` prints the same grants for AWS.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn query(
    lake: &std::path::Path,
    principal: &str,
    sql: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "query",
        "--data-dir",
        lake.to_str().unwrap(),
        "--as",
        principal,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    args.push(sql);
    cli(&args)
}

fn rows(out: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(out.trim())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_enforced_for_every_shipped_principal() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let app = Imgpipe::start(&lake, &[]);
    let client = client();
    let mut ids = Vec::new();
    for name in [
        "lomiri16_Dragonfly_by_Bolly.jpg",
        "mate_Storm.jpg",
        "skimage_camera.png",
    ] {
        let (_, body) = upload(
            &client,
            &app,
            std::fs::read(corpus_dir().join(name)).unwrap(),
        )
        .await;
        let id = body["id"].as_str().unwrap().to_owned();
        wait_final(&client, &app, &id, Duration::from_secs(60)).await;
        ids.push(id);
    }
    app.stop();

    let (ok, out, err) = query(
        &lake,
        "analyst",
        "SELECT id, width, height FROM images ORDER BY id",
        &[],
    );
    assert!(ok, "{out}{err}");
    let got = rows(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["id"], ids[0].as_str());
    assert_eq!(
        (got[0]["width"].as_i64(), got[0]["height"].as_i64()),
        (Some(4224), Some(3168))
    );

    // Restricted columns: denied by name, and absent from SELECT *.
    for column in ["gps_lat", "exif_make", "source_ref"] {
        let (ok, _, err) = query(
            &lake,
            "analyst",
            &format!("SELECT {column} FROM images"),
            &[],
        );
        assert!(
            !ok && err.contains(&format!("access denied: column {column}")),
            "{err}"
        );
    }
    let (ok, _, err) = query(
        &lake,
        "analyst",
        "SELECT count(*) FROM images WHERE gps_lat > 0",
        &[],
    );
    assert!(
        !ok && err.contains("access denied: column gps_lat"),
        "{err}"
    );
    let (ok, out, _) = query(&lake, "analyst", "SELECT * FROM images", &[]);
    assert!(ok);
    assert!(
        rows(&out)
            .iter()
            .all(|r| r.get("gps_lat").is_none() && r.get("width").is_some())
    );

    // The privacy officer sees GPS.
    let (ok, out, err) = query(
        &lake,
        "privacy-officer",
        "SELECT gps_lat, gps_lon FROM images WHERE has_gps",
        &[],
    );
    assert!(ok, "{err}");
    let gps = rows(&out);
    assert_eq!(gps.len(), 1);
    assert!((gps[0]["gps_lat"].as_f64().unwrap() - 48.8584).abs() < 1e-3);

    // The row-filtered principal sees only Kafka images: none yet…
    let (ok, out, err) = query(
        &lake,
        "kafka-analyst",
        "SELECT count(*) AS n FROM images",
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(rows(&out)[0]["n"], 0);
    // …then exactly the two Kafka rows, and still none of the HTTP ones (a
    // filter that hid everything would pass the check above, not this one).
    let store: lake::SharedStore = std::sync::Arc::new(lake::store::FsStore::open(&lake).unwrap());
    let kafka_rows: Vec<_> = [0, 1]
        .map(|ms| lake::ImageId::new(chrono::Utc::now() + chrono::Duration::milliseconds(ms)))
        .into_iter()
        .map(|id| lake::schema::MetadataRow {
            source: lake::Source::Kafka,
            ..lake::schema::testing::sample_row(id)
        })
        .collect();
    lake::metadata::write_rows(&store, &kafka_rows)
        .await
        .unwrap();
    let (ok, out, err) = query(
        &lake,
        "kafka-analyst",
        "SELECT id FROM images ORDER BY id",
        &[],
    );
    assert!(ok, "{err}");
    let seen: Vec<String> = rows(&out)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let kafka_ids: Vec<String> = kafka_rows.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(seen, kafka_ids);
    // The analyst (no row filter) sees both kinds.
    let (ok, out, err) = query(&lake, "analyst", "SELECT count(*) AS n FROM images", &[]);
    assert!(ok, "{err}");
    assert_eq!(rows(&out)[0]["n"], 5);

    // Unknown principals and statements that change things are refused.
    let (ok, _, err) = query(&lake, "nobody", "SELECT 1", &[]);
    assert!(
        !ok && err.contains("access denied: unknown principal"),
        "{err}"
    );
    let (ok, _, _) = query(
        &lake,
        "privacy-officer",
        "CREATE TABLE copy AS SELECT * FROM images",
        &[],
    );
    assert!(!ok);

    // Past retention the rows are gone, swept or not.
    let later = (chrono::Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let (ok, out, _) = query(
        &lake,
        "privacy-officer",
        "SELECT count(*) AS n FROM images",
        &["--now", &later],
    );
    assert!(ok);
    assert_eq!(rows(&out)[0]["n"], 0);

    // A time window reads only its hours; rows outside it are not shown.
    let count = |extra: &[&str]| {
        let (ok, out, err) = query(
            &lake,
            "privacy-officer",
            "SELECT count(*) AS n FROM images",
            extra,
        );
        assert!(ok, "{err}");
        rows(&out)[0]["n"].as_u64().unwrap()
    };
    let all = count(&[]);
    assert!(all > 0);
    assert_eq!(count(&["--since", "1h"]), all);
    let ahead = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    assert_eq!(count(&["--from", &ahead]), 0);
    let past = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let before = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    assert_eq!(count(&["--from", &past, "--to", &before]), 0);

    // CSV and the default table format work too.
    let (ok, out, _) = cli(&[
        "query",
        "--data-dir",
        lake.to_str().unwrap(),
        "--as",
        "analyst",
        "SELECT format FROM images ORDER BY format",
    ]);
    assert!(
        ok && out.contains("| format |") && out.contains("png"),
        "{out}"
    );
}

#[test]
fn terraform_rendering_covers_tags_columns_grants_and_row_filters() {
    let (ok, out, err) = cli(&["policies", "render", "--format", "terraform"]);
    assert!(ok, "{err}");
    let tf: Value = serde_json::from_str(&out).unwrap();
    let r = &tf["resource"];
    for kind in [
        "aws_lakeformation_lf_tag",
        "aws_lakeformation_resource_lf_tags",
        "aws_lakeformation_permissions",
        "aws_lakeformation_data_cells_filter",
    ] {
        assert!(r[kind].is_object(), "{kind} missing");
    }
    assert_eq!(
        r["aws_lakeformation_permissions"]
            .as_object()
            .unwrap()
            .len(),
        3
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        policies::DEFAULT_POLICY.replace("\"gps_lon\"", "\"gps_longitude\""),
    )
    .unwrap();
    let (ok, _, err) = cli(&["policies", "render", "--policy", bad.to_str().unwrap()]);
    assert!(
        !ok && err.contains("bad.toml") && err.contains("gps_longitude"),
        "{err}"
    );
}

/// The metadata listing over HTTP shows each caller its principal's view.
#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_listing_pages_by_time_and_enforces_the_callers_principal() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (analyst, officer, kafka_only) = (
        "analyst-key-0123456789",
        "officer-key-0123456789",
        "kafka-key-0123456789ab",
    );
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\napi_keys = [\"{analyst}\", \"{officer}\", \"{kafka_only}\"]\n\
             [api.key_principals]\n\"{officer}\" = \"privacy-officer\"\n\"{kafka_only}\" = \"kafka-analyst\"\n\
             [processor]\nflush_interval = \"1s\"\n"
        ),
    )
    .unwrap();
    let app = Imgpipe::start_with_args(&lake, &[], &["--config", config.to_str().unwrap()]);
    let client = client();
    let names = [
        "lomiri16_Dragonfly_by_Bolly.jpg",
        "mate_Storm.jpg",
        "skimage_camera.png",
        "skimage_astronaut.png",
        "skimage_chelsea.png",
    ];
    let mut ids = Vec::new();
    for name in names {
        let resp = client
            .post(app.url("/v1/images"))
            .bearer_auth(analyst)
            .body(std::fs::read(corpus_dir().join(name)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let get = |key: &'static str, query: String| {
        let client = client.clone();
        let url = app.url(&format!("/v1/images?{query}"));
        async move {
            let resp = client.get(url).bearer_auth(key).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // Rows reach Parquet within the flush interval.
    let start = std::time::Instant::now();
    loop {
        let (_, v) = get(officer, "limit=1000".into()).await;
        if v["images"].as_array().unwrap().len() == ids.len() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Pages of two, in receipt order, every image once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".into(),
        };
        let (status, v) = get(analyst, query).await;
        assert_eq!(status, 200, "{v}");
        for row in v["images"].as_array().unwrap() {
            assert!(row.get("gps_lat").is_none(), "analyst sees GPS: {row}");
            assert!(row["width"].as_i64().unwrap() > 0);
            seen.push(row["id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // The privacy officer sees the restricted columns.
    let (_, v) = get(officer, "limit=10".into()).await;
    let row = &v["images"][0];
    assert!(row.as_object().unwrap().contains_key("gps_lat"), "{row}");
    // Row filter: the Kafka analyst sees only images that came over Kafka.
    let (status, v) = get(kafka_only, String::new()).await;
    assert_eq!(
        (status, v["images"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    // Time range and source filters.
    let (_, v) = get(analyst, "to=2020-01-01T00:00:00Z".into()).await;
    assert!(v["images"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = get(analyst, "source=http&limit=1000".into()).await;
    assert_eq!(v["images"].as_array().unwrap().len(), ids.len());
    let (_, v) = get(analyst, "source=kafka".into()).await;
    assert!(v["images"].as_array().unwrap().is_empty());
    // Bad queries are clear 400s.
    for bad in ["limit=0", "from=yesterday", "source=ftp", "cursor=nope"] {
        let (status, v) = get(analyst, bad.into()).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    app.stop();
}

/// `imgpipe policies plan/apply` against a real Lake Formation API
/// implementation (moto's server): the diff, exactly that diff applied,
/// and nothing left to do the second time.
#[test]
fn policies_plan_and_apply_converge_and_apply_twice_changes_nothing() {
    let Some(endpoint) = std::env::var("IMGPIPE_TEST_LAKEFORMATION")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        assert!(
            std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
            "IMGPIPE_TEST_LAKEFORMATION is not set but IMGPIPE_REQUIRE_SERVERS is"
        );
        eprintln!("skipping: IMGPIPE_TEST_LAKEFORMATION is not set (run `bash .ci/run`)");
        return;
    };
    // A catalog of its own: moto keeps state per catalog id.
    let catalog = format!("{}", 100_000_000_000u64 + u64::from(std::process::id()));
    let run = |verb: &str, policy: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imgpipe"));
        cmd.args([
            "policies",
            verb,
            "--database",
            "imgpipe",
            "--catalog-id",
            &catalog,
        ])
        .env("IMGPIPE_LAKEFORMATION_ENDPOINT", &endpoint)
        .env("AWS_REGION", "us-east-1");
        if let Some(p) = policy {
            cmd.arg("--policy").arg(p);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{verb}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };

    let plan = run("plan", None);
    assert!(
        plan.contains("+ lf-tag sensitivity = [public, restricted]"),
        "{plan}"
    );
    assert!(plan.contains("gps_lat"), "{plan}");
    assert!(
        plan.contains("to arn:aws:iam::111122223333:role/imgpipe-analyst"),
        "{plan}"
    );
    assert!(plan.contains("Plan: 5 changes."), "{plan}");
    // Plan changes nothing.
    assert_eq!(run("plan", None), plan);
    assert!(run("apply", None).contains("Applied 5 changes."));
    assert!(run("plan", None).contains("No changes"));
    assert!(run("apply", None).contains("No changes"));

    // Edit the policy: GPS latitude becomes public, the analyst goes, an
    // auditor comes. The plan is exactly that.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml"),
    )
    .unwrap();
    let edited = shipped
        .replace(
            "\"status\", \"script_version\",\n]",
            "\"status\", \"script_version\", \"gps_lat\",\n]",
        )
        .replace("\"gps_lat\", \"gps_lon\"]", "\"gps_lon\"]")
        .replace("[principals.analyst]", "[principals.auditor]")
        .replace("role/imgpipe-analyst", "role/imgpipe-auditor");
    assert_ne!(edited, shipped);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.toml");
    std::fs::write(&path, &edited).unwrap();
    let plan = run("plan", Some(&path));
    let lines: Vec<&str> = plan.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(
        lines,
        [
            "~ columns sensitivity=public: gps_lat (was restricted)",
            "- revoke DESCRIBE, SELECT on tables where sensitivity in [public] to arn:aws:iam::111122223333:role/imgpipe-analyst",
            "+ grant DESCRIBE, SELECT on tables where sensitivity in [public] to arn:aws:iam::111122223333:role/imgpipe-auditor",
            "Plan: 3 changes. Run `imgpipe policies apply` to make them.",
        ],
        "{plan}"
    );
    assert!(run("apply", Some(&path)).contains("Applied 3 changes."));
    assert!(run("plan", Some(&path)).contains("No changes"));
    // And back.
    assert!(run("apply", None).contains("Applied 3 changes."));
    assert!(run("plan", None).contains("No changes"));
}
