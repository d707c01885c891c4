//! The upload page in a real browser: headless Debian Chromium driven by
//! Playwright (`tests/browser/upload-page.mjs`) against a real `imgpipe up`.
//! Two corpus images and a text file go in through the page's file picker
//! (the larger image over the page's direct-upload threshold); the page
//! must show two thumbnails with metadata and one error in words. The
//! screenshot is kept as a CI artifact.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::*;

const KEY: &str = "browser-test-uploader-key-0123456789";

/// Where CI keeps the screenshot.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("IMGPIPE_ARTIFACTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_page_uploads_images_and_explains_errors_in_chromium() {
    let Some(chromium) = required_tool("IMGPIPE_TEST_CHROMIUM") else {
        return;
    };
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/browser` (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let small = corpus_dir().join("skimage_chelsea.png");
    let large = corpus_dir().join("lomiri16_Dragonfly_by_Bolly.jpg");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "these are notes, not an image\n").unwrap();
    // Between the two images: the large one takes the direct-upload path.
    let threshold = 1_000_000;
    assert!(std::fs::metadata(&small).unwrap().len() < threshold);
    assert!(std::fs::metadata(&large).unwrap().len() > threshold);
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[api.direct_uploads]\npage_threshold_bytes = {threshold}\n\n[[api.keys]]\nsha256 = \"{}\"\nprincipal = \"analyst\"\npermissions = [\"images:write\", \"images:read\"]\n",
            hex::encode(Sha256::digest(KEY.as_bytes()))
        ),
    )
    .unwrap();
    let app = Imgpipe::start_with_args(
        &dir.path().join("lake"),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    let screenshot = artifacts().join("upload-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = tokio::task::spawn_blocking({
        let base = app.base.clone();
        let screenshot = screenshot.clone();
        move || {
            Command::new("node")
                .current_dir(&browser_dir)
                .arg("upload-page.mjs")
                .arg(&base)
                .arg(KEY)
                .arg(&screenshot)
                .args([&small, &large, &text])
                .env("IMGPIPE_TEST_CHROMIUM", chromium)
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(240), out)
        .await
        .expect("the browser run took over 4 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{seen}");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {seen}"))
    };
    for (name, width, height) in [
        ("skimage_chelsea.png", 451, 300),
        ("lomiri16_Dragonfly_by_Bolly.jpg", 4224, 3168),
    ] {
        let r = row(name);
        assert_eq!(r["outcome"], "processed", "{r}");
        assert_eq!(r["state"], "Processed", "{r}");
        let thumb = &r["thumbnail"];
        assert!(thumb["width"].as_u64().unwrap() > 0, "{r}");
        assert!(
            thumb["width"]
                .as_u64()
                .unwrap()
                .max(thumb["height"].as_u64().unwrap())
                <= 256
        );
        assert_eq!(r["metadata"]["width"], width.to_string(), "{r}");
        assert_eq!(r["metadata"]["height"], height.to_string(), "{r}");
        assert_eq!(r["progress"], 1.0, "{r}");
    }
    let bad = row("notes.txt");
    assert_eq!(bad["outcome"], "error", "{bad}");
    assert!(
        bad["state"]
            .as_str()
            .unwrap()
            .contains("not an image imgpipe accepts"),
        "{bad}"
    );
    assert!(
        bad["state"]
            .as_str()
            .unwrap()
            .contains("unsupported_media_type")
    );
    assert!(bad["thumbnail"].is_null());

    // The large one went straight to storage (its upload's ticket waits
    // for the sweeper; its bytes are gone, admitted), the rest through the API.
    let staged: Vec<String> = files_under(&dir.path().join("lake"))
        .into_iter()
        .filter(|f| f.starts_with("uploads/"))
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(staged[0].ends_with("/ticket.json"), "{staged:?}");
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    eprintln!("screenshot: {}", screenshot.display());
}
