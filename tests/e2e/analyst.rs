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

    // The row-filtered principal sees only Kafka images: none here.
    let (ok, out, err) = query(
        &lake,
        "kafka-analyst",
        "SELECT count(*) AS n FROM images",
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(rows(&out)[0]["n"], 0);

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
