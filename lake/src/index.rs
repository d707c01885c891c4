//! Small records that find images again: by a dedup key (API
//! `Idempotency-Key`, Kafka message key or offset) and by content hash.
//! Both live under `idempotency/` with the image id as the last key
//! segment, so they expire and are erased with the image.

use bytes::Bytes;

use crate::{
    ImageId, ImageReceived, SharedStore, StoreError,
    layout::{self, parse_key},
    store::PutOptions,
};

/// Record that `id` was stored for `dedup_key`; the body is the image's
/// SHA-256, to tell a redelivery from a different image under the same key.
pub async fn record_dedup(
    store: &SharedStore,
    dedup_key: &str,
    id: ImageId,
    sha256: &str,
    opts: &PutOptions,
) -> Result<(), StoreError> {
    put_record(
        store,
        &layout::idempotency_key(dedup_key, id),
        Bytes::from(sha256.to_owned()),
        opts,
    )
    .await
}

/// Write an `idempotency/` record, its expiry marker first: the sweeper
/// finds records through their markers (they sit in the image's hour
/// partition), so no record is ever without one.
pub async fn put_record(
    store: &SharedStore,
    key: &str,
    body: Bytes,
    opts: &PutOptions,
) -> Result<(), StoreError> {
    let marker =
        layout::expiry_marker_key(key).ok_or_else(|| StoreError::InvalidKey(key.to_owned()))?;
    store
        .put(&marker, Bytes::new(), &PutOptions::default())
        .await?;
    store.put(key, body, opts).await
}

/// Ids recorded under `dedup_key`, oldest first, with the hash each was
/// recorded with.
pub async fn dedup_records(
    store: &SharedStore,
    dedup_key: &str,
) -> Result<Vec<(ImageId, String)>, StoreError> {
    let mut ids: Vec<(ImageId, String)> = store
        .list(&layout::idempotency_prefix(dedup_key))
        .await?
        .into_iter()
        .filter_map(|o| parse_key(&o.key).ok().map(|p| (p.id, o.key)))
        .collect();
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for (id, key) in ids {
        // Gone between list and get: swept or erased, so not a match.
        if let Some(body) = store.get(&key).await? {
            out.push((id, String::from_utf8_lossy(&body).into_owned()));
        }
    }
    Ok(out)
}

/// The earliest image stored under `dedup_key` with exactly these bytes.
pub async fn find_dedup(
    store: &SharedStore,
    dedup_key: &str,
    sha256: &str,
) -> Result<Option<ImageId>, StoreError> {
    Ok(dedup_records(store, dedup_key)
        .await?
        .into_iter()
        .find(|(_, sha)| sha == sha256)
        .map(|(id, _)| id))
}

/// Index `id` by its content hash.
pub async fn record_content(
    store: &SharedStore,
    sha256: &str,
    id: ImageId,
    opts: &PutOptions,
) -> Result<(), StoreError> {
    record_dedup(store, &layout::content_index_key(sha256), id, sha256, opts).await
}

/// Every image stored with this content hash, oldest first.
pub async fn find_by_content(
    store: &SharedStore,
    sha256: &str,
) -> Result<Vec<ImageId>, StoreError> {
    let mut ids: Vec<ImageId> = store
        .list(&layout::idempotency_prefix(&layout::content_index_key(
            sha256,
        )))
        .await?
        .into_iter()
        .filter_map(|o| parse_key(&o.key).ok().map(|p| p.id))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The body a dedup record keeps once its image is erased: no hash of the
/// image, only the fact, so a retry or redelivery under the same key finds
/// the erased image (and is not stored again) until the record expires.
pub const ERASED: &str = "erased";

/// The dedup record of `event`'s image, if it has one.
pub fn dedup_record_key(event: &ImageReceived) -> Option<String> {
    event
        .dedup_key
        .as_deref()
        .map(|k| layout::idempotency_key(k, event.id))
}

/// The keys of every record kept for an image — its recorded event, its
/// content-index entry and its dedup record — derived from the id and the
/// event, so erasure finds them without listing the area.
pub fn record_keys(event: &ImageReceived) -> Vec<String> {
    let id = event.id;
    let mut keys = vec![
        event_key(id),
        layout::idempotency_key(&layout::content_index_key(&event.sha256), id),
    ];
    keys.extend(dedup_record_key(event));
    keys
}

fn event_key(id: ImageId) -> String {
    layout::idempotency_key(&format!("event:{id}"), id)
}

/// Keep the image's `ImageReceived` in the lake, written before the raw
/// object: if the process dies before the processor has it, start-up
/// reconciliation rebuilds the event from this — source and source_ref
/// included — rather than guessing them.
pub async fn record_event(
    store: &SharedStore,
    event: &ImageReceived,
    opts: &PutOptions,
) -> Result<(), StoreError> {
    let key = event_key(event.id);
    let body = serde_json::to_vec(event).map_err(|e| StoreError::backend("encode", &key, e))?;
    put_record(store, &key, Bytes::from(body), opts).await
}

/// The event recorded for `id`, if any (and readable).
pub async fn recorded_event(
    store: &SharedStore,
    id: ImageId,
) -> Result<Option<ImageReceived>, StoreError> {
    let Some(body) = store.get(&event_key(id)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&body)
        .inspect_err(|e| tracing::warn!(%id, error = %e, "unreadable recorded event"))
        .ok())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{Source, store::FsStore};

    #[tokio::test]
    async fn dedup_matches_key_and_bytes_and_content_finds_all() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let (a, b) = (
            ImageId::new(t),
            ImageId::new(t + chrono::Duration::seconds(1)),
        );
        let opts = PutOptions::for_image(a, Source::Kafka, "aa", t, "image/png");
        record_dedup(&store, "kafka:k1", a, "aa", &opts)
            .await
            .unwrap();
        record_dedup(&store, "kafka:k1", b, "bb", &opts)
            .await
            .unwrap();
        assert_eq!(find_dedup(&store, "kafka:k1", "aa").await.unwrap(), Some(a));
        assert_eq!(find_dedup(&store, "kafka:k1", "bb").await.unwrap(), Some(b));
        assert_eq!(find_dedup(&store, "kafka:k1", "cc").await.unwrap(), None);
        assert_eq!(find_dedup(&store, "kafka:k2", "aa").await.unwrap(), None);

        record_content(&store, "AA", b, &opts).await.unwrap();
        record_content(&store, "aa", a, &opts).await.unwrap();
        assert_eq!(find_by_content(&store, "aa").await.unwrap(), vec![a, b]);
        assert!(find_by_content(&store, "bb").await.unwrap().is_empty());

        let event = ImageReceived {
            id: a,
            raw_key: layout::raw_key(a),
            source: Source::Kafka,
            source_ref: Some("images/0/7".into()),
            bytes: 3,
            sha256: "aa".into(),
            content_type: "image/png".into(),
            received_at: a.received_at(),
            dedup_key: Some("kafka:k1".into()),
            request_id: None,
        };
        assert_eq!(recorded_event(&store, a).await.unwrap(), None);
        record_event(&store, &event, &opts).await.unwrap();
        assert_eq!(
            recorded_event(&store, a).await.unwrap(),
            Some(event.clone())
        );
        // Every record of `a` is found from its event alone.
        let mut of_a: Vec<String> = store
            .list("idempotency/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .filter(|k| k.ends_with(&a.to_string()))
            .collect();
        let mut derived = record_keys(&event);
        of_a.sort();
        derived.sort();
        assert_eq!(of_a, derived);
        // Kept with the image's other records: its id is in the key.
        assert!(
            store
                .list("idempotency/")
                .await
                .unwrap()
                .iter()
                .all(|o| parse_key(&o.key).is_ok())
        );
    }
}
