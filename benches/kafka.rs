//! Kafka ingest throughput against raw PUTs, measured in the same run:
//! `IMGPIPE_TEST_KAFKA=127.0.0.1:9092 cargo bench --bench kafka`.
//!
//! The bridge consumes a topic holding the corpus (small images, each
//! several times under different keys) into a filesystem lake: per message
//! it reads the dedup records, writes the dedup record, the recorded event,
//! the raw object and the content index, and emits `ImageReceived`. The
//! peer PUTs the same payloads into the same kind of store, as many at
//! once as the bridge may have in flight. Processing is not included.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use lake::{Config, Layout, SharedStore, store::FsStore};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
};

const COPIES: usize = 8;
const MAX_BYTES: usize = 1 << 20;

fn corpus() -> Vec<Bytes> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "csv" && x != "md"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| Bytes::from(std::fs::read(p).expect("read corpus file")))
        .filter(|b| b.len() < MAX_BYTES)
        .collect()
}

async fn count_raw(store: &SharedStore) -> usize {
    store.list("raw/").await.map(|l| l.len()).unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let Ok(brokers) = std::env::var("IMGPIPE_TEST_KAFKA") else {
        eprintln!(
            "set IMGPIPE_TEST_KAFKA (a broker, e.g. tansu from .ci/run) to run this benchmark"
        );
        return;
    };
    let images = corpus();
    let n = images.len() * COPIES;
    let total_bytes: usize = images.iter().map(Bytes::len).sum::<usize>() * COPIES;
    let tag = std::process::id();
    let topic = format!("bench-{tag}");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    admin
        .create_topics(
            [&NewTopic::new(&topic, 4, TopicReplication::Fixed(1))
                .set("retention.ms", "3600000")
                .set("segment.ms", "600000")],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", "2097152")
        .create()
        .expect("producer");
    for copy in 0..COPIES {
        for (i, img) in images.iter().enumerate() {
            let key = format!("{copy}-{i}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(img.as_ref()),
                    Duration::from_secs(30),
                )
                .await
                .expect("produce");
        }
    }

    // The bridge, from the first message to the last image stored.
    let dir = tempfile::tempdir().expect("tempdir");
    let store: SharedStore = Arc::new(FsStore::open(&dir.path().join("bridge")).expect("lake"));
    let mut config = Config::default();
    config.kafka.brokers = Some(brokers.clone());
    config.kafka.topic = topic.clone();
    config.kafka.group = format!("bench-{tag}");
    config.kafka.dlq_topic = format!("{topic}.dlq");
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
    let intake = kafka_bridge::Intake {
        store: store.clone(),
        clock: Arc::new(lake::SystemClock),
        layout: Layout::new(config.retention()),
        events: Arc::new(events_tx),
    };
    let bridge = kafka_bridge::Bridge::new(&config, intake).expect("bridge");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(bridge.run(async {
        let _ = stop_rx.await;
    }));
    // Group join is not ingest: the clock starts at the first image.
    while count_raw(&store).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    while count_raw(&store).await < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bridge_time = start.elapsed();
    let _ = stop_tx.send(());
    let _ = running.await;

    // The peer: the same payloads PUT straight into a fresh store, 64 at once.
    let peer: SharedStore = Arc::new(FsStore::open(&dir.path().join("peer")).expect("lake"));
    let start = Instant::now();
    let mut puts = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    for copy in 0..COPIES {
        for (i, img) in images.iter().enumerate() {
            let (peer, img, slots) = (peer.clone(), img.clone(), slots.clone());
            puts.spawn(async move {
                let _slot = slots.acquire().await;
                peer.put(&format!("raw/{copy}/{i}"), img, &Default::default())
                    .await
                    .expect("put");
            });
        }
    }
    while puts.join_next().await.is_some() {}
    let put_time = start.elapsed();

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "kafka bridge: {n} images ({:.1} MB) in {:.2} s = {:.0} images/s",
        total_bytes as f64 / 1e6,
        bridge_time.as_secs_f64(),
        rate(bridge_time)
    );
    println!(
        "raw PUTs:     {n} images in {:.2} s = {:.0} images/s",
        put_time.as_secs_f64(),
        rate(put_time)
    );
    println!(
        "ratio bridge/raw PUT: {:.2}",
        rate(bridge_time) / rate(put_time)
    );
}
