//! ingest-api: uploads over HTTP into the lake (axum).
//!
//! `POST /v1/images` writes the original bytes to `raw/` durably, then emits
//! `ImageReceived`; only then does it answer 202. `GET /v1/images/{id}`
//! reports where the image is in the pipeline. Errors are JSON
//! `{"error": "<stable code>", "detail": "<text>"}`.

mod auth;
pub mod config;
mod direct;
mod error;
pub mod jwt;
mod listing;
pub mod openapi;
mod page;
mod rate_limit;
mod request_id;
mod routes;
pub mod server;
mod status;
pub mod telemetry;
mod upload;

use std::{future::Future, sync::Arc};

use lake::{
    InProgress, Layout, SharedClock, SharedStore, admission::Admission, config::LakeConfig,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use auth::key_digest;
pub use config::{ApiConfig, Permission};
pub use error::{ApiError, ApiErrorCode};
pub use routes::router;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub layout: Layout,
    pub config: ApiConfig,
    /// The images the processor's event source has handed out: `processing`
    /// (embedded; empty when processors run elsewhere).
    pub in_progress: InProgress,
    /// Who may see which metadata columns and rows.
    pub policy: policies::Policy,
    /// The configured API keys, as digests with principal and permissions.
    keys: auth::Keys,
    /// Renders `/metrics` (the process's one Prometheus recorder).
    metrics: Option<PrometheusHandle>,
    /// The lake's one way in, shared with every other source.
    admission: Admission,
    upload_slots: Arc<tokio::sync::Semaphore>,
    /// Metadata listings run at once ([`LISTINGS_AT_ONCE`]).
    listing_slots: Arc<tokio::sync::Semaphore>,
    /// Bearer tokens from the identity provider, when configured.
    jwt: Option<jwt::Verifier>,
    limits: rate_limit::Limits,
    /// Signs the filesystem lake's direct-upload URLs.
    url_signer: direct::UrlSigner,
    /// Where browsers PUT direct uploads on an S3 lake (for the page's
    /// content security policy).
    upload_origin: Option<String>,
}

impl AppState {
    /// The API for `[api]`, storing what it accepts through `admission`
    /// into the lake `lake` configures.
    pub fn new(
        cfg: &ApiConfig,
        lake: &LakeConfig,
        admission: Admission,
        in_progress: InProgress,
        policy: policies::Policy,
        metrics: Option<PrometheusHandle>,
        jwt: Option<jwt::Verifier>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: admission.store.clone(),
            clock: admission.clock.clone(),
            layout: admission.layout,
            config: cfg.clone(),
            admission,
            in_progress,
            policy,
            keys: auth::Keys::from_config(cfg),
            metrics,
            upload_slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_uploads)),
            listing_slots: Arc::new(tokio::sync::Semaphore::new(LISTINGS_AT_ONCE)),
            jwt,
            limits: rate_limit::Limits::from_config(&cfg.rate_limit),
            url_signer: direct::UrlSigner::random(),
            upload_origin: lake.s3.as_ref().map(|s3| match &s3.endpoint {
                Some(endpoint) => origin_of(endpoint),
                None => "https://*.amazonaws.com".into(),
            }),
        })
    }
}

/// Metadata listings (Parquet reads and a query each) run at once; more
/// wait their turn within the request's deadline.
pub const LISTINGS_AT_ONCE: usize = 4;

impl AppState {
    /// One of the slots that bound how many images' bytes the API holds at
    /// once (`api.max_concurrent_uploads`): every route that reads or
    /// stores an image's bytes takes one.
    pub(crate) async fn upload_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        turn(&self.upload_slots).await
    }

    /// A turn to run a metadata listing.
    pub(crate) async fn listing_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        turn(&self.listing_slots).await
    }
}

/// A permit of `slots`, held until dropped (it may travel into a task).
async fn turn(
    slots: &Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    slots.clone().acquire_owned().await.map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the server is stopping",
        )
    })
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{scheme}://{authority}")
        }
        None => url.to_owned(),
    }
}

/// The body of a JSON request: 415 unless it says JSON, 400 unless it is
/// the JSON asked for.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorCode::UnsupportedMediaType,
            "send the request body as application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(ApiErrorCode::InvalidJson, format!("the body: {e}")))
}

/// Serve `app` (usually [`router`]) on plain TCP until `shutdown`
/// resolves, then finish the requests in progress. See
/// [`server::serve`] for TLS.
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let defaults = ApiConfig::default();
    let options = server::ServeOptions {
        tls: None,
        header_read_timeout: defaults.header_read_timeout,
        idle_timeout: defaults.idle_timeout,
        max_connections_per_address: Some(defaults.max_connections_per_address),
    };
    server::serve(listener, app, options, shutdown).await
}
