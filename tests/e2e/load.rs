//! A short load test with a real load generator (Debian's `wrk`): a fixed
//! time of concurrent uploads against `imgpipe up`, then every 202 must end
//! processed (`imgpipe verify`), overload must answer 503/429 rather than
//! grow memory, and peak RSS stays under the bound. Longer runs:
//! `IMGPIPE_LOAD_SECONDS=60 cargo test --test e2e load -- --nocapture`.
#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::common::*;

/// A `/metrics` counter's value (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn sustained_uploads_all_end_processed_within_the_memory_bound() {
    if Command::new("wrk").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
            "wrk is not installed but IMGPIPE_REQUIRE_SERVERS is set"
        );
        eprintln!("skipping: wrk is not installed (run `bash .ci/run`)");
        return;
    }
    let seconds: u64 = std::env::var("IMGPIPE_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(&dir.path().join("lake"), &[]);
    let image = corpus_dir().join("skimage_camera.png");
    // wrk posts the image and counts answers by status.
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            r#"local f = assert(io.open("{}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
-- Each thread counts in its own Lua state; done() reads them back.
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
accepted, refused, other = 0, 0, 0
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1
  elseif status == 503 or status == 429 then refused = refused + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); r = r + t:get("refused"); o = o + t:get("other")
  end
  io.write(string.format("answers 202 %d 503/429 %d other %d\n", a, r, o))
  io.write(string.format("latency p50 %d p99 %d us\n", latency:percentile(50), latency:percentile(99)))
end
"#,
            image.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("wrk")
        .args(["-t2", "-c8", &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(app.url("/v1/images"))
        .output()
        .unwrap();
    let upload_time = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let answers: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("answers 202 "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [accepted, _refused, other] = answers[..] else {
        panic!("no answer counts from wrk:\n{text}")
    };
    assert_eq!(
        other, 0,
        "answers other than 202/503/429 under load:\n{text}"
    );
    assert!(accepted > 0, "{text}");

    // Every 202 ends processed.
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(300);
    let drained = loop {
        let m = metrics(&client, &app).await;
        let done = counter(&m, "imgpipe_images_processed_total")
            + counter(&m, "imgpipe_images_quarantined_total");
        // wrk stops counting at its deadline; uploads it cut short may
        // still have been accepted: the server's count is the one to meet.
        let stored = counter(&m, "imgpipe_uploads_total");
        assert!(stored >= accepted, "{stored} < {accepted}");
        // …unless it was taken back (wrk's own cut-off abandons requests).
        if done >= stored - counter(&m, "imgpipe_uploads_withdrawn_total") {
            break started.elapsed();
        }
        assert!(Instant::now() < deadline, "{done} of {accepted} finished");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let peak = peak_rss(app.child.id());
    let m = metrics(&client, &app).await;
    assert_eq!(counter(&m, "imgpipe_images_quarantined_total"), 0, "{m}");
    app.stop();
    let lake = dir.path().join("lake");
    let (ok, out, err) = cli(&["verify", "--data-dir", lake.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let kept =
        counter(&m, "imgpipe_uploads_total") - counter(&m, "imgpipe_uploads_withdrawn_total");
    assert!(out.contains(&format!("{kept} processed")), "{out}");
    let upload_rate = accepted as f64 / upload_time.as_secs_f64();
    let process_rate = accepted as f64 / drained.as_secs_f64();
    eprintln!(
        "load: {accepted} uploads in {:.1}s ({upload_rate:.0}/s), all processed after {:.1}s \
         ({process_rate:.0}/s); ratio upload/process {:.2}; peak RSS {} MiB\n{text}",
        upload_time.as_secs_f64(),
        drained.as_secs_f64(),
        upload_rate / process_rate,
        peak >> 20
    );
    assert!(peak < 3 << 29, "peak RSS {} MiB", peak >> 20);
}
