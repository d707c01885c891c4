//! Retention: purge everything whose retention period has passed.
//!
//! The sweeper decides from keys alone (every key carries a UUIDv7 image id,
//! see `lake::layout`), walks every area of the lake, and deletes in
//! batches. Idempotent, and safe beside ingestion and another sweeper: it
//! never touches a key whose expiry is still ahead.

pub mod audit;
pub mod erase;
pub mod lifecycle;
pub mod scratch;
pub mod telemetry;
pub mod verify;

use std::{fmt, future::Future, time::Duration};

use chrono::{DateTime, Utc};
use lake::{Layout, SharedClock, SharedStore, StoreError, layout::Area};

/// Called as each area of a sweep finishes (for progress displays).
pub type ProgressHook = std::sync::Arc<dyn Fn(&SweepReport, Area) + Send + Sync>;

#[derive(Clone)]
pub struct Sweeper {
    store: SharedStore,
    clock: SharedClock,
    layout: Layout,
    progress: Option<ProgressHook>,
    scratch: Option<scratch::Scratch>,
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
    pub bytes_purged: u64,
    /// Receipt time of the oldest image whose data is still kept.
    pub oldest_kept: Option<DateTime<Utc>>,
    /// Keys that are not lake keys: left alone, and reported.
    pub foreign: Vec<String>,
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sweep at {}: scanned {} objects, purged {} ({} bytes), {} foreign keys left alone",
            self.at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            self.scanned,
            self.purged,
            self.bytes_purged,
            self.foreign.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Sweeper {
    pub fn new(store: SharedStore, clock: SharedClock, retention: chrono::Duration) -> Self {
        Self {
            store,
            clock,
            layout: Layout::new(retention),
            progress: None,
            scratch: None,
        }
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

    /// One pass over every area.
    pub async fn sweep_once(&self) -> Result<SweepReport, SweepError> {
        let now = self.clock.now();
        let mut report = SweepReport {
            at: Some(now),
            ..SweepReport::default()
        };
        for area in Area::ALL {
            // Every version and delete marker, so nothing survives on a
            // versioned bucket either.
            let mut expired = Vec::new();
            for version in self.store.list_versions(area.prefix()).await? {
                report.scanned += 1;
                match self.layout.key_expires_at(&version.key) {
                    Ok(expires_at) if expires_at <= now => {
                        report.bytes_purged += version.size;
                        expired.push(version);
                    }
                    Ok(expires_at) => {
                        let received = expires_at - self.layout.retention;
                        report.oldest_kept =
                            Some(report.oldest_kept.map_or(received, |o| o.min(received)));
                    }
                    Err(_) => report.foreign.push(version.key),
                }
            }
            report.purged += expired.len() as u64;
            self.store.purge(&expired).await?;
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
        let keys = |id| {
            vec![
                layout::raw_key(id),
                layout::thumb_key(id),
                layout::manifest_key(id),
                layout::script_key(id, "out.json"),
                layout::quarantine_key(id),
                layout::metadata_key(id, 3),
                layout::idempotency_key("client-key", id),
                layout::erased_key(id),
            ]
        };
        for key in keys(old).into_iter().chain(keys(young)) {
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
        assert_eq!(report.purged, 8);
        let left: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        let mut expected = keys(young);
        expected.sort();
        assert_eq!(left, expected);
        // Idempotent.
        assert_eq!(sweeper.sweep_once().await.unwrap().purged, 0);
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
