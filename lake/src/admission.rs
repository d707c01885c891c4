//! Admission: the one way an image enters the lake, whatever its source
//! (HTTP body, multipart part, Kafka message, claim-check). Each source only
//! maps its input to an [`Incoming`]. The order is what makes every step
//! crash-safe and a retry idempotent:
//!
//! 1. the dedup record (`idempotency/<sha(dedup key)>/<id>`, body: the
//!    image's SHA-256) — so a retry after any later crash finds this id;
//! 2. the recorded `ImageReceived` — so crash recovery rebuilds the real
//!    event (source, reference) instead of guessing;
//! 3. the raw object — from here on the image exists;
//! 4. the content index;
//! 5. the event, emitted (the in-process channel, or the events topic).
//!
//! A retry that finds its record completes whatever the first attempt did
//! not (from the bytes it carries again) and emits again; a finished image
//! is left alone, and an erased one is never brought back.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::{
    EmitError, EventSink, ImageId, ImageReceived, Layout, SharedClock, SharedStore, Source,
    StoreError, erasure, index, layout, reconcile,
    sniff::ImageFormat,
    state::{ImageState, image_state},
    store::PutOptions,
};

/// What a source hands to admission.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub data: Bytes,
    /// Sniffed from the bytes by the source.
    pub format: ImageFormat,
    pub source: Source,
    /// File name, client key or topic/partition/offset: for people.
    pub source_ref: Option<String>,
    /// The namespaced dedup key (`api:<principal>:<key>`, `kafka:…`), if
    /// the source has one.
    pub dedup_key: Option<String>,
    pub on_reuse: Reuse,
    /// The HTTP request's id, carried into the processor's logs.
    pub request_id: Option<String>,
    /// When the image arrived, as its source recorded it (a Kafka
    /// message's timestamp); `None` for now. See [`Admission::receipt_time`].
    pub arrived_at: Option<DateTime<Utc>>,
}

/// The same dedup key with other bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A mistake by the client: refuse (HTTP `Idempotency-Key`).
    Refuse,
    /// A different image (a Kafka key names a stream, not one image).
    NewImage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    New(ImageId),
    /// Admitted before under the same dedup key with the same bytes.
    Again(ImageId),
}

impl Admitted {
    pub fn id(self) -> ImageId {
        match self {
            Admitted::New(id) | Admitted::Again(id) => id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error("the dedup key was used for other bytes")]
    KeyReused,
    #[error(transparent)]
    Expired(#[from] Expired),
}

/// An image whose retention period ended before it could be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("arrived at {arrived_at}, so its retention period ended at {expired_at}: not stored")]
pub struct Expired {
    pub arrived_at: DateTime<Utc>,
    pub expired_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Admission {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub layout: Layout,
    pub events: Arc<dyn EventSink>,
    locks: Arc<KeyLocks>,
}

impl Admission {
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        layout: Layout,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            store,
            clock,
            layout,
            events,
            locks: Arc::default(),
        }
    }

    /// When an image that arrived at `arrived_at` (as its source says; `None`
    /// for now) was received, which starts its retention period: a time in
    /// the future is clamped to now, so a producer's clock never lengthens
    /// retention; one in the past only shortens it; and one whose period
    /// has already ended is refused, never stored.
    pub fn receipt_time(
        &self,
        arrived_at: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, Expired> {
        let now = self.clock.now();
        let at = arrived_at.map_or(now, |at| at.min(now));
        let expired_at = at + self.layout.retention;
        if expired_at <= now {
            return Err(Expired {
                arrived_at: at,
                expired_at,
            });
        }
        Ok(at)
    }

    /// Store one image and announce it, exactly once per dedup key and
    /// bytes, whatever crashed before.
    pub async fn admit(&self, mut incoming: Incoming) -> Result<Admitted, AdmitError> {
        let received_at = self.receipt_time(incoming.arrived_at)?;
        let sha256 = hex::encode(Sha256::digest(&incoming.data));
        if incoming.on_reuse == Reuse::NewImage {
            // A key that names a stream (a device, a user) gathers a record
            // per image; keyed by the bytes too, a redelivery is found with
            // one small listing, whatever the key's history.
            incoming.dedup_key = incoming.dedup_key.map(|key| format!("{key}#{sha256}"));
        }
        // Two requests with one key in this process take turns; across
        // processes the earliest record wins (checked after writing ours).
        let _turn = match &incoming.dedup_key {
            Some(key) => Some(self.locks.lock(key).await),
            None => None,
        };
        let mut admitted = match &incoming.dedup_key {
            Some(key) => match self.earlier(key, &sha256, incoming.on_reuse).await? {
                Some(id) => Admitted::Again(id),
                None => Admitted::New(ImageId::new(received_at)),
            },
            None => Admitted::New(ImageId::new(received_at)),
        };
        if let Admitted::New(id) = admitted {
            self.reopen_hour_of(id).await?;
        }
        let opts_for = |id: ImageId| {
            PutOptions::for_image(
                id,
                incoming.source,
                &sha256,
                self.layout.expires_at(id),
                incoming.format.mime(),
            )
        };
        if let (Admitted::New(id), Some(key)) = (admitted, &incoming.dedup_key) {
            index::record_dedup(&self.store, key, id, &sha256, &opts_for(id)).await?;
            let mine = layout::idempotency_key(key, id);
            match self.earlier(key, &sha256, incoming.on_reuse).await {
                Ok(Some(first)) if first != id => {
                    erasure::purge_key(&self.store, &mine).await?;
                    admitted = Admitted::Again(first);
                }
                Ok(_) => {}
                Err(e) => {
                    erasure::purge_key(&self.store, &mine).await?;
                    return Err(e);
                }
            }
        }
        let id = admitted.id();
        if let Admitted::Again(id) = admitted {
            let state = image_state(&self.store, &self.layout, id, self.clock.now(), None).await?;
            if matches!(state, ImageState::Erased) {
                // Erased on request: a retry must not bring it back.
                return Ok(admitted);
            }
            if state.is_finished() {
                // A crash may have come between raw and the content index.
                index::record_content(&self.store, &sha256, id, &opts_for(id)).await?;
                return Ok(admitted);
            }
        }
        let opts = opts_for(id);
        let event = ImageReceived {
            id,
            raw_key: layout::raw_key(id),
            source: incoming.source,
            source_ref: incoming.source_ref,
            bytes: incoming.data.len() as u64,
            sha256: sha256.clone(),
            content_type: incoming.format.mime().to_owned(),
            received_at: id.received_at(),
            dedup_key: incoming.dedup_key,
            request_id: incoming.request_id,
        };
        let new = matches!(admitted, Admitted::New(_));
        if new || index::recorded_event(&self.store, id).await?.is_none() {
            index::record_event(&self.store, &event, &opts).await?;
        }
        if new || !self.store.exists(&event.raw_key).await? {
            self.store.put(&event.raw_key, incoming.data, &opts).await?;
        }
        crate::failpoint::hit(crate::failpoint::UPLOAD_STORED);
        if erasure::is_erased(&self.store, id).await? {
            // An erasure ran while we wrote: take back what it could not see.
            let mut written = index::record_keys(&event);
            written.retain(|k| Some(k) != index::dedup_record_key(&event).as_ref());
            written.push(event.raw_key.clone());
            erasure::purge_keys(&self.store, &written).await?;
            return Ok(admitted);
        }
        index::record_content(&self.store, &sha256, id, &opts).await?;
        self.events.emit(event).await?;
        Ok(admitted)
    }

    /// An image received in an hour the sweeper may already have closed
    /// (a Kafka message that waited in its topic) reopens that hour before
    /// anything of it is written, so crash recovery and compaction look
    /// there again. Costs a request only for such late arrivals.
    async fn reopen_hour_of(&self, id: ImageId) -> Result<(), StoreError> {
        let hour = layout::hour_start(id.received_at());
        if hour + Duration::hours(1) + reconcile::SETTLE > self.clock.now() {
            return Ok(());
        }
        reconcile::reopen(&self.store, hour).await
    }

    /// The live image recorded under `key` that these bytes repeat.
    async fn earlier(
        &self,
        key: &str,
        sha256: &str,
        on_reuse: Reuse,
    ) -> Result<Option<ImageId>, AdmitError> {
        let now = self.clock.now();
        // Past its expiry the first image is gone (or going): a new one.
        let live: Vec<(ImageId, String)> = index::dedup_records(&self.store, key)
            .await?
            .into_iter()
            .filter(|(id, _)| now < self.layout.expires_at(*id))
            .collect();
        match on_reuse {
            // A redelivery is automatic: an erased image's record (its key
            // names the bytes) matches the same bytes coming again, so they
            // are not stored again.
            Reuse::NewImage => Ok(live
                .into_iter()
                .find(|(_, sha)| sha == sha256 || sha == index::ERASED)
                .map(|(id, _)| id)),
            // A client's retry after its image was erased is its new upload.
            Reuse::Refuse => match live.into_iter().find(|(_, sha)| sha != index::ERASED) {
                Some((id, sha)) if sha == sha256 => Ok(Some(id)),
                Some(_) => Err(AdmitError::KeyReused),
                None => Ok(None),
            },
        }
    }
}

/// Serialises admissions that share a dedup key within this process.
#[derive(Debug)]
struct KeyLocks([tokio::sync::Mutex<()>; 64]);

impl Default for KeyLocks {
    fn default() -> Self {
        Self(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl KeyLocks {
    async fn lock(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let digest = Sha256::digest(key.as_bytes());
        self.0[usize::from(digest[0]) % self.0.len()].lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use chrono::Utc;

    use super::*;
    use crate::{
        FixedClock, ObjectInfo, Store,
        store::{FsStore, ObjectVersion},
    };

    /// A real filesystem store whose `fail_at`-th write fails, as a crash
    /// between two writes would leave the lake.
    #[derive(Debug)]
    struct CrashAt {
        inner: FsStore,
        writes: AtomicUsize,
        fail_at: usize,
    }

    #[async_trait]
    impl Store for CrashAt {
        fn location(&self) -> String {
            self.inner.location()
        }
        async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
            if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
                return Err(StoreError::backend("put", key, "crash"));
            }
            self.inner.put(key, data, opts).await
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
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
    }

    /// Admission over `store` now, with a 7-day retention, announcing to `tx`.
    fn admission(store: SharedStore, tx: tokio::sync::mpsc::Sender<ImageReceived>) -> Admission {
        Admission::new(
            store,
            Arc::new(FixedClock::new(Utc::now())),
            Layout::new(chrono::Duration::days(7)),
            Arc::new(tx),
        )
    }

    fn png() -> Bytes {
        Bytes::from_static(b"\x89PNG\r\n\x1a\nnot really")
    }

    fn incoming(key: Option<&str>, data: Bytes, on_reuse: Reuse) -> Incoming {
        Incoming {
            data,
            format: ImageFormat::Png,
            source: Source::Http,
            source_ref: None,
            dedup_key: key.map(str::to_owned),
            on_reuse,
            request_id: None,
            arrived_at: None,
        }
    }

    /// Whatever write a crash interrupts, the retry with the same key and
    /// bytes ends with exactly one image, complete, announced.
    #[tokio::test]
    async fn a_retry_after_a_crash_at_any_write_makes_one_complete_image() {
        // Every write an admission with a dedup key makes, counted by a
        // store that never crashes: each one is cut in turn below.
        let writes = {
            let dir = tempfile::tempdir().unwrap();
            let counted = Arc::new(CrashAt {
                inner: FsStore::open(dir.path()).unwrap(),
                writes: AtomicUsize::new(0),
                fail_at: 0,
            });
            let (tx, _rx) = tokio::sync::mpsc::channel(8);
            admission(counted.clone(), tx)
                .admit(incoming(Some("api:a:k1"), png(), Reuse::Refuse))
                .await
                .unwrap();
            counted.writes.load(Ordering::SeqCst)
        };
        // Dedup record, recorded event and content index, each after its
        // expiry marker, and the raw object.
        assert_eq!(writes, 7);
        for fail_at in 1..=writes {
            let dir = tempfile::tempdir().unwrap();
            let store: SharedStore = Arc::new(CrashAt {
                inner: FsStore::open(dir.path()).unwrap(),
                writes: AtomicUsize::new(0),
                fail_at,
            });
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let admission = admission(store.clone(), tx);
            let first = admission
                .admit(incoming(Some("api:a:k1"), png(), Reuse::Refuse))
                .await;
            assert!(first.is_err(), "write {fail_at} was to crash");
            let again = admission
                .admit(incoming(Some("api:a:k1"), png(), Reuse::Refuse))
                .await
                .unwrap();
            let raws = store.list("raw/").await.unwrap();
            assert_eq!(raws.len(), 1, "crash at write {fail_at}: {raws:?}");
            let id = again.id();
            assert_eq!(raws[0].key, layout::raw_key(id));
            assert!(index::recorded_event(&store, id).await.unwrap().is_some());
            let sha = hex::encode(Sha256::digest(png()));
            assert_eq!(
                index::find_by_content(&store, &sha).await.unwrap(),
                vec![id]
            );
            let mut announced = Vec::new();
            while let Ok(ev) = rx.try_recv() {
                announced.push(ev.id);
            }
            assert_eq!(announced, vec![id], "crash at write {fail_at}");
        }
    }

    /// After an erasure the key's record says "erased": a redelivery under it
    /// is not stored again; a client's explicit retry is a new upload.
    #[tokio::test]
    async fn an_erased_image_is_not_stored_again_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let admission = admission(store.clone(), tx);
        let first = admission
            .admit(incoming(Some("kafka:t:k"), png(), Reuse::NewImage))
            .await
            .unwrap();
        let id = first.id();
        // What erasure leaves: the tombstone and the key's record, emptied.
        store
            .put(
                &layout::erased_key(id),
                Bytes::from_static(b"t"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let recorded = index::recorded_event(&store, id).await.unwrap().unwrap();
        store
            .put(
                &index::dedup_record_key(&recorded).unwrap(),
                Bytes::from_static(index::ERASED.as_bytes()),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        store.delete(&[layout::raw_key(id)]).await.unwrap();
        let again = admission
            .admit(incoming(Some("kafka:t:k"), png(), Reuse::NewImage))
            .await
            .unwrap();
        assert_eq!(again, Admitted::Again(id));
        assert!(store.list("raw/").await.unwrap().is_empty());
        // A client retrying after erasure makes a new upload.
        let fresh = admission
            .admit(incoming(Some("kafka:t:k"), png(), Reuse::Refuse))
            .await
            .unwrap();
        assert!(matches!(fresh, Admitted::New(other) if other != id));
    }

    /// A Kafka image's 7 days start when it arrived in its topic, not when
    /// the bridge read it; a producer's clock never lengthens them.
    #[tokio::test]
    async fn the_receipt_time_is_when_the_image_arrived_never_later_than_now() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let admission = admission(store.clone(), tx);
        let now = admission.clock.now();
        let arrived = |at: DateTime<Utc>, n: u8| {
            let mut i = incoming(
                None,
                Bytes::from(vec![0x89, b'P', b'N', b'G', n]),
                Reuse::NewImage,
            );
            i.arrived_at = Some(at);
            i
        };
        let waited = now - Duration::days(3);
        let id = admission.admit(arrived(waited, 1)).await.unwrap().id();
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        assert_eq!(ms(id.received_at()), ms(waited));
        assert_eq!(
            ms(admission.layout.expires_at(id)),
            ms(waited + Duration::days(7))
        );
        assert!(store.exists(&layout::raw_key(id)).await.unwrap());

        let future = admission
            .admit(arrived(now + Duration::days(2), 2))
            .await
            .unwrap()
            .id();
        assert_eq!(ms(future.received_at()), ms(now));

        let dead = now - Duration::days(7) - Duration::milliseconds(1);
        match admission.admit(arrived(dead, 3)).await {
            Err(AdmitError::Expired(e)) => assert!(e.expired_at <= now, "{e}"),
            other => panic!("an expired image was admitted: {other:?}"),
        }
        let raws = store.list("raw/").await.unwrap();
        assert_eq!(raws.len(), 2, "{raws:?}");
    }

    /// An image that arrives in an hour the sweeper has closed opens it
    /// again, so a crash before it is processed is still recovered.
    #[tokio::test]
    async fn a_late_arrival_reopens_its_closed_hour() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let admission = admission(store.clone(), tx);
        let now = admission.clock.now();
        let arrived_at = now - Duration::days(2);
        let hour = layout::hour_start(arrived_at);
        reconcile::mark(&store, hour).await.unwrap();
        let mut late = incoming(None, png(), Reuse::NewImage);
        late.arrived_at = Some(arrived_at);
        admission.admit(late).await.unwrap();
        let open = reconcile::open_hours(&store, &admission.layout, now)
            .await
            .unwrap();
        assert_eq!(open, vec![hour]);
    }

    /// A Kafka key that names a stream (a device) gathers images for the
    /// whole period; recognising a redelivery must not cost a request per
    /// image the key has seen.
    #[tokio::test]
    async fn a_busy_stream_key_costs_the_same_requests_per_image() {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(crate::store::counting::Counting::new(Arc::new(
            FsStore::open(dir.path()).unwrap(),
        )));
        let store: SharedStore = counting.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let admission = admission(store, tx);
        let image = |n: u32| Bytes::from([&b"\x89PNG\r\n\x1a\n"[..], &n.to_be_bytes()].concat());
        let mut cost = Vec::new();
        for n in 0..60 {
            counting.reset();
            admission
                .admit(incoming(
                    Some("kafka:t:device-7"),
                    image(n),
                    Reuse::NewImage,
                ))
                .await
                .unwrap();
            cost.push(counting.requests() + counting.reads());
            while rx.try_recv().is_ok() {}
        }
        assert_eq!(cost[59], cost[0], "requests per admission: {cost:?}");
        // A redelivery of an earlier one is still recognised.
        let again = admission
            .admit(incoming(
                Some("kafka:t:device-7"),
                image(3),
                Reuse::NewImage,
            ))
            .await
            .unwrap();
        assert!(matches!(again, Admitted::Again(_)), "{again:?}");
    }

    #[tokio::test]
    async fn reuse_of_a_key_is_refused_or_a_new_image_as_the_source_says() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let admission = admission(store, tx);
        let other = Bytes::from_static(b"\x89PNG\r\n\x1a\nother bytes");
        let a = admission
            .admit(incoming(Some("k"), png(), Reuse::Refuse))
            .await
            .unwrap();
        assert!(matches!(a, Admitted::New(_)));
        assert!(matches!(
            admission
                .admit(incoming(Some("k"), other.clone(), Reuse::Refuse))
                .await,
            Err(AdmitError::KeyReused)
        ));
        let b = admission
            .admit(incoming(Some("k"), other.clone(), Reuse::NewImage))
            .await
            .unwrap();
        assert!(matches!(b, Admitted::New(_)) && b.id() != a.id());
        let again = admission
            .admit(incoming(Some("k"), other, Reuse::NewImage))
            .await
            .unwrap();
        assert_eq!(again, Admitted::Again(b.id()));
        let unkeyed = admission
            .admit(incoming(None, png(), Reuse::Refuse))
            .await
            .unwrap();
        assert!(matches!(unkeyed, Admitted::New(_)) && unkeyed.id() != a.id());
    }
}
