//! One conformance suite, every backend: the filesystem and S3 on a real
//! S3-compatible server (SeaweedFS, started by `.ci/run`).
#![allow(clippy::unwrap_used)]

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
    let Some((store, config)) = crate::common::s3_lake("conf", "").await else {
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
    let Some((store, config)) = crate::common::s3_lake("meta", "").await else {
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
        .sdk_client()
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

/// On a versioned bucket a plain delete only adds a delete marker: the
/// sweeper must remove every version and marker of an expired key.
#[tokio::test(flavor = "multi_thread")]
async fn sweeper_purges_every_version_on_a_versioned_bucket() {
    let Some((store, _)) = crate::common::s3_lake("vers", "").await else {
        return;
    };
    let t0 = chrono::Utc::now() - chrono::Duration::days(8);
    let (old, young) = (
        lake::ImageId::new(t0),
        lake::ImageId::new(chrono::Utc::now()),
    );
    // Written before versioning was on: its version id is "null", which a
    // purge must name (a plain delete would only hide it).
    let unversioned = lake::layout::quarantine_key(old);
    store
        .put(
            &unversioned,
            bytes::Bytes::from_static(b"q"),
            &Default::default(),
        )
        .await
        .unwrap();
    store.enable_versioning().await.unwrap();
    let store: lake::SharedStore = std::sync::Arc::new(store);
    let put = |key: String, body: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .put(&key, bytes::Bytes::from_static(body), &Default::default())
                .await
                .unwrap()
        }
    };
    put(lake::layout::raw_key(old), b"v1").await;
    put(lake::layout::raw_key(old), b"v2").await;
    put(lake::layout::thumb_key(old), b"t").await;
    store.delete(&[lake::layout::thumb_key(old)]).await.unwrap();
    put(lake::layout::raw_key(young), b"young").await;
    let versions = store.list_versions("").await.unwrap();
    assert!(
        versions.len() >= 5,
        "expected versions and a delete marker: {versions:?}"
    );
    assert!(versions.iter().any(|v| v.delete_marker), "{versions:?}");

    let audit = retention::audit::audit(
        &store,
        lake::Layout::new(chrono::Duration::days(7)),
        None,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(!audit.passed(), "the audit must see the expired versions");
    let clock = std::sync::Arc::new(lake::SystemClock);
    let sweeper = retention::Sweeper::new(store.clone(), clock, chrono::Duration::days(7));
    sweeper.sweep_once().await.unwrap();
    let left = store.list_versions("").await.unwrap();
    assert_eq!(
        left.iter().map(|v| v.key.clone()).collect::<Vec<_>>(),
        vec![lake::layout::raw_key(young)],
        "{left:?}"
    );
}
