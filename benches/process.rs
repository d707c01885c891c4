//! Processing throughput against libvips' `vipsthumbnail`, measured in the
//! same run on the same files: `cargo bench --bench process`.
//!
//! Both go from the files on disk to 256 px JPEGs on disk. imgpipe does
//! more per image than vipsthumbnail (strict structure checks, SHA-256,
//! perceptual hash, EXIF, the script's preview), so the ratio is
//! conservative. Both use every core: imgpipe one image per rayon thread,
//! vips one process per core.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use processor::analyze::{AnalyzeLimits, analyze};
use rayon::prelude::*;

mod common;

use common::corpus;

const ROUNDS: usize = 3;

fn best_of(rounds: usize, mut run: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let files = corpus();
    let images: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read corpus file"))
        .collect();
    let megapixels: f64 = images
        .iter()
        .filter_map(|b| {
            image::ImageReader::new(std::io::Cursor::new(b))
                .with_guessed_format()
                .ok()?
                .into_dimensions()
                .ok()
        })
        .map(|(w, h)| f64::from(w) * f64::from(h) / 1e6)
        .sum();
    let limits = AnalyzeLimits {
        max_pixels: 100_000_000,
        max_decode_bytes: 1 << 30,
        thumbnail_px: 256,
    };
    let thumbs = tempfile::tempdir().expect("temp dir");
    let ours = best_of(ROUNDS, || {
        files.par_iter().enumerate().for_each(|(i, path)| {
            let bytes = std::fs::read(path).expect("read corpus file");
            let a = analyze(&bytes, &limits).expect("corpus image must process");
            std::fs::write(thumbs.path().join(format!("{i}.jpg")), a.thumbnail_jpeg)
                .expect("write thumbnail");
        });
    });

    // The peer at its best: one vipsthumbnail process per core, each over
    // its share of the files (vips' own threadpool does little for a single
    // shrink-on-load JPEG).
    let out = tempfile::tempdir().expect("temp dir");
    let cores = rayon::current_num_threads();
    let vips = best_of(ROUNDS, || {
        let chunk = files.len().div_ceil(cores);
        let children: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                Command::new("vipsthumbnail")
                    .args(part)
                    .args(["--size", "256", "-o"])
                    .arg(out.path().join("%s.jpg[Q=85]"))
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("vipsthumbnail not found: install libvips-tools")
            })
            .collect();
        for mut child in children {
            let status = child.wait().expect("wait for vipsthumbnail");
            assert!(status.success(), "vipsthumbnail failed: {status}");
        }
    });

    let n = images.len() as f64;
    let ips = |d: Duration| n / d.as_secs_f64();
    println!(
        "corpus: {} images, {megapixels:.1} MP, {} threads",
        images.len(),
        rayon::current_num_threads()
    );
    println!(
        "imgpipe analyze : {:>7.2} images/s  ({:.1} MP/s)",
        ips(ours),
        megapixels / ours.as_secs_f64()
    );
    println!(
        "vipsthumbnail   : {:>7.2} images/s  ({:.1} MP/s)",
        ips(vips),
        megapixels / vips.as_secs_f64()
    );
    println!("ratio imgpipe/vips: {:.2}", ips(ours) / ips(vips));
}
