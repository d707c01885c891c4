//! Faults against the real servers: the S3 server (a SeaweedFS of this
//! test's own, so others' tests keep theirs) stopped under a running
//! `imgpipe up` and started again. The API refuses what it cannot store
//! (503 with Retry-After, never a 202 for bytes it does not have), the
//! processor backs off and resumes, and every accepted image ends exactly
//! once (`imgpipe verify`).
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::*;

/// A private SeaweedFS on ports of its own, over a data dir that survives
/// a restart.
struct Seaweed {
    child: Option<Child>,
    dir: PathBuf,
}

const S3_PORT: u16 = 19833;

impl Seaweed {
    fn start(dir: &Path) -> Option<Self> {
        let Ok(weed) = std::env::var("IMGPIPE_TEST_WEED") else {
            assert!(
                std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
                "IMGPIPE_TEST_WEED is not set but IMGPIPE_REQUIRE_SERVERS is"
            );
            eprintln!("skipping: IMGPIPE_TEST_WEED is not set (run `bash .ci/run`)");
            return None;
        };
        let (key, secret) = (
            std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        );
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"t","credentials":[{{"accessKey":"{key}","secretKey":"{secret}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .unwrap();
        let mut s = Self {
            child: None,
            dir: dir.to_owned(),
        };
        s.child = Some(s.spawn(&weed));
        s.wait_ready();
        Some(s)
    }

    fn spawn(&self, weed: &str) -> Child {
        Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                "-master.port=19433",
                "-filer.port=19888",
                "-volume.port=19080",
                "-admin.port=19646",
                "-debug.port=0",
            ])
            .arg(format!("-s3.port={S3_PORT}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", S3_PORT)).is_ok()
                && Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                    .arg(format!("http://127.0.0.1:{S3_PORT}/"))
                    .output()
                    .is_ok_and(|o| o.stdout == b"403");
            if ready {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "SeaweedFS not ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let weed = std::env::var("IMGPIPE_TEST_WEED").unwrap();
        self.child = Some(self.spawn(&weed));
        self.wait_ready();
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_server_going_away_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut weed) = Seaweed::start(&dir.path().join("weed")) else {
        return;
    };
    let s3 = lake::config::S3Config {
        bucket: unique_bucket("faults"),
        prefix: String::new(),
        endpoint: Some(format!("http://127.0.0.1:{S3_PORT}")),
        region: "us-east-1".into(),
        force_path_style: true,
        timeout: Duration::from_secs(10),
        sse: None,
        sse_kms_key_id: None,
    };
    lake::store::S3Store::connect(&s3)
        .await
        .unwrap()
        .create_bucket_if_missing()
        .await
        .unwrap();
    let config = s3_config_file(dir.path(), &s3);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("timeout = \"5s\"\n[processor]\nflush_interval = \"1s\"\nretries = 8\n");
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_str().unwrap();
    let app = Imgpipe::start_with_args(&dir.path().join("unused"), &[], &["--config", cfg]);
    let client = client();
    let photos: Vec<Vec<u8>> = [
        "mate_Storm.jpg",
        "skimage_camera.png",
        "webp_mate_GreenMeadow.webp",
        "mate_FreshFlower.jpg",
    ]
    .iter()
    .map(|n| std::fs::read(corpus_dir().join(n)).unwrap())
    .collect();

    let mut ids = Vec::new();
    for bytes in &photos[..2] {
        let (code, body) = upload(&client, &app, bytes.clone()).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // The lake goes away, with images perhaps in processing.
    weed.kill();
    let resp = client
        .post(app.url("/v1/images"))
        .body(photos[2].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "storage_unavailable", "{body}");
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);

    // It comes back: the client's retry is taken, the processor resumes.
    weed.restart();
    for bytes in &photos[2..] {
        let (code, body) = upload(&client, &app, bytes.clone()).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let v = wait_final(&client, &app, id, Duration::from_secs(180)).await;
        assert_eq!(v["status"], "processed", "{v}");
    }
    app.stop();
    let (ok, out, err) = cli(&["verify", "--config", cfg]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("{} images", ids.len())), "{out}");
}
