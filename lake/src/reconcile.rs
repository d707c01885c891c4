//! What a crash can leave behind, found from the lake alone: raw images
//! with no outcome (processed again at start) and manifests whose row never
//! reached a metadata file (the row is written again from the manifest).
//!
//! Only hours that can still hold such work are looked at. The sweeper
//! checks each hour once it has settled: when every image in it is
//! finished and every row is in a file, it compacts the hour's files and
//! leaves a checkpoint marker (`checkpoint/dt=…/hr=…/…`). Start-up reads
//! the markers (one listing: at most an hour's worth per retention hour)
//! and scans only the hours without one — the last hour or two, not the
//! lake. A lake written before markers existed is scanned whole once.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use crate::{
    ImageId, ImageReceived, Layout, SharedStore, Source, StoreError,
    layout::{self, Area, hour_prefix, parse_key},
    records::Manifest,
    schema::MetadataRow,
    store::PutOptions,
};

/// How long after an hour ends before it is checked: longer than any
/// admission takes between minting an id and storing its raw bytes, and
/// than a processor holds a row before flushing it.
pub const SETTLE: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {key}: {detail}")]
    Read { key: String, detail: String },
}

/// Every hour partition that holds raw images still kept at `now` and has
/// no checkpoint marker, oldest first. An hour with no raw image has
/// nothing to resume (a manifest never outlives its raw image but by
/// erasure, which takes both). Listings: the markers, the days and hours
/// of `raw/` — a constant number for a given retention period.
pub async fn open_hours(
    store: &SharedStore,
    layout: &Layout,
    now: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let marked: HashSet<DateTime<Utc>> = store
        .list(Area::Checkpoint.prefix())
        .await?
        .into_iter()
        .filter_map(|o| parse_key(&o.key).ok())
        .map(|p| layout::hour_start(p.id.received_at()))
        .collect();
    let first = layout::hour_start(now - layout.retention);
    let mut open = Vec::new();
    for day in store.list_dirs(Area::Raw.prefix()).await? {
        match layout::partition_start(&day) {
            Some(start) if start + Duration::days(1) > first => {}
            _ => continue,
        }
        for hour in store.list_dirs(&day).await? {
            let Some(start) = layout::partition_start(&hour) else {
                continue;
            };
            if start >= first && start <= now && !marked.contains(&start) {
                open.push(start);
            }
        }
    }
    open.sort();
    Ok(open)
}

/// The hours of `open` that have settled at `now` (see [`SETTLE`]) and
/// whose marker would not have expired already.
pub fn settled(open: &[DateTime<Utc>], layout: &Layout, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    open.iter()
        .filter(|h| **h + Duration::hours(1) + SETTLE <= now && **h + layout.retention > now)
        .copied()
        .collect()
}

async fn ids_in(
    store: &SharedStore,
    area: Area,
    hour: DateTime<Utc>,
    suffix: &str,
) -> Result<HashSet<ImageId>, StoreError> {
    Ok(store
        .list(&hour_prefix(area, hour))
        .await?
        .into_iter()
        .filter(|o| o.key.ends_with(suffix))
        .filter_map(|o| parse_key(&o.key).ok())
        .map(|p| p.id)
        .collect())
}

/// Raw images in `hours` with no outcome and no tombstone, oldest first.
pub async fn unfinished(
    store: &SharedStore,
    hours: &[DateTime<Utc>],
) -> Result<Vec<ImageReceived>, ReconcileError> {
    let mut out = Vec::new();
    for &hour in hours {
        let raw = store.list(&hour_prefix(Area::Raw, hour)).await?;
        if raw.is_empty() {
            continue;
        }
        let mut finished = ids_in(store, Area::Derived, hour, layout::MANIFEST_FILE).await?;
        finished.extend(ids_in(store, Area::Quarantine, hour, ".json").await?);
        finished.extend(ids_in(store, Area::Erased, hour, "").await?);
        for obj in raw {
            let Ok(parsed) = parse_key(&obj.key) else {
                tracing::warn!(key = %obj.key, "foreign object under raw/ ignored");
                continue;
            };
            let id = parsed.id;
            if finished.contains(&id) {
                continue;
            }
            let recorded = crate::index::recorded_event(store, id)
                .await?
                .filter(|ev| ev.raw_key == obj.key);
            out.push(recorded.unwrap_or_else(|| ImageReceived {
                id,
                raw_key: obj.key,
                // Written before the event was recorded: the processor
                // re-derives type and hash from the bytes; where it came
                // from is not known, and recorded as http.
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
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// Rows present in manifests of `hours` but in none of their metadata
/// files. Call before any processing starts, or rows still waiting for a
/// flush look lost; where other processors share the lake, pass
/// `written_before` so manifests whose rows a live peer may still be
/// buffering are left to it.
pub async fn lost_rows(
    store: &SharedStore,
    hours: &[DateTime<Utc>],
    written_before: Option<DateTime<Utc>>,
) -> Result<Vec<MetadataRow>, ReconcileError> {
    let mut rows = Vec::new();
    for &hour in hours {
        let manifests: Vec<_> = store
            .list(&hour_prefix(Area::Derived, hour))
            .await?
            .into_iter()
            .filter(|o| o.key.ends_with(layout::MANIFEST_FILE))
            .filter(|o| {
                written_before.is_none_or(|cutoff| o.last_modified.is_some_and(|t| t < cutoff))
            })
            .collect();
        if manifests.is_empty() {
            continue;
        }
        let mut in_files = HashSet::new();
        for obj in store.list(&hour_prefix(Area::Metadata, hour)).await? {
            let Some(file) = store.get(&obj.key).await? else {
                continue;
            };
            let ids = crate::schema::read_ids(file).map_err(|e| ReconcileError::Read {
                key: obj.key.clone(),
                detail: e.to_string(),
            })?;
            in_files.extend(ids);
        }
        for obj in manifests {
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
    }
    Ok(rows)
}

/// Every image of the hour finished and every row in a file: nothing a
/// start-up would do there.
pub async fn is_reconciled(
    store: &SharedStore,
    hour: DateTime<Utc>,
) -> Result<bool, ReconcileError> {
    Ok(unfinished(store, &[hour]).await?.is_empty()
        && lost_rows(store, &[hour], None).await?.is_empty())
}

/// Leave the hour's checkpoint marker.
pub async fn mark(store: &SharedStore, hour: DateTime<Utc>) -> Result<(), StoreError> {
    store
        .put(
            &layout::checkpoint_key(hour),
            bytes::Bytes::new(),
            &PutOptions::default(),
        )
        .await
}

/// Take the hour's checkpoint marker away (every version): an image
/// received in it arrives late, so start-up and the sweeper must look at
/// the hour again.
pub async fn reopen(store: &SharedStore, hour: DateTime<Utc>) -> Result<(), StoreError> {
    let key = layout::checkpoint_key(hour);
    let versions = store.versions_of(&key).await?;
    if versions.is_empty() {
        return Ok(());
    }
    store.purge(&versions).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::TimeZone;

    use super::*;
    use crate::store::{FsStore, counting::Counting};

    #[tokio::test]
    async fn start_up_looks_only_at_hours_without_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let fs: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 30, 0).unwrap();
        let layout = Layout::new(Duration::days(7));
        let (marked_hour, open_hour) = (
            Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
        );
        // An unfinished image in each hour; only one hour is unmarked.
        let (hidden, found) = (
            ImageId::new(marked_hour + Duration::minutes(5)),
            ImageId::new(open_hour + Duration::minutes(5)),
        );
        for id in [hidden, found] {
            fs.put(
                &layout::raw_key(id),
                Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        }
        mark(&fs, marked_hour).await.unwrap();
        let counting = Arc::new(Counting::new(fs.clone()));
        let store: SharedStore = counting.clone();
        let open = open_hours(&store, &layout, now).await.unwrap();
        assert_eq!(open, vec![open_hour]);
        let todo = unfinished(&store, &open).await.unwrap();
        assert_eq!(todo.iter().map(|e| e.id).collect::<Vec<_>>(), vec![found]);
        // The markers, the days and hours of raw/, and the open hour's
        // areas; no other hour's objects.
        for (op, prefix) in counting.listings() {
            assert!(
                prefix == "checkpoint/"
                    || op == "list_dirs" && prefix.starts_with("raw/")
                    || prefix.contains("dt=2026-11-25/hr=12/"),
                "{op} {prefix}"
            );
        }
        assert!(
            counting.requests() <= 10,
            "{} requests",
            counting.requests()
        );
    }

    #[tokio::test]
    async fn an_hour_is_reconciled_once_every_image_has_an_outcome_and_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let hour = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let id = ImageId::new(hour + Duration::minutes(1));
        let put = |key: String| {
            let store = store.clone();
            async move {
                store
                    .put(&key, Bytes::from_static(b"{}"), &PutOptions::default())
                    .await
                    .unwrap()
            }
        };
        assert!(is_reconciled(&store, hour).await.unwrap(), "an empty hour");
        put(layout::raw_key(id)).await;
        assert!(
            !is_reconciled(&store, hour).await.unwrap(),
            "no outcome yet"
        );
        let manifest = Manifest {
            id,
            keys: vec![layout::raw_key(id)],
            row: crate::schema::tests::sample_row(id),
        };
        store
            .put(
                &layout::manifest_key(id),
                Bytes::from(serde_json::to_vec(&manifest).unwrap()),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            !is_reconciled(&store, hour).await.unwrap(),
            "row not in a file"
        );
        crate::metadata::write_rows(&store, std::slice::from_ref(&manifest.row))
            .await
            .unwrap();
        assert!(is_reconciled(&store, hour).await.unwrap());
    }
}
