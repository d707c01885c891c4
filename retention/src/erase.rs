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
    // Each record's expiry marker goes too (the kept dedup record gets
    // its marker back below).
    let markers: Vec<String> = keys
        .iter()
        .filter_map(|k| layout::expiry_marker_key(k))
        .collect();
    keys.extend(markers);
    let mut doomed: Vec<ObjectVersion> = derived;
    for key in &keys {
        doomed.extend(erasure::versions_of(store, key).await?);
    }
    // Objects that held the image's data; markers hold none.
    let objects = doomed
        .iter()
        .filter(|v| v.is_latest && !v.delete_marker)
        .filter(|v| !v.key.starts_with(layout::Area::Expiry.prefix()))
        .count();
    if !doomed.is_empty() {
        store.purge(&doomed).await?;
    }
    // The dedup record comes back holding only "erased": a client retry or
    // a Kafka redelivery under its key must find the image erased, not
    // store it again under a new id.
    if let Some(key) = event.as_ref().and_then(index::dedup_record_key) {
        index::put_record(
            store,
            &key,
            bytes::Bytes::from_static(index::ERASED.as_bytes()),
            &PutOptions::default(),
        )
        .await?;
    }
    let rows = erasure::scrub_partition(store, id).await?;
    erasure::purge_key(store, &raw_key).await?;
    let report = ErasureReport {
        objects: objects + usize::from(raw),
        rows,
    };
    tracing::info!(%id, objects = report.objects, rows = report.rows, "erased");
    crate::telemetry::erased();
    Ok(Some(report))
}
