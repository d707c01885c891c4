//! Ingest against its peers, each in the same run: `cargo bench --bench
//! ingest` (needs `vipsthumbnail`: `apt-get install libvips-tools`; with
//! `IMGPIPE_TEST_S3_ENDPOINT` set, the upload race also runs on S3).
//!
//! 1. **End to end vs libvips.** The corpus files on disk are uploaded over
//!    HTTP (4 connections) to `imgpipe up` (filesystem lake, no script,
//!    release build) until every one is `processed` — thumbnail, manifest
//!    and metadata row on disk — against `vipsthumbnail --size 256` (one
//!    process per core) writing the same 256 px JPEGs from the same files.
//!    Both use both cores; both are timed from files on disk to outputs on
//!    disk; best of three.
//! 2. **Uploads vs raw PUTs.** The same bytes, the same concurrency (8), the
//!    same store: `POST /v1/images` through the real router against one
//!    `Store::put` of each file, and between them admission called
//!    directly (recorded event, raw object, content index and its marker:
//!    what an upload must make durable, without HTTP). Processing is left
//!    out (the events are drained), so this is what the front door adds
//!    to a PUT, and how much of it is the durable writes.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use lake::{SharedStore, store::PutOptions};

mod common;

const ROUNDS: usize = 3;
const HTTP_CONNECTIONS: usize = 4;
const PUT_CONCURRENCY: usize = 8;
/// Uploads per file in the upload race (the corpus alone is 36 files).
const UPLOAD_REPEAT: usize = 4;

struct Up {
    child: Child,
    base: String,
}

impl Up {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("IMGPIPE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("imgpipe up exited").unwrap();
            if let Some(addr) = line.strip_prefix("imgpipe up: listening on ") {
                break addr.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(client: &reqwest::Client, base: &str, name: &str, bytes: Vec<u8>) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let resp = client
        .post(format!("{base}/v1/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap()
    );
}

/// Images processed and quarantined so far by a running `imgpipe up`.
async fn finished(client: &reqwest::Client, base: &str) -> (u64, u64) {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (
        sum("imgpipe_images_processed_total"),
        sum("imgpipe_images_quarantined_total"),
    )
}

/// Files on disk → every image processed in a fresh `imgpipe up`.
async fn end_to_end(files: &[PathBuf]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let client = reqwest::Client::new();
    let base = up.base.clone();
    let start = Instant::now();
    stream::iter(files)
        .for_each_concurrent(HTTP_CONNECTIONS, |path| {
            let (client, base) = (&client, &base);
            async move {
                let bytes = tokio::fs::read(path).await.unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                post(client, base, &name, bytes).await;
            }
        })
        .await;
    loop {
        let (processed, quarantined) = finished(&client, &base).await;
        assert_eq!(quarantined, 0, "a corpus image was quarantined");
        if processed == files.len() as u64 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "not processed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn vipsthumbnail(files: &[PathBuf]) -> Duration {
    let out = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let start = Instant::now();
    let children: Vec<_> = files
        .chunks(files.len().div_ceil(cores))
        .map(|part| {
            Command::new("vipsthumbnail")
                .args(part)
                .args(["--size", "256", "-o"])
                .arg(out.path().join("%s.jpg[Q=85]"))
                .stderr(Stdio::null())
                .spawn()
                .expect("vipsthumbnail not found: install libvips-tools")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "vipsthumbnail failed");
    }
    start.elapsed()
}

/// Images/s of each way in, best of three.
struct Race {
    /// `POST /v1/images` through the real router.
    upload: f64,
    /// `Admission::admit` called directly: the writes an upload must make
    /// durable (recorded event, raw object, content index and its expiry
    /// marker) and its SHA-256, without HTTP.
    admission: f64,
    /// One `Store::put` of the bytes.
    put: f64,
}

async fn upload_race(store: SharedStore, images: &[(String, bytes::Bytes)]) -> Race {
    // Enough upload slots for the race's concurrency.
    let config = ingest_api::ApiConfig {
        max_concurrent_uploads: PUT_CONCURRENCY * 2,
        ..common::unlimited_api()
    };
    let base = common::api_on(store.clone(), config).await;
    let admission = common::admission_on(store.clone());
    let client = reqwest::Client::new();
    let (mut upload, mut admitted, mut put) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        let start = Instant::now();
        stream::iter(images)
            .for_each_concurrent(PUT_CONCURRENCY, |(name, bytes)| {
                let (client, base) = (&client, &base);
                async move { post(client, base, name, bytes.to_vec()).await }
            })
            .await;
        upload = upload.min(start.elapsed());

        let start = Instant::now();
        stream::iter(images)
            .for_each_concurrent(PUT_CONCURRENCY, |(name, bytes)| {
                let admission = &admission;
                async move {
                    let lake::sniff::Sniffed::Supported(format) = lake::sniff::sniff(bytes) else {
                        panic!("{name} is not an image");
                    };
                    admission
                        .admit(lake::admission::Incoming {
                            data: bytes.clone(),
                            format,
                            source: lake::Source::Http,
                            source_ref: Some(name.clone()),
                            dedup_key: None,
                            on_reuse: lake::admission::Reuse::Refuse,
                            request_id: None,
                            arrived_at: None,
                        })
                        .await
                        .unwrap();
                }
            })
            .await;
        admitted = admitted.min(start.elapsed());

        let start = Instant::now();
        stream::iter(images.iter().enumerate())
            .for_each_concurrent(PUT_CONCURRENCY, |(i, (_, bytes))| {
                let store = &store;
                async move {
                    let key = format!("bench/{round}/{i}");
                    store
                        .put(&key, bytes.clone(), &PutOptions::default())
                        .await
                        .unwrap();
                }
            })
            .await;
        put = put.min(start.elapsed());
    }
    let n = images.len() as f64;
    Race {
        upload: n / upload.as_secs_f64(),
        admission: n / admitted.as_secs_f64(),
        put: n / put.as_secs_f64(),
    }
}

fn report(lake: &str, r: &Race) {
    println!(
        "{lake}: uploads {:.1}/s, admission alone {:.1}/s, raw PUTs {:.1}/s; \
         upload/PUT {:.2}, admission/PUT {:.2}, upload/admission {:.2}",
        r.upload,
        r.admission,
        r.put,
        r.upload / r.put,
        r.admission / r.put,
        r.upload / r.admission
    );
}

#[tokio::main]
async fn main() {
    let files = common::corpus();
    let n = files.len() as f64;
    let mb: f64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len() as f64)
        .sum::<f64>()
        / 1e6;
    println!("corpus: {} files, {mb:.1} MB", files.len());

    let mut ours = Duration::MAX;
    let mut vips = Duration::MAX;
    for _ in 0..ROUNDS {
        ours = ours.min(end_to_end(&files).await);
        vips = vips.min(vipsthumbnail(&files));
    }
    let ips = |d: Duration| n / d.as_secs_f64();
    println!("end to end, HTTP → processed : {:>7.2} images/s", ips(ours));
    println!("vipsthumbnail --size 256     : {:>7.2} images/s", ips(vips));
    println!(
        "ratio imgpipe/vips (end to end): {:.2}",
        ips(ours) / ips(vips)
    );

    let images: Vec<(String, bytes::Bytes)> = (0..UPLOAD_REPEAT)
        .flat_map(|_| files.iter())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                bytes::Bytes::from(std::fs::read(p).unwrap()),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let fs: SharedStore = Arc::new(lake::store::FsStore::open(dir.path()).unwrap());
    report("filesystem lake", &upload_race(fs, &images).await);
    if let Ok(endpoint) = std::env::var("IMGPIPE_TEST_S3_ENDPOINT") {
        let config = lake::config::S3Config {
            bucket: format!("imgpipe-bench-{}", std::process::id()),
            prefix: String::new(),
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            force_path_style: true,
            timeout: Duration::from_secs(30),
            sse: None,
            sse_kms_key_id: None,
        };
        let s3 = lake::store::S3Store::connect(&config).await.unwrap();
        s3.create_bucket_if_missing().await.unwrap();
        report(
            "S3 lake (SeaweedFS)",
            &upload_race(Arc::new(s3), &images).await,
        );
    }
}
