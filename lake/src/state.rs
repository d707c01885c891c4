//! Where one image is, read from the lake — the one answer to "is this
//! image finished?" that the API, the processor, admission and erasure all
//! ask. Past its expiry, or once erased, an image is gone whatever else is
//! still stored of it.

use chrono::{DateTime, Utc};

use crate::{
    ImageId, Layout, SharedStore, StoreError, erasure, layout,
    records::{Manifest, QuarantineRecord},
};

#[derive(Debug, Clone, PartialEq)]
pub enum ImageState {
    /// Raw stored, no outcome yet (waiting, or being processed).
    Received,
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

    /// Erased, expired or never stored: nothing of it may be shown or
    /// written again.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Erased | Self::Expired | Self::Unknown)
    }
}

/// The state of `id` at `now`.
pub async fn image_state(
    store: &SharedStore,
    layout: &Layout,
    id: ImageId,
    now: DateTime<Utc>,
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
        return Ok(ImageState::Received);
    }
    Ok(ImageState::Unknown)
}
