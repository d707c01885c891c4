//! What the HTTP API reports: its metric names and help text. Declared
//! here and nowhere else.

pub const UPLOADS: &str = "imgpipe_uploads_total";
pub const UPLOAD_BYTES: &str = "imgpipe_upload_bytes_total";

pub fn describe() {
    metrics::describe_counter!(
        UPLOADS,
        "Images accepted over HTTP (new images, not retries)"
    );
    metrics::describe_counter!(UPLOAD_BYTES, "Bytes of images accepted over HTTP");
}

pub fn accepted(bytes: u64) {
    metrics::counter!(UPLOADS).increment(1);
    metrics::counter!(UPLOAD_BYTES).increment(bytes);
}
