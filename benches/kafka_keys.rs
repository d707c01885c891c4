//! A busy stream key against distinct keys, through the real bridge:
//! `IMGPIPE_TEST_KAFKA=127.0.0.1:9092 cargo bench --bench kafka_keys`.
//!
//! Producers often key messages by device or user: one key then gathers a
//! dedup record per image for the whole retention period. The bridge stores
//! N small images all under one key, then N under N distinct keys, into a
//! filesystem lake; the ratio of the two times says whether recognising a
//! redelivery costs more as a key's history grows (target ≤ 1.2). Counted
//! requests per image, from a counting store around the same lake kind,
//! say why. Processing is not included.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use lake::{
    SharedStore,
    store::{FsStore, counting::Counting},
};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
};

mod common;

const N: usize = 5000;

/// A small distinct "image": PNG magic bytes and a counter (admission
/// sniffs, it does not decode).
fn image(i: usize) -> Bytes {
    Bytes::from([&b"\x89PNG\r\n\x1a\n"[..], &(i as u64).to_be_bytes()].concat())
}

async fn count_raw(store: &SharedStore) -> usize {
    store.list("raw/").await.map(|l| l.len()).unwrap_or(0)
}

/// Produce N messages (`key(i)` each) on a new topic, run the bridge until
/// all are stored; the time from the first stored image to the last, and
/// the store requests per image.
async fn run(brokers: &str, name: &str, key: impl Fn(usize) -> String) -> (Duration, f64) {
    let tag = std::process::id();
    let topic = format!("bench-keys-{name}-{tag}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    admin
        .create_topics(
            [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
                .set("retention.ms", "3600000")
                .set("segment.ms", "600000")],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends: Vec<_> = (0..N)
        .map(|i| {
            let (producer, topic, key, payload) =
                (producer.clone(), topic.clone(), key(i), image(i));
            tokio::spawn(async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(payload.as_ref()),
                        Duration::from_secs(60),
                    )
                    .await
                    .expect("produce");
            })
        })
        .collect();
    for send in sends {
        send.await.expect("produce task");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let counting = Arc::new(Counting::new(Arc::new(
        FsStore::open(dir.path()).expect("lake"),
    )));
    let store: SharedStore = counting.clone();
    let (stop_tx, running) = common::bridge_on(
        brokers,
        &topic,
        &format!("bench-keys-{name}-{tag}"),
        store.clone(),
    );
    // Group join is not ingest: the clock starts at the first image.
    while count_raw(&store).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counting.reset();
    let start = Instant::now();
    while count_raw(&store).await < N {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    // The polling above lists raw/ too: count only the bridge's own reads,
    // and its listings less the poller's.
    let polls = counting
        .listings()
        .iter()
        .filter(|(_, prefix)| prefix == "raw/")
        .count() as u64;
    let requests = counting.reads() + counting.requests().saturating_sub(polls);
    let _ = stop_tx.send(());
    let _ = running.await;
    (took, requests as f64 / N as f64)
}

#[tokio::main]
async fn main() {
    let Ok(brokers) = std::env::var("IMGPIPE_TEST_KAFKA") else {
        eprintln!(
            "set IMGPIPE_TEST_KAFKA (a broker, e.g. tansu from .ci/run) to run this benchmark"
        );
        return;
    };
    let (one, one_requests) = run(&brokers, "one", |_| "device-7".to_owned()).await;
    let (many, many_requests) = run(&brokers, "many", |i| format!("device-{i}")).await;
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "one key:       {N} images in {:.2} s = {:.0} images/s, {one_requests:.2} reads and listings per image",
        one.as_secs_f64(),
        rate(one)
    );
    println!(
        "distinct keys: {N} images in {:.2} s = {:.0} images/s, {many_requests:.2} reads and listings per image",
        many.as_secs_f64(),
        rate(many)
    );
    println!(
        "ratio time one key / distinct keys: {:.2} (target ≤ 1.2)",
        one.as_secs_f64() / many.as_secs_f64()
    );
}
