//! One conformance suite, every backend: the filesystem and S3 on a real
//! S3-compatible server (SeaweedFS, started by `.ci/run`).
#![allow(clippy::unwrap_used)]

mod common;

use lake::{
    Store,
    store::{FsStore, S3Store, conformance},
};

#[tokio::test(flavor = "multi_thread")]
async fn filesystem_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    conformance::run(&store, "").await;
    conformance::run(&store, "nested/root/").await;
    // No temp files left behind by the atomic writes.
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_backend_conforms_on_a_real_server() {
    let Some((store, config)) = common::s3_lake("conf", "").await else {
        return;
    };
    conformance::run(&store, "").await;

    // With a key prefix, the store sees only its own objects.
    let prefixed = S3Store::connect(&lake::config::S3Config {
        prefix: "tenant/".into(),
        ..config
    })
    .await
    .unwrap();
    conformance::run(&prefixed, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_objects_carry_imgpipe_metadata() {
    let Some((store, config)) = common::s3_lake("meta", "").await else {
        return;
    };
    let id = lake::ImageId::new(chrono::Utc::now());
    let opts = lake::store::PutOptions::for_image(
        id,
        lake::Source::Http,
        "abc",
        chrono::Utc::now(),
        "image/png",
    );
    store
        .put("k", bytes::Bytes::from_static(b"x"), &opts)
        .await
        .unwrap();
    let head = store
        .client()
        .head_object()
        .bucket(&config.bucket)
        .key("k")
        .send()
        .await
        .unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(
        meta.get("imgpipe-id").map(String::as_str),
        Some(id.to_string().as_str())
    );
    assert_eq!(meta.get("imgpipe-source").map(String::as_str), Some("http"));
    assert!(meta.contains_key("imgpipe-expires-at") && meta.contains_key("imgpipe-sha256"));
    assert_eq!(head.content_type(), Some("image/png"));
}
