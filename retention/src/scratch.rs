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

#[derive(Debug, Clone)]
pub struct Scratch {
    dir: PathBuf,
    /// Older than this, no live run owns it.
    stale_after: Duration,
}

impl Scratch {
    /// The scratch dir of a script whose runs (retries included) last at
    /// most `longest_run`: an entry twice that old, and at least an hour
    /// old, belongs to no live run.
    pub fn for_runs(dir: PathBuf, longest_run: Duration) -> Self {
        Self {
            dir,
            stale_after: (longest_run * 2).max(Duration::from_secs(3600)),
        }
    }

    pub fn new(dir: PathBuf, stale_after: Duration) -> Self {
        Self { dir, stale_after }
    }

    /// Entries no live run can own at `now`. A run's directory, and a
    /// stream worker's (which holds the runs it serves), carries its start
    /// time in its name (`run-<unix seconds>-…`, `worker-…`), given by
    /// imgpipe in a directory no script can write; a worker's lives up to
    /// its maximum age longer. Anything else is judged by its mtime, and a
    /// time in the future counts as stale.
    pub fn stale(&self, now: DateTime<Utc>) -> Vec<PathBuf> {
        let cutoff = SystemTime::from(now) - self.stale_after;
        let future = SystemTime::from(now) + Duration::from_secs(300);
        let is_stale = |t: SystemTime| t < cutoff || t > future;
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| match started(&e.file_name().to_string_lossy()) {
                Some((start, lives)) => start + lives < cutoff || start > future,
                None => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .map_or(true, is_stale),
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

/// The start time an entry's name carries, and how much longer than a run
/// it may live: a worker serves up to its maximum age (its runs are judged
/// with it).
fn started(name: &str) -> Option<(SystemTime, Duration)> {
    let (kind, secs) = lake::scratch::parse_entry(name)?;
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    Some(match kind {
        lake::scratch::WORKER_PREFIX => (start, lake::scratch::MAX_WORKER_AGE),
        _ => (start, Duration::ZERO),
    })
}

/// Remove a file or a tree, first giving back the permissions a script may
/// have taken away (`chmod 000`) — never following a link.
fn remove(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(path)? {
        remove(&entry?.path())?;
    }
    std::fs::remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_older_than_any_run_can_last_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let now = Utc::now();
        let run = dir.path().join(format!("run-{}-x", now.timestamp()));
        std::fs::create_dir_all(run.join("kept")).unwrap();
        std::fs::write(run.join("kept/image.jpeg"), b"pixels").unwrap();
        // What a hostile script does to outlive its run.
        std::fs::set_permissions(run.join("kept"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let forged = dir
            .path()
            .join(format!("run-{}-y", now.timestamp() + 86_400));
        std::fs::create_dir(&forged).unwrap();
        let scratch = Scratch::new(dir.path().to_owned(), Duration::from_secs(3600));
        assert_eq!(
            scratch.stale(now),
            vec![forged.clone()],
            "a live run is not stale"
        );
        let later = now + chrono::Duration::hours(2);
        let mut stale = scratch.stale(later);
        stale.sort();
        assert_eq!(stale, vec![run.clone(), forged]);
        assert_eq!(scratch.remove_stale(later), 2);
        assert!(!run.exists());
    }

    /// A stream worker's directory is kept while the worker may live, then
    /// goes whole, whatever the runs inside it are called.
    #[test]
    fn a_worker_directory_lives_as_long_as_its_worker_may() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let worker = dir.path().join(format!("worker-{}-w", now.timestamp()));
        // A name a script could try inside its own directory.
        std::fs::create_dir_all(worker.join(format!("run-{}-z", now.timestamp() + 86_400 * 30)))
            .unwrap();
        let scratch = Scratch::new(dir.path().to_owned(), Duration::from_secs(3600));
        assert!(
            scratch
                .stale(now + chrono::Duration::minutes(90))
                .is_empty()
        );
        assert_eq!(
            scratch.stale(now + chrono::Duration::hours(3)),
            vec![worker]
        );
    }
}
