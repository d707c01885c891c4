//! Erasure: remove every byte of one image now, before its natural expiry.
//!
//! Order matters. The tombstone goes first, so no stage writes the image
//! back; the raw object goes last, so an erasure interrupted by a crash is
//! still visible (raw present) and finishes when run again.

use lake::{
    ImageId, SharedStore,
    erasure::{self, ErasureError},
    layout::{self, Area},
    records::Manifest,
    store::PutOptions,
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
    let derived: Vec<String> = store
        .list(&layout::derived_prefix(id))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let raw = store.exists(&raw_key).await?;
    let quarantined = store.exists(&quarantine_key).await?;
    if !raw && !quarantined && derived.is_empty() {
        return Ok(None);
    }
    let tombstone = bytes::Bytes::from(now.to_rfc3339());
    store
        .put(&layout::erased_key(id), tombstone, &PutOptions::default())
        .await?;

    // Derived objects: the manifest's list, plus anything under the image's
    // folder a manifest never named (a crash before it was written).
    let mut doomed = derived;
    if let Some(bytes) = store.get(&layout::manifest_key(id)).await?
        && let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes)
    {
        doomed.extend(manifest.keys.into_iter().filter(|k| *k != raw_key));
    }
    if quarantined {
        doomed.push(quarantine_key);
    }
    let suffix = format!("/{id}");
    doomed.extend(
        store
            .list(Area::Idempotency.prefix())
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| k.ends_with(&suffix)),
    );
    doomed.sort();
    doomed.dedup();
    store.delete(&doomed).await?;
    let rows = erasure::scrub_partition(store, id).await?;
    if raw {
        store.delete(std::slice::from_ref(&raw_key)).await?;
    }
    let report = ErasureReport {
        objects: doomed.len() + usize::from(raw),
        rows,
    };
    tracing::info!(%id, objects = report.objects, rows = report.rows, "erased");
    metrics::counter!("imgpipe_erasures_total").increment(1);
    Ok(Some(report))
}
