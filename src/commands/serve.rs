//! `imgpipe serve`: the HTTP API alone, publishing `ImageReceived` to the
//! events topic.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use lake::{Config, SharedClock, SystemClock, inflight::InFlight};
use metrics_exporter_prometheus::PrometheusHandle;

use super::{open_lake, require_kafka, termination};
use crate::{kafka, telemetry};

pub async fn run(mut config: Config, listen: Option<SocketAddr>) -> Result<ExitCode> {
    if let Some(addr) = listen {
        config.api.listen = addr;
    }
    require_kafka(&config, "serve")?;
    config.check_listen()?;
    let store = open_lake(&config, true).await?;
    kafka::prepare_topics(&config, false, true).await?;
    let events = kafka::events(&config)?;
    let metrics = telemetry::metrics_recorder()?;
    let telemetry =
        telemetry::Listener::start(config.telemetry.listen, metrics.clone(), store.clone()).await?;
    let (listener, addr, app) = bind_api(
        &config,
        store,
        Arc::new(SystemClock),
        events,
        InFlight::default(),
        metrics,
    )
    .await?;
    println!("imgpipe serve: listening on http://{addr}");
    ingest_api::run(listener, app, termination()).await?;
    telemetry.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The HTTP API, with `/metrics`, bound to `api.listen` and ready to run.
pub async fn bind_api(
    config: &Config,
    store: lake::SharedStore,
    clock: SharedClock,
    events: Arc<dyn lake::EventSink>,
    inflight: InFlight,
    metrics: PrometheusHandle,
) -> Result<(tokio::net::TcpListener, SocketAddr, axum::Router)> {
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding {}", config.api.listen))?;
    let addr = listener.local_addr()?;
    let state = ingest_api::AppState::new(
        config,
        store,
        clock,
        events,
        inflight,
        api_policy(config)?,
        Some(metrics),
    );
    Ok((listener, addr, ingest_api::router(state)))
}

/// The policy the API's metadata listing enforces, with every principal
/// the API config names checked against it.
fn api_policy(config: &Config) -> Result<policies::Policy> {
    let policy = policies::Policy::load(config.api.policy.as_deref())?;
    let names = std::iter::once(&config.api.principal)
        .chain(config.api.key_principals.values())
        .chain(config.api.keys.iter().map(|k| &k.principal));
    for name in names {
        policy
            .principal(name)
            .with_context(|| format!("api.principal / api.keys / api.key_principals: {name:?}"))?;
    }
    Ok(policy)
}
