//! `imgpipe serve`: the HTTP API alone, publishing `ImageReceived` to the
//! events topic.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use crate::cli::ListenArgs;

use anyhow::{Context, Result};
use lake::{InProgress, SharedClock, SystemClock};

use crate::config::Config;
use metrics_exporter_prometheus::PrometheusHandle;

use super::{open_lake, require_kafka, termination};
use crate::{kafka, telemetry};

pub async fn run(mut config: Config, listen: ListenArgs) -> Result<ExitCode> {
    listen.apply(&mut config);
    require_kafka(&config, "serve")?;
    config.api.check_listen()?;
    let store = open_lake(&config, true).await?;
    kafka::prepare_topics(&config, false, true).await?;
    let events = kafka::events(&config)?;
    let metrics = telemetry::metrics_recorder()?;
    let telemetry =
        telemetry::Listener::start(config.telemetry.listen, metrics.clone(), store.clone()).await?;
    let api = bind_api(
        &config,
        store,
        Arc::new(SystemClock),
        events,
        // Processors run elsewhere: this process knows of none in progress.
        InProgress::default(),
        metrics,
    )
    .await?;
    println!("imgpipe serve: listening on {}", api.url());
    api.run(termination()).await?;
    telemetry.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The HTTP API, bound and ready to run.
pub struct BoundApi {
    listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
    app: axum::Router,
    options: ingest_api::server::ServeOptions,
}

impl BoundApi {
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        ingest_api::server::serve(self.listener, self.app, self.options, shutdown).await
    }
}

/// The HTTP API, with `/metrics`, bound to `api.listen`: its token issuer's
/// keys fetched and its TLS certificate read (again on SIGHUP), so a bad
/// one stops the start.
pub async fn bind_api(
    config: &Config,
    store: lake::SharedStore,
    clock: SharedClock,
    events: Arc<dyn lake::EventSink>,
    in_progress: InProgress,
    metrics: PrometheusHandle,
) -> Result<BoundApi> {
    let jwt = match &config.api.jwt {
        Some(jwt) => Some(
            ingest_api::jwt::Verifier::new(jwt)
                .await
                .context("[api.jwt]: loading the token issuer's keys")?,
        ),
        None => None,
    };
    let tls = match (&config.api.tls.cert, &config.api.tls.key) {
        (Some(cert), Some(key)) => {
            let tls = ingest_api::server::Tls::load(cert, key).context("[api.tls]")?;
            #[cfg(unix)]
            tls.reload_on_hangup();
            Some(tls)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding {}", config.api.listen))?;
    let addr = listener.local_addr()?;
    let admission = lake::admission::Admission::new(store, clock, config.layout(), events);
    let state = ingest_api::AppState::new(
        &config.api,
        &config.lake,
        admission,
        in_progress,
        api_policy(config)?,
        Some(metrics),
        jwt,
    );
    Ok(BoundApi {
        listener,
        addr,
        app: ingest_api::router(state),
        options: ingest_api::server::ServeOptions {
            tls,
            header_read_timeout: config.api.header_read_timeout,
            idle_timeout: config.api.idle_timeout,
            // Behind a trusted balancer every connection is the balancer's.
            max_connections_per_address: (!config.api.rate_limit.trust_forwarded_for)
                .then_some(config.api.max_connections_per_address),
        },
    })
}

/// The policy the API's metadata listing enforces, with every principal
/// the API config names checked against it.
fn api_policy(config: &Config) -> Result<policies::Policy> {
    let policy = policies::Policy::load(config.api.policy.as_deref())?;
    let names = std::iter::once(&config.api.principal)
        .chain(config.api.key_principals.values())
        .chain(config.api.jwt.iter().flat_map(|j| j.principals.values()))
        .chain(
            config
                .api
                .jwt
                .iter()
                .flat_map(|j| j.default_principal.iter()),
        )
        .chain(config.api.keys.iter().map(|k| &k.principal));
    for name in names {
        policy
            .principal(name)
            .with_context(|| format!("api.principal / api.keys / api.key_principals: {name:?}"))?;
    }
    Ok(policy)
}
