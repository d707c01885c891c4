//! Named places where the crash tests make the process die — as `kill -9`
//! would, with no unwinding, flushing or cleanup — to prove recovery from
//! exactly there, where a timed kill would only sometimes land. Inert unless
//! `IMGPIPE_FAILPOINT` names the point (read once, at the first hit).

use std::sync::OnceLock;

pub const ENV: &str = "IMGPIPE_FAILPOINT";

/// An upload's raw bytes are stored; not yet indexed by content, nor
/// announced, nor answered.
pub const UPLOAD_STORED: &str = "upload_stored";
/// A metadata Parquet file was written; the rows are still buffered.
pub const METADATA_WRITTEN: &str = "metadata_written";
/// An erasure wrote its tombstone and dedup record; nothing is purged yet.
pub const ERASE_TOMBSTONED: &str = "erase_tombstoned";

pub fn hit(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    if ARMED.get_or_init(|| std::env::var(ENV).ok()).as_deref() == Some(point) {
        eprintln!("failpoint {point}: aborting");
        std::process::abort();
    }
}
