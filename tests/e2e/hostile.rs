//! Hostile inputs, made by the test: truncations at many offsets, empty
//! bodies, markup, polyglots, garbage EXIF, headers that declare gigabytes.
//! Each gets a clear 4xx (JSON) or ends quarantined with a reason — never a
//! 5xx, never a crash — and the process stays within its memory bound.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A PNG whose IHDR declares `w`×`h` RGBA at `depth` bits, then one tiny
/// IDAT of zlib-compressed zeros and IEND: a decompression bomb's header.
fn png_declaring(w: u32, h: u32, depth: u8) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", b"\x78\x9c\x03\x00\x00\x00\x00\x01");
    chunk(&mut png, b"IEND", b"");
    png
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A JPEG with an APP1 "Exif" segment of garbage after its SOI.
fn jpeg_with_garbage_exif(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let garbage: Vec<u8> = (0..60_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut app1 = b"Exif\0\0II*\0\xff\xff\xff\x7f".to_vec();
    app1.extend_from_slice(&garbage);
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_get_clear_answers_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(&dir.path().join("lake"), &[]);
    let client = client();
    let jpeg = std::fs::read(corpus_dir().join("mate_Storm.jpg")).unwrap();
    let png = std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap();
    let webp = std::fs::read(corpus_dir().join("webp_mate_GreenMeadow.webp")).unwrap();

    let mut inputs: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        (
            "svg".into(),
            br#"<svg xmlns="http://www.w3.org/2000/svg"/>"#.to_vec(),
        ),
        (
            "html".into(),
            b"<!doctype html><script>alert(1)</script>".to_vec(),
        ),
        ("zeros".into(), vec![0u8; 4096]),
        ("png bomb 60000^2".into(), png_declaring(60_000, 60_000, 8)),
        ("png bomb 16-bit".into(), png_declaring(12_000, 12_000, 16)),
        ("garbage exif".into(), jpeg_with_garbage_exif(&jpeg)),
    ];
    // A polyglot: a JPEG with markup after its end.
    let mut polyglot = jpeg.clone();
    polyglot.extend_from_slice(b"<html><body>hi</body></html>");
    inputs.push(("polyglot".into(), polyglot));
    for (name, bytes) in [("jpeg", &jpeg), ("png", &png), ("webp", &webp)] {
        for i in 1..12 {
            let at = bytes.len() * i / 12;
            inputs.push((format!("{name} cut at {at}"), bytes[..at].to_vec()));
        }
        inputs.push((format!("{name} cut at 3"), bytes[..3].to_vec()));
    }

    let mut accepted = Vec::new();
    for (name, bytes) in &inputs {
        let resp = client
            .post(app.url("/v1/images"))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            202 => accepted.push((name.clone(), body["id"].as_str().unwrap().to_owned())),
            400..=499 => assert!(body["error"].is_string(), "{name}: {status} {body}"),
            _ => panic!("{name}: {status} {body}"),
        }
    }
    assert!(
        accepted.len() > 30,
        "most inputs look like images: {accepted:?}"
    );
    for (name, id) in &accepted {
        let v = wait_final(&client, &app, id, Duration::from_secs(120)).await;
        match v["status"].as_str() {
            Some("quarantined") => {
                let why = v["reason"].as_str().unwrap();
                assert!(
                    why.contains(": "),
                    "{name}: a reason names the problem: {why}"
                );
            }
            Some("processed") => assert!(
                name == "polyglot" || name == "garbage exif",
                "{name} was processed as if whole: {v}"
            ),
            _ => panic!("{name}: {v}"),
        }
    }
    let bombs: Vec<_> = accepted
        .iter()
        .filter(|(n, _)| n.contains("bomb"))
        .collect();
    for (name, id) in bombs {
        let v = status(&client, &app, id).await;
        assert!(
            v["reason"].as_str().unwrap().starts_with("too_large"),
            "{name}: {v}"
        );
    }
    let peak = peak_rss(app.child.id());
    eprintln!(
        "imgpipe peak RSS {} MiB over {} hostile inputs",
        peak >> 20,
        inputs.len()
    );
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
    let (ok, out, err) = cli(&[
        "verify",
        "--data-dir",
        dir.path().join("lake").to_str().unwrap(),
    ]);
    app.stop();
    assert!(ok, "{out}{err}");
}
