//! Where one image is, read from the lake — the one answer to "is this
//! image finished?" that the API, the processor, admission and erasure all
//! ask. Past its expiry, or once erased, an image is gone whatever else is
//! still stored of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ImageId, Layout, SharedStore, StoreError, erasure, layout,
    records::{Manifest, QuarantineRecord},
    source::InProgress,
};

/// An unfinished or finished image's status, as the API shows it and the
/// metadata's `status` column stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Received,
    Processing,
    Processed,
    Quarantined,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Received,
        Status::Processing,
        Status::Processed,
        Status::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Processing => "processing",
            Status::Processed => "processed",
            Status::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageState {
    /// Raw stored, no outcome yet, waiting for a processor.
    Received,
    /// Raw stored, no outcome yet, in a processor's hands (as far as the
    /// event source asked knows).
    Processing,
    Processed(Box<Manifest>),
    Quarantined(Box<QuarantineRecord>),
    Erased,
    Expired,
    /// Nothing of it is stored.
    Unknown,
}

impl ImageState {
    /// Processed or quarantined: its outcome is durable.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Processed(_) | Self::Quarantined(_))
    }

    /// What the API shows; `None` for an image that is gone.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Received => Some(Status::Received),
            Self::Processing => Some(Status::Processing),
            Self::Processed(_) => Some(Status::Processed),
            Self::Quarantined(_) => Some(Status::Quarantined),
            Self::Erased | Self::Expired | Self::Unknown => None,
        }
    }

    /// Erased, expired or never stored: nothing of it may be shown or
    /// written again.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Erased | Self::Expired | Self::Unknown)
    }
}

/// The state of `id` at `now`; `Processing` where `in_progress` (the
/// event source's view) has it, else `Received` until an outcome exists.
pub async fn image_state(
    store: &SharedStore,
    layout: &Layout,
    id: ImageId,
    now: DateTime<Utc>,
    in_progress: Option<&InProgress>,
) -> Result<ImageState, StoreError> {
    if now >= layout.expires_at(id) {
        return Ok(ImageState::Expired);
    }
    if erasure::is_erased(store, id).await? {
        return Ok(ImageState::Erased);
    }
    let quarantine_key = layout::quarantine_key(id);
    if let Some(bytes) = store.get(&quarantine_key).await? {
        let record = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::backend("decode", &quarantine_key, e))?;
        return Ok(ImageState::Quarantined(Box::new(record)));
    }
    let manifest_key = layout::manifest_key(id);
    if let Some(bytes) = store.get(&manifest_key).await? {
        let manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::backend("decode", &manifest_key, e))?;
        return Ok(ImageState::Processed(Box::new(manifest)));
    }
    if store.exists(&layout::raw_key(id)).await? {
        return Ok(match in_progress {
            Some(p) if p.contains(id) => ImageState::Processing,
            _ => ImageState::Received,
        });
    }
    Ok(ImageState::Unknown)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::Duration;

    use super::*;
    use crate::{
        ImageReceived, Source,
        records::QuarantineReason,
        store::{FsStore, PutOptions},
    };

    async fn put(store: &SharedStore, key: &str, body: &[u8]) {
        store
            .put(key, Bytes::copy_from_slice(body), &PutOptions::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn every_state_from_the_lake_and_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let layout = Layout::new(Duration::days(7));
        let now = Utc::now();
        let id = ImageId::new(now);
        let state = |progress: Option<InProgress>| {
            let store = store.clone();
            async move {
                image_state(&store, &layout, id, now, progress.as_ref())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(state(None).await, ImageState::Unknown);
        put(&store, &layout::raw_key(id), b"raw").await;
        assert_eq!(state(None).await, ImageState::Received);
        let progress = InProgress::default();
        let event = ImageReceived {
            id,
            raw_key: layout::raw_key(id),
            source: Source::Http,
            source_ref: None,
            bytes: 3,
            sha256: String::new(),
            content_type: "image/png".into(),
            received_at: id.received_at(),
            dedup_key: None,
            request_id: None,
        };
        let delivery = progress.deliver(event);
        assert_eq!(state(Some(progress.clone())).await, ImageState::Processing);
        let record = QuarantineRecord {
            id,
            reason: QuarantineReason::Corrupt,
            detail: "bad".into(),
            script_output: None,
            source: Source::Http,
            source_ref: None,
            raw_key: layout::raw_key(id),
            received_at: id.received_at(),
            expires_at: layout.expires_at(id),
            quarantined_at: now,
        };
        put(
            &store,
            &layout::quarantine_key(id),
            &serde_json::to_vec(&record).unwrap(),
        )
        .await;
        assert!(matches!(
            state(Some(progress.clone())).await,
            ImageState::Quarantined(_)
        ));
        delivery.done();
        let later = image_state(&store, &layout, id, layout.expires_at(id), None)
            .await
            .unwrap();
        assert_eq!(later, ImageState::Expired);
        put(&store, &layout::erased_key(id), b"now").await;
        assert_eq!(state(None).await, ImageState::Erased);
    }

    #[test]
    fn status_names_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
