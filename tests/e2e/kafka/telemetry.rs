//! Every long-running mode answers `/metrics` and `/healthz` on its
//! telemetry listener (`[telemetry] listen`), and `--log-format json`
//! writes one JSON object per line carrying the typed events alarms
//! match on (`event = "dead_letter"`).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Running, brokers, create_topic, kafka_env, names, photos, produce, producer};
use crate::common;

/// The port `running` bound its telemetry listener to (asked for port 0,
/// so no port is found free and then lost to another process).
fn telemetry_port(running: &Running) -> u16 {
    running.wait_for("telemetry: /metrics", Duration::from_secs(60));
    let lines = running.lines.lock().unwrap().clone();
    lines
        .iter()
        .filter(|l| l.contains("telemetry: /metrics"))
        .find_map(|l| {
            let rest = &l[l.find("127.0.0.1:")? + "127.0.0.1:".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no telemetry address logged: {lines:?}"))
}

/// `/metrics` of the listener at `port`, polled until it shows `needle`.
async fn metrics_showing(port: u16, needle: &str) -> String {
    let client = common::client();
    let start = Instant::now();
    loop {
        // Bounded whether the listener answers or not.
        let text = match client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("(no answer: {e})"),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {needle} at :{port}/metrics: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn healthy(port: u16) {
    let r = common::client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({ "status": "ok" }));
}

fn with_telemetry(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.push(("IMGPIPE_TELEMETRY__LISTEN".into(), "127.0.0.1:0".into()));
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_process_and_sweep_answer_metrics_and_log_json() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("telemetry");
    create_topic(&brokers, &topic, 1, Some(super::SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().to_str().unwrap().to_owned();
    let env = kafka_env(&brokers, &topic, &group);
    let bridge = Running::start(
        &["bridge", "--data-dir", &lake, "--log-format", "json"],
        &with_telemetry(&env),
    );
    bridge.wait_for("bridge consuming", Duration::from_secs(30));
    let process = Running::start(&["process", "--data-dir", &lake], &with_telemetry(&env));
    process.wait_for("partitions assigned", Duration::from_secs(60));
    let sweep = Running::start(&["sweep", "--data-dir", &lake], &with_telemetry(&env));
    let (bridge_port, process_port, sweep_port) = (
        telemetry_port(&bridge),
        telemetry_port(&process),
        telemetry_port(&sweep),
    );

    let p = producer(&brokers);
    produce(&p, &topic, Some("photo"), &photos(4 << 20, 1)[0].bytes).await;
    produce(&p, &topic, Some("text"), b"hello, not an image").await;

    let bridge_metrics = metrics_showing(bridge_port, "imgpipe_kafka_dead_letters_total").await;
    assert!(
        bridge_metrics.contains("# HELP imgpipe_kafka_messages_total"),
        "{bridge_metrics}"
    );
    metrics_showing(process_port, "imgpipe_images_processed_total 1").await;
    metrics_showing(sweep_port, "imgpipe_sweep_objects_purged_total").await;
    for port in [bridge_port, process_port, sweep_port] {
        healthy(port).await;
    }

    let (lines, log) = bridge.stop_with_log();
    process.stop();
    sweep.stop();
    // Every log line of the bridge is JSON; the dead letter is a typed event.
    let logs: Vec<Value> = log
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"))
        })
        .collect();
    assert!(logs.len() > 2, "{lines:?}");
    let dead_letter = logs
        .iter()
        .find(|l| l["fields"]["event"] == "dead_letter")
        .unwrap_or_else(|| panic!("no dead_letter event: {lines:?}"));
    assert_eq!(dead_letter["level"], "WARN");
    assert_eq!(
        dead_letter["fields"]["reason"], "not_an_image",
        "{dead_letter}"
    );
}
