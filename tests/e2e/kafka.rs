//! The Kafka bridge and distributed processing against a real
//! Kafka-protocol broker (tansu, started by `.ci/run`): all three message
//! forms from a standard client, dead letters, a crash before the commit,
//! two processors sharing the events topic, and topic retention checks.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use lake::Store;

use crate::common::{self, Imgpipe};

mod restart;
mod secure;
mod telemetry;

/// The local broker from `.ci/run`; `None` skips (fails under CI).
pub(crate) fn brokers() -> Option<String> {
    match std::env::var("IMGPIPE_TEST_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
                "IMGPIPE_TEST_KAFKA is not set but IMGPIPE_REQUIRE_SERVERS is"
            );
            eprintln!("skipping: IMGPIPE_TEST_KAFKA is not set (run `bash .ci/run`)");
            None
        }
    }
}

/// Unique topic and group names, so tests never share broker state.
fn names(tag: &str) -> (String, String) {
    let unique = common::unique_bucket(tag);
    (format!("{unique}-images"), format!("{unique}-bridge"))
}

/// The env that points imgpipe at the broker, topic and its own groups.
fn kafka_env<'a>(brokers: &'a str, topic: &'a str, group: &'a str) -> Vec<(String, String)> {
    vec![
        ("IMGPIPE_KAFKA_BROKERS".into(), brokers.into()),
        ("IMGPIPE_KAFKA_TOPIC".into(), topic.into()),
        ("IMGPIPE_KAFKA_GROUP".into(), group.into()),
        ("IMGPIPE_KAFKA_DLQ_TOPIC".into(), format!("{topic}.dlq")),
        (
            "IMGPIPE_KAFKA_EVENTS_TOPIC".into(),
            format!("{topic}.received"),
        ),
        (
            "IMGPIPE_KAFKA__PROCESS_GROUP".into(),
            format!("{group}-process"),
        ),
        ("IMGPIPE_PROCESSOR__FLUSH_INTERVAL".into(), "1s".into()),
    ]
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The customer's topic, with retention that fits the period (or not).
async fn create_topic(brokers: &str, topic: &str, partitions: i32, retention_ms: Option<&str>) {
    create_topic_with(
        ClientConfig::new().set("bootstrap.servers", brokers),
        topic,
        partitions,
        retention_ms,
    )
    .await
}

async fn create_topic_with(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    retention_ms: Option<&str>,
) {
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    if let Some(ms) = retention_ms {
        t = t.set("retention.ms", ms).set("segment.ms", "3600000");
    }
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let results = admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

const SIX_DAYS_MS: &str = "518400000";

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap()
}

async fn produce(p: &FutureProducer, topic: &str, key: Option<&str>, value: &[u8]) {
    produce_at(p, topic, key, value, None).await;
}

/// A message stamped `timestamp_ms` (its `CreateTime`), or now.
async fn produce_at(
    p: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
    timestamp_ms: Option<i64>,
) {
    let mut record = FutureRecord::<str, [u8]>::to(topic).payload(value);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(ts) = timestamp_ms {
        record = record.timestamp(ts);
    }
    p.send(record, Duration::from_secs(30)).await.unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A corpus photo with its bytes.
struct Img {
    name: String,
    path: String,
    bytes: Vec<u8>,
    width: u32,
}

/// Up to `n` corpus photos smaller than `max_bytes`.
fn photos(max_bytes: usize, n: usize) -> Vec<Img> {
    common::corpus()
        .into_iter()
        .map(|c| Img {
            bytes: std::fs::read(&c.path).unwrap(),
            path: c.path.to_string_lossy().into_owned(),
            name: c.file,
            width: c.width,
        })
        .filter(|i| i.bytes.len() < max_bytes)
        .take(n)
        .collect()
}

/// `GET /v1/images?sha256=`, polled until `done` accepts the one image
/// with these bytes (there is never more than one).
async fn wait_for_image(
    client: &reqwest::Client,
    app: &Imgpipe,
    sha: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = client
            .get(app.url(&format!("/v1/images?sha256={sha}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let images = v["images"].as_array().unwrap();
        assert!(images.len() <= 1, "more than one image for {sha}: {v}");
        if let Some(img) = images.first()
            && done(img)
        {
            return img.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no such image for {sha}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_one_final(client: &reqwest::Client, app: &Imgpipe, sha: &str) -> Value {
    wait_for_image(client, app, sha, common::is_final).await
}

fn python() -> Option<String> {
    std::env::var("IMGPIPE_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
}

/// The documented example producer, a standard client (confluent-kafka).
fn produce_py(brokers: &str, topic: &str, args: &[&str]) {
    let python = python().expect("IMGPIPE_TEST_PYTHON");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/produce.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--brokers", brokers, "--topic", topic])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "produce.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn images_in_all_three_forms_reach_processed_once() {
    let Some(brokers) = brokers() else { return };
    let Some((claims, claims_cfg)) = common::s3_lake("claims", "").await else {
        return;
    };
    if python().is_none() {
        assert!(std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none());
        return;
    }
    let (topic, group) = names("forms");
    create_topic(&brokers, &topic, 2, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = kafka_env(&brokers, &topic, &group);
    env.push((
        "IMGPIPE_KAFKA__CLAIM_CHECK_ENDPOINT".into(),
        claims_cfg.endpoint.clone().unwrap(),
    ));
    env.push((
        "IMGPIPE_KAFKA__CLAIM_CHECK_ALLOW".into(),
        format!("{}/incoming/", claims_cfg.bucket),
    ));
    let small = photos(4 << 20, 6);
    let (raw, envelope, claim) = (&small[0..3], &small[3..5], &small[5]);
    let paths = |imgs: &[Img]| imgs.iter().map(|c| c.path.clone()).collect::<Vec<_>>();
    let raw_paths = paths(raw);
    let raw_args: Vec<&str> = raw_paths.iter().map(String::as_str).collect();
    // Produced before the bridge ever ran: a new group starts at the earliest offset.
    produce_py(&brokers, &topic, &raw_args);
    let app = Imgpipe::start(&dir.path().join("lake"), &as_refs(&env));
    let env_paths = paths(envelope);
    let mut env_args = vec!["--form", "envelope"];
    env_args.extend(env_paths.iter().map(String::as_str));
    produce_py(&brokers, &topic, &env_args);
    // Claim-check: the producer put the image in its own bucket.
    claims
        .put(
            "incoming/big.img",
            bytes::Bytes::from(claim.bytes.clone()),
            &lake::store::PutOptions::default(),
        )
        .await
        .unwrap();
    let uri = format!("s3://{}/incoming/big.img", claims_cfg.bucket);
    produce_py(&brokers, &topic, &["--form", "claim-check", &uri]);
    // A producer retry of the first image: same key, same bytes.
    produce_py(&brokers, &topic, &raw_args[..1]);

    let client = common::client();
    let all: Vec<&Img> = raw.iter().chain(envelope).chain([claim]).collect();
    for img in &all {
        let status = wait_one_final(&client, &app, &sha256(&img.bytes)).await;
        assert_eq!(status["status"], "processed", "{}: {status}", img.name);
        assert_eq!(status["metadata"]["source"], "kafka");
        assert_eq!(status["metadata"]["width"], img.width, "{}", img.name);
    }
    // The producer's object is theirs: left in place.
    assert!(claims.exists("incoming/big.img").await.unwrap());
    // Lag comes from librdkafka's statistics, every 5 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let m = common::metrics(&client, &app).await;
        if m.contains("imgpipe_kafka_consumer_lag{") || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        metrics.contains("imgpipe_kafka_messages_total 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("imgpipe_kafka_images_total{delivery=\"redelivered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "imgpipe_kafka_consumer_lag{{group=\"bridge\",topic=\"{topic}\",partition=\"0\"}} 0"
        )),
        "{metrics}"
    );
    app.stop();
    let rows = common::parquet_rows(&dir.path().join("lake"));
    assert_eq!(rows.len(), all.len());
    let refs: HashSet<_> = rows.iter().filter_map(|r| r.source_ref.clone()).collect();
    assert!(
        refs.iter().all(|r| r.starts_with(&format!("{topic}/"))),
        "{refs:?}"
    );
}

/// A dead letter as read back: its reason header, key and value.
struct DeadLetter {
    reason: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
        f.debug_struct("DeadLetter")
            .field("reason", &self.reason)
            .field("key", &self.key.as_deref().map(show))
            .field(
                "value",
                &format!("{} bytes: {}", self.value.len(), show(&self.value)),
            )
            .finish()
    }
}

/// Every message on `topic`, until `n` arrived.
async fn dead_letters(brokers: &str, topic: &str, n: usize) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} dead letters: {out:?}", out.len()))
            .unwrap();
        let reason = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "imgpipe-reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        out.push(DeadLetter {
            reason,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_go_to_the_dead_letter_topic_and_never_block() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("dlq");
    // One partition: the good image after the bad ones proves nothing blocks.
    create_topic(&brokers, &topic, 1, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = kafka_env(&brokers, &topic, &group);
    env.push(("IMGPIPE_KAFKA__MAX_IMAGE_BYTES".into(), "300000".into()));
    // Claim-checks point at a port where nothing listens.
    env.push((
        "IMGPIPE_KAFKA__CLAIM_CHECK_ENDPOINT".into(),
        "http://127.0.0.1:9".into(),
    ));
    env.push(("AWS_ACCESS_KEY_ID".into(), "x".into()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), "y".into()));
    let app = Imgpipe::start(&dir.path().join("lake"), &as_refs(&env));

    let big = photos(usize::MAX, 40)
        .into_iter()
        .find(|c| c.bytes.len() > 300_000)
        .unwrap();
    let good = photos(300_000, 1).pop().unwrap();
    let p = producer(&brokers);
    produce(&p, &topic, Some("text"), b"hello, not an image").await;
    produce(&p, &topic, Some("big"), &big.bytes).await;
    produce(
        &p,
        &topic,
        Some("envelope"),
        br#"{"key": "x", "data_base64": "#,
    )
    .await;
    produce(
        &p,
        &topic,
        Some("claim"),
        br#"{"s3_uri": "s3://nobody/nothing.jpg"}"#,
    )
    .await;
    produce(
        &p,
        &topic,
        Some("heic"),
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
    )
    .await;
    // A good image that waited past the retention period in its topic.
    let expired = photos(300_000, 2).pop().unwrap();
    let eight_days_ago = chrono::Utc::now() - chrono::Duration::days(8);
    produce_at(
        &p,
        &topic,
        Some("old"),
        &expired.bytes,
        Some(eight_days_ago.timestamp_millis()),
    )
    .await;
    produce(&p, &topic, Some("good"), &good.bytes).await;

    let client = common::client();
    let status = wait_one_final(&client, &app, &sha256(&good.bytes)).await;
    assert_eq!(status["status"], "processed");
    let got = dead_letters(&brokers, &format!("{topic}.dlq"), 6).await;
    // Each dead letter says why and where the original is, and carries
    // nothing of it: the broker keeps a dead letter another retention.ms
    // from when it is written, so a copy would outlive the original.
    let mut reasons = Vec::new();
    for dl in &got {
        assert_eq!(dl.key, None, "{dl:?}");
        let value: Value = serde_json::from_slice(&dl.value)
            .unwrap_or_else(|e| panic!("dead letter value is not the JSON reason ({e}): {dl:?}"));
        assert_eq!(value["reason"], dl.reason.as_str(), "{value}");
        let source = value["source"].as_str().unwrap_or_default();
        assert!(source.starts_with(&format!("{topic}/0/")), "{value}");
        assert!(dl.value.len() < 1024, "{} bytes: {value}", dl.value.len());
        reasons.push(dl.reason.clone());
    }
    reasons.sort();
    let want = [
        "broken_envelope",
        "claim_check_refused",
        "expired",
        "not_an_image",
        "too_big",
        "unsupported_format",
    ];
    assert_eq!(reasons, want);
    let metrics = common::metrics(&client, &app).await;
    for reason in &want {
        assert!(
            metrics.contains(&format!(
                "imgpipe_kafka_dead_letters_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
    app.stop();
    // Nothing of the refused messages is in the lake, the expired image's
    // bytes included.
    assert_eq!(common::parquet_rows(&dir.path().join("lake")).len(), 1);
    let raw = common::files_under(&dir.path().join("lake").join("raw"));
    assert_eq!(raw.len(), 1, "{raw:?}");
}

/// A Kafka image's retention period starts when its message arrived (the
/// message's timestamp), not when the bridge got to it; a timestamp in the
/// future never lengthens it. Its metadata row leaves the Parquet file it
/// shares with a younger image's row when it expires, not with that row.
#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_image_expires_seven_days_after_its_message_arrived() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("arrival");
    create_topic(&brokers, &topic, 1, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let env = kafka_env(&brokers, &topic, &group);
    let app = Imgpipe::start(&lake_dir, &as_refs(&env));
    let mut imgs = photos(2 << 20, 3);
    let (first, second, ahead) = (imgs.remove(0), imgs.remove(0), imgs.remove(0));
    let now = chrono::Utc::now();
    // Two images that waited in the topic, in one hour three days ago.
    let hour = lake::layout::hour_start(now - chrono::Duration::days(3));
    let first_at = (hour + chrono::Duration::minutes(5)).timestamp_millis();
    let second_at = (hour + chrono::Duration::minutes(35)).timestamp_millis();
    let p = producer(&brokers);
    produce_at(&p, &topic, Some("first"), &first.bytes, Some(first_at)).await;
    produce_at(&p, &topic, Some("second"), &second.bytes, Some(second_at)).await;
    let two_days_ahead = (now + chrono::Duration::days(2)).timestamp_millis();
    produce_at(
        &p,
        &topic,
        Some("ahead"),
        &ahead.bytes,
        Some(two_days_ahead),
    )
    .await;

    let client = common::client();
    let ms = |v: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(v[field].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{field} ({e}): {v}"))
            .timestamp_millis()
    };
    let got = wait_one_final(&client, &app, &sha256(&first.bytes)).await;
    assert_eq!(got["status"], "processed", "{got}");
    assert_eq!(ms(&got, "received_at"), first_at, "{got}");
    assert_eq!(ms(&got, "expires_at"), first_at + 7 * 86_400_000, "{got}");
    let first_id = got["id"].as_str().unwrap().to_owned();
    let got = wait_one_final(&client, &app, &sha256(&second.bytes)).await;
    assert_eq!(ms(&got, "received_at"), second_at, "{got}");
    let second_id = got["id"].as_str().unwrap().to_owned();
    let got = wait_one_final(&client, &app, &sha256(&ahead.bytes)).await;
    let received = ms(&got, "received_at");
    assert!(
        received >= now.timestamp_millis() && received <= chrono::Utc::now().timestamp_millis(),
        "a future timestamp must be clamped to the time it was read: {got}"
    );
    app.stop();
    // The images sit in the partition of the hour they arrived in, where
    // the sweeper looks for them.
    let raw = common::files_under(&lake_dir.join("raw"));
    let partition = hour.format("dt=%Y-%m-%d/hr=%H").to_string();
    assert_eq!(
        raw.iter().filter(|p| p.contains(&partition)).count(),
        2,
        "{partition}: {raw:?}"
    );

    // The sweeper closes the settled hour: its two rows share one file.
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", lake_dir.to_str().unwrap()]);
        common::cli(&all)
    };
    let settled = (hour + chrono::Duration::hours(2)).to_rfc3339();
    let (ok, out, err) = cli(&["sweep", "--now", &settled]);
    assert!(ok, "{out}{err}");
    let metadata = common::files_under(&lake_dir.join("metadata"));
    let in_hour: Vec<_> = metadata.iter().filter(|p| p.contains(&partition)).collect();
    assert_eq!(in_hour.len(), 1, "{metadata:?}");
    // A minute after the first expired: the audit names its row, the sweep
    // takes it out, the second stays.
    let past_first = chrono::DateTime::from_timestamp_millis(first_at + 7 * 86_400_000 + 60_000)
        .unwrap()
        .to_rfc3339();
    let (ok, out, err) = cli(&["audit", "--now", &past_first]);
    assert!(!ok, "the audit passed on an expired row: {out}{err}");
    assert!(out.contains(&format!("row of {first_id}")), "{out}");
    let (ok, out, err) = cli(&["sweep", "--now", &past_first]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&["audit", "--now", &past_first]);
    assert!(ok, "{out}{err}");
    let ids: HashSet<String> = common::parquet_rows(&lake_dir)
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert!(!ids.contains(&first_id), "{ids:?}");
    assert!(ids.contains(&second_id), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_the_commit_redelivers_without_a_second_image() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("crash");
    create_topic(&brokers, &topic, 2, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let env = kafka_env(&brokers, &topic, &group);
    // Nothing is committed before the crash, and the script holds every
    // image in processing, so the crash leaves them all unfinished.
    let mut no_commits = env.clone();
    no_commits.push(("IMGPIPE_KAFKA__COMMIT_INTERVAL".into(), "1h".into()));
    let config = dir.path().join("slow-script.toml");
    std::fs::write(
        &config,
        "[processor.script]\ncommand = [\"sh\", \"-c\", \"sleep 60\", \"slow\"]\ntimeout = \"120s\"\n",
    )
    .unwrap();
    let app = Imgpipe::start_with_args(
        &lake_dir,
        &as_refs(&no_commits),
        &["--config", config.to_str().unwrap()],
    );

    let images = photos(2 << 20, 8);
    let p = producer(&brokers);
    for (i, img) in images.iter().enumerate() {
        // Half keyed, half deduplicated by their position.
        let key = (i % 2 == 0).then(|| img.name.clone());
        produce(&p, &topic, key.as_deref(), &img.bytes).await;
    }
    let client = common::client();
    for img in &images {
        let received = wait_for_image(&client, &app, &sha256(&img.bytes), |_| true).await;
        assert!(!common::is_final(&received), "{received}");
    }
    app.kill_hard();

    // Every message comes again; none makes a second image.
    let app = Imgpipe::start(&lake_dir, &as_refs(&env));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = common::metrics(&client, &app).await;
        if metrics.contains(&format!(
            "imgpipe_kafka_images_total{{delivery=\"redelivered\"}} {}",
            images.len()
        )) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redeliveries not seen: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for img in &images {
        wait_one_final(&client, &app, &sha256(&img.bytes)).await;
    }
    app.stop();
    let rows = common::parquet_rows(&lake_dir);
    let ids: HashSet<_> = rows.iter().map(|r| r.id).collect();
    assert_eq!(rows.len(), images.len());
    // Recovered from the recorded events: where each image came from.
    for r in &rows {
        assert_eq!(r.source, lake::Source::Kafka);
        let position = r.source_ref.as_deref().unwrap_or_default();
        assert!(position.starts_with(&format!("{topic}/")), "{position}");
    }
    assert_eq!(ids.len(), images.len());
    let raws = common::files_under(&lake_dir.join("raw"));
    assert_eq!(raws.len(), images.len(), "{raws:?}");
    let (ok, out, err) = common::cli(&["verify", "--data-dir", lake_dir.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}

/// An `imgpipe` subcommand whose output lines are collected.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The log alone (stderr), without stdout's banners.
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgpipe"));
        cmd.args(args)
            .env("IMGPIPE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        for (stream, is_log) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                false,
            ),
            (Box::new(child.stderr.take().unwrap()), true),
        ] {
            let (lines, log) = (lines.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("  | {line}");
                    if is_log {
                        log.lock().unwrap().push(line.clone());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, lines, log }
    }

    fn wait_for(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
        {
            assert!(start.elapsed() < limit, "no {needle:?} within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, wait, and return everything it printed.
    fn stop(self) -> Vec<String> {
        self.stop_with_log().0
    }

    /// SIGTERM, wait, and return everything it printed, and its log alone.
    fn stop_with_log(mut self) -> (Vec<String>, Vec<String>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exited with {status}");
        std::thread::sleep(Duration::from_millis(200));
        let lines = self.lines.lock().unwrap().clone();
        let log = self.log.lock().unwrap().clone();
        (lines, log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `imgpipe bridge` (which creates the events topic before consuming) and
/// one `imgpipe process` with its partitions, on the lake at `lake`.
fn bridge_and_processor(lake: &str, env: &[(String, String)]) -> (Running, Running) {
    let bridge = Running::start(&["bridge", "--data-dir", lake], env);
    bridge.wait_for("bridge consuming", Duration::from_secs(30));
    (bridge, processor(lake, env))
}

fn processor(lake: &str, env: &[(String, String)]) -> Running {
    let process = Running::start(&["process", "--data-dir", lake], env);
    process.wait_for("partitions assigned", Duration::from_secs(60));
    process
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processors_share_the_event_topic_and_process_each_image_once() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("shared");
    create_topic(&brokers, &topic, 2, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_string_lossy().into_owned();
    let env = kafka_env(&brokers, &topic, &group);

    let (bridge, first) = bridge_and_processor(&lake_arg, &env);
    let second = processor(&lake_arg, &env);

    // The HTTP API in distributed mode publishes to the same events topic.
    let serve = Running::start(
        &["serve", "--data-dir", &lake_arg, "--listen", "127.0.0.1:0"],
        &env,
    );
    serve.wait_for("imgpipe serve: listening on ", Duration::from_secs(30));
    let base = serve
        .lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.strip_prefix("imgpipe serve: listening on ")
                .map(str::to_owned)
        })
        .unwrap();

    let mut images = photos(2 << 20, 17);
    let uploaded = images.pop().unwrap();
    let p = producer(&brokers);
    for img in &images {
        produce(&p, &topic, Some(&img.name), &img.bytes).await;
    }
    let resp = common::client()
        .post(format!("{base}/v1/images"))
        .body(uploaded.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    images.push(uploaded);
    // Done when every image has its row.
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::parquet_rows(&lake).len() < images.len() {
        assert!(Instant::now() < deadline, "not every image processed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let handed: Vec<u64> = [first, second]
        .into_iter()
        .map(|p| {
            let lines = p.stop();
            lines
                .iter()
                .find_map(|l| {
                    l.strip_prefix("imgpipe process: stopped after ")?
                        .strip_suffix(" events")?
                        .parse()
                        .ok()
                })
                .expect("process summary line")
        })
        .collect();
    bridge.stop();
    serve.stop();
    assert!(
        handed.iter().all(|&n| n > 0),
        "one processor got nothing: {handed:?}"
    );
    let rows = common::parquet_rows(&lake);
    let mut per_sha: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        *per_sha.entry(r.sha256.clone()).or_default() += 1;
    }
    let from_kafka = rows
        .iter()
        .filter(|r| r.source == lake::Source::Kafka)
        .count();
    assert_eq!(from_kafka, images.len() - 1);
    assert_eq!(rows.len(), images.len(), "rows: {per_sha:?}");
    for img in &images {
        assert_eq!(per_sha.get(&sha256(&img.bytes)), Some(&1), "{}", img.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_retention_is_checked_at_start_and_by_the_audit() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("retention");
    // The customer's topic keeps messages for the broker default.
    create_topic(&brokers, &topic, 1, None).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_string_lossy().into_owned();
    let env = kafka_env(&brokers, &topic, &group);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["bridge", "--enforce-retention", "--data-dir", &lake_arg]);
    assert_ne!(code, Some(0));
    assert!(err.contains("refusing to run"), "{err}");
    assert!(
        err.contains(&format!("topic {topic}: retention.ms is not set")),
        "{err}"
    );

    let (code, out, _) = run(&["audit", "--data-dir", &lake_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("kafka topic {topic}")), "{out}");
    // The topics imgpipe created itself pass.
    assert!(!out.contains(".dlq"), "{out}");

    let (good, _) = names("retention-ok");
    create_topic(&brokers, &good, 1, Some(SIX_DAYS_MS)).await;
    let mut env_ok = env.clone();
    env_ok.retain(|(k, _)| k != "IMGPIPE_KAFKA_TOPIC");
    env_ok.push(("IMGPIPE_KAFKA_TOPIC".into(), good.clone()));
    let out = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(["audit", "--data-dir", &lake_arg])
        .envs(env_ok.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
}

/// Whoever can write the events topic can forge: an event that points a
/// new id at another image's raw object, and one dated a day ahead (its
/// 7-day clock would start late), are refused by `imgpipe process`.
#[tokio::test(flavor = "multi_thread")]
async fn forged_events_on_the_events_topic_are_refused() {
    let Some(brokers) = brokers() else { return };
    let (topic, group) = names("forged");
    create_topic(&brokers, &topic, 1, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_string_lossy().into_owned();
    let env = kafka_env(&brokers, &topic, &group);
    let (bridge, process) = bridge_and_processor(&lake_arg, &env);

    let img = photos(2 << 20, 1).pop().unwrap();
    let p = producer(&brokers);
    produce(&p, &topic, Some("real"), &img.bytes).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while common::parquet_rows(&lake).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the real image was not processed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let real_raw = format!(
        "raw/{}",
        common::files_under(&lake.join("raw")).pop().unwrap()
    );

    let now = chrono::Utc::now();
    let forged_event = |id: lake::ImageId, raw_key: String| {
        serde_json::json!({
            "id": id, "raw_key": raw_key, "source": "kafka", "source_ref": null,
            "bytes": img.bytes.len(), "sha256": sha256(&img.bytes),
            "content_type": "image/jpeg", "received_at": now,
        })
        .to_string()
    };
    let stolen = lake::ImageId::new(now);
    let future = lake::ImageId::new(now + chrono::Duration::days(1));
    let events_topic = format!("{topic}.received");
    for (id, raw_key) in [
        (stolen, real_raw.clone()),
        (future, lake::layout::raw_key(future)),
    ] {
        let value = forged_event(id, raw_key);
        produce(&p, &events_topic, Some(&id.to_string()), value.as_bytes()).await;
    }
    let refused = || {
        process
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("forged ImageReceived event refused"))
            .count()
    };
    // Refused (logged), or given long enough to have done their harm.
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let refusals = refused();
    process.stop();
    bridge.stop();
    let files = common::files_under(&lake);
    for id in [stolen, future] {
        let naming: Vec<_> = files
            .iter()
            .filter(|f| f.contains(&id.to_string()))
            .collect();
        assert!(naming.is_empty(), "a forged event left {naming:?}");
    }
    assert_eq!(common::parquet_rows(&lake).len(), 1);
    assert_eq!(refusals, 2, "both forged events are logged as refused");
    // As every fault test ends: each image ended exactly once.
    let (ok, out, err) = common::cli(&["verify", "--data-dir", lake.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}

/// Claim-checks are untrusted pointers read with the bridge's credentials:
/// one into the lake's own bucket is refused even when allow-listed, one
/// into a bucket not allowed is refused, and 200 at once into an allowed
/// bucket are each charged the largest image until fetched, so the bridge
/// holds at most `max_inflight_bytes` of them (its peak RSS shows it).
#[tokio::test(flavor = "multi_thread")]
async fn claim_checks_reach_only_allowed_buckets_within_the_budget() {
    let Some(brokers) = brokers() else { return };
    let Some((lake_store, lake_cfg)) = common::s3_lake("cclake", "").await else {
        return;
    };
    let Some((claims, claims_cfg)) = common::s3_lake("ccsrc", "").await else {
        return;
    };
    let (topic, group) = names("claims");
    create_topic(&brokers, &topic, 2, Some(SIX_DAYS_MS)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::s3_config_file(dir.path(), &lake_cfg);
    let mut env = kafka_env(&brokers, &topic, &group);
    env.extend([
        (
            "IMGPIPE_KAFKA__CLAIM_CHECK_ALLOW".to_owned(),
            format!("{},{}", claims_cfg.bucket, lake_cfg.bucket),
        ),
        (
            "IMGPIPE_KAFKA__MAX_IMAGE_BYTES".to_owned(),
            "4194304".to_owned(),
        ),
        (
            "IMGPIPE_KAFKA__MAX_INFLIGHT_BYTES".to_owned(),
            "16777216".to_owned(),
        ),
        (
            "IMGPIPE_PROCESSOR__MAX_INFLIGHT_BYTES".to_owned(),
            "33554432".to_owned(),
        ),
    ]);
    // A lake object the producer would like cloned under a fresh id.
    let img = photos(2 << 20, 40)
        .into_iter()
        .max_by_key(|i| i.bytes.len())
        .unwrap();
    lake_store
        .put(
            "raw/victim",
            bytes::Bytes::from(img.bytes.clone()),
            &Default::default(),
        )
        .await
        .unwrap();
    claims
        .put(
            "big.jpg",
            bytes::Bytes::from(img.bytes.clone()),
            &Default::default(),
        )
        .await
        .unwrap();

    let bridge = Running::start(&["bridge", "--config", config.to_str().unwrap()], &env);
    bridge.wait_for("bridge consuming", Duration::from_secs(30));
    let p = producer(&brokers);
    let claim = |bucket: &str, key: &str| format!(r#"{{"s3_uri": "s3://{bucket}/{key}"}}"#);
    produce(
        &p,
        &topic,
        Some("lake"),
        claim(&lake_cfg.bucket, "raw/victim").as_bytes(),
    )
    .await;
    produce(
        &p,
        &topic,
        Some("foreign"),
        claim("somebody-else", "x.jpg").as_bytes(),
    )
    .await;
    // A key S3 (or we) refuse is unreachable for good, not retried forever.
    produce(
        &p,
        &topic,
        Some("invalid"),
        claim(&claims_cfg.bucket, "a//b").as_bytes(),
    )
    .await;
    const BURST: usize = 200;
    let burst = claim(&claims_cfg.bucket, "big.jpg");
    let sends: Vec<_> = (0..BURST)
        .map(|i| {
            let key = format!("burst-{i}");
            let record = FutureRecord::<str, [u8]>::to(&topic)
                .key(&key)
                .payload(burst.as_bytes());
            p.send_result(record).unwrap()
        })
        .collect();
    for s in sends {
        s.await.unwrap().unwrap();
    }
    // Dead letters say why and where, not what: told apart by their detail.
    let mut got: Vec<(String, String)> = dead_letters(&brokers, &format!("{topic}.dlq"), 3)
        .await
        .into_iter()
        .map(|dl| {
            let value: Value = serde_json::from_slice(&dl.value).unwrap();
            (
                dl.reason,
                value["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    got.sort();
    let reasons: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "claim_check_refused",
            "claim_check_refused",
            "claim_check_unreachable"
        ],
        "{got:?}"
    );
    for (i, names) in ["raw/victim", "somebody-else", "a//b"].iter().enumerate() {
        assert!(
            got.iter().any(|(_, detail)| detail.contains(names)),
            "no dead letter {i} names {names}: {got:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let raws = lake_store.list("raw/dt=").await.unwrap().len();
        if raws == BURST {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{raws} of {BURST} claim-checks stored"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let peak = common::peak_rss(bridge.child.id());
    bridge.stop();
    // 200 × the image would be ~{BURST × size}; the budget allows 16 MiB of
    // images in flight, plus the process itself.
    let unbounded = (BURST * img.bytes.len()) as u64;
    eprintln!(
        "bridge peak RSS {} MiB for {BURST} claim-checks",
        peak >> 20
    );
    assert!(
        peak < 160 << 20,
        "bridge peak RSS {} MiB (unbounded would be ≥ {} MiB)",
        peak >> 20,
        unbounded >> 20
    );
}
