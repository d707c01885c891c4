//! Erasure: remove every byte of one image now, before its natural expiry.
//!
//! Order matters. The tombstone goes first, so no stage writes the image
//! back; the raw object goes last, so an erasure interrupted by a crash is
//! still visible (raw present) and finishes when run again.
//!
//! Every key is purged by version: on a versioned bucket a delete only
//! hides an object, and its older versions (the image, the pre-scrub
//! Parquet file with its GPS) would outlive the erasure. Records are found
//! from the id and the image's recorded event, never by listing an area.

use lake::{
    ImageId, SharedStore,
    erasure::{self, ErasureError},
    index, layout,
    records::Manifest,
    store::{ObjectVersion, PutOptions},
};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErasureReport {
    /// Objects removed (raw, derived, quarantine, idempotency records).
    pub objects: usize,
    /// Metadata rows removed from Parquet files.
    pub rows: usize,
}

/// `None` when nothing of the image exists (unknown, expired or already
/// erased).
pub async fn erase(
    store: &SharedStore,
    id: ImageId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<ErasureReport>, ErasureError> {
    let raw_key = layout::raw_key(id);
    let quarantine_key = layout::quarantine_key(id);
    // Every version under the image's folder, live or not, including any
    // a manifest never named (a crash before it was written).
    let derived = store.list_versions(&layout::derived_prefix(id)).await?;
    let raw = store.exists(&raw_key).await?;
    // Any version counts: a hidden older version is still the image's data,
    // and erasing it again must reach it.
    let anything = raw
        || !derived.is_empty()
        || !erasure::versions_of(store, &raw_key).await?.is_empty()
        || !erasure::versions_of(store, &quarantine_key)
            .await?
            .is_empty();
    if !anything {
        return Ok(None);
    }
    let tombstone = bytes::Bytes::from(now.to_rfc3339());
    store
        .put(&layout::erased_key(id), tombstone, &PutOptions::default())
        .await?;

    let mut keys = vec![quarantine_key];
    let manifest = match store.get(&layout::manifest_key(id)).await? {
        Some(bytes) => serde_json::from_slice::<Manifest>(&bytes).ok(),
        None => None,
    };
    let event = index::recorded_event(store, id).await?;
    if let Some(event) = &event {
        keys.extend(index::record_keys(event));
    } else if let Some(m) = &manifest {
        // No recorded event (older images): the content index, from the row.
        keys.push(layout::idempotency_key(
            &layout::content_index_key(&m.row.sha256),
            id,
        ));
    }
    // The dedup record is rewritten first, holding only "erased": a client
    // retry or a Kafka redelivery under its key must find the image erased,
    // not store it again under a new id — also when this erasure is cut
    // short below and run again without the recorded event to name it.
    let dedup = event.as_ref().and_then(index::dedup_record_key);
    if let Some(key) = &dedup {
        index::put_record(
            store,
            key,
            bytes::Bytes::from_static(index::ERASED.as_bytes()),
            &PutOptions::default(),
        )
        .await?;
    }
    lake::failpoint::hit(lake::failpoint::ERASE_TOMBSTONED);
    // Each record's expiry marker goes too, except the dedup record's.
    let markers: Vec<String> = keys
        .iter()
        .filter_map(|k| layout::expiry_marker_key(k))
        .collect();
    keys.extend(markers);
    let kept: Vec<String> = dedup
        .iter()
        .flat_map(|k| [k.clone()].into_iter().chain(layout::expiry_marker_key(k)))
        .collect();
    let mut doomed: Vec<ObjectVersion> = derived;
    for key in &keys {
        doomed.extend(erasure::versions_of(store, key).await?);
    }
    // The rewritten dedup record and its marker stay; their older versions
    // (which hold the image's hash) go.
    doomed.retain(|v| !(v.is_latest && !v.delete_marker && kept.contains(&v.key)));
    // Objects that held the image's data; markers and the kept record hold none.
    let objects = doomed
        .iter()
        .filter(|v| v.is_latest && !v.delete_marker)
        .filter(|v| !v.key.starts_with(layout::Area::Expiry.prefix()))
        .count();
    if !doomed.is_empty() {
        store.purge(&doomed).await?;
    }
    let rows = erasure::scrub_partition(store, id).await?;
    erasure::purge_key(store, &raw_key).await?;
    let report = ErasureReport {
        // The dedup record counts: its hash is gone, rewritten to "erased".
        objects: objects + usize::from(raw) + usize::from(dedup.is_some()),
        rows,
    };
    tracing::info!(%id, objects = report.objects, rows = report.rows, "erased");
    crate::telemetry::erased();
    Ok(Some(report))
}

/// Finish erasures a crash cut short: every tombstone whose image still
/// has data is erased again. Its cost follows the erasures in the
/// retention period (the tombstones), not the lake.
pub async fn resume(
    store: &SharedStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, ErasureError> {
    let mut resumed = 0;
    let mut seen = std::collections::BTreeSet::new();
    for tombstone in store.list(layout::Area::Erased.prefix()).await? {
        let Ok(parsed) = layout::parse_key(&tombstone.key) else {
            continue;
        };
        if !seen.insert(parsed.id) {
            continue;
        }
        let id = parsed.id;
        let leftover = store.exists(&layout::raw_key(id)).await?
            || !store
                .list_versions(&layout::derived_prefix(id))
                .await?
                .is_empty()
            || store.exists(&layout::quarantine_key(id)).await?;
        if leftover {
            tracing::warn!(%id, "finishing an erasure a crash cut short");
            // One image's trouble must not stop the others (or the sweep).
            match erase(store, id, now).await {
                Ok(_) => resumed += 1,
                Err(e) => {
                    tracing::error!(%id, error = %e, "could not finish an erasure; next hour again")
                }
            }
        }
    }
    Ok(resumed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use lake::{
        ImageReceived, Source,
        store::{FsStore, counting::Counting},
    };

    use super::*;

    const DEDUP: &str = "kafka:images:key-1";

    /// An image as admission leaves it: records, raw object, thumbnail.
    async fn admitted(store: &SharedStore) -> ImageId {
        let id = ImageId::new(chrono::Utc::now());
        let opts = PutOptions::default();
        let event = ImageReceived {
            id,
            raw_key: layout::raw_key(id),
            source: Source::Kafka,
            source_ref: Some("images/0/7".into()),
            bytes: 1,
            sha256: "ab".repeat(32),
            content_type: "image/png".into(),
            received_at: id.received_at(),
            dedup_key: Some(DEDUP.into()),
            request_id: None,
        };
        index::record_dedup(store, DEDUP, id, &event.sha256, &opts)
            .await
            .unwrap();
        index::record_event(store, &event, &opts).await.unwrap();
        for key in [layout::raw_key(id), layout::thumb_key(id)] {
            store
                .put(&key, Bytes::from_static(b"x"), &opts)
                .await
                .unwrap();
        }
        index::record_content(store, &event.sha256, id, &opts)
            .await
            .unwrap();
        id
    }

    /// A crash after any write of an erasure, then the erasure again: no
    /// byte of the image is left, and its dedup record stays, holding only
    /// "erased", so a redelivery under its key is not stored again.
    #[tokio::test]
    async fn an_erasure_cut_short_anywhere_completes_when_run_again() {
        for writes in 0..12 {
            let dir = tempfile::tempdir().unwrap();
            let plain: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
            let id = admitted(&plain).await;
            let crashing: SharedStore =
                Arc::new(Counting::new(plain.clone()).fail_writes_after(writes));
            let now = chrono::Utc::now();
            let first = erase(&crashing, id, now).await;
            let again = erase(&plain, id, now).await.unwrap();
            assert!(first.is_ok() || again.is_some(), "after {writes} writes");
            let dedup = layout::idempotency_key(DEDUP, id);
            let kept = [
                layout::erased_key(id),
                dedup.clone(),
                layout::expiry_marker_key(&dedup).unwrap(),
            ];
            let left: Vec<String> = plain
                .list("")
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .filter(|k| !kept.contains(k))
                .collect();
            assert!(left.is_empty(), "after {writes} writes: {left:?}");
            assert_eq!(
                plain.get(&dedup).await.unwrap().as_deref(),
                Some(index::ERASED.as_bytes()),
                "after {writes} writes the dedup record is gone or still holds the hash"
            );
        }
    }
}
