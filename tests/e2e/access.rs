//! What each deployed mode asks of the lake, against what
//! `lake::access` declares for it (and so what its task role grants): the
//! mode's real code, in this process, on a counting store over a
//! filesystem lake, driven through every path it has in production. Both
//! ways: no request the declaration does not allow, and no declared
//! (operation, area) the mode never uses.
//!
//! Races with other processes (an erasure landing while the bridge or the
//! processor writes, a peer bridge's earlier record) are staged with
//! [`Meanwhile`]: right after one chosen write of the mode under test, it
//! writes what the other process would have, straight to the lake and
//! uncounted.

use std::{
    collections::{BTreeSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use lake::{
    Delivery, EventSource, FixedClock, ImageId, ImageReceived, Layout, SharedStore, Source, Store,
    StoreError, SystemClock,
    access::{self, Access, Mode, Op},
    admission::Admission,
    index, layout,
    records::Manifest,
    schema::testing::sample_row,
    store::{FsStore, ObjectInfo, ObjectVersion, PutOptions, counting::Counting},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const RETENTION: chrono::Duration = chrono::Duration::days(7);

// ---------------------------------------------------------------- checks

/// Every request `made` is declared for `mode`, and every declared pair
/// was used.
fn assert_exactly_declared(mode: Mode, made: &[Access]) {
    let undeclared: BTreeSet<String> = access::undeclared(mode, made)
        .into_iter()
        .map(|a| format!("{:?} {}", a.op, a.key))
        .collect();
    assert!(
        undeclared.is_empty(),
        "{}: {} requests lake/src/access.rs does not declare:\n  {}",
        mode.name(),
        undeclared.len(),
        undeclared.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    let unused = access::unused(mode, made);
    let used: BTreeSet<String> = made
        .iter()
        .map(|a| format!("{:?} {:?}", a.op, access::area_of(&a.key)))
        .collect();
    assert!(
        unused.is_empty(),
        "{}: declared in lake/src/access.rs but never used: {unused:?}\n(used: {used:?})",
        mode.name()
    );
}

// ---------------------------------------------------------------- the lake

/// One write another process makes right after a matching write of the
/// mode under test; fires once.
type Hook = Box<dyn FnMut(&str, &Bytes) -> Option<Vec<(String, Bytes)>> + Send>;

/// The filesystem lake, as the mode under test sees it, with other
/// processes' writes slipped in after chosen writes of its own.
struct Meanwhile {
    inner: SharedStore,
    hooks: Mutex<Vec<Hook>>,
}

impl std::fmt::Debug for Meanwhile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meanwhile")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Meanwhile {
    /// After the first write `hook` answers for, write what it returns.
    fn after_put(
        &self,
        hook: impl FnMut(&str, &Bytes) -> Option<Vec<(String, Bytes)>> + Send + 'static,
    ) {
        self.hooks.lock().unwrap().push(Box::new(hook));
    }

    fn fire(&self, key: &str, data: &Bytes) -> Vec<(String, Bytes)> {
        let mut hooks = self.hooks.lock().unwrap();
        let mut out = Vec::new();
        let mut i = 0;
        while i < hooks.len() {
            match (hooks[i])(key, data) {
                Some(writes) => {
                    out.extend(writes);
                    drop(hooks.remove(i));
                }
                None => i += 1,
            }
        }
        out
    }
}

#[async_trait::async_trait]
impl Store for Meanwhile {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
        self.inner.put(key, data.clone(), opts).await?;
        for (other, body) in self.fire(key, &data) {
            self.inner.put(&other, body, &PutOptions::default()).await?;
        }
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete(keys).await
    }
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        self.inner.list_versions(prefix).await
    }
    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        self.inner.versions_of(key).await
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_dirs(prefix).await
    }
    async fn list_versions_below(
        &self,
        prefix: &str,
        below: &str,
    ) -> Result<Vec<ObjectVersion>, StoreError> {
        self.inner.list_versions_below(prefix, below).await
    }
    async fn purge(&self, versions: &[ObjectVersion]) -> Result<(), StoreError> {
        self.inner.purge(versions).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn stale_scratch(&self) -> Result<Vec<String>, StoreError> {
        self.inner.stale_scratch().await
    }
    async fn remove_stale_scratch(&self) -> Result<usize, StoreError> {
        self.inner.remove_stale_scratch().await
    }
}

struct Lake {
    _dir: tempfile::TempDir,
    /// The lake itself, uncounted: what the scenario's setup and other
    /// processes write through.
    fs: SharedStore,
    meanwhile: Arc<Meanwhile>,
    /// Every request of the mode under test.
    counting: Arc<Counting>,
}

impl Lake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fs: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let meanwhile = Arc::new(Meanwhile {
            inner: fs.clone(),
            hooks: Mutex::default(),
        });
        let counting = Arc::new(Counting::new(meanwhile.clone()));
        Self {
            _dir: dir,
            fs,
            meanwhile,
            counting,
        }
    }

    /// The store the mode under test runs on.
    fn store(&self) -> SharedStore {
        self.counting.clone()
    }

    fn made(&self) -> Vec<Access> {
        self.counting.accesses()
    }
}

async fn put(store: &SharedStore, key: &str, body: impl Into<Bytes>) {
    store
        .put(key, body.into(), &PutOptions::default())
        .await
        .unwrap();
}

/// The tombstone an erasure in another process leaves.
fn tombstone(id: ImageId) -> (String, Bytes) {
    (layout::erased_key(id), Bytes::from(Utc::now().to_rfc3339()))
}

fn id_in(key: &str) -> ImageId {
    layout::parse_key(key).unwrap().id
}

// ---------------------------------------------------------------- images

/// The `n` smallest corpus images, each distinct.
fn small_images(n: usize) -> Vec<Bytes> {
    let mut all = crate::common::corpus();
    all.sort_by_key(|c| std::fs::metadata(&c.path).unwrap().len());
    all.iter()
        .take(n)
        .map(|c| Bytes::from(std::fs::read(&c.path).unwrap()))
        .collect()
}

/// PNG by its magic bytes, undecodable after them: quarantined.
fn undecodable(tag: &str) -> Bytes {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(format!("not really a picture: {tag}").as_bytes());
    bytes.into()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------- processing

/// Events handed over in order, then none: what the events topic's
/// consumer does for `imgpipe process` (where other processors share the
/// lake: `peers`), without a broker.
struct Events {
    queue: VecDeque<ImageReceived>,
    peers: bool,
}

#[async_trait::async_trait]
impl EventSource for Events {
    async fn next(&mut self) -> Option<Delivery> {
        self.queue.pop_front().map(|e| Delivery::new(e, || {}))
    }
    fn has_peers(&self) -> bool {
        self.peers
    }
}

/// Run a processor over `store` on `events` until each has its outcome
/// and every row is flushed.
async fn process(
    store: SharedStore,
    clock: lake::SharedClock,
    events: Vec<ImageReceived>,
    peers: bool,
) {
    let processor = processor::Processor::new(
        &processor::ProcessorConfig::default(),
        Layout::new(RETENTION),
        store,
        clock,
    )
    .unwrap();
    let source = Events {
        queue: events.into(),
        peers,
    };
    processor.run(source, std::future::pending()).await;
}

fn drain(rx: &mut tokio::sync::mpsc::Receiver<ImageReceived>) -> Vec<ImageReceived> {
    let mut events = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    events
}

// ---------------------------------------------------------------- api

/// `imgpipe serve`: uploads with an Idempotency-Key and its retry, status,
/// thumbnail and listings of a processed and a quarantined image, a direct
/// upload (completed twice) and a refused one, erasures.
#[tokio::test(flavor = "multi_thread")]
async fn api_requests_are_exactly_the_declared_ones() {
    let lake = Lake::new();
    // Mid-hour, so every upload here lands in one hour (and one metadata file).
    let t0 = layout::hour_start(Utc::now()) - chrono::Duration::minutes(30);
    let clock = Arc::new(FixedClock::new(t0));
    let (base, mut rx) = crate::common::serve_in_process(lake.store(), clock.clone(), 64).await;
    let http = crate::common::client();
    let url = |path: &str| format!("{base}{path}");
    let upload = |body: Bytes, key: Option<&'static str>| {
        let mut req = http.post(url("/v1/images")).body(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(status, 202, "{body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let get = |path: String, expect: u16| {
        let req = http.get(url(&path));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), expect, "GET {path}");
            resp.bytes().await.unwrap()
        }
    };

    let images = small_images(3);
    clock.advance(chrono::Duration::seconds(1));
    // Processed beside the next one: erasing that one rewrites their file.
    upload(images[0].clone(), None).await;
    clock.advance(chrono::Duration::seconds(1));
    let keyed = upload(images[1].clone(), Some("access-test-1")).await;
    // The client's retry: the same image, answered from the lake.
    assert_eq!(
        upload(images[1].clone(), Some("access-test-1")).await,
        keyed
    );
    let broken = upload(undecodable("api"), None).await;
    let seen: Value =
        serde_json::from_slice(&get(format!("/v1/images/{keyed}"), 200).await).unwrap();
    assert_eq!(seen["status"], "received");

    // A processor elsewhere (uncounted) finishes them.
    let events = drain(&mut rx);
    process(lake.fs.clone(), Arc::new(SystemClock), events, true).await;

    let seen: Value =
        serde_json::from_slice(&get(format!("/v1/images/{keyed}"), 200).await).unwrap();
    assert_eq!(seen["status"], "processed", "{seen}");
    let seen: Value =
        serde_json::from_slice(&get(format!("/v1/images/{broken}"), 200).await).unwrap();
    assert_eq!(seen["status"], "quarantined", "{seen}");
    get(format!("/v1/images/{keyed}/thumbnail"), 200).await;
    get(format!("/v1/images/{broken}/thumbnail"), 404).await;
    let found: Value = serde_json::from_slice(
        &get(format!("/v1/images?sha256={}", sha256(&images[1])), 200).await,
    )
    .unwrap();
    assert_eq!(found["images"].as_array().unwrap().len(), 1, "{found}");
    let listed: Value = serde_json::from_slice(&get("/v1/images".into(), 200).await).unwrap();
    assert_eq!(listed["images"].as_array().unwrap().len(), 2, "{listed}");

    // A direct upload: ticket, the bytes PUT to its URL (this server's own,
    // the filesystem lake's stand-in for a presigned S3 URL), completed,
    // completed again.
    let direct = |body: Bytes| {
        let http = http.clone();
        let create = url("/v1/uploads");
        async move {
            let resp = http
                .post(create)
                .json(&json!({ "bytes": body.len() }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201);
            let ticket: Value = resp.json().await.unwrap();
            let resp = http
                .put(ticket["url"].as_str().unwrap())
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            ticket["complete_url"].as_str().unwrap().to_owned()
        }
    };
    let complete = |complete_url: String, expect: u16| {
        let req = http.post(complete_url);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(status, expect, "{body}");
            body
        }
    };
    let done = direct(images[2].clone()).await;
    let first = complete(done.clone(), 202).await;
    let again = complete(done, 202).await;
    assert_eq!(first["id"], again["id"]);
    // Not an image: refused, its bytes and ticket removed.
    let refused = direct(Bytes::from_static(b"plain text, no picture")).await;
    complete(refused, 415).await;

    // Erasures: a processed image, a quarantined one.
    for id in [&keyed, &broken] {
        let resp = http
            .delete(url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
    get(format!("/v1/images/{keyed}"), 404).await;

    assert_exactly_declared(Mode::Api, &lake.made());
}

// ---------------------------------------------------------------- bridge

/// The local broker from `.ci/run`; `None` skips (fails under CI).

/// `imgpipe bridge`: messages admitted, one delivered twice, one that
/// waited in its topic past its hour's checkpoint, one an erasure races,
/// one a peer bridge had recorded first.
#[tokio::test(flavor = "multi_thread")]
async fn bridge_requests_are_exactly_the_declared_ones() {
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        producer::{FutureProducer, FutureRecord},
    };

    let Some(brokers) = crate::kafka::brokers() else {
        return;
    };
    let lake = Lake::new();
    let topic = format!("{}-images", crate::common::unique_bucket("access"));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for r in admin
        .create_topics(
            [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }

    let images = small_images(4);
    let (twice, late, erased, raced) = (&images[0], &images[1], &images[2], &images[3]);
    // The late message's hour was closed already.
    let late_at = Utc::now() - chrono::Duration::hours(3);
    lake::reconcile::mark(&lake.fs, layout::hour_start(late_at))
        .await
        .unwrap();
    // An erasure (the API's) lands right after the raw object is stored.
    let target = erased.clone();
    lake.meanwhile.after_put(move |key, data| {
        (key.starts_with("raw/") && *data == target).then(|| vec![tombstone(id_in(key))])
    });
    // A peer bridge recorded the same message under an earlier id.
    let sha = sha256(raced);
    let content = layout::idempotency_prefix(&layout::content_index_key(&sha));
    lake.meanwhile.after_put(move |key, data| {
        if !key.starts_with("idempotency/") || key.starts_with(&content) || *data != sha.as_bytes()
        {
            return None;
        }
        let (prefix, mine) = key.rsplit_once('/')?;
        let mine: ImageId = mine.parse().ok()?;
        let earlier = ImageId::new(mine.received_at() - chrono::Duration::seconds(1));
        let record = format!("{prefix}/{earlier}");
        let marker = layout::expiry_marker_key(&record)?;
        Some(vec![(marker, Bytes::new()), (record, data.clone())])
    });

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for (key, image, at) in [
        ("device-1", twice, None),
        // Delivered again: the same key and bytes.
        ("device-1", twice, None),
        ("device-2", late, Some(late_at.timestamp_millis())),
        ("device-3", erased, None),
        ("device-4", raced, None),
    ] {
        let mut record = FutureRecord::<str, [u8]>::to(&topic)
            .key(key)
            .payload(image);
        if let Some(at) = at {
            record = record.timestamp(at);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap();
    }

    let config = kafka_bridge::KafkaConfig {
        brokers: Some(brokers.clone()),
        topic: topic.clone(),
        group: format!("{topic}-bridge"),
        dlq_topic: format!("{topic}.dlq"),
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let admission = Admission::new(
        lake.store(),
        Arc::new(SystemClock),
        Layout::new(RETENTION),
        Arc::new(tx),
    );
    let bridge =
        kafka_bridge::Bridge::new(&config, None, kafka_bridge::Intake::new(admission)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(bridge.run(async {
        let _ = stopped.await;
    }));
    // Four announced (the erased one is not), and the erased one taken back.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut announced = 0;
    loop {
        announced += drain(&mut rx).len();
        let taken_back = lake
            .made()
            .iter()
            .any(|a| a.op == Op::DeleteVersion && a.key.starts_with("raw/"));
        if announced >= 4 && taken_back {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not handle every message: {announced} announced, taken back: {taken_back}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    let report = running.await.unwrap();
    assert_eq!(report.images + report.redelivered, 5, "{report:?}");
    assert_eq!(report.dead_letters, 0, "{report:?}");

    assert_exactly_declared(Mode::Bridge, &lake.made());
}

// ---------------------------------------------------------------- processor

/// `imgpipe process`: start-up repair of a row a crash lost, an image
/// processed to the end, an undecodable one quarantined, and erasures
/// racing a processed image, a quarantined one and a metadata flush.
#[tokio::test(flavor = "multi_thread")]
async fn processor_requests_are_exactly_the_declared_ones() {
    let lake = Lake::new();
    // Admitted by the API (uncounted).
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let admission = Admission::new(
        lake.fs.clone(),
        Arc::new(SystemClock),
        Layout::new(RETENTION),
        Arc::new(tx),
    );
    let images = small_images(3);
    let incoming = |data: Bytes| lake::admission::Incoming {
        format: match lake::sniff::sniff(&data) {
            lake::sniff::Sniffed::Supported(f) => f,
            other => panic!("{other:?}"),
        },
        data,
        source: Source::Http,
        source_ref: None,
        dedup_key: None,
        on_reuse: lake::admission::Reuse::Refuse,
        request_id: None,
        arrived_at: None,
    };
    for data in [
        images[0].clone(),
        images[1].clone(),
        undecodable("processor-1"),
        images[2].clone(),
        undecodable("processor-2"),
    ] {
        admission.admit(incoming(data)).await.unwrap();
    }
    let events = drain(&mut rx);
    let [lost, fine, broken, raced, raced_broken] = <[ImageReceived; 5]>::try_from(events).unwrap();
    // A processor crashed after the first one's manifest, before its row.
    let manifest = Manifest {
        id: lost.id,
        keys: vec![
            lost.raw_key.clone(),
            layout::thumb_key(lost.id),
            layout::manifest_key(lost.id),
        ],
        row: sample_row(lost.id),
    };
    put(
        &lake.fs,
        &layout::manifest_key(lost.id),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    // Erasures (the API's) land right after a manifest, a quarantine record
    // and the first metadata file are written.
    let manifest_key = layout::manifest_key(raced.id);
    lake.meanwhile
        .after_put(move |key, _| (key == manifest_key).then(|| vec![tombstone(id_in(key))]));
    let quarantine_key = layout::quarantine_key(raced_broken.id);
    lake.meanwhile
        .after_put(move |key, _| (key == quarantine_key).then(|| vec![tombstone(id_in(key))]));
    lake.meanwhile.after_put(move |key, _| {
        key.starts_with("metadata/")
            .then(|| vec![tombstone(id_in(key))])
    });

    // Later than any flush a live peer still owes: the lost row is repaired.
    let clock = Arc::new(FixedClock::new(Utc::now() + chrono::Duration::minutes(10)));
    process(
        lake.store(),
        clock,
        vec![
            fine.clone(),
            broken.clone(),
            raced.clone(),
            raced_broken.clone(),
        ],
        true,
    )
    .await;
    assert!(
        lake.fs
            .exists(&layout::manifest_key(fine.id))
            .await
            .unwrap()
    );
    assert!(
        lake.fs
            .exists(&layout::quarantine_key(broken.id))
            .await
            .unwrap()
    );
    assert!(
        !lake
            .fs
            .exists(&layout::manifest_key(raced.id))
            .await
            .unwrap()
    );
    assert!(
        !lake
            .fs
            .exists(&layout::quarantine_key(raced_broken.id))
            .await
            .unwrap()
    );

    assert_exactly_declared(Mode::Processor, &lake.made());
}

// ---------------------------------------------------------------- sweeper, audit

/// The sweeper's and the audit's `now`.
fn sweep_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 30, 0).unwrap()
}

fn event(id: ImageId, dedup_key: Option<&str>) -> ImageReceived {
    ImageReceived {
        id,
        raw_key: layout::raw_key(id),
        source: Source::Http,
        source_ref: None,
        bytes: 3,
        sha256: "cd".repeat(32),
        content_type: "image/png".into(),
        received_at: id.received_at(),
        dedup_key: dedup_key.map(str::to_owned),
        request_id: None,
    }
}

/// A processed image: raw, thumbnail, manifest, and its row in a metadata
/// file of its own.
async fn processed(fs: &SharedStore, id: ImageId) {
    put(fs, &layout::raw_key(id), "raw").await;
    put(fs, &layout::thumb_key(id), "jpeg").await;
    let manifest = Manifest {
        id,
        keys: vec![
            layout::raw_key(id),
            layout::thumb_key(id),
            layout::manifest_key(id),
        ],
        row: sample_row(id),
    };
    put(
        fs,
        &layout::manifest_key(id),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    lake::metadata::write_rows(fs, &[sample_row(id)])
        .await
        .unwrap();
}

/// A lake at [`sweep_now`] with data past expiry in every area, an hour
/// whose metadata file holds expired and kept rows, a settled hour to
/// close, a settled hour with an unfinished image, and an erasure a crash
/// cut short.
async fn lake_to_sweep(fs: &SharedStore) {
    let now = sweep_now();
    let opts = PutOptions::default();
    let hour = |h| layout::hour_start(now - chrono::Duration::hours(h));
    let at = |h, m| hour(h) + chrono::Duration::minutes(m);

    // Past expiry, everywhere.
    let old = 7 * 24 + 3;
    let expired = ImageId::new(at(old, 5));
    processed(fs, expired).await;
    put(fs, &layout::quarantine_key(expired), "{}").await;
    index::record_event(fs, &event(expired, None), &opts)
        .await
        .unwrap();
    // The tombstone of an image whose data is all gone.
    put(fs, &layout::erased_key(ImageId::new(at(old, 6))), "t").await;
    let upload = ImageId::new(at(old, 7));
    put(fs, &layout::upload_ticket_key(upload), "{}").await;
    put(fs, &layout::upload_data_key(upload), "bytes").await;
    lake::reconcile::mark(fs, hour(old)).await.unwrap();

    // The hour expiry runs through: one row gone, one kept, one file.
    let expiring = layout::hour_start(now - RETENTION);
    lake::metadata::write_rows(
        fs,
        &[
            sample_row(ImageId::new(expiring + chrono::Duration::minutes(10))),
            sample_row(ImageId::new(expiring + chrono::Duration::minutes(50))),
        ],
    )
    .await
    .unwrap();

    // Settled, finished: two files to merge, then the checkpoint.
    processed(fs, ImageId::new(at(3, 1))).await;
    processed(fs, ImageId::new(at(3, 2))).await;
    let quarantined = ImageId::new(at(3, 3));
    put(fs, &layout::raw_key(quarantined), "raw").await;
    put(fs, &layout::quarantine_key(quarantined), "{}").await;

    // Settled, with an image still unprocessed: stays open.
    let waiting = ImageId::new(at(2, 1));
    put(fs, &layout::raw_key(waiting), "raw").await;
    index::record_event(fs, &event(waiting, None), &opts)
        .await
        .unwrap();

    // An erasure cut short after its tombstone (`erase_tombstoned`).
    let cut = ImageId::new(at(0, 1));
    let dedup = "api:analyst:cut-short";
    let ev = event(cut, Some(dedup));
    index::record_dedup(fs, dedup, cut, &ev.sha256, &opts)
        .await
        .unwrap();
    index::record_event(fs, &ev, &opts).await.unwrap();
    processed(fs, cut).await;
    index::record_content(fs, &ev.sha256, cut, &opts)
        .await
        .unwrap();
    put(fs, &layout::erased_key(cut), now.to_rfc3339()).await;
}

/// `imgpipe sweep`: one pass.
#[tokio::test(flavor = "multi_thread")]
async fn sweeper_requests_are_exactly_the_declared_ones() {
    let lake = Lake::new();
    lake_to_sweep(&lake.fs).await;
    let sweeper = retention::Sweeper::new(
        lake.store(),
        Arc::new(FixedClock::new(sweep_now())),
        RETENTION,
    );
    let report = sweeper.sweep_once().await.unwrap();
    assert_eq!(report.erasures_resumed, 1, "{report:?}");
    assert_eq!(report.hours_checkpointed, 1, "{report:?}");
    assert_eq!(report.metadata_files_compacted, 1, "{report:?}");
    assert_eq!(report.rows_purged, 1, "{report:?}");
    assert!(report.purged >= 9, "{report:?}");

    assert_exactly_declared(Mode::Sweeper, &lake.made());
}

/// `imgpipe audit`: one run.
#[tokio::test(flavor = "multi_thread")]
async fn audit_requests_are_exactly_the_declared_ones() {
    let lake = Lake::new();
    lake_to_sweep(&lake.fs).await;
    let report = retention::audit::audit(&lake.store(), Layout::new(RETENTION), None, sweep_now())
        .await
        .unwrap();
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, retention::audit::Violation::ExpiredRow { .. })),
        "{report:?}"
    );

    assert_exactly_declared(Mode::Audit, &lake.made());
}
