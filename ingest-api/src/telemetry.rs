//! What the HTTP API reports: its metric names and help text. Declared
//! here and nowhere else.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

pub const UPLOADS: &str = "imgpipe_uploads_total";
/// Images an upload stored and then took back (a later part refused, the
/// request timed out or its client went away): all or nothing.
pub const UPLOADS_WITHDRAWN: &str = "imgpipe_uploads_withdrawn_total";
pub const UPLOAD_BYTES: &str = "imgpipe_upload_bytes_total";
/// Labels `route` (the matched pattern, never the raw path), `method`, `status`.
pub const HTTP_REQUESTS: &str = "imgpipe_http_requests_total";
/// Labels `route`, `method`.
pub const HTTP_DURATION: &str = "imgpipe_http_request_duration_seconds";
/// Label `scope` (`ip` or `principal`).
pub const RATE_LIMITED: &str = "imgpipe_http_rate_limited_total";

pub fn describe() {
    metrics::describe_counter!(
        UPLOADS,
        "Images accepted over HTTP (new images, not retries)"
    );
    metrics::describe_counter!(UPLOAD_BYTES, "Bytes of images accepted over HTTP");
    metrics::describe_counter!(
        UPLOADS_WITHDRAWN,
        "Images stored by an upload that was then refused, timed out or abandoned, and erased"
    );
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route and status");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route"
    );
    metrics::describe_counter!(RATE_LIMITED, "Requests refused with 429, by limit");
}

pub fn accepted(bytes: u64) {
    metrics::counter!(UPLOADS).increment(1);
    metrics::counter!(UPLOAD_BYTES).increment(bytes);
}

pub fn withdrawn() {
    metrics::counter!(UPLOADS_WITHDRAWN).increment(1);
}

pub fn rate_limited(scope: &'static str) {
    metrics::counter!(RATE_LIMITED, "scope" => scope).increment(1);
}

/// Counts and times every request by its route pattern, so label values
/// stay few whatever paths clients send.
pub async fn record_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}
