//! `imgpipe up` on an S3 lake (the real local SeaweedFS): upload → processed,
//! with every object in the bucket under the documented layout.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use lake::Store;

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_runs_on_s3() {
    let Some((store, s3)) = s3_lake("up", "lake/").await else {
        return;
    };
    let bucket = s3.bucket.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = s3_config_file(dir.path(), &s3);
    let app = Imgpipe::start_with_args(dir.path(), &[], &["--config", config.to_str().unwrap()]);
    let client = client();
    let ids = upload_corpus(
        &client,
        &app,
        &[
            "mate_Storm.jpg",
            "skimage_chelsea.png",
            "webp_mate_GreenMeadow.webp",
        ],
    )
    .await;
    for id in &ids {
        let v = wait_final(&client, &app, id, Duration::from_secs(120)).await;
        assert_eq!(v["status"], "processed", "{v}");
    }
    app.stop();

    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    for id in &ids {
        let parsed: lake::ImageId = id.parse().unwrap();
        for key in [
            lake::layout::raw_key(parsed),
            lake::layout::thumb_key(parsed),
            lake::layout::manifest_key(parsed),
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }
    let metadata: Vec<&String> = keys.iter().filter(|k| k.starts_with("metadata/")).collect();
    assert!(!metadata.is_empty(), "no Parquet written: {keys:?}");
    let mut rows = 0;
    for key in metadata {
        rows += lake::schema::read_rows(store.get(key).await.unwrap().unwrap())
            .unwrap()
            .len();
    }
    assert_eq!(rows, ids.len());
    // Nothing landed outside the configured prefix, and nothing on local disk.
    let outside = store
        .sdk_client()
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(
        outside
            .contents()
            .iter()
            .all(|o| o.key().unwrap().starts_with("lake/"))
    );
    assert!(!dir.path().join("raw").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_rules_are_applied_read_back_and_audited() {
    let Some((_store, s3)) = s3_lake("lc", "").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = s3_config_file(dir.path(), &s3);
    let cfg = config.to_str().unwrap();

    // An empty bucket without the backstop rules fails the audit.
    let (ok, out, err) = cli(&["audit", "--config", cfg]);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("lifecycle rule imgpipe-expire-everything"),
        "{out}"
    );

    let (ok, out, err) = cli(&["retention", "lifecycle", "--apply", "--config", cfg]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&["audit", "--config", cfg]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("PASS"), "{out}");
}

/// The retention promise on S3: with the clock moved past 7 days the audit
/// fails, the sweep removes every version of every expired object, and the
/// audit passes again.
#[tokio::test(flavor = "multi_thread")]
async fn seven_days_after_arrival_nothing_is_left_on_s3() {
    let Some((store, s3)) = s3_lake("ret", "lake/").await else {
        return;
    };
    store.enable_versioning().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = s3_config_file(dir.path(), &s3);
    let cfg = config.to_str().unwrap();
    let (ok, out, err) = cli(&["retention", "lifecycle", "--apply", "--config", cfg]);
    assert!(ok, "{out}{err}");

    let app = Imgpipe::start_with_args(dir.path(), &[], &["--config", cfg]);
    let client = client();
    let mut newest = None;
    for name in ["mate_Storm.jpg", "skimage_camera.png"] {
        let (status, body) = upload(
            &client,
            &app,
            std::fs::read(corpus_dir().join(name)).unwrap(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        wait_final(&client, &app, &id, Duration::from_secs(60)).await;
        newest = Some(id.parse::<lake::ImageId>().unwrap());
    }
    app.stop();
    assert!(store.list_versions("").await.unwrap().len() >= 7);

    let received = newest.unwrap().received_at();
    let at = |d: chrono::Duration| (received + d).to_rfc3339();
    let almost = at(chrono::Duration::days(7) - chrono::Duration::hours(1));
    let past = at(chrono::Duration::days(7) + chrono::Duration::minutes(1));
    let (ok, out, err) = cli(&["audit", "--config", cfg, "--now", &almost]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&["audit", "--config", cfg, "--now", &past]);
    assert!(!ok && out.contains("VIOLATION expired"), "{out}{err}");
    let (ok, out, err) = cli(&["sweep", "--config", cfg, "--now", &past]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&["audit", "--config", cfg, "--now", &past]);
    assert!(ok, "{out}{err}");
    let left = store.list_versions("").await.unwrap();
    assert!(left.is_empty(), "left on S3 after the sweep: {left:?}");
}

/// The lifecycle rules do expire objects on the real server: an object made
/// to look 8 days old (its filer entry backdated, as SeaweedFS's own
/// lifecycle tests do) is removed by SeaweedFS's lifecycle run, while a
/// fresh one stays.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_rules_expire_objects_on_seaweedfs() {
    let (Ok(weed), Ok(python)) = (
        std::env::var("IMGPIPE_TEST_WEED"),
        std::env::var("IMGPIPE_TEST_PYTHON"),
    ) else {
        assert!(
            std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
            "IMGPIPE_TEST_WEED / IMGPIPE_TEST_PYTHON not set"
        );
        eprintln!("skipping: IMGPIPE_TEST_WEED / IMGPIPE_TEST_PYTHON not set (run `bash .ci/run`)");
        return;
    };
    let Some((store, s3)) = s3_lake("lcrun", "").await else {
        return;
    };
    retention::lifecycle::apply(
        &store,
        &retention::lifecycle::rules(chrono::Duration::days(7)),
    )
    .await
    .unwrap();
    let (old, young) = (
        "raw/dt=2026-01-01/hr=00/old",
        "raw/dt=2026-01-01/hr=00/young",
    );
    for key in [old, young] {
        store
            .put(
                key,
                bytes::Bytes::from_static(b"image"),
                &Default::default(),
            )
            .await
            .unwrap();
    }
    let tool = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tools/seaweed_backdate.py"
    );
    let out = std::process::Command::new(&python)
        .args([tool, "127.0.0.1:18888", &s3.bucket, old, "8"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut gone = false;
    for _ in 0..6 {
        let mut shell = std::process::Command::new(&weed)
            .args(["shell", "-master=127.0.0.1:9333"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        shell
            .stdin
            .take()
            .unwrap()
            .write_all(b"s3.lifecycle.run-shard -shards 0-15 -s3 127.0.0.1:18333 -runtime 10s\n")
            .unwrap();
        shell.wait().unwrap();
        if !store.exists(old).await.unwrap() {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "SeaweedFS's lifecycle run did not expire the 8-day-old object"
    );
    assert!(
        store.exists(young).await.unwrap(),
        "the lifecycle run removed a fresh object"
    );
}

/// Every write asks for the configured server-side encryption, so a bucket
/// policy that denies unencrypted puts (the deployed one) never denies ours.
/// SeaweedFS does SSE-S3 (`AES256`) itself and reports it back; it has no
/// KMS here, so an `aws:kms` put is refused — which shows the header
/// reached it, since the same put without it is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn writes_ask_for_server_side_encryption() {
    let Some((plain, s3)) = s3_lake("sse", "").await else {
        return;
    };
    let with = |sse, key_id: Option<&str>| lake::config::S3Config {
        sse: Some(sse),
        sse_kms_key_id: key_id.map(str::to_owned),
        ..s3.clone()
    };
    let key = || lake::layout::raw_key(lake::ImageId::new(chrono::Utc::now()));
    let body = || bytes::Bytes::from_static(b"x");

    let sse_s3 =
        lake::store::S3Store::connect(&with(lake::config::ServerSideEncryption::Aes256, None))
            .await
            .unwrap();
    let k = key();
    sse_s3.put(&k, body(), &Default::default()).await.unwrap();
    let head = plain
        .sdk_client()
        .head_object()
        .bucket(&s3.bucket)
        .key(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    let k = key();
    plain.put(&k, body(), &Default::default()).await.unwrap();
    let head = plain
        .sdk_client()
        .head_object()
        .bucket(&s3.bucket)
        .key(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        None,
        "unencrypted unless asked"
    );

    let kms = lake::store::S3Store::connect(&with(
        lake::config::ServerSideEncryption::AwsKms,
        Some("imgpipe-lake"),
    ))
    .await
    .unwrap();
    let refused = kms.put(&key(), body(), &Default::default()).await;
    assert!(
        refused.is_err(),
        "no KMS here: the aws:kms header must have been refused"
    );
}
