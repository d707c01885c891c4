//! What one steady-state sweep pass costs as the lake grows: listing
//! requests (counted as S3 bills them, a page of up to 1000 keys each) and
//! time, for lakes of 10k, 100k and 1M objects on the filesystem store
//! (`IMGPIPE_BENCH_SWEEP_SIZES`), and of 10k and 100k on S3 when
//! `IMGPIPE_TEST_S3_ENDPOINT` names one (`IMGPIPE_BENCH_SWEEP_S3_SIZES`),
//! beside what a whole-lake walk would list. `cargo bench --bench sweep`.
//!
//! Each lake holds images received uniformly over the last 7 days and an
//! hour, five objects each (raw, thumbnail, manifest, a dedup record and
//! its expiry marker), written before the clock starts (this measures the
//! sweep, not the writes). The pass measured is the second of two a minute
//! apart, so it is a steady-state one.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::{StreamExt, stream};
use lake::{
    FixedClock, ImageId, SharedStore, layout,
    store::{FsStore, PutOptions, S3Store, counting::Counting},
};

/// The keys of `objects / 5` images received over the week and an hour
/// before `now`, so the oldest hour is expiring.
fn keys(objects: usize, now: DateTime<Utc>) -> impl Iterator<Item = String> {
    let images = objects / 5;
    let span_ms = (Duration::days(7) + Duration::hours(1)).num_milliseconds();
    (0..images).flat_map(move |i| {
        let at = now - Duration::milliseconds(span_ms * i as i64 / images as i64);
        let id = ImageId::new(at);
        let record = layout::idempotency_key(&format!("api:client-key-{i}"), id);
        [
            layout::raw_key(id),
            layout::thumb_key(id),
            layout::manifest_key(id),
            layout::expiry_marker_key(&record).unwrap(),
            record,
        ]
    })
}

/// Straight to disk: a million fsynced PUTs would measure the disk.
fn fill_dir(root: &std::path::Path, objects: usize, now: DateTime<Utc>) {
    for key in keys(objects, now) {
        let path = root.join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, b"x").unwrap();
    }
}

async fn fill_store(store: &SharedStore, objects: usize, now: DateTime<Utc>) {
    stream::iter(keys(objects, now))
        .for_each_concurrent(64, |key| async move {
            store
                .put(&key, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        })
        .await;
}

struct Pass {
    listing: u64,
    lookups: u64,
    ms: f64,
    purged: u64,
}

/// A pass a minute after another, measured.
async fn steady_pass(inner: SharedStore, now: DateTime<Utc>) -> Pass {
    let counting = Arc::new(Counting::new(inner));
    let store: SharedStore = counting.clone();
    let clock = Arc::new(FixedClock::new(now - Duration::minutes(1)));
    let sweeper = retention::Sweeper::new(store, clock.clone(), Duration::days(7));
    sweeper.sweep_once().await.unwrap();
    clock.set(now);
    counting.reset();
    let start = Instant::now();
    let report = sweeper.sweep_once().await.unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    // Lookups of one expiring record's versions follow what expires
    // (the arrival rate), not what is stored; listings should be flat.
    let lookups = counting
        .listings()
        .iter()
        .filter(|(op, _)| *op == "versions_of")
        .count() as u64;
    Pass {
        listing: counting.requests() - lookups,
        lookups,
        ms,
        purged: report.purged,
    }
}

fn sizes(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn print(first: &mut Option<u64>, objects: usize, pass: &Pass) {
    println!(
        "{objects:>8} | {:>21} | {:>19} | {:>8.1} ms | {:>26} | {}",
        pass.listing,
        pass.lookups,
        pass.ms,
        objects.div_ceil(1000),
        pass.purged
    );
    let base = *first.get_or_insert(pass.listing);
    println!(
        "         listing requests vs the smallest lake: {:.2}",
        pass.listing as f64 / base as f64
    );
}

const HEADER: &str = "objects  | listing requests/pass | record lookups/pass |   time/pass | whole-lake walk (requests) | purged";

#[tokio::main]
async fn main() {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap();
    println!("filesystem store\n{HEADER}");
    let mut first = None;
    for objects in sizes("IMGPIPE_BENCH_SWEEP_SIZES", "10000,100000,1000000") {
        let dir = tempfile::tempdir().unwrap();
        fill_dir(dir.path(), objects, now);
        let pass = steady_pass(Arc::new(FsStore::open(dir.path()).unwrap()), now).await;
        print(&mut first, objects, &pass);
    }
    let Ok(endpoint) = std::env::var("IMGPIPE_TEST_S3_ENDPOINT") else {
        println!("(no IMGPIPE_TEST_S3_ENDPOINT: S3 not measured)");
        return;
    };
    println!("S3 ({endpoint})\n{HEADER}");
    let mut first = None;
    for objects in sizes("IMGPIPE_BENCH_SWEEP_S3_SIZES", "10000,100000") {
        let config = lake::config::S3Config {
            bucket: format!("imgpipe-sweep-{}-{objects}", std::process::id()),
            prefix: String::new(),
            endpoint: Some(endpoint.clone()),
            region: "us-east-1".into(),
            force_path_style: true,
            timeout: std::time::Duration::from_secs(30),
            sse: None,
            sse_kms_key_id: None,
        };
        let s3 = S3Store::connect(&config).await.unwrap();
        s3.create_bucket_if_missing().await.unwrap();
        let store: SharedStore = Arc::new(s3);
        fill_store(&store, objects, now).await;
        let pass = steady_pass(store, now).await;
        print(&mut first, objects, &pass);
    }
}
