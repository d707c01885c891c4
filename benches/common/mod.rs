//! What every benchmark shares.

use std::path::PathBuf;

/// The corpus photos (`../shared/corpus`), in name order.
#[allow(dead_code)]
pub fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "csv" && x != "md"))
        .collect();
    files.sort();
    files
}

/// Admission on `store` with the default retention, its events drained
/// (benchmarks measure storing, not processing).
#[allow(dead_code)]
pub fn admission_on(store: lake::SharedStore) -> lake::admission::Admission {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    lake::admission::Admission::new(
        store,
        std::sync::Arc::new(lake::SystemClock),
        lake::config::RetentionConfig::default().layout(),
        std::sync::Arc::new(tx),
    )
}

/// `[api]` with the rate limits off: a benchmark measures a route's cost,
/// not the limits.
#[allow(dead_code)]
pub fn unlimited_api() -> ingest_api::ApiConfig {
    ingest_api::ApiConfig {
        rate_limit: ingest_api::config::RateLimitConfig {
            per_principal_per_second: 0,
            per_ip_per_second: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The router `imgpipe up` serves, configured by `config`, on `store`
/// (keyless, the shipped policy), listening on a free loopback port: its
/// base URL.
#[allow(dead_code)]
pub async fn api_on(store: lake::SharedStore, config: ingest_api::ApiConfig) -> String {
    let state = ingest_api::AppState::new(
        &config,
        &lake::config::LakeConfig::default(),
        admission_on(store),
        lake::InProgress::default(),
        policies::Policy::load(None).expect("the shipped policy"),
        None,
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(ingest_api::run(
        listener,
        ingest_api::router(state),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// The Kafka bridge consuming `topic` into `store` until the returned
/// sender fires (or is dropped); join the handle to wait for its stop.
#[allow(dead_code)]
pub fn bridge_on(
    brokers: &str,
    topic: &str,
    group: &str,
    store: lake::SharedStore,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<kafka_bridge::BridgeReport>,
) {
    let config = kafka_bridge::KafkaConfig {
        brokers: Some(brokers.to_owned()),
        topic: topic.to_owned(),
        group: group.to_owned(),
        dlq_topic: format!("{topic}.dlq"),
        ..Default::default()
    };
    let intake = kafka_bridge::Intake::new(admission_on(store));
    let bridge = kafka_bridge::Bridge::new(&config, None, intake).expect("bridge");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(bridge.run(async {
        let _ = stop_rx.await;
    }));
    (stop_tx, running)
}
