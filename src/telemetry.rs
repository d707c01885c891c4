//! Logs and metrics for every mode: the log format, the process's one
//! Prometheus recorder, and the telemetry listener (`/metrics`, `/healthz`)
//! of the modes that have no HTTP API of their own.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::cli::LogFormat;

/// Log to stderr, filtered by `IMGPIPE_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMGPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        // One JSON object per line, fields (including the typed `event`
        // names alarms match on) under "fields".
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
}

/// The recorder for every later `metrics::` call, rendered at `/metrics`.
pub fn metrics_recorder() -> Result<PrometheusHandle> {
    // Histograms (not summaries), so latencies aggregate across tasks.
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                3600.0,
            ],
        )
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    ingest_api::telemetry::describe();
    processor::telemetry::describe();
    retention::telemetry::describe();
    kafka_bridge::telemetry::describe();
    Ok(handle)
}

#[derive(Clone)]
struct Telemetry {
    metrics: PrometheusHandle,
    store: lake::SharedStore,
}

/// The telemetry listener of one process: `/metrics` and `/healthz` on
/// `[telemetry] listen`, when set. Meant for the private network the
/// scraper and the orchestrator's health checks live in: unlike the API's
/// `/metrics`, no key is asked for, and nothing here names an image.
pub struct Listener {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Listener {
    pub async fn start(
        listen: Option<SocketAddr>,
        metrics: PrometheusHandle,
        store: lake::SharedStore,
    ) -> Result<Self> {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let Some(listen) = listen else {
            return Ok(Self { stop, task: None });
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the telemetry listener {listen}"))?;
        let app = Router::new()
            .route("/metrics", get(render))
            .route("/healthz", get(health))
            .with_state(Telemetry { metrics, store });
        tracing::info!(address = %listener.local_addr()?, "telemetry: /metrics and /healthz");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self {
            stop,
            task: Some(task),
        })
    }

    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            task.await.context("telemetry task")??;
        }
        Ok(())
    }
}

async fn render(State(t): State<Telemetry>) -> String {
    t.metrics.render()
}

/// Healthy while the lake answers: every mode needs it to make progress.
async fn health(State(t): State<Telemetry>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let answered = tokio::time::timeout(Duration::from_secs(5), t.store.ping()).await;
    match answered {
        Ok(Ok(())) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ok" })),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable" })),
        ),
    }
}
