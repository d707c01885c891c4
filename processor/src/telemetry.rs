//! What the processor reports: its metric names, labels and help text, and
//! the log events alarms match on (`event = "quarantined"`). Declared here
//! and nowhere else.

use lake::ImageId;

pub const IMAGES_PROCESSED: &str = "imgpipe_images_processed_total";
pub const IMAGES_QUARANTINED: &str = "imgpipe_images_quarantined_total";
pub const IMAGES_UNFINISHED: &str = "imgpipe_images_unfinished_total";
pub const PROCESSING_DURATION: &str = "imgpipe_processing_duration_seconds";
pub const SCRIPT_DURATION: &str = "imgpipe_script_duration_seconds";

/// Help text for `/metrics`; called once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        IMAGES_PROCESSED,
        "Images processed: thumbnail, row and manifest written"
    );
    metrics::describe_counter!(IMAGES_QUARANTINED, "Images quarantined with a reason");
    metrics::describe_counter!(
        IMAGES_UNFINISHED,
        "Images left for the next start after storage kept failing"
    );
    metrics::describe_histogram!(
        PROCESSING_DURATION,
        metrics::Unit::Seconds,
        "Time from taking an image to its outputs written, per processed image"
    );
    metrics::describe_histogram!(
        SCRIPT_DURATION,
        metrics::Unit::Seconds,
        "Time the customer's script took per image"
    );
}

pub fn processed(took: std::time::Duration) {
    tracing::debug!(
        event = "processed",
        ms = took.as_millis() as u64,
        "processed"
    );
    metrics::counter!(IMAGES_PROCESSED).increment(1);
    metrics::histogram!(PROCESSING_DURATION).record(took.as_secs_f64());
}

/// Runs the script's future, recording how long it took.
pub async fn timed_script<T>(run: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = run.await;
    metrics::histogram!(SCRIPT_DURATION).record(started.elapsed().as_secs_f64());
    out
}

pub fn quarantined(id: ImageId, reason: &str, detail: &str) {
    tracing::info!(event = "quarantined", %id, reason, %detail, "quarantined");
    metrics::counter!(IMAGES_QUARANTINED).increment(1);
}

pub fn unfinished(id: ImageId, error: &dyn std::fmt::Display) {
    tracing::error!(event = "image_unfinished", %id, %error, "image left unfinished after retries");
    metrics::counter!(IMAGES_UNFINISHED).increment(1);
}
