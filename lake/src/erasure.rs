//! Tombstones and the rows they remove. An erased image leaves a tombstone
//! under `erased/`; anything that writes metadata rows removes tombstoned
//! rows and checks again *after* its write, so an erasure racing a writer
//! never lets a row come back: either the writer's check sees the
//! tombstone, or the erasure's scrub sees the writer's file.

use std::collections::HashSet;

use bytes::Bytes;

use crate::{
    ImageId, SharedStore, StoreError,
    layout::{self, parse_key},
    schema::{self, SchemaError},
    store::{ObjectVersion, PutOptions},
};

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("metadata file {key}: {source}")]
    Schema { key: String, source: SchemaError },
}

/// Ids erased among the images received in `id`'s hour.
pub async fn tombstones_near(
    store: &SharedStore,
    id: ImageId,
) -> Result<HashSet<ImageId>, StoreError> {
    Ok(store
        .list(&layout::erased_partition_prefix(id))
        .await?
        .into_iter()
        .filter_map(|o| parse_key(&o.key).ok().map(|p| p.id))
        .collect())
}

pub async fn is_erased(store: &SharedStore, id: ImageId) -> Result<bool, StoreError> {
    store.exists(&layout::erased_key(id)).await
}

/// Every version and delete marker of exactly `key` (a listing by prefix
/// would also name longer keys).
pub async fn versions_of(store: &SharedStore, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
    store.versions_of(key).await
}

/// Remove `key` for good: on a versioned bucket a delete only hides it.
/// A record's expiry marker goes with it (after it, so a crash between
/// leaves the marker that finds the record again).
pub async fn purge_key(store: &SharedStore, key: &str) -> Result<(), StoreError> {
    let versions = versions_of(store, key).await?;
    if !versions.is_empty() {
        store.purge(&versions).await?;
    }
    if let Some(marker) = layout::expiry_marker_key(key) {
        let markers = versions_of(store, &marker).await?;
        if !markers.is_empty() {
            store.purge(&markers).await?;
        }
    }
    Ok(())
}

/// [`purge_key`] for each key.
pub async fn purge_keys(store: &SharedStore, keys: &[String]) -> Result<(), StoreError> {
    for key in keys {
        purge_key(store, key).await?;
    }
    Ok(())
}

/// Remove the older versions of a file just rewritten in place: they still
/// hold the rows the rewrite removed.
async fn purge_older_versions(store: &SharedStore, key: &str) -> Result<(), StoreError> {
    let older: Vec<ObjectVersion> = versions_of(store, key)
        .await?
        .into_iter()
        .filter(|v| !v.is_latest)
        .collect();
    if older.is_empty() {
        return Ok(());
    }
    store.purge(&older).await
}

/// Remove the rows of `erased` from one metadata file, in one atomic
/// overwrite (or delete, when no row is left). Returns the rows removed.
pub async fn scrub_file(
    store: &SharedStore,
    key: &str,
    erased: &HashSet<ImageId>,
) -> Result<usize, ErasureError> {
    Ok(remove_rows(store, key, |id| erased.contains(id))
        .await?
        .len())
}

/// Remove the rows whose image `gone` names from one metadata file (erased,
/// or past retention), in one atomic overwrite, or a delete when no row is
/// left; either way no older version keeps them. Returns the ids removed.
pub async fn remove_rows(
    store: &SharedStore,
    key: &str,
    gone: impl Fn(&ImageId) -> bool,
) -> Result<Vec<ImageId>, ErasureError> {
    let schema_err = |source| ErasureError::Schema {
        key: key.to_owned(),
        source,
    };
    let Some(file) = store.get(key).await? else {
        return Ok(Vec::new());
    };
    let ids = schema::read_ids(file.clone()).map_err(schema_err)?;
    if !ids.iter().any(&gone) {
        return Ok(Vec::new());
    }
    let rows = schema::read_rows(file).map_err(schema_err)?;
    let (removed, kept): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| gone(&r.id));
    let removed: Vec<ImageId> = removed.into_iter().map(|r| r.id).collect();
    let opts = PutOptions {
        content_type: Some("application/vnd.apache.parquet".into()),
        metadata: Vec::new(),
    };
    let named_after_gone = parse_key(key).is_ok_and(|p| gone(&p.id));
    // Every way out removes the old file's versions too: on a versioned
    // bucket they would keep the removed rows.
    match kept.iter().map(|r| r.id).max() {
        None => purge_key(store, key).await?,
        // The file is named after a removed image: the rows move to a file
        // named after the newest row left (written first, so a reader may
        // briefly see a row twice, never miss one).
        Some(newest) if named_after_gone => {
            let body: Bytes = schema::write_parquet(&kept).map_err(schema_err)?;
            store
                .put(&layout::metadata_key(newest, kept.len()), body, &opts)
                .await?;
            purge_key(store, key).await?;
        }
        // Same key: readers see the old file or the new one, never neither.
        Some(_) => {
            let body: Bytes = schema::write_parquet(&kept).map_err(schema_err)?;
            store.put(key, body, &opts).await?;
            purge_older_versions(store, key).await?;
        }
    }
    Ok(removed)
}

/// Scrub every metadata file of `id`'s hour (a file never spans two hours,
/// so a row is only ever in its own hour) until a pass, run after a fresh
/// look at the tombstones, changes nothing.
pub async fn scrub_partition(store: &SharedStore, id: ImageId) -> Result<usize, ErasureError> {
    let mut removed = 0;
    loop {
        let erased = tombstones_near(store, id).await?;
        let mut changed = 0;
        for obj in store.list(&layout::metadata_partition_prefix(id)).await? {
            changed += scrub_file(store, &obj.key, &erased).await?;
        }
        if changed == 0 {
            return Ok(removed);
        }
        removed += changed;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::{schema::tests::sample_row, store::FsStore};

    #[tokio::test]
    async fn scrubbing_the_newest_row_renames_the_file_after_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let now = Utc::now();
        let (older, newest) = (
            ImageId::new(now),
            ImageId::new(now + chrono::Duration::milliseconds(5)),
        );
        let key = layout::metadata_key(newest, 2);
        let file = schema::write_parquet(&[sample_row(older), sample_row(newest)]).unwrap();
        store.put(&key, file, &PutOptions::default()).await.unwrap();
        store
            .put(
                &layout::erased_key(newest),
                Bytes::from_static(b"t"),
                &PutOptions::default(),
            )
            .await
            .unwrap();

        assert_eq!(scrub_partition(&store, newest).await.unwrap(), 1);
        let files: Vec<String> = store
            .list("metadata/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            files,
            vec![layout::metadata_key(older, 1)],
            "no key may name the erased id"
        );
        let left = schema::read_ids(store.get(&files[0]).await.unwrap().unwrap()).unwrap();
        assert_eq!(left, vec![older]);
    }
}
