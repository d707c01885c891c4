//! What a crash can leave behind, found at start from the lake alone:
//! raw images with neither a manifest nor a quarantine record (processed
//! again), and manifests whose metadata row never reached a Parquet file
//! (the row is written again from the manifest).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use lake::{
    ImageId, ImageReceived, SharedStore, Source, StoreError,
    layout::{self, Area, parse_key},
    records::Manifest,
    schema::MetadataRow,
};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {key}: {detail}")]
    Read { key: String, detail: String },
}

async fn ids_in(
    store: &SharedStore,
    area: Area,
    suffix: &str,
) -> Result<HashSet<ImageId>, StoreError> {
    Ok(store
        .list(area.prefix())
        .await?
        .into_iter()
        .filter(|o| o.key.ends_with(suffix))
        .filter_map(|o| parse_key(&o.key).ok())
        .map(|p| p.id)
        .collect())
}

/// Raw images that never reached a final state, oldest first.
pub async fn unfinished(store: &SharedStore) -> Result<Vec<ImageReceived>, ReconcileError> {
    let manifests = ids_in(store, Area::Derived, layout::MANIFEST_FILE).await?;
    let quarantined = ids_in(store, Area::Quarantine, ".json").await?;
    let mut out = Vec::new();
    for obj in store.list(Area::Raw.prefix()).await? {
        let Ok(parsed) = parse_key(&obj.key) else {
            tracing::warn!(key = %obj.key, "foreign object under raw/ ignored");
            continue;
        };
        let id = parsed.id;
        if manifests.contains(&id) || quarantined.contains(&id) {
            continue;
        }
        let recorded = lake::index::recorded_event(store, id)
            .await?
            .filter(|ev| ev.raw_key == obj.key);
        out.push(recorded.unwrap_or_else(|| ImageReceived {
            id,
            raw_key: obj.key,
            // Written before the event was recorded: the processor
            // re-derives type and hash from the bytes; where it came from
            // is not known, and recorded as http.
            source: Source::Http,
            source_ref: None,
            bytes: obj.size,
            sha256: String::new(),
            content_type: String::new(),
            received_at: id.received_at(),
            dedup_key: None,
            request_id: None,
        }));
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// Rows present in manifests but in no metadata file. Call before any
/// processing starts, or rows still waiting for a flush look lost; where
/// other processors share the lake, pass `written_before` so manifests
/// whose rows a live peer may still be buffering are left to it.
pub async fn lost_rows(
    store: &SharedStore,
    written_before: Option<DateTime<Utc>>,
) -> Result<Vec<MetadataRow>, ReconcileError> {
    let mut in_files = HashSet::new();
    for obj in store.list(Area::Metadata.prefix()).await? {
        let Some(file) = store.get(&obj.key).await? else {
            continue;
        };
        let ids = lake::schema::read_ids(file).map_err(|e| ReconcileError::Read {
            key: obj.key.clone(),
            detail: e.to_string(),
        })?;
        in_files.extend(ids);
    }
    let mut rows = Vec::new();
    for obj in store.list(Area::Derived.prefix()).await? {
        if !obj.key.ends_with(layout::MANIFEST_FILE) {
            continue;
        }
        if let Some(cutoff) = written_before
            && obj.last_modified.is_none_or(|t| t >= cutoff)
        {
            continue;
        }
        let Ok(parsed) = parse_key(&obj.key) else {
            continue;
        };
        if in_files.contains(&parsed.id) {
            continue;
        }
        let Some(bytes) = store.get(&obj.key).await? else {
            continue;
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => rows.push(m.row),
            Err(e) => tracing::warn!(key = %obj.key, error = %e, "unreadable manifest"),
        }
    }
    Ok(rows)
}
