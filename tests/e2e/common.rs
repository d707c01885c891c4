//! Shared helpers for the end-to-end tests: run the real `imgpipe` binary,
//! talk to it over real HTTP, and reach the real local S3 server.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

/// One row of ../shared/corpus/MANIFEST.csv (made with other decoders).
#[derive(Debug, Clone)]
pub struct CorpusImage {
    pub file: String,
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub sha256: String,
    pub orientation: Option<u16>,
    pub has_gps: bool,
}

pub fn corpus() -> Vec<CorpusImage> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.csv"))
        .expect("../shared/corpus/MANIFEST.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, w, h, fmt, sha, orient, gps) = (
        col("file"),
        col("width"),
        col("height"),
        col("format"),
        col("sha256"),
        col("exif_orientation"),
        col("exif_gps"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields = split_csv(line);
            CorpusImage {
                file: fields[file].clone(),
                path: corpus_dir().join(&fields[file]),
                width: fields[w].parse().unwrap(),
                height: fields[h].parse().unwrap(),
                format: fields[fmt].to_lowercase(),
                sha256: fields[sha].clone(),
                orientation: fields[orient].parse().ok(),
                has_gps: !fields[gps].is_empty(),
            }
        })
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A running `imgpipe up`, killed when dropped.
pub struct Imgpipe {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Imgpipe {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(data_dir, env, &[])
    }

    pub fn start_with_args(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_logging(data_dir, env, args, Stdio::inherit())
    }

    /// As [`Imgpipe::start_with_args`], with the log (stderr) sent to `log`.
    pub fn start_logging(data_dir: &Path, env: &[(&str, &str)], args: &[&str], log: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgpipe"));
        cmd.arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("IMGPIPE_LOG", "info,imgpipe=debug")
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn imgpipe up");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("imgpipe up exited before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("imgpipe up: listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no draining, no flushing.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(60))
            .expect("imgpipe did not stop within 60 s");
        assert!(status.success(), "imgpipe exited with {status}");
    }
}

impl Drop for Imgpipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Run an `imgpipe` subcommand to completion: (success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub async fn upload(client: &reqwest::Client, app: &Imgpipe, bytes: Vec<u8>) -> (u16, Value) {
    let resp = client
        .post(app.url("/v1/images"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Upload these corpus files one by one (each must be accepted); their ids.
pub async fn upload_corpus(client: &reqwest::Client, app: &Imgpipe, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        let (status, body) =
            upload(client, app, std::fs::read(corpus_dir().join(name)).unwrap()).await;
        assert_eq!(status, 202, "{name}: {body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// `GET /v1/images/{id}` as JSON.
pub async fn status(client: &reqwest::Client, app: &Imgpipe, id: &str) -> Value {
    let resp = client
        .get(app.url(&format!("/v1/images/{id}")))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// `GET /metrics`: the Prometheus text.
pub async fn metrics(client: &reqwest::Client, app: &Imgpipe) -> String {
    client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn is_final(v: &Value) -> bool {
    matches!(v["status"].as_str(), Some("processed" | "quarantined"))
}

/// Poll until the image is processed or quarantined.
pub async fn wait_final(
    client: &reqwest::Client,
    app: &Imgpipe,
    id: &str,
    limit: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let v = status(client, app, id).await;
        if is_final(&v) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "image {id} not final after {limit:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn upload_multipart(
    client: &reqwest::Client,
    app: &Imgpipe,
    form: reqwest::multipart::Form,
) -> (u16, Value) {
    let resp = client
        .post(app.url("/v1/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The local S3 server from `.ci/run`, if any. With IMGPIPE_REQUIRE_SERVERS
/// set (CI), a missing server fails the test instead of skipping it.
pub fn s3_endpoint() -> Option<String> {
    match std::env::var("IMGPIPE_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
                "IMGPIPE_TEST_S3_ENDPOINT is not set but IMGPIPE_REQUIRE_SERVERS is"
            );
            eprintln!("skipping: IMGPIPE_TEST_S3_ENDPOINT is not set (run `bash .ci/run`)");
            None
        }
    }
}

/// An S3 lake on the local server: a fresh bucket (created) and `prefix`.
/// `None` when there is no server and the test should skip.
pub async fn s3_lake(
    tag: &str,
    prefix: &str,
) -> Option<(lake::store::S3Store, lake::config::S3Config)> {
    let config = lake::config::S3Config {
        bucket: unique_bucket(tag),
        prefix: prefix.into(),
        endpoint: Some(s3_endpoint()?),
        region: "us-east-1".into(),
        force_path_style: true,
        timeout: Duration::from_secs(30),
        sse: None,
        sse_kms_key_id: None,
    };
    let store = lake::store::S3Store::connect(&config).await.unwrap();
    store.create_bucket_if_missing().await.unwrap();
    Some((store, config))
}

/// An `imgpipe` config file in `dir` that puts the lake in `s3`.
pub fn s3_config_file(dir: &Path, s3: &lake::config::S3Config) -> PathBuf {
    let path = dir.join("imgpipe.toml");
    let text = format!(
        "[lake.s3]\nbucket = \"{}\"\nprefix = \"{}\"\nendpoint = \"{}\"\n",
        s3.bucket,
        s3.prefix,
        s3.endpoint.as_deref().unwrap_or_default()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A fresh bucket name, so tests never see each other's objects.
pub fn unique_bucket(tag: &str) -> String {
    format!("imgpipe-{tag}-{:x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Every metadata row in a filesystem lake.
pub fn parquet_rows(data_dir: &Path) -> Vec<lake::schema::MetadataRow> {
    let mut rows = Vec::new();
    let mut stack = vec![data_dir.join("metadata")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let bytes = bytes::Bytes::from(std::fs::read(&p).unwrap());
                rows.extend(lake::schema::read_rows(bytes).unwrap());
            }
        }
    }
    rows
}

/// Every file below `dir`, as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    kib * 1024
}

/// A tool `.ci/run` installs and names in `env` (a path): `None` to skip
/// the test on a machine without it, except where servers and tools are
/// required (CI), where its absence fails the test.
pub fn required_tool(env: &str) -> Option<String> {
    let path = std::env::var(env).ok();
    if path.is_none() && std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_some() {
        panic!("{env} is not set (.ci/run installs the tool and sets it)");
    }
    path
}

/// `imgpipe serve` in this process on `store`: keyless, no rate limits,
/// processors elsewhere. Returns its base URL and the events it emits
/// (`capacity` of them before admission waits).
pub async fn serve_in_process(
    store: lake::SharedStore,
    clock: lake::SharedClock,
    capacity: usize,
) -> (String, tokio::sync::mpsc::Receiver<lake::ImageReceived>) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    let admission = lake::admission::Admission::new(
        store,
        clock,
        lake::Layout::new(chrono::Duration::days(7)),
        std::sync::Arc::new(tx),
    );
    let config = ingest_api::ApiConfig {
        rate_limit: ingest_api::config::RateLimitConfig {
            per_principal_per_second: 0,
            per_ip_per_second: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let state = ingest_api::AppState::new(
        &config,
        &lake::config::LakeConfig::default(),
        admission,
        lake::InProgress::default(),
        policies::Policy::load(None).unwrap(),
        None,
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ingest_api::run(
        listener,
        ingest_api::router(state),
        std::future::pending(),
    ));
    (base, rx)
}
