//! Names in the customer script's scratch directory, shared by the
//! processor that makes the entries and the retention stage that removes
//! what a crash left. The directory itself is writable by imgpipe alone
//! (a script writes only inside its own entry), so these names, and the
//! start times they carry, are imgpipe's, never a script's.

use std::time::Duration;

/// A per-image run's private directory: `run-<start, unix seconds>-…`.
pub const RUN_PREFIX: &str = "run-";

/// A stream worker's own directory: `worker-<start, unix seconds>-…`.
pub const WORKER_PREFIX: &str = "worker-";

/// How long a stream worker serves, busy or idle, before it is retired.
pub const MAX_WORKER_AGE: Duration = Duration::from_secs(3600);

/// The name of an entry made now with `prefix`, up to its random part.
pub fn entry_prefix(prefix: &str, start_unix_secs: i64) -> String {
    format!("{prefix}{start_unix_secs}-")
}

/// What an entry's name says: its kind's prefix and its start time.
pub fn parse_entry(name: &str) -> Option<(&'static str, u64)> {
    [RUN_PREFIX, WORKER_PREFIX].into_iter().find_map(|prefix| {
        let secs = name.strip_prefix(prefix)?.split('-').next()?.parse().ok()?;
        Some((prefix, secs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_their_kind_and_start() {
        let run = format!("{}abc", entry_prefix(RUN_PREFIX, 1_796_000_000));
        assert_eq!(parse_entry(&run), Some((RUN_PREFIX, 1_796_000_000)));
        let worker = format!("{}x", entry_prefix(WORKER_PREFIX, 7));
        assert_eq!(parse_entry(&worker), Some((WORKER_PREFIX, 7)));
        assert_eq!(parse_entry("run-soon-x"), None);
        assert_eq!(parse_entry("other-1-x"), None);
    }
}
