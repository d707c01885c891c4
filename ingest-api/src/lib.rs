//! ingest-api: uploads over HTTP into the lake (axum).
//!
//! `POST /v1/images` writes the original bytes to `raw/` durably, then emits
//! `ImageReceived`; only then does it answer 202. `GET /v1/images/{id}`
//! reports where the image is in the pipeline. Errors are JSON
//! `{"error": "<stable code>", "detail": "<text>"}`.

mod auth;
mod error;
mod listing;
mod routes;
mod status;
pub mod telemetry;
mod upload;

use std::{future::Future, sync::Arc};

use lake::{Config, EventSink, Layout, SharedClock, SharedStore, inflight::InFlight};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use auth::key_digest;
pub use error::{ApiError, ApiErrorCode};
pub use routes::router;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub layout: Layout,
    pub config: lake::config::ApiConfig,
    /// The in-process channel (embedded) or the events topic (distributed).
    pub events: Arc<dyn EventSink>,
    pub inflight: InFlight,
    /// Who may see which metadata columns and rows.
    pub policy: policies::Policy,
    /// The configured API keys, as digests with principal and permissions.
    keys: auth::Keys,
    /// Renders `/metrics` (the process's one Prometheus recorder).
    metrics: Option<PrometheusHandle>,
    /// The lake's one way in, shared with every other source.
    admission: lake::admission::Admission,
    upload_slots: tokio::sync::Semaphore,
}

impl AppState {
    pub fn new(
        cfg: &Config,
        store: SharedStore,
        clock: SharedClock,
        events: Arc<dyn EventSink>,
        inflight: InFlight,
        policy: policies::Policy,
        metrics: Option<PrometheusHandle>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: store.clone(),
            clock: clock.clone(),
            layout: Layout::new(cfg.retention()),
            config: cfg.api.clone(),
            admission: lake::admission::Admission::new(
                store.clone(),
                clock.clone(),
                Layout::new(cfg.retention()),
                events.clone(),
            ),
            events,
            inflight,
            policy,
            keys: auth::Keys::from_config(&cfg.api),
            metrics,
            upload_slots: tokio::sync::Semaphore::new(cfg.api.max_concurrent_uploads),
        })
    }
}

/// Serve `app` (usually [`router`], perhaps with routes added) until
/// `shutdown` resolves, then finish the requests in progress.
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
