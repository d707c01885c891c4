//! Kafka ingest throughput against raw PUTs, measured in the same run:
//! `IMGPIPE_TEST_KAFKA=127.0.0.1:9092 cargo bench --bench kafka`.
//!
//! The bridge consumes a topic holding the corpus (small images, each
//! several times under different keys) into a filesystem lake: per message
//! it reads the dedup records, writes the dedup record, the recorded event,
//! the raw object and the content index, and emits `ImageReceived`. The
//! peer is the least a Kafka → store copy does: a bare consumer on the same
//! topic PUTting each payload into the same kind of store. Processing is
//! not included.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use lake::{SharedStore, store::FsStore};
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};

mod common;

const COPIES: usize = 8;
const MAX_BYTES: usize = 1 << 20;

/// The corpus photos under `MAX_BYTES`, as payloads.
fn payloads() -> Vec<Bytes> {
    common::corpus()
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
    let images = payloads();
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
    let (stop_tx, running) =
        common::bridge_on(&brokers, &topic, &format!("bench-{tag}"), store.clone());
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

    // The peer: a bare consumer (new group, same topic, same broker) that
    // PUTs each payload, as many at once as the bridge — the least a
    // Kafka → store copy can do. The broker's fetch rate bounds both.
    let peer: SharedStore = Arc::new(FsStore::open(&dir.path().join("peer")).expect("lake"));
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("bench-peer-{tag}"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.message.max.bytes", "52428800")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut puts = tokio::task::JoinSet::new();
    let mut start = None;
    for i in 0..n {
        let msg = consumer.recv().await.expect("consume");
        start.get_or_insert_with(Instant::now);
        let payload = Bytes::copy_from_slice(msg.payload().unwrap_or_default());
        let (peer, permit) = (peer.clone(), slots.clone().acquire_owned().await);
        puts.spawn(async move {
            let _permit = permit;
            peer.put(&format!("raw/{i}"), payload, &Default::default())
                .await
                .expect("put");
        });
    }
    while puts.join_next().await.is_some() {}
    let peer_time = start.map(|s| s.elapsed()).unwrap_or_default();

    // For scale: the same PUTs with no broker in the way.
    let bare: SharedStore = Arc::new(FsStore::open(&dir.path().join("bare")).expect("lake"));
    let start = Instant::now();
    for copy in 0..COPIES {
        for (i, img) in images.iter().enumerate() {
            let (bare, img, permit) = (
                bare.clone(),
                img.clone(),
                slots.clone().acquire_owned().await,
            );
            puts.spawn(async move {
                let _permit = permit;
                bare.put(&format!("raw/{copy}/{i}"), img, &Default::default())
                    .await
                    .expect("put");
            });
        }
    }
    while puts.join_next().await.is_some() {}
    let bare_time = start.elapsed();

    // And the bridge's own per-image work (dedup lookup, dedup record,
    // recorded event, raw object, content index) with no broker in the way.
    let direct: SharedStore = Arc::new(FsStore::open(&dir.path().join("direct")).expect("lake"));
    let intake = Arc::new(kafka_bridge::Intake::new(common::admission_on(direct)));
    let start = Instant::now();
    for copy in 0..COPIES {
        for (i, img) in images.iter().enumerate() {
            let format = match lake::sniff::sniff(img) {
                lake::sniff::Sniffed::Supported(f) => f,
                _ => continue,
            };
            let (intake, img, permit) = (
                intake.clone(),
                img.clone(),
                slots.clone().acquire_owned().await,
            );
            puts.spawn(async move {
                let _permit = permit;
                let key = format!("bench:{copy}-{i}");
                intake
                    .store(img, format, &key, &key, None)
                    .await
                    .expect("intake");
            });
        }
    }
    while puts.join_next().await.is_some() {}
    let intake_time = start.elapsed();

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "bridge intake, no broker: {n} images in {:.2} s = {:.0} images/s",
        intake_time.as_secs_f64(),
        rate(intake_time)
    );
    println!(
        "kafka bridge:          {n} images ({:.1} MB) in {:.2} s = {:.0} images/s",
        total_bytes as f64 / 1e6,
        bridge_time.as_secs_f64(),
        rate(bridge_time)
    );
    println!(
        "consume + raw PUTs:    {n} images in {:.2} s = {:.0} images/s",
        peer_time.as_secs_f64(),
        rate(peer_time)
    );
    println!(
        "raw PUTs, no broker:   {n} images in {:.2} s = {:.0} images/s",
        bare_time.as_secs_f64(),
        rate(bare_time)
    );
    println!(
        "ratio bridge / (consume + raw PUTs): {:.2}",
        rate(bridge_time) / rate(peer_time)
    );
    println!(
        "ratio bridge intake / raw PUTs (no broker): {:.2}",
        rate(intake_time) / rate(bare_time)
    );
}
