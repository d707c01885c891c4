//! The customer script's scratch directories (`processor.script.scratch_dir`):
//! each run's private copy of an image lives there and is removed when the
//! run ends; a crash can leave one behind. The sweeper removes those older
//! than any run can last, and the audit reports them. Cost: one directory
//! listing, bounded by the runs in flight plus what crashes left.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use lake::Config;

#[derive(Debug, Clone)]
pub struct Scratch {
    dir: PathBuf,
    /// Older than this, no live run owns it.
    stale_after: Duration,
}

impl Scratch {
    /// The configured script's scratch dir, if a script is configured.
    pub fn from_config(cfg: &Config) -> Option<Self> {
        let script = cfg.processor.script.as_ref()?;
        let longest_run = script.timeout * (script.retries + 1);
        Some(Self {
            dir: script.scratch_dir(),
            stale_after: (longest_run * 2).max(Duration::from_secs(3600)),
        })
    }

    pub fn new(dir: PathBuf, stale_after: Duration) -> Self {
        Self { dir, stale_after }
    }

    /// Entries no live run can own at `now`.
    pub fn stale(&self, now: DateTime<Utc>) -> Vec<PathBuf> {
        let cutoff = SystemTime::from(now) - self.stale_after;
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff)
            })
            .map(|e| e.path())
            .collect()
    }

    /// Remove what [`Scratch::stale`] finds; returns how many.
    pub fn remove_stale(&self, now: DateTime<Utc>) -> usize {
        self.stale(now)
            .into_iter()
            .filter(|p| match remove(p) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove stale script scratch");
                    false
                }
            })
            .count()
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path)?.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_older_than_any_run_can_last_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run-a")).unwrap();
        std::fs::write(dir.path().join("run-a/image.jpeg"), b"pixels").unwrap();
        let scratch = Scratch::new(dir.path().to_owned(), Duration::from_secs(3600));
        let now = Utc::now();
        assert!(scratch.stale(now).is_empty(), "a live run is not stale");
        let later = now + chrono::Duration::hours(2);
        assert_eq!(scratch.stale(later), vec![dir.path().join("run-a")]);
        assert_eq!(scratch.remove_stale(later), 1);
        assert!(!dir.path().join("run-a").exists());
    }
}
