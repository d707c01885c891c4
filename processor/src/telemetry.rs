//! What the processor reports: its metric names, labels and help text, and
//! the log events alarms match on (`event = "quarantined"`). Declared here
//! and nowhere else.

use lake::ImageId;

pub const IMAGES_PROCESSED: &str = "imgpipe_images_processed_total";
pub const IMAGES_QUARANTINED: &str = "imgpipe_images_quarantined_total";
pub const IMAGES_UNFINISHED: &str = "imgpipe_images_unfinished_total";

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
}

pub fn processed() {
    metrics::counter!(IMAGES_PROCESSED).increment(1);
}

pub fn quarantined(id: ImageId, reason: &str, detail: &str) {
    tracing::info!(event = "quarantined", %id, reason, %detail, "quarantined");
    metrics::counter!(IMAGES_QUARANTINED).increment(1);
}

pub fn unfinished(id: ImageId, error: &dyn std::fmt::Display) {
    tracing::error!(event = "image_unfinished", %id, %error, "image left unfinished after retries");
    metrics::counter!(IMAGES_UNFINISHED).increment(1);
}
