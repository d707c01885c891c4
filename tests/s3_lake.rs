//! `imgpipe up` on an S3 lake (the real local SeaweedFS): upload → processed,
//! with every object in the bucket under the documented layout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use lake::Store;

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_runs_on_s3() {
    let Some((store, s3)) = s3_lake("up", "lake/").await else {
        return;
    };
    let (bucket, endpoint) = (s3.bucket.clone(), s3.endpoint.clone().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[lake.s3]\nbucket = \"{bucket}\"\nprefix = \"lake/\"\nendpoint = \"{endpoint}\"\n"
        ),
    )
    .unwrap();
    let app = Imgpipe::start_with_args(dir.path(), &[], &["--config", config.to_str().unwrap()]);
    let client = client();
    let mut ids = Vec::new();
    for name in [
        "mate_Storm.jpg",
        "skimage_chelsea.png",
        "webp_mate_GreenMeadow.webp",
    ] {
        let (status, body) = upload(
            &client,
            &app,
            std::fs::read(corpus_dir().join(name)).unwrap(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
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
        .client()
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
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[lake.s3]\nbucket = \"{}\"\nendpoint = \"{}\"\n",
            s3.bucket,
            s3.endpoint.unwrap()
        ),
    )
    .unwrap();
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
