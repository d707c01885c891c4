//! `GET /v1/images?limit=100` as the lake grows: `cargo bench --bench listing`
//! (`IMGPIPE_BENCH_LISTING_ROWS=1000,100000` to choose the sizes).
//!
//! Each lake holds a week of metadata rows, received uniformly over the
//! retention period, one compacted Parquet file per hour (as the sweeper
//! leaves settled hours). The real router serves it on the filesystem
//! store; a page (the oldest 100 rows, then the page after a cursor in the
//! middle of the week) is timed, best of several. A page should cost the
//! hours it spans, not the lake: target 100k/1k ≤ 1.5.

#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use lake::{
    ImageId, SharedStore, layout,
    schema::{self, MetadataRow, testing::sample_row},
    store::FsStore,
};

mod common;

const ROUNDS: usize = 7;

fn write(root: &std::path::Path, key: &str, body: &[u8]) {
    let path = root.join(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, body).unwrap();
}

fn rows_file(root: &std::path::Path, rows: &[MetadataRow]) {
    let newest = rows.iter().map(|r| r.id).max().unwrap();
    let file = schema::write_parquet(rows).unwrap();
    write(root, &layout::metadata_key(newest, rows.len()), &file);
}

/// `n` rows over the retention period, one file per hour; the id of the
/// row in the middle.
fn build(root: &std::path::Path, n: usize) -> ImageId {
    let now = Utc::now();
    let retention = lake::config::RetentionConfig::default().layout().retention;
    let start = layout::hour_start(now - retention) + chrono::Duration::hours(1);
    let span_ms = (layout::hour_start(now) - start).num_milliseconds();
    let mut hour: Vec<MetadataRow> = Vec::new();
    let mut middle = None;
    for i in 0..n {
        let id =
            ImageId::new(start + chrono::Duration::milliseconds(span_ms * i as i64 / n as i64));
        if i == n / 2 {
            middle = Some(id);
        }
        if hour.first().is_some_and(|r| {
            layout::hour_start(r.id.received_at()) != layout::hour_start(id.received_at())
        }) {
            rows_file(root, &hour);
            hour.clear();
        }
        hour.push(sample_row(id));
    }
    rows_file(root, &hour);
    middle.unwrap()
}

/// Best time of `ROUNDS` GETs of `url`, each answering 100 rows.
async fn best(client: &reqwest::Client, url: &str) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let page: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        best = best.min(start.elapsed());
        assert_eq!(page["images"].as_array().map(Vec::len), Some(100), "{url}");
    }
    best
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("IMGPIPE_BENCH_LISTING_ROWS")
        .unwrap_or_else(|_| "1000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let client = reqwest::Client::new();
    let mut results = Vec::new();
    for &n in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let middle = build(dir.path(), n);
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let base = common::api_on(store, common::unlimited_api()).await;
        let first = best(&client, &format!("{base}/v1/images?limit=100")).await;
        let later = best(
            &client,
            &format!("{base}/v1/images?limit=100&cursor={middle}"),
        )
        .await;
        println!(
            "{n:>7} rows: first page {:>7.1} ms, a page from the middle {:>7.1} ms",
            first.as_secs_f64() * 1e3,
            later.as_secs_f64() * 1e3
        );
        results.push((n, first, later));
    }
    if let (Some(small), Some(large)) = (results.first(), results.last()) {
        println!(
            "ratio {}/{} rows: first page {:.2}, middle page {:.2} (target ≤ 1.5)",
            large.0,
            small.0,
            large.1.as_secs_f64() / small.1.as_secs_f64(),
            large.2.as_secs_f64() / small.2.as_secs_f64()
        );
    }
}
