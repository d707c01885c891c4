//! Retention against the lake a real `imgpipe up` wrote: with the clock
//! moved, nothing goes before 7 days, the audit fails on expired data, and
//! after a sweep not one file of the expired images is left.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use crate::common::*;
use chrono::{DateTime, Utc};

fn imgpipe(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir.to_str().unwrap()]);
    let (ok, out, _) = cli(&all);
    (ok, out)
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
    // All kept; the sweep closed the images' hour (its checkpoint marker).
    let kept: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("checkpoint/"))
        .collect();
    assert_eq!(kept.len(), before.len());

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

fn paths_naming(dir: &Path, id: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        // The tombstone and the emptied dedup record (with the expiry
        // marker that gets it swept) name the id on purpose; they hold no
        // image data (not even its hash).
        .filter(|p| {
            let emptied =
                |record: &str| std::fs::read(dir.join(record)).unwrap_or_default() == b"erased";
            let on_purpose = p.starts_with("erased/")
                || (p.starts_with("idempotency/") && emptied(p))
                || lake::layout::marked_record_key(p).is_some_and(|r| emptied(&r));
            p.contains(id) && !on_purpose
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_removes_every_byte_now() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_PROCESSOR__FLUSH_INTERVAL", "1s")]);
    let client = client();
    let storm = std::fs::read(corpus_dir().join("mate_Storm.jpg")).unwrap();
    let post = |key: &str, body: Vec<u8>| {
        client
            .post(app.url("/v1/images"))
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    let mut ids = Vec::new();
    for (key, bytes) in [
        ("erase-me", storm.clone()),
        (
            "keep-me",
            std::fs::read(corpus_dir().join("skimage_chelsea.png")).unwrap(),
        ),
        ("broken", storm[..storm.len() / 2].to_vec()),
        (
            "cli",
            std::fs::read(corpus_dir().join("mate_Aqua.jpg")).unwrap(),
        ),
    ] {
        let body: serde_json::Value = post(key, bytes).await.unwrap().json().await.unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        wait_final(&client, &app, &id, Duration::from_secs(60)).await;
        ids.push(id);
    }
    let (gone, kept, quarantined, by_cli) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // Let the 1 s flush put every row into Parquet first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        parquet_rows(dir.path())
            .iter()
            .any(|r| r.id.to_string() == *gone)
    );

    for id in [gone, quarantined] {
        let resp = client
            .delete(app.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        let resp = client
            .get(app.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let resp = client
            .delete(app.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "a second erasure finds nothing");
    }
    let unknown = lake::ImageId::new(Utc::now());
    let resp = client
        .delete(app.url(&format!("/v1/images/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // The CLI erases from the lake a running `imgpipe up` writes.
    let (ok, out) = imgpipe(dir.path(), &["erase", by_cli]);
    assert!(ok, "{out}");
    let resp = client
        .get(app.url(&format!("/v1/images/{by_cli}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A retry with the erased image's key is a new upload, not the old id.
    let again: serde_json::Value = post("erase-me", storm.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(again["id"].as_str(), Some(gone.as_str()));
    app.stop();

    for id in [gone, quarantined, by_cli] {
        assert_eq!(paths_naming(dir.path(), id), Vec::<String>::new(), "{id}");
    }
    let rows = parquet_rows(dir.path());
    assert!(
        rows.iter()
            .all(|r| ![gone, by_cli].contains(&&r.id.to_string()))
    );
    assert!(
        rows.iter().any(|r| r.id.to_string() == *kept),
        "erasure took a neighbour's row"
    );
    assert!(!paths_naming(dir.path(), kept).is_empty());
    let (ok, out, err) = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_during_processing_is_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_PROCESSOR__WORKERS", "1")]);
    let client = client();
    let mut erased = Vec::new();
    for img in corpus().iter().take(12) {
        let (status, body) = upload(&client, &app, std::fs::read(&img.path).unwrap()).await;
        assert_eq!(status, 202);
        let id = body["id"].as_str().unwrap().to_owned();
        // Erase at once: most are queued or mid-decode.
        let resp = client
            .delete(app.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        erased.push(id);
    }
    // Stopping drains the processor and flushes metadata.
    app.stop();
    for id in &erased {
        assert_eq!(
            paths_naming(dir.path(), id),
            Vec::<String>::new(),
            "{id} came back"
        );
    }
    let rows = parquet_rows(dir.path());
    assert!(
        rows.iter().all(|r| !erased.contains(&r.id.to_string())),
        "an erased row came back"
    );
}

/// Sweeps running all the time, in `imgpipe up` and beside it, never touch
/// an image inside its retention.
#[tokio::test(flavor = "multi_thread")]
async fn sweeping_while_uploading_loses_no_live_image() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_RETENTION__SWEEP_INTERVAL", "1s")]);
    let client = client();
    let sweeping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sweeper = {
        let (dir, sweeping) = (dir.path().to_owned(), sweeping.clone());
        std::thread::spawn(move || {
            let mut passes = 0;
            while sweeping.load(std::sync::atomic::Ordering::Relaxed) {
                let (ok, out) = imgpipe(&dir, &["sweep", "--once"]);
                assert!(ok && out.contains("purged 0"), "{out}");
                passes += 1;
            }
            passes
        })
    };
    let mut ids = Vec::new();
    for img in corpus().iter().take(16) {
        let (status, body) = upload(&client, &app, std::fs::read(&img.path).unwrap()).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let v = wait_final(&client, &app, id, Duration::from_secs(120)).await;
        assert_eq!(v["status"], "processed", "{v}");
    }
    sweeping.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(sweeper.join().unwrap() > 0);
    app.stop();
    let rows = parquet_rows(dir.path());
    for id in &ids {
        assert_eq!(
            rows.iter().filter(|r| r.id.to_string() == *id).count(),
            1,
            "{id}"
        );
    }
}
