//! What one steady-state sweep pass costs as the lake grows: listing
//! requests (counted as S3 bills them, a page of up to 1000 keys each) and
//! time, for lakes of 10k, 100k and 1M objects on the filesystem store,
//! beside what the old whole-lake walk would have listed. `cargo bench
//! --bench sweep` (`IMGPIPE_BENCH_SWEEP_SIZES=10000,100000` to choose).
//!
//! Each lake holds images received uniformly over the last 7 days and a
//! bit, five objects each (raw, thumbnail, manifest, a dedup record and its
//! expiry marker), written straight to disk (this measures the sweep, not
//! the writes). The pass measured is the second of two a minute apart —
//! the first after a start also walks `idempotency/` whole.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Instant};

use chrono::{Duration, TimeZone, Utc};
use lake::{
    FixedClock, ImageId, SharedStore, layout,
    store::{FsStore, counting::Counting},
};

fn write(root: &std::path::Path, key: &str) {
    let path = root.join(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, b"x").unwrap();
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("IMGPIPE_BENCH_SWEEP_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let week = Duration::days(7);
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap();
    println!(
        "objects  | listing requests/pass | record lookups/pass | time/pass | whole-lake walk (requests) | purged"
    );
    let mut first = None;
    for objects in sizes {
        let dir = tempfile::tempdir().unwrap();
        let images = objects / 5;
        // Received over 7 days + 1 hour, so the oldest hour is expiring.
        let span_ms = (week + Duration::hours(1)).num_milliseconds();
        for i in 0..images {
            let at = now - Duration::milliseconds(span_ms * i as i64 / images as i64);
            let id = ImageId::new(at);
            let record = layout::idempotency_key(&format!("api:client-key-{i}"), id);
            for key in [
                layout::raw_key(id),
                layout::thumb_key(id),
                layout::manifest_key(id),
                layout::expiry_marker_key(&record).unwrap(),
                record,
            ] {
                write(dir.path(), &key);
            }
        }
        let counting = Arc::new(Counting::new(Arc::new(FsStore::open(dir.path()).unwrap())));
        let store: SharedStore = counting.clone();
        let clock = Arc::new(FixedClock::new(now - Duration::minutes(1)));
        let sweeper = retention::Sweeper::new(store.clone(), clock.clone(), week);
        sweeper.sweep_once().await.unwrap();
        clock.set(now);
        counting.reset();
        let start = Instant::now();
        let report = sweeper.sweep_once().await.unwrap();
        let took = start.elapsed();
        // Lookups of one expiring record's versions follow what expires
        // (the arrival rate), not what is stored; listings should be flat.
        let lookups = counting
            .listings()
            .iter()
            .filter(|(op, _)| *op == "versions_of")
            .count() as u64;
        let listing = counting.requests() - lookups;
        let whole_walk = objects.div_ceil(1000);
        println!(
            "{objects:>8} | {listing:>21} | {lookups:>19} | {:>6.1} ms | {whole_walk:>26} | {}",
            took.as_secs_f64() * 1000.0,
            report.purged
        );
        let base = *first.get_or_insert(listing);
        println!(
            "         listing requests vs the smallest lake: {:.2}",
            listing as f64 / base as f64
        );
    }
}
