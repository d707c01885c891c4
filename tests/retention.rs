//! Retention against the lake a real `imgpipe up` wrote: with the clock
//! moved, nothing goes before 7 days, the audit fails on expired data, and
//! after a sweep not one file of the expired images is left.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, process::Command, time::Duration};

use chrono::{DateTime, Utc};
use common::*;

fn imgpipe(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn seven_days_after_arrival_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[]);
    let client = client();
    let mut ids = Vec::new();
    let jpeg = std::fs::read(corpus_dir().join("lomiri16_Dragonfly_by_Bolly.jpg")).unwrap();
    for bytes in [
        std::fs::read(corpus_dir().join("mate_Storm.jpg")).unwrap(),
        jpeg[..jpeg.len() / 2].to_vec(), // quarantined
    ] {
        let resp = client
            .post(app.url("/v1/images"))
            .header("Idempotency-Key", format!("k{}", ids.len()))
            .body(bytes)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_final(&client, &app, id, Duration::from_secs(60)).await;
    }
    app.stop();

    // An image received a day later must survive the sweep.
    let later_id = lake::ImageId::new(Utc::now() + chrono::Duration::days(1));
    let later_key = lake::layout::raw_key(later_id);
    let store = lake::store::FsStore::open(dir.path()).unwrap();
    lake::Store::put(
        &store,
        &later_key,
        bytes::Bytes::from_static(b"later"),
        &Default::default(),
    )
    .await
    .unwrap();

    let before = files_under(dir.path());
    for area in [
        "raw/",
        "derived/",
        "metadata/",
        "quarantine/",
        "idempotency/",
    ] {
        assert!(
            before.iter().any(|k| k.starts_with(area)),
            "nothing under {area}: {before:?}"
        );
    }
    let received: DateTime<Utc> = ids
        .iter()
        .map(|id| id.parse::<lake::ImageId>().unwrap().received_at())
        .max()
        .unwrap();
    let at = |d: chrono::Duration| (received + d).to_rfc3339();

    // 6 days 23 hours: nothing purged, audit passes.
    let almost = at(chrono::Duration::days(7) - chrono::Duration::hours(1));
    let (ok, report) = imgpipe(dir.path(), &["audit", "--now", &almost]);
    assert!(ok, "{report}");
    let (ok, report) = imgpipe(dir.path(), &["sweep", "--now", &almost]);
    assert!(ok && report.contains("purged 0"), "{report}");
    assert_eq!(files_under(dir.path()).len(), before.len());

    // 7 days + 1 minute: the audit fails before the sweep, passes after.
    let past = at(chrono::Duration::days(7) + chrono::Duration::minutes(1));
    let (ok, report) = imgpipe(dir.path(), &["audit", "--now", &past, "--format", "json"]);
    assert!(!ok, "audit passed on expired data: {report}");
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(json["violations"].as_array().unwrap().len() >= 6, "{json}");
    let (ok, report) = imgpipe(dir.path(), &["sweep", "--now", &past]);
    assert!(ok, "{report}");
    let (ok, report) = imgpipe(dir.path(), &["audit", "--now", &past]);
    assert!(ok, "{report}");

    let left = files_under(dir.path());
    assert_eq!(left, vec![later_key], "left after the sweep: {left:?}");
}
