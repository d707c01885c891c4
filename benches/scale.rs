//! Start-up reconciliation and a "last hour" query as the lake grows:
//! `cargo bench --bench scale` (`IMGPIPE_BENCH_SCALE_SIZES=10000,100000`
//! to choose the sizes, in objects).
//!
//! Each lake holds a week of closed history — images received uniformly
//! over the retention period up to the hour before the last, five objects each, their rows in one
//! compacted Parquet file per hour, every settled hour checkpointed as the
//! sweeper leaves it — and the same recent work in every lake: the current
//! hour's 200 processed images (rows in 20 small files, as a sink flushes
//! them) and one image a crash left unfinished. The lake grows; what a
//! start-up or a last-hour query has to look at does not.
//!
//! Measured on the filesystem store, listings counted as S3 bills them:
//! - start-up: what `imgpipe up` and `imgpipe process` do before taking
//!   new work (`lake::reconcile`: open hours, unfinished images, lost rows);
//! - the same scan over every hour (no markers: what start-up did before);
//! - `imgpipe query --since 1h 'SELECT count(*) FROM images'`.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use lake::{
    ImageId, Layout, SharedStore, layout,
    records::Manifest,
    schema::{self, MetadataRow, testing::sample_row},
    store::{FsStore, counting::Counting},
};

const RECENT: usize = 200;

fn write(root: &std::path::Path, key: &str, body: &[u8]) {
    let path = root.join(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, body).unwrap();
}

/// Raw, thumbnail, manifest, a dedup record and its expiry marker.
fn image(root: &std::path::Path, id: ImageId, i: usize, manifest: &[u8]) {
    let record = layout::idempotency_key(&format!("api:client-key-{i}"), id);
    write(root, &layout::raw_key(id), b"x");
    write(root, &layout::thumb_key(id), b"x");
    write(root, &layout::manifest_key(id), manifest);
    write(root, &layout::expiry_marker_key(&record).unwrap(), b"");
    write(root, &record, b"x");
}

fn rows_file(root: &std::path::Path, rows: &[MetadataRow]) {
    let newest = rows.iter().map(|r| r.id).max().unwrap();
    let file = schema::write_parquet(rows).unwrap();
    write(root, &layout::metadata_key(newest, rows.len()), &file);
}

fn build(root: &std::path::Path, objects: usize, now: DateTime<Utc>, layout: &Layout) {
    let history = objects / 5 - RECENT - 1;
    let current = layout::hour_start(now);
    // History ends an hour before the current one, so the last hour holds
    // the same images in every lake.
    let start = layout::hour_start(now - layout.retention) + Duration::hours(1);
    let span_ms = (current - Duration::hours(1) - start).num_milliseconds();
    let mut hour_rows: Vec<MetadataRow> = Vec::new();
    for i in 0..history {
        let id = ImageId::new(start + Duration::milliseconds(span_ms * i as i64 / history as i64));
        if hour_rows.first().is_some_and(|r| {
            layout::hour_start(r.id.received_at()) != layout::hour_start(id.received_at())
        }) {
            rows_file(root, &hour_rows);
            hour_rows.clear();
        }
        image(root, id, i, b"x");
        hour_rows.push(sample_row(id));
    }
    rows_file(root, &hour_rows);
    // The sweeper's markers on every settled hour.
    let mut hour = start;
    while hour < current - Duration::hours(1) {
        write(root, &layout::checkpoint_key(hour), b"");
        hour += Duration::hours(1);
    }
    // The current hour: processed images, rows in small files.
    let recent: Vec<ImageId> = (0..RECENT)
        .map(|i| ImageId::new(current + Duration::milliseconds(i as i64 * 100)))
        .collect();
    for (i, id) in recent.iter().enumerate() {
        let manifest = Manifest {
            id: *id,
            keys: vec![layout::raw_key(*id)],
            row: sample_row(*id),
        };
        image(
            root,
            *id,
            history + i,
            &serde_json::to_vec(&manifest).unwrap(),
        );
    }
    for chunk in recent.chunks(RECENT / 20) {
        let rows: Vec<MetadataRow> = chunk.iter().map(|id| sample_row(*id)).collect();
        rows_file(root, &rows);
    }
    // One image a crash left with no outcome.
    let unfinished = ImageId::new(now - Duration::minutes(1));
    write(root, &layout::raw_key(unfinished), b"x");
}

struct Measure {
    requests: u64,
    ms: f64,
}

async fn measure<F, T>(counting: &Counting, run: impl FnOnce() -> F) -> (Measure, T)
where
    F: std::future::Future<Output = T>,
{
    counting.reset();
    let start = Instant::now();
    let out = run().await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    (
        Measure {
            requests: counting.requests(),
            ms,
        },
        out,
    )
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("IMGPIPE_BENCH_SCALE_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let layout = Layout::new(Duration::days(7));
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 7, 30, 0).unwrap();
    let policy = policies::Policy::load(None).unwrap();
    println!(
        "objects  | start-up: requests, time | found | no markers: requests, time | last-hour query: requests, time, rows"
    );
    let mut first: Option<(f64, f64)> = None;
    for objects in sizes {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), objects, now, &layout);
        let counting = Arc::new(Counting::new(Arc::new(FsStore::open(dir.path()).unwrap())));
        let store: SharedStore = counting.clone();

        let (startup, found) = measure(&counting, || async {
            let hours = lake::reconcile::open_hours(&store, &layout, now)
                .await
                .unwrap();
            let todo = lake::reconcile::unfinished(&store, &hours).await.unwrap();
            let lost = lake::reconcile::lost_rows(&store, &hours, None)
                .await
                .unwrap();
            (todo.len(), lost.len())
        })
        .await;
        assert_eq!(found, (1, 0), "start-up must find the unfinished image");

        let (whole, _) = measure(&counting, || async {
            let mut hours = Vec::new();
            let mut hour = layout::hour_start(now - layout.retention);
            while hour <= now {
                hours.push(hour);
                hour += Duration::hours(1);
            }
            let todo = lake::reconcile::unfinished(&store, &hours).await.unwrap();
            let lost = lake::reconcile::lost_rows(&store, &hours, None)
                .await
                .unwrap();
            (todo.len(), lost.len())
        })
        .await;

        // Once unmeasured: DataFusion's first use in a process costs more.
        let last_hour = || async {
            let (from, to) = (now - Duration::hours(1), now + Duration::seconds(1));
            let batches = policies::query::load_range(&store, from, to).await.unwrap();
            let batches = policies::query::received_within(batches, from, to).unwrap();
            let out = policies::query::run(
                &policy,
                "analyst",
                batches,
                now,
                "SELECT count(*) AS n FROM images",
            )
            .await
            .unwrap();
            let col = out[0].column(0);
            let n = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .value(0);
            n
        };
        last_hour().await;
        let (query, rows) = measure(&counting, last_hour).await;
        assert_eq!(rows, RECENT as i64, "the last hour holds the recent images");

        println!(
            "{objects:>8} | {:>8} {:>10.1} ms | {:>5} | {:>10} {:>10.1} ms | {:>6} {:>8.1} ms {:>5}",
            startup.requests,
            startup.ms,
            found.0,
            whole.requests,
            whole.ms,
            query.requests,
            query.ms,
            rows
        );
        let (s0, q0) = *first.get_or_insert((startup.ms, query.ms));
        println!(
            "         vs the smallest lake: start-up time {:.2}, query time {:.2}",
            startup.ms / s0,
            query.ms / q0
        );
    }
}
