//! A full disk under the filesystem lake (a small tmpfs the test mounts):
//! uploads are refused with a clear `503 storage_unavailable` (never a 5xx
//! of another kind, never a half-accepted image), no Parquet file is left
//! corrupt, and once there is room again every accepted image ends
//! processed, exactly once.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::common::*;

/// A tmpfs of `size` at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
                "cannot mount a tmpfs (CI runs as root)"
            );
            return None;
        }
        Some(Self(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_uploads_clearly_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let Some(disk) = Tmpfs::mount(&lake, "6m") else {
        return;
    };
    let env = [
        ("IMGPIPE_PROCESSOR__FLUSH_INTERVAL", "1s"),
        ("IMGPIPE_PROCESSOR__RETRIES", "2"),
    ];
    let app = Imgpipe::start(&lake, &env);
    let client = client();
    let images: Vec<Vec<u8>> = ["skimage_chelsea.png", "skimage_camera.png", "mate_Aqua.jpg"]
        .iter()
        .map(|n| std::fs::read(corpus_dir().join(n)).unwrap())
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for round in 0..200 {
        let body = images[round % images.len()].clone();
        let response = client
            .post(app.url("/v1/images"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").is_some();
        let v: Value = response.json().await.unwrap();
        match status {
            202 => accepted.push(v["id"].as_str().unwrap().to_owned()),
            503 => {
                assert_eq!(v["error"], "storage_unavailable", "{v}");
                assert!(retry_after);
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("a full disk answered {other}: {v}"),
        }
    }
    assert!(
        refused >= 5,
        "the disk never filled ({} accepted)",
        accepted.len()
    );
    assert!(!accepted.is_empty());
    eprintln!("{} accepted before the disk filled", accepted.len());
    // Let the processor run into the full disk too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Whatever Parquet was written is whole (this reads every file).
    let _ = parquet_rows(&lake);
    app.stop();

    // Room again: a restart takes up what the full disk left unfinished.
    disk.resize("256m");
    let app = Imgpipe::start(&lake, &env);
    for id in &accepted {
        let v = wait_final(&client, &app, id, Duration::from_secs(120)).await;
        assert_eq!(v["status"], "processed", "{v}");
    }
    let (status, _) = upload(&client, &app, images[0].clone()).await;
    assert_eq!(status, 202);
    app.stop();
    let rows = parquet_rows(&lake);
    for id in &accepted {
        let n = rows.iter().filter(|r| r.id.to_string() == *id).count();
        assert_eq!(n, 1, "image {id} has {n} rows");
    }
    let (ok, out, err) = cli(&["verify", "--data-dir", lake.to_str().unwrap()]);
    assert!(ok && out.contains("PASS"), "{out}{err}");
}
