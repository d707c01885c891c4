#![allow(clippy::unwrap_used)] // test support: a failed step is a failed test
//! The storage conformance suite: what every backend must do. Run against
//! each backend by `tests/storage_conformance.rs` (S3 on a real server).

use bytes::Bytes;

use super::{PutOptions, Store};

/// Exercise `store`, which must be empty under `root` (a key prefix ending
/// in `/`, so runs can share a bucket). Panics on the first violation.
pub async fn run(store: &dyn Store, root: &str) {
    let k = |s: &str| format!("{root}{s}");
    let opts = PutOptions {
        content_type: Some("image/jpeg".into()),
        metadata: vec![("imgpipe-id".into(), "x".into())],
    };

    // Round trip, absent objects, overwrite.
    assert_eq!(store.get(&k("missing")).await.unwrap(), None);
    assert!(!store.exists(&k("missing")).await.unwrap());
    store
        .put(&k("a/one"), Bytes::from_static(b"first"), &opts)
        .await
        .unwrap();
    assert_eq!(
        store.get(&k("a/one")).await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert!(store.exists(&k("a/one")).await.unwrap());
    store
        .put(&k("a/one"), Bytes::from_static(b"second"), &opts)
        .await
        .unwrap();
    assert_eq!(
        store.get(&k("a/one")).await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    store
        .put(&k("empty"), Bytes::new(), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.get(&k("empty")).await.unwrap().as_deref(),
        Some(&b""[..])
    );

    // A prefix of a key is not an object.
    assert_eq!(store.get(&k("a")).await.unwrap(), None);
    assert!(!store.exists(&k("a")).await.unwrap());

    // Large binary objects arrive byte for byte.
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    store
        .put(&k("a/big.bin"), Bytes::from(big.clone()), &opts)
        .await
        .unwrap();
    assert_eq!(
        store.get(&k("a/big.bin")).await.unwrap().as_deref(),
        Some(&big[..])
    );

    // Listing: sorted, prefix-filtered (including partial segments), sizes.
    for name in ["b/dt=2026-01-01/x", "b/dt=2026-01-02/y", "b/dz/z", "bb/w"] {
        store
            .put(&k(name), Bytes::from_static(b"1234"), &opts)
            .await
            .unwrap();
    }
    let keys = |list: Vec<super::ObjectInfo>| list.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list(&k("b/")).await.unwrap()),
        vec![k("b/dt=2026-01-01/x"), k("b/dt=2026-01-02/y"), k("b/dz/z")]
    );
    assert_eq!(
        keys(store.list(&k("b/dt=")).await.unwrap()),
        vec![k("b/dt=2026-01-01/x"), k("b/dt=2026-01-02/y")]
    );
    assert!(store.list(&k("nothing/")).await.unwrap().is_empty());
    let all = store.list(root).await.unwrap();
    assert_eq!(all.len(), 7, "{all:?}");
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
    let big_info = all.iter().find(|o| o.key == k("a/big.bin")).unwrap();
    assert_eq!(big_info.size, 5_000_000);

    // Listing pages past 1000 keys.
    let many: Vec<String> = (0..1100).map(|i| k(&format!("many/{i:05}"))).collect();
    futures::future::try_join_all(
        many.iter()
            .map(|key| store.put(key, Bytes::from_static(b"m"), &opts)),
    )
    .await
    .unwrap();
    assert_eq!(keys(store.list(&k("many/")).await.unwrap()), many);
    // A listing that stops below a key: across pages, nothing at or past it.
    let below: Vec<String> = store
        .list_versions_below(&k("many/"), &k("many/01050"))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(below, many[..1050]);
    assert!(
        store
            .list_versions_below(&k("many/"), &k("many/"))
            .await
            .unwrap()
            .is_empty()
    );
    // One key's versions: that key, not the keys it is a prefix of.
    let exact = store.versions_of(&k("many/0001")).await.unwrap();
    assert!(exact.is_empty(), "{exact:?}");
    let exact = store.versions_of(&k("many/00010")).await.unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].key, k("many/00010"));
    assert!(!exact[0].delete_marker && exact[0].is_latest);
    // The directories right below a prefix, not what is inside them.
    for key in ["dirs/b/x/1", "dirs/a/2", "dirs/a/y/3", "dirs/top"] {
        store
            .put(&k(key), Bytes::from_static(b"d"), &opts)
            .await
            .unwrap();
    }
    assert_eq!(
        store.list_dirs(&k("dirs/")).await.unwrap(),
        vec![k("dirs/a/"), k("dirs/b/")]
    );
    assert_eq!(
        store.list_dirs(&k("dirs/b/")).await.unwrap(),
        vec![k("dirs/b/x/")]
    );
    assert!(store.list_dirs(&k("nothing/")).await.unwrap().is_empty());
    let dirs: Vec<String> = ["dirs/b/x/1", "dirs/a/2", "dirs/a/y/3", "dirs/top"]
        .map(k)
        .to_vec();
    store.delete(&dirs).await.unwrap();

    // Batched delete of more than one request's worth, missing keys ignored.
    let mut doomed = many.clone();
    doomed.push(k("never-existed"));
    store.delete(&doomed).await.unwrap();
    assert!(store.list(&k("many/")).await.unwrap().is_empty());

    // Invalid keys are refused, never mapped to some other place.
    for bad in ["../escape", "/abs", "a//b"] {
        assert!(store.put(bad, Bytes::new(), &opts).await.is_err(), "{bad}");
        assert!(store.get(bad).await.is_err(), "{bad}");
    }

    // Concurrent writers to one key: readers only ever see a whole object.
    let a = Bytes::from(vec![b'a'; 1 << 20]);
    let b = Bytes::from(vec![b'b'; 1 << 20]);
    let race = k("race");
    let writes =
        (0..8).map(|i| store.put(&race, if i % 2 == 0 { a.clone() } else { b.clone() }, &opts));
    let reads = (0..8).map(|_| store.get(&race));
    let (w, r) = futures::join!(
        futures::future::join_all(writes),
        futures::future::join_all(reads)
    );
    assert!(w.iter().all(Result::is_ok));
    for got in r {
        if let Some(got) = got.unwrap() {
            assert!(got == a || got == b, "torn read of {} bytes", got.len());
        }
    }

    // Versions: every key has one (at least), and purging every version
    // leaves nothing, not even in a version listing.
    let rest = keys(store.list(root).await.unwrap());
    let versions = store.list_versions(root).await.unwrap();
    let mut versioned: Vec<String> = versions
        .iter()
        .filter(|v| !v.delete_marker)
        .map(|v| v.key.clone())
        .collect();
    versioned.dedup();
    assert_eq!(versioned, rest);
    store.purge(&versions).await.unwrap();
    assert!(store.list(root).await.unwrap().is_empty());
    assert!(store.list_versions(root).await.unwrap().is_empty());
    store.ping().await.unwrap();
}
