//! The metadata table's files: the one way rows are written (the sink's
//! flushes and compaction both go through [`write_rows`], under the
//! tombstone protocol of [`crate::erasure`]), and the merge of an hour's
//! small files into few.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::{
    ImageId, Layout, SharedStore, StoreError,
    erasure::{self, ErasureError},
    layout::{self, Area},
    schema::{self, MetadataRow, SchemaError},
    store::PutOptions,
};

/// Rows per file compaction aims for: an hour of a busy lake (10 M images a
/// day is ~420 k an hour) fits in two files, and merging one holds at most
/// this many rows in memory.
pub const COMPACTED_ROWS: usize = 250_000;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Erasure(#[from] ErasureError),
    #[error("metadata file {key}: {source}")]
    Schema { key: String, source: SchemaError },
}

/// Write `rows` (all of one hour) as one file named after the newest, minus
/// any erased meanwhile; after the write, look at the tombstones again, so
/// an erasure that scrubbed the hour before this file existed still
/// reaches it. Returns the key written (none if every row was erased).
pub async fn write_rows(
    store: &SharedStore,
    rows: &[MetadataRow],
) -> Result<Option<String>, MetadataError> {
    let Some(newest) = rows.iter().map(|r| r.id).max() else {
        return Ok(None);
    };
    let erased = erasure::tombstones_near(store, newest).await?;
    let rows: Vec<MetadataRow> = rows
        .iter()
        .filter(|r| !erased.contains(&r.id))
        .cloned()
        .collect();
    let Some(newest) = rows.iter().map(|r| r.id).max() else {
        return Ok(None);
    };
    let key = layout::metadata_key(newest, rows.len());
    let file = schema::write_parquet(&rows).map_err(|source| MetadataError::Schema {
        key: key.clone(),
        source,
    })?;
    let opts = PutOptions {
        content_type: Some("application/vnd.apache.parquet".into()),
        metadata: vec![("imgpipe-id".into(), newest.to_string())],
    };
    store.put(&key, file, &opts).await?;
    crate::failpoint::hit(crate::failpoint::METADATA_WRITTEN);
    loop {
        let erased = erasure::tombstones_near(store, newest).await?;
        if erasure::scrub_file(store, &key, &erased).await? == 0 {
            break;
        }
    }
    Ok(Some(key))
}

/// The metadata files of the hour starting at `hour`, oldest first, with
/// the row count each one's name states.
pub async fn files_of_hour(
    store: &SharedStore,
    hour: DateTime<Utc>,
) -> Result<Vec<(String, usize)>, StoreError> {
    let prefix = layout::hour_prefix(Area::Metadata, hour);
    let mut files: Vec<(String, usize)> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let rows = o
                .key
                .strip_suffix(".parquet")?
                .rsplit_once('-')?
                .1
                .parse()
                .ok()?;
            Some((o.key, rows))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Take the rows whose retention has ended at `now` out of the files of
/// the hour starting at `hour`, where they share a file with rows still
/// kept. (A file goes whole, by its key, once its newest row expires: only
/// the hour in which expiry currently runs holds such shared files.) Rows
/// erased meanwhile go too, and the tombstones are looked at again after
/// each rewrite, as every row writer does. Returns the removed rows' ids.
pub async fn remove_expired_rows(
    store: &SharedStore,
    layout: &Layout,
    hour: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<ImageId>, MetadataError> {
    let in_hour = ImageId::new(hour);
    let mut removed = Vec::new();
    let files = files_of_hour(store, hour).await?;
    if files.is_empty() {
        return Ok(removed);
    }
    // Looked at once for the hour; each rewrite looks again after its write.
    let erased = erasure::tombstones_near(store, in_hour).await?;
    for (key, _) in files {
        let gone = match erasure::remove_rows(store, &key, |id| {
            layout.expires_at(*id) <= now || erased.contains(id)
        })
        .await
        {
            Ok(gone) => gone,
            // One damaged file holds up neither the others nor the sweep;
            // the audit names it.
            Err(ErasureError::Schema { key, source }) => {
                tracing::warn!(%key, error = %source, "metadata file unreadable: its expired rows stay");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if gone.is_empty() {
            continue;
        }
        removed.extend(gone.into_iter().filter(|id| layout.expires_at(*id) <= now));
        loop {
            let erased = erasure::tombstones_near(store, in_hour).await?;
            if erasure::scrub_file(store, &key, &erased).await? == 0 {
                break;
            }
        }
    }
    Ok(removed)
}

/// What merging one hour did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub files_before: usize,
    pub files_after: usize,
    /// Rows dropped because another file held the same image's row (left
    /// by a merge that a crash cut short before it removed its parts).
    pub duplicates_dropped: usize,
}

/// Merge the hour's files into files of up to [`COMPACTED_ROWS`] rows when
/// that makes fewer of them. The merged files are written (through
/// [`write_rows`]) before any part is removed, so a reader that keys rows
/// by image id never misses one; a crash between leaves duplicates the
/// next merge drops. One image keeps one row: the first file (oldest name)
/// holding it wins. Run by one process per lake (the sweeper): the sink
/// only ever adds files, which a merge leaves alone.
pub async fn compact_hour(
    store: &SharedStore,
    hour: DateTime<Utc>,
) -> Result<Compaction, MetadataError> {
    let parts = files_of_hour(store, hour).await?;
    let total: usize = parts.iter().map(|(_, rows)| rows).sum();
    let mut report = Compaction {
        files_before: parts.len(),
        files_after: parts.len(),
        duplicates_dropped: 0,
    };
    if parts.len() <= total.div_ceil(COMPACTED_ROWS).max(1) {
        return Ok(report);
    }
    let mut seen: HashSet<ImageId> = HashSet::new();
    let mut batch: Vec<MetadataRow> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for (key, _) in &parts {
        let Some(file) = store.get(key).await? else {
            continue;
        };
        let rows = schema::read_rows(file).map_err(|source| MetadataError::Schema {
            key: key.clone(),
            source,
        })?;
        for row in rows {
            if seen.insert(row.id) {
                batch.push(row);
            } else {
                report.duplicates_dropped += 1;
            }
        }
        if batch.len() >= COMPACTED_ROWS {
            let rest = batch.split_off(COMPACTED_ROWS);
            written.extend(write_rows(store, &batch).await?);
            batch = rest;
        }
    }
    written.extend(write_rows(store, &batch).await?);
    let merged: HashSet<&String> = written.iter().collect();
    for (key, _) in &parts {
        // A part can share its name with a merged file: same newest row,
        // same count, so the same rows.
        if !merged.contains(key) {
            erasure::purge_key(store, key).await?;
        }
    }
    report.files_after = files_of_hour(store, hour).await?.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::TimeZone;

    use super::*;
    use crate::{schema::tests::sample_row, store::FsStore};

    fn lake() -> (tempfile::TempDir, SharedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        (dir, store)
    }

    async fn ids_in_hour(store: &SharedStore, hour: DateTime<Utc>) -> Vec<ImageId> {
        let mut ids = Vec::new();
        for (key, _) in files_of_hour(store, hour).await.unwrap() {
            let file = store.get(&key).await.unwrap().unwrap();
            ids.extend(schema::read_ids(file).unwrap());
        }
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn an_hours_files_merge_into_one_with_every_row_once() {
        let (_dir, store) = lake();
        let hour = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
        let ids: Vec<ImageId> = (0..30)
            .map(|i| ImageId::new(hour + chrono::Duration::seconds(i * 60)))
            .collect();
        for chunk in ids.chunks(3) {
            let rows: Vec<_> = chunk.iter().map(|id| sample_row(*id)).collect();
            write_rows(&store, &rows).await.unwrap();
        }
        // A merge cut short earlier: its output beside one of its parts.
        let rows: Vec<_> = ids[..6].iter().map(|id| sample_row(*id)).collect();
        write_rows(&store, &rows).await.unwrap();
        assert_eq!(files_of_hour(&store, hour).await.unwrap().len(), 11);

        let report = compact_hour(&store, hour).await.unwrap();
        assert_eq!(report.files_before, 11);
        assert_eq!(report.files_after, 1);
        assert_eq!(report.duplicates_dropped, 6);
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(ids_in_hour(&store, hour).await, expected);
        // Nothing to do the second time.
        let again = compact_hour(&store, hour).await.unwrap();
        assert_eq!((again.files_before, again.files_after), (1, 1));
    }

    #[tokio::test]
    async fn a_merge_leaves_out_erased_rows() {
        let (_dir, store) = lake();
        let hour = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
        let ids: Vec<ImageId> = (0..4)
            .map(|i| ImageId::new(hour + chrono::Duration::seconds(i)))
            .collect();
        for id in &ids {
            write_rows(&store, &[sample_row(*id)]).await.unwrap();
        }
        // Erased after its row was written, before the scrub ran.
        store
            .put(
                &layout::erased_key(ids[1]),
                Bytes::from_static(b"t"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        compact_hour(&store, hour).await.unwrap();
        assert_eq!(
            ids_in_hour(&store, hour).await,
            vec![ids[0], ids[2], ids[3]]
        );
    }
}
