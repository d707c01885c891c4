//! What retention reports: its metric names and help text, and the log
//! events alarms match on (`event = "sweep_failed"`). Declared here and
//! nowhere else.

pub const SWEEP_OBJECTS_PURGED: &str = "imgpipe_sweep_objects_purged_total";
pub const SWEEP_BYTES_PURGED: &str = "imgpipe_sweep_bytes_purged_total";
pub const SWEEP_FAILURES: &str = "imgpipe_sweep_failures_total";
pub const OLDEST_OBJECT_AGE: &str = "imgpipe_lake_oldest_object_age_seconds";
pub const ERASURES: &str = "imgpipe_erasures_total";
/// Label `area`: how long after its expiry each purged object went.
pub const PURGE_LATENESS: &str = "imgpipe_purge_lateness_seconds";
pub const SETTLED_OPEN_HOURS: &str = "imgpipe_settled_open_hours";
pub const METADATA_FILES_COMPACTED: &str = "imgpipe_metadata_files_compacted_total";

pub fn describe() {
    metrics::describe_counter!(
        SWEEP_OBJECTS_PURGED,
        "Objects (and versions) the sweeper purged"
    );
    metrics::describe_counter!(SWEEP_BYTES_PURGED, "Bytes the sweeper purged");
    metrics::describe_counter!(SWEEP_FAILURES, "Sweep passes that failed");
    metrics::describe_gauge!(
        OLDEST_OBJECT_AGE,
        "Age of the oldest partition the last sweep left in place, in seconds"
    );
    metrics::describe_counter!(ERASURES, "Images erased on request");
    metrics::describe_histogram!(
        PURGE_LATENESS,
        "Seconds between an object's expiry and its purge, by area"
    );
    metrics::describe_gauge!(
        SETTLED_OPEN_HOURS,
        "Hours past settling that still hold unfinished images or rows not in a file (start-up scans them)"
    );
    metrics::describe_counter!(
        METADATA_FILES_COMPACTED,
        "Metadata files merged away by compaction"
    );
}

pub fn checkpointed(settled_open_hours: usize, files_compacted: u64) {
    metrics::gauge!(SETTLED_OPEN_HOURS).set(settled_open_hours as f64);
    metrics::counter!(METADATA_FILES_COMPACTED).increment(files_compacted);
}

pub fn swept(objects: u64, bytes: u64, oldest_kept_age_seconds: f64) {
    metrics::counter!(SWEEP_OBJECTS_PURGED).increment(objects);
    metrics::counter!(SWEEP_BYTES_PURGED).increment(bytes);
    metrics::gauge!(OLDEST_OBJECT_AGE).set(oldest_kept_age_seconds);
}

pub fn sweep_failed(error: &dyn std::fmt::Display) {
    tracing::error!(event = "sweep_failed", %error, "sweep failed; retrying next interval");
    metrics::counter!(SWEEP_FAILURES).increment(1);
}

pub fn erased() {
    metrics::counter!(ERASURES).increment(1);
}

pub fn purge_lateness(area: lake::layout::Area, seconds: f64) {
    let area = area.prefix().trim_end_matches('/');
    metrics::histogram!(PURGE_LATENESS, "area" => area).record(seconds.max(0.0));
}
