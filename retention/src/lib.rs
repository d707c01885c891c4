//! Retention: purge everything whose retention period has passed.
//!
//! The sweeper decides from keys alone (every key carries a UUIDv7 image id,
//! see `lake::layout`), walks every area of the lake, and deletes in
//! batches. Idempotent, and safe beside ingestion and another sweeper: it
//! never touches a key whose expiry is still ahead.

pub mod audit;
pub mod checkpoint;
pub mod erase;
pub mod lifecycle;
pub mod scratch;
pub mod telemetry;
pub mod verify;

use std::{fmt, future::Future, time::Duration};

use chrono::{DateTime, Utc};
use lake::{
    Layout, SharedClock, SharedStore, StoreError,
    layout::{self, Area},
    store::ObjectVersion,
};

/// How often (and at start) the sweeper finishes erasures a crash cut
/// short: a look at `erased/`, whose size follows the erasures asked for
/// in the retention period, not the lake.
pub const RESUME_ERASURES_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// Called as each area of a sweep finishes (for progress displays).
pub type ProgressHook = std::sync::Arc<dyn Fn(&SweepReport, Area) + Send + Sync>;

#[derive(Clone)]
pub struct Sweeper {
    store: SharedStore,
    clock: SharedClock,
    layout: Layout,
    progress: Option<ProgressHook>,
    scratch: Option<scratch::Scratch>,
    /// Also walk the areas not partitioned by time (`idempotency/`) whole.
    whole_index: bool,
    /// When this sweeper last finished cut-short erasures.
    erasures_resumed: std::sync::Arc<std::sync::Mutex<Option<DateTime<Utc>>>>,
}

impl fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sweeper")
            .field("store", &self.store)
            .field("layout", &self.layout)
            .finish()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub at: Option<DateTime<Utc>>,
    pub scanned: u64,
    pub purged: u64,
    /// Metadata rows past retention taken out of files still kept.
    pub rows_purged: u64,
    pub bytes_purged: u64,
    /// Receipt time of the oldest image whose data may still be kept (the
    /// start of the oldest partition left in place).
    pub oldest_kept: Option<DateTime<Utc>>,
    /// Keys that are not lake keys: left alone, and reported.
    pub foreign: Vec<String>,
    /// Erasures a crash had cut short, finished by this pass.
    pub erasures_resumed: u64,
    /// Settled hours this pass compacted and checkpointed.
    pub hours_checkpointed: u64,
    pub metadata_files_compacted: u64,
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sweep at {}: scanned {} objects, purged {} ({} bytes) and {} expired metadata rows, \
             {} foreign keys left alone, closed {} settled hours ({} metadata files merged)",
            self.at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            self.scanned,
            self.purged,
            self.bytes_purged,
            self.rows_purged,
            self.foreign.len(),
            self.hours_checkpointed,
            self.metadata_files_compacted,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Erasure(#[from] lake::erasure::ErasureError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Metadata(#[from] lake::metadata::MetadataError),
}

impl Sweeper {
    pub fn new(store: SharedStore, clock: SharedClock, retention: chrono::Duration) -> Self {
        Self {
            store,
            clock,
            layout: Layout::new(retention),
            progress: None,
            scratch: None,
            whole_index: false,
            erasures_resumed: std::sync::Arc::default(),
        }
    }

    /// Also walk `idempotency/` whole: its records are keyed by the hash
    /// they are looked up by, not by time, and are purged through their
    /// expiry markers (`expiry/`, partitioned), which every writer puts
    /// first. A whole walk costs what the lake holds, so only a sweep by
    /// hand (`imgpipe sweep --once`) makes one, as a backstop for records
    /// written without a marker (by versions before markers); the audit
    /// reports any such record past its expiry.
    pub fn walking_the_index_whole(mut self) -> Self {
        self.whole_index = true;
        self
    }

    /// Also remove the script's stale scratch directories.
    pub fn with_scratch(mut self, scratch: Option<scratch::Scratch>) -> Self {
        self.scratch = scratch;
        self
    }

    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.progress = Some(hook);
        self
    }

    /// One pass: in each partitioned area only the hour partitions whose
    /// images have begun to expire, listed only up to the first image still
    /// kept; `idempotency/` (keyed by hash, not time) through the expiry
    /// markers in `expiry/`, or walked whole when asked.
    pub async fn sweep_once(&self) -> Result<SweepReport, SweepError> {
        let now = self.clock.now();
        let mut report = SweepReport {
            at: Some(now),
            ..SweepReport::default()
        };
        // At start (a restart after a crash) and hourly: an erasure cut
        // short has its image's data back in the hands of its owner only
        // once finished, not at expiry.
        if self.resume_due(now) {
            report.erasures_resumed = erase::resume(&self.store, now).await? as u64;
            self.resumed(now);
        }
        for area in Area::ALL {
            let expired = if area.is_partitioned() {
                self.expired_in_partitions(area, now, &mut report).await?
            } else if self.whole_index {
                self.expired_anywhere(area, now, &mut report).await?
            } else {
                Vec::new()
            };
            if area == Area::Expiry {
                // The records the expired markers stand for go first, so a
                // crash between leaves the markers that find them again.
                let mut records = Vec::new();
                let mut named: Vec<String> = expired
                    .iter()
                    .filter_map(|m| layout::marked_record_key(&m.key))
                    .collect();
                named.dedup();
                for key in &named {
                    records.extend(lake::erasure::versions_of(&self.store, key).await?);
                }
                for version in &records {
                    report.bytes_purged += version.size;
                    telemetry::purge_lateness(Area::Idempotency, self.lateness(&version.key, now));
                }
                report.purged += records.len() as u64;
                self.store.purge(&records).await?;
            }
            for version in &expired {
                report.bytes_purged += version.size;
                telemetry::purge_lateness(area, self.lateness(&version.key, now));
            }
            report.purged += expired.len() as u64;
            self.store.purge(&expired).await?;
            if area == Area::Metadata {
                // Files go by their newest row; the rows that expired
                // before it leave on time too (analysts' engines read the
                // files directly, with no expiry filter).
                let hour = layout::hour_start(now - self.layout.retention);
                let rows =
                    lake::metadata::remove_expired_rows(&self.store, &self.layout, hour, now)
                        .await?;
                for id in &rows {
                    let late = now - self.layout.expires_at(*id);
                    telemetry::purge_lateness(area, late.num_milliseconds() as f64 / 1000.0);
                }
                report.rows_purged += rows.len() as u64;
            }
            if let Some(hook) = &self.progress {
                hook(&report, area);
            }
        }
        report.purged += self.store.remove_stale_scratch().await? as u64;
        if let Some(scratch) = self.scratch.clone() {
            report.purged += tokio::task::spawn_blocking(move || scratch.remove_stale(now))
                .await
                .unwrap_or(0) as u64;
        }
        let oldest_age = report
            .oldest_kept
            .map_or(0.0, |t| (now - t).num_milliseconds() as f64 / 1000.0);
        telemetry::swept(report.purged, report.bytes_purged, oldest_age);
        // Purging done: close the hours that settled.
        let closed = checkpoint::close_settled_hours(&self.store, &self.layout, now).await?;
        report.hours_checkpointed = closed.hours;
        report.metadata_files_compacted = closed.files_compacted;
        telemetry::checkpointed(closed.still_open, closed.files_compacted);
        if !report.foreign.is_empty() {
            tracing::warn!(keys = ?report.foreign, "objects that are not lake keys: their expiry is unknown");
        }
        tracing::info!(
            purged = report.purged,
            bytes = report.bytes_purged,
            scanned = report.scanned,
            "sweep done"
        );
        Ok(report)
    }

    /// The expired versions of a partitioned area. Keys run
    /// `<area>/dt=…/hr=…/<id>…` and ids sort by time, so the day and hour
    /// "directories" say where expiry has begun and a listing can stop at
    /// the first image still kept: the requests follow what expires, not
    /// what the lake holds.
    async fn expired_in_partitions(
        &self,
        area: Area,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<Vec<ObjectVersion>, SweepError> {
        // Images received at or before `cutoff` have expired.
        let cutoff = now - self.layout.area_retention(area);
        let bound = layout::id_bound(cutoff + chrono::Duration::milliseconds(1));
        let mut expired = Vec::new();
        for day in self.store.list_dirs(area.prefix()).await? {
            let Some(day_start) = layout::partition_start(&day) else {
                report.foreign.push(day);
                continue;
            };
            if day_start > cutoff {
                break;
            }
            for hour in self.store.list_dirs(&day).await? {
                let Some(hour_start) = layout::partition_start(&hour) else {
                    report.foreign.push(hour);
                    continue;
                };
                if hour_start > cutoff {
                    break;
                }
                let below = format!("{hour}{bound}");
                for version in self.store.list_versions_below(&hour, &below).await? {
                    report.scanned += 1;
                    match self.layout.key_expires_at(&version.key) {
                        Ok(expires_at) if expires_at <= now => expired.push(version),
                        Ok(_) => {}
                        Err(_) => report.foreign.push(version.key),
                    }
                }
                // What is left here was received after the cutoff.
                let kept = hour_start.max(cutoff);
                report.oldest_kept = Some(report.oldest_kept.map_or(kept, |o| o.min(kept)));
            }
        }
        Ok(expired)
    }

    /// The expired versions of an area walked whole (every version, so
    /// nothing survives on a versioned bucket either).
    async fn expired_anywhere(
        &self,
        area: Area,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<Vec<ObjectVersion>, SweepError> {
        let mut expired = Vec::new();
        for version in self.store.list_versions(area.prefix()).await? {
            report.scanned += 1;
            match self.layout.key_expires_at(&version.key) {
                Ok(expires_at) if expires_at <= now => expired.push(version),
                Ok(_) => {}
                Err(_) => report.foreign.push(version.key),
            }
        }
        Ok(expired)
    }

    /// Seconds past its expiry at `now` of the object under `key`.
    fn lateness(&self, key: &str, now: DateTime<Utc>) -> f64 {
        self.layout
            .key_expires_at(key)
            .map_or(0.0, |at| (now - at).num_milliseconds() as f64 / 1000.0)
    }

    fn resume_due(&self, now: DateTime<Utc>) -> bool {
        let last = self.erasures_resumed.lock().map(|l| *l).unwrap_or(None);
        last.is_none_or(|last| now - last >= RESUME_ERASURES_EVERY || now < last)
    }

    fn resumed(&self, now: DateTime<Utc>) {
        if let Ok(mut last) = self.erasures_resumed.lock() {
            *last = Some(now);
        }
    }

    /// Sweep every `interval` until `shutdown` resolves.
    pub async fn run_every(self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep_once().await {
                        telemetry::sweep_failed(&e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::TimeZone;
    use lake::{
        FixedClock, ImageId, layout,
        store::{FsStore, PutOptions},
    };

    use super::*;

    #[tokio::test]
    async fn purges_every_area_at_expiry_and_nothing_before() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
        let (old, young) = (
            ImageId::new(t0),
            ImageId::new(t0 + chrono::Duration::days(1)),
        );
        // A tombstone of another image of the same hour (one beside its own
        // image's data would be an erasure to finish).
        let tombstones: std::collections::HashMap<ImageId, ImageId> = [old, young]
            .into_iter()
            .map(|id| (id, ImageId::new(id.received_at())))
            .collect();
        let keys = |id: ImageId| {
            vec![
                layout::raw_key(id),
                layout::thumb_key(id),
                layout::manifest_key(id),
                layout::script_key(id, "out.json"),
                layout::quarantine_key(id),
                layout::metadata_key(id, 3),
                layout::idempotency_key("client-key", id),
                layout::erased_key(tombstones[&id]),
            ]
        };
        for key in keys(old).into_iter().chain(keys(young)) {
            // Records go through the index, which writes their expiry marker.
            if key.starts_with("idempotency/") {
                lake::index::put_record(
                    &store,
                    &key,
                    Bytes::from_static(b"x"),
                    &PutOptions::default(),
                )
                .await
                .unwrap();
                continue;
            }
            store
                .put(&key, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
        let clock = Arc::new(FixedClock::new(
            t0 + chrono::Duration::days(7) - chrono::Duration::minutes(1),
        ));
        let sweeper = Sweeper::new(store.clone(), clock.clone(), chrono::Duration::days(7));
        assert_eq!(sweeper.sweep_once().await.unwrap().purged, 0);

        clock.set(t0 + chrono::Duration::days(7) + chrono::Duration::minutes(1));
        let report = sweeper.sweep_once().await.unwrap();
        // Eight objects, and the idempotency record's expiry marker.
        assert_eq!(report.purged, 9);
        let left: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        let mut expected = keys(young);
        expected.push(
            layout::expiry_marker_key(&layout::idempotency_key("client-key", young)).unwrap(),
        );
        expected.sort();
        assert_eq!(left, expected);
        // Idempotent.
        assert_eq!(sweeper.sweep_once().await.unwrap().purged, 0);
    }
}

/// The sweep's cost: which listings one pass asks the store for.
#[cfg(test)]
mod partition_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::TimeZone;
    use lake::{
        FixedClock, ImageId, layout,
        store::{FsStore, PutOptions, counting::Counting},
    };

    use super::*;

    #[tokio::test]
    async fn a_sweep_lists_only_partitions_whose_images_expire() {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(Counting::new(Arc::new(FsStore::open(dir.path()).unwrap())));
        let store: SharedStore = counting.clone();
        let week = chrono::Duration::days(7);
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap();
        let ago = |d: chrono::Duration| ImageId::new(now - d);
        let minutes = chrono::Duration::minutes;
        // Two expired (one in a partition still half kept), three kept.
        let expired = [ago(chrono::Duration::days(8)), ago(week + minutes(1))];
        let kept = [
            ago(week - minutes(10)),
            ago(chrono::Duration::days(3)),
            ago(chrono::Duration::hours(1)),
        ];
        for id in expired.iter().chain(&kept) {
            for key in [
                layout::raw_key(*id),
                layout::thumb_key(*id),
                layout::metadata_key(*id, 1),
            ] {
                store
                    .put(&key, Bytes::from_static(b"x"), &PutOptions::default())
                    .await
                    .unwrap();
            }
            let record = layout::idempotency_key("api:k", *id);
            lake::index::put_record(
                &store,
                &record,
                Bytes::from_static(b"r"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        }
        let clock = Arc::new(FixedClock::new(now - minutes(2)));
        let sweeper = Sweeper::new(store.clone(), clock.clone(), week);
        // Not even the first pass after a start walks idempotency/: it
        // looks up only the records whose markers expired, one key each.
        sweeper.sweep_once().await.unwrap();
        assert!(
            counting
                .listings()
                .iter()
                .all(|(op, prefix)| !prefix.starts_with("idempotency/") || *op == "versions_of"),
            "{:?}",
            counting.listings()
        );
        counting.reset();

        clock.set(now);
        let report = sweeper.sweep_once().await.unwrap();
        let cutoff = now - week;
        let listings = counting.listings();
        assert!(!listings.is_empty());
        for (op, prefix) in &listings {
            let is_area_root = Area::ALL.iter().any(|a| a.prefix() == prefix);
            let start = layout::partition_start(prefix);
            match *op {
                // The days of an area, and the hours of a day expiry reached.
                // And the days of raw/ kept, whose hours say where
                // checkpointing may have work (at most 8 for a week).
                "list_dirs" => assert!(
                    is_area_root && prefix != "idempotency/"
                        || start.is_some_and(|s| s <= cutoff)
                        || prefix.starts_with("raw/dt="),
                    "{op} {prefix}"
                ),
                // Objects: only in hours whose images began to expire.
                "list_versions_below" => assert!(
                    prefix.contains("/hr=") && start.is_some_and(|s| s <= cutoff),
                    "{op} {prefix}"
                ),
                // One key's versions (an expired marker's record), never a walk.
                "versions_of" => assert!(prefix.starts_with("idempotency/"), "{op} {prefix}"),
                // Checkpointing: the markers (an hour's worth each), and
                // the hours that settled but are not closed yet.
                "list" => assert!(
                    prefix == "checkpoint/"
                        || prefix.contains("/hr=")
                            && start.is_some_and(|s| {
                                s + chrono::Duration::hours(1) + lake::reconcile::SETTLE <= now
                            }),
                    "{op} {prefix}"
                ),
                _ => panic!("unexpected listing {op} {prefix}"),
            }
        }
        // It still did the work: both expired images, records included, gone.
        assert!(report.purged > 0);
        let left: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        for id in expired {
            assert!(
                !left.iter().any(|k| k.contains(&id.to_string())),
                "{id} left: {left:?}"
            );
        }
        for id in kept {
            let held = left.iter().filter(|k| k.contains(&id.to_string())).count();
            assert_eq!(held, 5, "{id}: {left:?}");
        }
    }
}

#[cfg(test)]
mod index_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use lake::{FixedClock, ImageId, store::FsStore};

    use super::*;

    /// A record written without its expiry marker (by a version before
    /// markers) costs the running sweeper nothing and is left; a sweep by
    /// hand walks the index whole and purges it.
    #[tokio::test]
    async fn only_a_sweep_by_hand_walks_the_index_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let week = chrono::Duration::days(7);
        let now = Utc::now();
        let old = ImageId::new(now - week - chrono::Duration::hours(2));
        let record = layout::idempotency_key("api:legacy", old);
        store
            .put(&record, Bytes::from_static(b"r"), &Default::default())
            .await
            .unwrap();
        let clock = Arc::new(FixedClock::new(now));
        Sweeper::new(store.clone(), clock.clone(), week)
            .sweep_once()
            .await
            .unwrap();
        assert!(store.exists(&record).await.unwrap());
        let report = Sweeper::new(store.clone(), clock, week)
            .walking_the_index_whole()
            .sweep_once()
            .await
            .unwrap();
        assert_eq!(report.purged, 1);
        assert!(!store.exists(&record).await.unwrap());
    }
}

#[cfg(test)]
mod scratch_tests {
    use std::sync::Arc;

    use lake::{FixedClock, store::FsStore};

    use super::*;

    /// A write torn by a crash leaves bytes in `.tmp/`; once older than any
    /// live write, the audit reports them and the sweeper removes them.
    #[tokio::test]
    async fn stale_partial_writes_are_audited_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let torn = dir.path().join(".tmp/0123456789abcdef");
        std::fs::write(&torn, b"half an image").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&torn)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let now = Utc::now();
        let layout = Layout::new(chrono::Duration::days(7));
        let report = audit::audit(&store, layout, None, now).await.unwrap();
        assert_eq!(report.violations.len(), 1, "{report}");

        let sweeper = Sweeper::new(
            store.clone(),
            Arc::new(FixedClock::new(now)),
            chrono::Duration::days(7),
        );
        assert_eq!(sweeper.sweep_once().await.unwrap().purged, 1);
        assert!(!torn.exists());
        assert!(
            audit::audit(&store, layout, None, now)
                .await
                .unwrap()
                .passed()
        );
    }
}

#[cfg(test)]
mod row_tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use lake::{FixedClock, ImageId, store::FsStore};

    use super::*;

    /// A row leaves with the same lateness as an object: the rows of an
    /// hour share a file named after the newest, and each row that expires
    /// is taken out of it on the next pass, not when the newest expires.
    /// Until then the audit names it.
    #[tokio::test]
    async fn expired_rows_leave_a_shared_file_on_time_and_the_audit_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let hour = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
        let ids: Vec<ImageId> = (0..6)
            .map(|i| ImageId::new(hour + chrono::Duration::minutes(10 * i)))
            .collect();
        let rows: Vec<_> = ids
            .iter()
            .map(|id| lake::schema::testing::sample_row(*id))
            .collect();
        let key = lake::metadata::write_rows(&store, &rows)
            .await
            .unwrap()
            .unwrap();
        let week = chrono::Duration::days(7);
        let layout = Layout::new(week);
        // 10:25 a week later: the rows of 10:00, 10:10 and 10:20 expired.
        let now = hour + week + chrono::Duration::minutes(25);
        let report = audit::audit(&store, layout, None, now).await.unwrap();
        let expired_rows = report
            .violations
            .iter()
            .filter(|v| matches!(v, audit::Violation::ExpiredRow { .. }))
            .count();
        assert_eq!(expired_rows, 3, "{report}");
        assert_eq!(report.worst_lateness_seconds, 25 * 60, "{report}");

        let sweeper = Sweeper::new(store.clone(), Arc::new(FixedClock::new(now)), week);
        let swept = sweeper.sweep_once().await.unwrap();
        assert_eq!(swept.rows_purged, 3, "{swept}");
        let mut left: Vec<ImageId> = Vec::new();
        for (file, _) in lake::metadata::files_of_hour(&store, hour).await.unwrap() {
            let body = store.get(&file).await.unwrap().unwrap();
            left.extend(lake::schema::read_ids(body).unwrap());
        }
        assert_eq!(left, ids[3..].to_vec(), "{key}");
        let report = audit::audit(&store, layout, None, now).await.unwrap();
        assert!(report.passed(), "{report}");
    }
}
