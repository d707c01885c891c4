//! Closing settled hours: once every image of an hour is finished and every
//! row is in a file (`lake::reconcile`), merge the hour's metadata files
//! (`lake::metadata::compact_hour`) and leave its checkpoint marker, so
//! start-up reconciliation never looks there again. Run by the sweeper,
//! one per lake, which keeps compaction to a single writer.

use chrono::{DateTime, Utc};
use lake::{
    Layout, SharedStore,
    metadata::{self, MetadataError},
    reconcile::{self, ReconcileError},
};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Hours marked by this pass.
    pub hours: u64,
    /// Hours past settling left open: some image or row is not done yet.
    pub still_open: usize,
    /// Metadata files merged away.
    pub files_compacted: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Store(#[from] lake::StoreError),
}

/// Check, compact and mark every settled hour without a marker. Its cost
/// follows the hours not yet closed (normally one an hour), not the lake.
pub async fn close_settled_hours(
    store: &SharedStore,
    layout: &Layout,
    now: DateTime<Utc>,
) -> Result<Closed, CheckpointError> {
    let open = reconcile::open_hours(store, layout, now).await?;
    let mut closed = Closed::default();
    for hour in reconcile::settled(&open, layout, now) {
        // One hour that cannot be read (say, a damaged file) stays open
        // and is reported; it holds up neither the others nor the sweep.
        match close(store, hour).await {
            Ok(Some(files_compacted)) => {
                closed.hours += 1;
                closed.files_compacted += files_compacted;
            }
            Ok(None) => closed.still_open += 1,
            Err(e) => {
                tracing::warn!(hour = %hour, error = %e, "could not close the hour; it stays open");
                closed.still_open += 1;
            }
        }
    }
    Ok(closed)
}

/// The files compacted, once the hour is marked; `None` if it still has
/// unfinished work.
async fn close(store: &SharedStore, hour: DateTime<Utc>) -> Result<Option<u64>, CheckpointError> {
    if !reconcile::is_reconciled(store, hour).await? {
        return Ok(None);
    }
    let merge = metadata::compact_hour(store, hour).await?;
    reconcile::mark(store, hour).await?;
    Ok(Some((merge.files_before - merge.files_after) as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::{Duration, TimeZone};
    use lake::{
        ImageId, layout,
        records::Manifest,
        schema::testing::sample_row,
        store::{FsStore, PutOptions},
    };

    use super::*;

    async fn processed(store: &SharedStore, id: ImageId) {
        let row = sample_row(id);
        let manifest = Manifest {
            id,
            keys: vec![layout::raw_key(id)],
            row: row.clone(),
        };
        for (key, body) in [
            (layout::raw_key(id), Bytes::from_static(b"raw")),
            (
                layout::manifest_key(id),
                Bytes::from(serde_json::to_vec(&manifest).unwrap()),
            ),
        ] {
            store.put(&key, body, &PutOptions::default()).await.unwrap();
        }
        // One flush per image: the worst case for file counts.
        lake::metadata::write_rows(store, &[row]).await.unwrap();
    }

    #[tokio::test]
    async fn settled_finished_hours_are_compacted_and_marked_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let layout = Layout::new(Duration::days(7));
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 10, 0).unwrap();
        let (done, stuck, settling) = (
            Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 11, 0, 0).unwrap(),
        );
        for hour in [done, stuck, settling] {
            for m in 0..5 {
                processed(&store, ImageId::new(hour + Duration::minutes(m))).await;
            }
        }
        // A raw image with no outcome yet.
        let waiting = ImageId::new(stuck + Duration::minutes(30));
        store
            .put(
                &layout::raw_key(waiting),
                Bytes::from_static(b"raw"),
                &PutOptions::default(),
            )
            .await
            .unwrap();

        let closed = close_settled_hours(&store, &layout, now).await.unwrap();
        assert_eq!(closed.still_open, 1, "{closed:?}");
        // Only hours with images are looked at.
        assert_eq!(closed.hours, 1, "{closed:?}");
        assert_eq!(closed.files_compacted, 4);
        let files = |hour| {
            let store = store.clone();
            async move {
                lake::metadata::files_of_hour(&store, hour)
                    .await
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(
            (files(done).await, files(stuck).await, files(settling).await),
            (1, 5, 5)
        );
        let open = lake::reconcile::open_hours(&store, &layout, now)
            .await
            .unwrap();
        assert_eq!(open, vec![stuck, settling]);

        // Once the image has its outcome, the next pass closes its hour.
        processed(&store, waiting).await;
        let closed = close_settled_hours(&store, &layout, now).await.unwrap();
        assert_eq!((closed.hours, closed.still_open), (1, 0));
        assert_eq!(files(stuck).await, 1);
    }
}
