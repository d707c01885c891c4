//! Where an image is, read from the lake: a quarantine record or a manifest
//! means it is finished; a raw object alone means it is waiting or in
//! processing. Past its expiry, or once erased, an image does not exist.

use chrono::{DateTime, Utc};
use lake::{
    ImageId, layout,
    records::{Manifest, QuarantineRecord},
};
use serde::Serialize;

use crate::{ApiError, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Received,
    Processing,
    Processed,
    Quarantined,
}

#[derive(Debug, Serialize)]
pub struct ImageStatus {
    pub id: ImageId,
    pub status: Status,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub metadata: Option<serde_json::Value>,
    pub reason: Option<String>,
}

pub async fn lookup(state: &AppState, id: ImageId) -> Result<ImageStatus, ApiError> {
    let expires_at = state.layout.expires_at(id);
    if state.clock.now() >= expires_at {
        return Err(ApiError::not_found(format!(
            "image {id} does not exist or has expired"
        )));
    }
    let base = |status, metadata, reason| ImageStatus {
        id,
        status,
        received_at: id.received_at(),
        expires_at,
        metadata,
        reason,
    };
    let store = &state.store;
    if lake::erasure::is_erased(store, id).await? {
        return Err(ApiError::not_found(format!(
            "image {id} does not exist or has expired"
        )));
    }
    if let Some(bytes) = store.get(&layout::quarantine_key(id)).await? {
        let record: QuarantineRecord =
            serde_json::from_slice(&bytes).map_err(ApiError::unavailable)?;
        let reason = format!("{}: {}", record.reason.as_str(), record.detail);
        return Ok(base(Status::Quarantined, None, Some(reason)));
    }
    if let Some(bytes) = store.get(&layout::manifest_key(id)).await? {
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(ApiError::unavailable)?;
        return Ok(base(
            Status::Processed,
            Some(public_metadata(&manifest)),
            None,
        ));
    }
    if store.exists(&layout::raw_key(id)).await? {
        let status = if state.inflight.contains(id) {
            Status::Processing
        } else {
            Status::Received
        };
        return Ok(base(status, None, None));
    }
    Err(ApiError::not_found(format!(
        "image {id} does not exist or has expired"
    )))
}

/// The row without its restricted columns (GPS coordinates, source_ref): the HTTP API
/// has no per-principal policy yet, so it shows only what every reader may.
fn public_metadata(m: &Manifest) -> serde_json::Value {
    let r = &m.row;
    serde_json::json!({
        "width": r.width,
        "height": r.height,
        "format": r.format,
        "content_type": r.content_type,
        "bytes": r.bytes,
        "sha256": r.sha256,
        "phash": r.phash,
        "orientation": r.orientation,
        "exif_make": r.exif_make,
        "exif_model": r.exif_model,
        "exif_taken_at": r.exif_taken_at,
        "has_gps": r.has_gps,
        "thumb_key": r.thumb_key,
        "raw_key": r.raw_key,
        "source": r.source,
        "processing_ms": r.processing_ms,
        "script": r.script.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
    })
}
