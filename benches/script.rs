//! Customer-script throughput, per-image mode against stream mode, on the
//! same images in the same run: `cargo bench --bench script`.
//!
//! Runs `scripts/example.py` through the processor's own runner (with its
//! process groups, limits and output collection) on every corpus image's
//! preview, one script slot per core.

use std::{path::PathBuf, sync::Arc, time::Instant};

mod common;

use processor::{ScriptConfig, ScriptMode};
use processor::{
    analyze::{AnalyzeLimits, analyze},
    script::{ScriptInput, ScriptRunner},
};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    let limits = AnalyzeLimits {
        max_pixels: 100_000_000,
        max_decode_bytes: 1 << 30,
        thumbnail_px: 256,
    };
    for path in common::corpus() {
        let bytes = std::fs::read(path).expect("read");
        if let Ok(a) = analyze(&bytes, &limits) {
            inputs.push((bytes, a));
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let example = root.join("scripts/example.py").display().to_string();
    let mut results = Vec::new();
    for (mode, extra) in [
        (ScriptMode::PerImage, None),
        (ScriptMode::Stream, Some("--stream")),
    ] {
        let mut command = vec!["python3".to_owned(), example.clone()];
        command.extend(extra.map(str::to_owned));
        // As a config file would say it; every other setting (the sandbox
        // included) at its default.
        let cfg: ScriptConfig = serde_json::from_value(serde_json::json!({
            "command": command,
            "mode": if mode == ScriptMode::Stream { "stream" } else { "per-image" },
            "timeout": "60s",
            "concurrency": cores,
            "env": ["PATH"],
            "retries": 0,
        }))
        .expect("script config");
        processor::script::check_sandbox(&cfg).expect("the script sandbox");
        let runner = Arc::new(ScriptRunner::new(&cfg, cores));
        // Warm up (starts the stream workers), then time two passes.
        let pass = |runner: Arc<ScriptRunner>| {
            runtime.block_on(async {
                let tasks = inputs.iter().map(|(bytes, a)| {
                    let runner = runner.clone();
                    async move {
                        let input = ScriptInput {
                            id: lake::ImageId::new(chrono::Utc::now()),
                            image: bytes,
                            extension: a.format.name(),
                            preview_ppm: &a.preview_ppm,
                            metadata: serde_json::json!({ "format": a.format.name() }),
                        };
                        runner
                            .run(&input)
                            .await
                            .expect("example script must succeed");
                    }
                });
                futures::future::join_all(tasks).await;
            });
        };
        pass(runner.clone());
        let start = Instant::now();
        pass(runner.clone());
        pass(runner);
        let ips = (2 * inputs.len()) as f64 / start.elapsed().as_secs_f64();
        println!("{mode:?}: {ips:.1} images/s");
        results.push(ips);
    }
    println!("ratio stream/per-image: {:.2}", results[1] / results[0]);
}
