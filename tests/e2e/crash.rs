//! `kill -9` mid-batch loses nothing: after a restart every accepted image
//! ends processed or quarantined, and every processed image has its row.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn kill_mid_batch_then_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // One CPU worker, so most of the batch is still waiting when we kill.
    let env = [("IMGPIPE_PROCESSOR__WORKERS", "1")];
    let app = Imgpipe::start(dir.path(), &env);
    let client = client();
    let mut ids = Vec::new();
    for img in corpus() {
        let (status, body) = upload(&client, &app, std::fs::read(&img.path).unwrap()).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // A truncated one too: quarantine must also survive the crash.
    let jpeg = std::fs::read(corpus_dir().join("mate_Aqua.jpg")).unwrap();
    let (_, body) = upload(&client, &app, jpeg[..jpeg.len() / 3].to_vec()).await;
    ids.push(body["id"].as_str().unwrap().to_owned());

    let mut unfinished = 0;
    for id in &ids {
        if !is_final(&status(&client, &app, id).await) {
            unfinished += 1;
        }
    }
    app.kill_hard();
    assert!(
        unfinished > 0,
        "the batch finished before the kill; the test proves nothing"
    );
    eprintln!(
        "killed with {unfinished} of {} images unfinished",
        ids.len()
    );

    let app = Imgpipe::start(dir.path(), &[]);
    for id in &ids {
        let v = wait_final(&client, &app, id, Duration::from_secs(300)).await;
        assert!(is_final(&v), "{v}");
    }
    let last = wait_final(&client, &app, ids.last().unwrap(), Duration::from_secs(5)).await;
    assert_eq!(last["status"], "quarantined");
    app.stop();

    // Rows lost with the killed process's unflushed buffer were rewritten.
    let rows = parquet_rows(dir.path());
    for id in &ids[..ids.len() - 1] {
        let n = rows.iter().filter(|r| r.id.to_string() == *id).count();
        assert_eq!(n, 1, "image {id} has {n} metadata rows");
    }
    // And the lake's invariants hold, image by image.
    let lake = dir.path().to_str().unwrap();
    let (ok, out, err) = cli(&["verify", "--data-dir", lake]);
    assert!(ok && out.contains("PASS"), "{out}{err}");

    // It can fail: a thumbnail gone, an outcome doubled.
    let (thumbed, doubled): (lake::ImageId, lake::ImageId) =
        (ids[0].parse().unwrap(), ids[1].parse().unwrap());
    std::fs::remove_file(dir.path().join(lake::layout::thumb_key(thumbed))).unwrap();
    let record = dir.path().join(lake::layout::quarantine_key(doubled));
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, b"{}").unwrap();
    let (ok, out, _) = cli(&["verify", "--data-dir", lake, "--format", "json"]);
    assert!(!ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let named: Vec<&str> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(
        named.contains(&ids[0].as_str()) && named.contains(&ids[1].as_str()),
        "{out}"
    );
}

/// `kill -9` of a sweep mid-pass, then another pass: nothing past its
/// expiry is left (records included: they go before their expiry marker,
/// so a kill between leaves the marker that finds the record again), and
/// nothing still kept was touched.
#[test]
fn kill_mid_sweep_then_sweep_again_leaves_nothing_expired() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let write = |key: &str| {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    };
    let image = |id: lake::ImageId| {
        let record = lake::layout::idempotency_key(&format!("api:{id}"), id);
        for key in [
            lake::layout::raw_key(id),
            lake::layout::thumb_key(id),
            lake::layout::manifest_key(id),
            lake::layout::expiry_marker_key(&record).unwrap(),
            record,
        ] {
            write(&key);
        }
    };
    // 8000 expired images over two hours a week and a day ago, 50 kept.
    let expired = 8000;
    for i in 0..expired {
        let at = now - chrono::Duration::days(8) - chrono::Duration::milliseconds(i * 900);
        image(lake::ImageId::new(at));
    }
    for i in 0..50 {
        image(lake::ImageId::new(now - chrono::Duration::hours(i + 1)));
    }
    let raw_files = || files_under(&dir.path().join("raw")).len();
    let data_dir = dir.path().to_str().unwrap();

    let mut sweep = std::process::Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(["sweep", "--once", "--data-dir", data_dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has begun to delete.
    let start = std::time::Instant::now();
    while raw_files() == expired as usize + 50 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    eprintln!(
        "killed with {} of {expired} expired raw objects left",
        raw_files() - 50
    );

    let (ok, out, err) = cli(&["sweep", "--once", "--data-dir", data_dir]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&["audit", "--data-dir", data_dir]);
    assert!(ok, "the audit finds something past expiry: {out}{err}");
    // The 50 kept images: five objects each, untouched (beside the
    // checkpoint markers of the hours the sweeps closed).
    let left: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("checkpoint/"))
        .collect();
    assert_eq!(left.len(), 250, "{:?}", &left[..left.len().min(10)]);
}

/// Wait for a process a failpoint is about to abort; its exit status.
fn wait_for_abort(app: &mut Imgpipe) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(status) = app.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the failpoint never fired");
}

/// The process dies right after a metadata Parquet file is written, its
/// rows still buffered (the `metadata_written` failpoint: a kill at exactly
/// that step, every run). After a restart each image has exactly one row —
/// the file written before the crash is not written again — and the
/// lake's invariants hold.
#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_a_parquet_flush_no_row_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let armed = [
        ("IMGPIPE_FAILPOINT", "metadata_written"),
        ("IMGPIPE_PROCESSOR__FLUSH_INTERVAL", "1s"),
    ];
    let mut app = Imgpipe::start(dir.path(), &armed);
    let client = client();
    let ids = upload_corpus(
        &client,
        &app,
        &["skimage_chelsea.png", "skimage_camera.png", "mate_Aqua.jpg"],
    )
    .await;
    let status = wait_for_abort(&mut app);
    assert!(!status.success(), "{status}");
    let written: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("metadata/") && f.ends_with(".parquet"))
        .collect();
    assert_eq!(written.len(), 1, "one file before the crash: {written:?}");
    drop(app);

    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_PROCESSOR__FLUSH_INTERVAL", "1s")]);
    for id in &ids {
        let v = wait_final(&client, &app, id, Duration::from_secs(120)).await;
        assert_eq!(v["status"], "processed", "{v}");
    }
    app.stop();
    let rows = parquet_rows(dir.path());
    for id in &ids {
        let n = rows.iter().filter(|r| r.id.to_string() == *id).count();
        assert_eq!(n, 1, "image {id} has {n} metadata rows");
    }
    let (ok, out, err) = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok && out.contains("PASS"), "{out}{err}");
}

/// The process dies in the middle of an HTTP erasure, after the tombstone
/// and before any data is purged (the `erase_tombstoned` failpoint). The
/// image is already gone for every reader, and the restart's sweeper
/// finishes the erasure without the client's retry: no byte of it is left
/// in raw, derived or Parquet.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_erasure_the_restart_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let flush = ("IMGPIPE_PROCESSOR__FLUSH_INTERVAL", "1s");
    let app = Imgpipe::start(dir.path(), &[flush]);
    let client = client();
    let ids = upload_corpus(
        &client,
        &app,
        &["skimage_chelsea.png", "skimage_camera.png"],
    )
    .await;
    for id in &ids {
        wait_final(&client, &app, id, Duration::from_secs(120)).await;
    }
    app.stop();
    let (erased, kept) = (&ids[0], &ids[1]);
    let mut app = Imgpipe::start(
        dir.path(),
        &[flush, ("IMGPIPE_FAILPOINT", "erase_tombstoned")],
    );
    let cut = client
        .delete(app.url(&format!("/v1/images/{erased}")))
        .send()
        .await;
    assert!(cut.is_err(), "the erasure answered: {cut:?}");
    assert!(!wait_for_abort(&mut app).success());
    let still: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.contains(erased.as_str()) && !f.starts_with("erased/"))
        .collect();
    assert!(
        !still.is_empty(),
        "the crash came too late to prove anything"
    );
    drop(app);

    let app = Imgpipe::start(dir.path(), &[flush]);
    // Erased for readers at once (the tombstone), finished by the sweeper.
    let v = client
        .get(app.url(&format!("/v1/images/{erased}")))
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), 404);
    let mut left = Vec::new();
    for _ in 0..100 {
        left = files_under(dir.path())
            .into_iter()
            .filter(|f| f.contains(erased.as_str()))
            .filter(|f| !f.starts_with("erased/") && !f.starts_with("idempotency/"))
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "left of the erased image: {left:?}");
    app.stop();
    let rows = parquet_rows(dir.path());
    assert!(rows.iter().all(|r| r.id.to_string() != *erased));
    assert_eq!(rows.iter().filter(|r| r.id.to_string() == *kept).count(), 1);
    let (ok, out, err) = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok && out.contains("PASS"), "{out}{err}");
}

/// The process dies in the middle of an upload, its bytes stored but the
/// image neither announced nor answered (the `upload_stored` failpoint).
/// After the restart the image is processed (found at start), and the
/// client's retry with the same `Idempotency-Key` gets that same image,
/// not a second one.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_upload_the_retry_finds_the_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = Imgpipe::start(dir.path(), &[("IMGPIPE_FAILPOINT", "upload_stored")]);
    let client = client();
    let jpeg = std::fs::read(corpus_dir().join("mate_Aqua.jpg")).unwrap();
    let cut = client
        .post(app.url("/v1/images"))
        .header("Idempotency-Key", "order-4711")
        .body(jpeg.clone())
        .send()
        .await;
    assert!(cut.is_err(), "the upload answered: {cut:?}");
    assert!(!wait_for_abort(&mut app).success());
    let raws: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("raw/"))
        .collect();
    assert_eq!(raws.len(), 1, "{raws:?}");
    drop(app);

    let app = Imgpipe::start(dir.path(), &[]);
    let retry = client
        .post(app.url("/v1/images"))
        .header("Idempotency-Key", "order-4711")
        .body(jpeg)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 202);
    let body: serde_json::Value = retry.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(raws[0].ends_with(id), "{id} is not the stored {}", raws[0]);
    let v = wait_final(&client, &app, id, Duration::from_secs(120)).await;
    assert_eq!(v["status"], "processed");
    app.stop();
    let raws = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("raw/"))
        .count();
    assert_eq!(raws, 1, "a second image was stored");
    let (ok, out, err) = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok && out.contains("PASS"), "{out}{err}");
}
