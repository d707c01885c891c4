//! The HTTP path end to end: real `imgpipe up`, real HTTP, filesystem lake.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_image_is_processed_with_correct_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[]);
    let client = client();
    let corpus = corpus();
    assert!(corpus.len() >= 30, "corpus not found");

    let mut ids = Vec::new();
    for img in &corpus {
        let bytes = std::fs::read(&img.path).unwrap();
        // Independent check of the manifest itself.
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            img.sha256,
            "{}",
            img.file
        );
        let (status, body) = upload(&client, &app, bytes).await;
        assert_eq!(status, 202, "{}: {body}", img.file);
        assert_eq!(body["status"], "received");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for (img, id) in corpus.iter().zip(&ids) {
        let v = wait_final(&client, &app, id, Duration::from_secs(300)).await;
        assert_eq!(v["status"], "processed", "{}: {v}", img.file);
        let m = &v["metadata"];
        assert_eq!(m["width"], img.width, "{}", img.file);
        assert_eq!(m["height"], img.height, "{}", img.file);
        assert_eq!(m["format"], img.format, "{}", img.file);
        assert_eq!(m["sha256"], img.sha256.as_str(), "{}", img.file);
        if let Some(o) = img.orientation {
            assert_eq!(m["orientation"], o, "{}", img.file);
        }
        assert_eq!(m["has_gps"], img.has_gps, "{}", img.file);

        // The thumbnail: longest side 256, oriented (90° turns swap sides).
        let thumb_path = dir.path().join(m["thumb_key"].as_str().unwrap());
        let thumb = image::open(&thumb_path).unwrap();
        let (tw, th) = (thumb.width(), thumb.height());
        assert_eq!(
            tw.max(th),
            256.min(img.width.max(img.height)),
            "{}",
            img.file
        );
        let turned = matches!(img.orientation, Some(5..=8));
        let landscape = img.width > img.height;
        if img.width != img.height {
            assert_eq!(
                tw > th,
                landscape != turned,
                "{} thumbnail orientation",
                img.file
            );
        }
    }
    app.stop();

    // After a clean stop every processed image has exactly one Parquet row.
    let rows = parquet_rows(dir.path());
    for (img, id) in corpus.iter().zip(&ids) {
        let mine: Vec<_> = rows.iter().filter(|r| r.id.to_string() == *id).collect();
        assert_eq!(mine.len(), 1, "{}: rows {}", img.file, mine.len());
        assert_eq!((mine[0].width, mine[0].height), (img.width, img.height));
        assert_eq!(mine[0].sha256, img.sha256);
    }
    // GPS lands only in the restricted columns of the row.
    let gps = corpus
        .iter()
        .zip(&ids)
        .find(|(img, _)| img.has_gps)
        .unwrap();
    let row = rows.iter().find(|r| r.id.to_string() == *gps.1).unwrap();
    assert!(
        (row.gps_lat.unwrap() - 48.8584).abs() < 1e-3
            && (row.gps_lon.unwrap() - 2.2945).abs() < 1e-3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_API__MAX_UPLOAD_BYTES", "1000000")]);
    let client = client();

    let (status, body) = upload(&client, &app, Vec::new()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("empty_body")),
        "{body}"
    );

    let (status, body) = upload(&client, &app, b"just some text, not a picture".to_vec()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );

    // AVIF and HEIC are named, whatever Content-Type the client claims.
    let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf rest of file".to_vec();
    let resp = client
        .post(app.url("/v1/images"))
        .header("content-type", "image/jpeg")
        .body(avif)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("AVIF"), "{body}");
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    let (status, body) = upload(&client, &app, heic).await;
    assert_eq!(status, 415);
    assert!(body["detail"].as_str().unwrap().contains("HEIC"), "{body}");

    // Over the limit: refused from Content-Length…
    let big = std::fs::read(corpus_dir().join("lomiri16_Dragonfly_by_Bolly.jpg")).unwrap();
    let (status, body) = upload(&client, &app, big.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    // …and from a chunked stream with no length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = client
        .post(app.url("/v1/images"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_large");

    let resp = client
        .get(app.url("/v1/images/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let unknown = lake::ImageId::new(chrono::Utc::now());
    let resp = client
        .get(app.url(&format!("/v1/images/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found");

    // Nothing of the refused uploads was stored.
    assert!(!dir.path().join("raw").exists() || files_under(&dir.path().join("raw")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_returns_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[]);
    let client = client();
    let bytes = std::fs::read(corpus_dir().join("mate_FreshFlower.jpg")).unwrap();
    let post = |key: &'static str, body: Vec<u8>| {
        client
            .post(app.url("/v1/images"))
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    let first: serde_json::Value = post("order-42", bytes.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    wait_final(&client, &app, &id, Duration::from_secs(60)).await;
    let raw_before = files_under(&dir.path().join("raw")).len();

    let again = post("order-42", bytes.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["id"].as_str(), Some(id.as_str()));
    assert_eq!(again["status"], "processed");
    assert_eq!(
        files_under(&dir.path().join("raw")).len(),
        raw_before,
        "a retry stored new bytes"
    );

    // Concurrent retries of a new key still make one image.
    let concurrent =
        futures::future::join_all((0..4).map(|_| post("order-43", bytes.clone()))).await;
    let ids: std::collections::HashSet<String> =
        futures::future::join_all(concurrent.into_iter().map(|r| async {
            r.unwrap().json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }))
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 1);

    // The same key for different bytes is a client bug, not a retry.
    let other = std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap();
    let resp = post("order-42", other).await.unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "idempotency_key_reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_with_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[]);
    let client = client();
    let names = [
        "skimage_camera.png",
        "webp_mate_GreenMeadow.webp",
        "mate_FreshFlower.jpg",
    ];
    let mut form =
        reqwest::multipart::Form::new().text("note", "form fields that are not files are ignored");
    for name in names {
        let part = reqwest::multipart::Part::bytes(std::fs::read(corpus_dir().join(name)).unwrap())
            .file_name(name);
        form = form.part(name.to_owned(), part);
    }
    let (code, body) = upload_multipart(&client, &app, form).await;
    assert_eq!(code, 202, "{body}");
    let images = body["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (img, name) in images.iter().zip(names) {
        let v = wait_final(
            &client,
            &app,
            img["id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(v["status"], "processed", "{name}: {v}");
    }

    // One bad file refuses the whole request, naming the file — and the
    // good part before it, stored as it streamed in, is gone again.
    let raw_before = files_under(&dir.path().join("raw")).len();
    let form = reqwest::multipart::Form::new()
        .part(
            "a",
            reqwest::multipart::Part::bytes(std::fs::read(corpus_dir().join(names[0])).unwrap())
                .file_name("ok.png"),
        )
        .part(
            "b",
            reqwest::multipart::Part::bytes(b"%PDF-1.7".to_vec()).file_name("doc.pdf"),
        );
    let (code, body) = upload_multipart(&client, &app, form).await;
    assert_eq!(code, 415, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("doc.pdf"),
        "{body}"
    );
    assert_eq!(files_under(&dir.path().join("raw")).len(), raw_before);
    app.stop();
    let (ok, out, err) = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}

/// A page of the listing reads the hours it spans, not the whole period:
/// the first pages of a lake whose last hour holds a damaged file are
/// served from the oldest rows without reading it. `?sha256=` pages its lookups too.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_page_reads_only_the_hours_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store: lake::SharedStore =
        std::sync::Arc::new(lake::store::FsStore::open(dir.path()).unwrap());
    let old = chrono::Utc::now() - chrono::Duration::hours(48);
    let rows: Vec<_> = [0, 1, 2]
        .map(|m| lake::ImageId::new(old + chrono::Duration::minutes(m)))
        .into_iter()
        .map(lake::schema::testing::sample_row)
        .collect();
    lake::metadata::write_rows(&store, &rows).await.unwrap();
    let damaged = lake::layout::metadata_key(
        lake::ImageId::new(chrono::Utc::now() - chrono::Duration::hours(1)),
        1,
    );
    lake::Store::put(
        store.as_ref(),
        &damaged,
        bytes::Bytes::from_static(b"not parquet"),
        &Default::default(),
    )
    .await
    .unwrap();
    let app = Imgpipe::start(dir.path(), &[]);
    let client = client();
    let page = |query: String| {
        let client = client.clone();
        let url = app.url(&format!("/v1/images?{query}"));
        async move {
            let resp = client.get(url).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, first) = page("limit=1".into()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["images"][0]["id"], rows[0].id.to_string(), "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (status, second) = page(format!("limit=1&cursor={cursor}")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["images"][0]["id"],
        rows[1].id.to_string(),
        "{second}"
    );

    // The same bytes uploaded twice: two images, one page each.
    let bytes = std::fs::read(corpus_dir().join("mate_Storm.jpg")).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, body) = upload(&client, &app, bytes.clone()).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let (status, one) = page(format!("sha256={sha}&limit=1")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["images"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["images"][0]["id"], ids[0].as_str(), "{one}");
    let cursor = one["next_cursor"].as_str().unwrap().to_owned();
    let (_, two) = page(format!("sha256={sha}&limit=1&cursor={cursor}")).await;
    assert_eq!(two["images"][0]["id"], ids[1].as_str(), "{two}");
    assert!(two["next_cursor"].is_null(), "{two}");
    app.stop();
}

/// All or nothing holds when the request is cut short too: a multipart
/// upload whose second part never finishes gets its 408, and the first
/// part, stored as it streamed in, is taken back.
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_upload_cut_by_the_request_timeout_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_API__REQUEST_TIMEOUT", "3s")]);
    let client = client();
    let first = std::fs::read(corpus_dir().join("mate_Storm.jpg")).unwrap();
    let sha = hex::encode(Sha256::digest(&first));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let request = tokio::spawn(
        client
            .post(app.url("/v1/images"))
            .header("content-type", "multipart/form-data; boundary=cut-short")
            .body(body)
            .send(),
    );
    let mut chunk =
        b"--cut-short\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.jpg\"\r\n\r\n"
            .to_vec();
    chunk.extend_from_slice(&first);
    chunk.extend_from_slice(
        b"\r\n--cut-short\r\nContent-Disposition: form-data; name=\"b\"; filename=\"b.jpg\"\r\n\r\n\xff\xd8\xff",
    );
    tx.send(Ok(chunk)).await.unwrap();
    // The first part is in the lake while the second one hangs.
    let start = std::time::Instant::now();
    while files_under(&dir.path().join("raw")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first part was never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 408);
    drop(tx);
    let start = std::time::Instant::now();
    loop {
        let v: serde_json::Value = client
            .get(app.url(&format!("/v1/images?sha256={sha}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["images"].as_array().unwrap().is_empty()
            && files_under(&dir.path().join("raw")).is_empty()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a part of the timed-out upload was kept: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop();
    let (ok, out, err) = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_files_are_quarantined_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[("IMGPIPE_PROCESSOR__MAX_PIXELS", "5000000")]);
    let client = client();
    let jpeg = std::fs::read(corpus_dir().join("mate_Aqua.jpg")).unwrap();
    let png = std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap();
    let mut bad_crc = png.clone();
    let idat = bad_crc.windows(4).position(|w| w == b"IDAT").unwrap();
    bad_crc[idat + 100] ^= 0x55;
    let cases = [
        (jpeg[..jpeg.len() / 2].to_vec(), "truncated", "FFD9"),
        (png[..png.len() - 12].to_vec(), "truncated", "IEND"),
        (bad_crc, "corrupt", "CRC"),
        (
            std::fs::read(corpus_dir().join("lomiri16_seeding_by_Clements_Engelhardt.jpg"))
                .unwrap(),
            "too_large",
            "pixels",
        ),
    ];
    for (bytes, reason, mention) in cases {
        let (status, body) = upload(&client, &app, bytes).await;
        assert_eq!(status, 202, "{body}");
        let v = wait_final(
            &client,
            &app,
            body["id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(v["status"], "quarantined", "{v}");
        let why = v["reason"].as_str().unwrap();
        assert!(
            why.starts_with(reason) && why.contains(mention),
            "{reason}/{mention}: {why}"
        );
    }
    // The pipeline keeps going after bad input.
    let (_, body) = upload(&client, &app, jpeg).await;
    let v = wait_final(
        &client,
        &app,
        body["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(v["status"], "processed");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_public_bind_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(dir.path(), &[]);
    let resp = client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let png = std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap();
    let (_, body) = upload(&client(), &app, png).await;
    wait_final(
        &client(),
        &app,
        body["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let metrics = metrics(&client(), &app).await;
    for name in [
        "imgpipe_uploads_total 1",
        "imgpipe_images_processed_total 1",
        "imgpipe_lake_oldest_object_age_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    drop(app);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(["up", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_keys"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[processor]\nthumbnail_px = 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(["up", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("thumbnail_px"));
}
