//! Where an image is, read from the lake: a quarantine record or a manifest
//! means it is finished; a raw object alone means it is waiting or in
//! processing. Past its expiry, or once erased, an image does not exist.
//!
//! What a caller sees of it goes through its policy principal's view (the
//! same one `imgpipe query` and the listing use): only granted columns, and
//! an image the principal's row filter hides does not exist for it.

use chrono::{DateTime, Utc};
use datafusion::arrow::{
    array::RecordBatch,
    json::{WriterBuilder, writer::JsonArray},
};
use lake::{
    ImageId, ImageReceived, Source, layout,
    schema::{self, MetadataRow},
    state::{ImageState, image_state},
};
use policies::query::QueryError;
use serde::Serialize;
use serde_json::Value;

use crate::{ApiError, AppState, auth::Caller};

pub use lake::state::Status;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImageStatus {
    #[schema(value_type = String, format = Uuid)]
    pub id: ImageId,
    pub status: Status,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The metadata row as the caller's principal sees it (processed only).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// `<code>: <short detail>` for a quarantined image. The script's own
    /// output stays in the quarantine record.
    pub reason: Option<String>,
}

fn gone(id: ImageId) -> ApiError {
    ApiError::not_found(format!("image {id} does not exist or has expired"))
}

/// The image's state as `caller` may see it; 404 when it does not exist,
/// expired, was erased, or the caller's row filter hides it.
pub async fn lookup(
    state: &AppState,
    caller: &Caller,
    id: ImageId,
) -> Result<ImageStatus, ApiError> {
    let now = state.clock.now();
    let (status, row, reason) = read_state(state, id).await?.ok_or_else(|| gone(id))?;
    let shown = match row {
        // Before processing only a few columns are known; a filter on any
        // other would be judged on placeholders, so it hides the image.
        Some(_) if status != Status::Processed && !filter_is_judgeable(state, caller)? => {
            return Err(gone(id));
        }
        Some(row) => {
            let is_processed = status == Status::Processed;
            let mut rows = visible_rows(state, caller, &[row], now).await?;
            let Some(row) = rows.pop() else {
                return Err(gone(id));
            };
            is_processed.then(|| with_script_object(row))
        }
        // Nothing known to filter on: only a principal without a row
        // filter may see it.
        None => {
            if state
                .policy
                .principal(&caller.principal)
                .map_err(forbidden)?
                .row_filter
                .is_some()
            {
                return Err(gone(id));
            }
            None
        }
    };
    Ok(ImageStatus {
        id,
        status,
        received_at: id.received_at(),
        expires_at: state.layout.expires_at(id),
        metadata: shown,
        reason,
    })
}

/// Where the image is, for our own bookkeeping (no caller's view): `None`
/// when it does not exist, expired or was erased.
pub async fn current(state: &AppState, id: ImageId) -> Result<Option<Status>, ApiError> {
    Ok(read_state(state, id).await?.map(|(status, _, _)| status))
}

/// Columns an image's row has real values for before it is processed.
const KNOWN_BEFORE_PROCESSING: [&str; 6] = [
    "id",
    "source",
    "source_ref",
    "received_at",
    "expires_at",
    "status",
];

fn filter_is_judgeable(state: &AppState, caller: &Caller) -> Result<bool, ApiError> {
    let columns = policies::query::row_filter_columns(&state.policy, &caller.principal)
        .map_err(query_error)?;
    Ok(columns
        .iter()
        .all(|c| KNOWN_BEFORE_PROCESSING.contains(&c.as_str())))
}

type State = (Status, Option<MetadataRow>, Option<String>);

/// The status, the row to filter on (the real row once processed, else
/// what the image's event or quarantine record says), the public reason;
/// `None` when the image is gone.
async fn read_state(state: &AppState, id: ImageId) -> Result<Option<State>, ApiError> {
    let store = &state.store;
    let expires_at = state.layout.expires_at(id);
    let now = state.clock.now();
    let progress = Some(&state.in_progress);
    let found = image_state(store, &state.layout, id, now, progress).await?;
    Ok(match found {
        ImageState::Quarantined(record) => {
            let reason = format!("{}: {}", record.reason.as_str(), record.detail);
            let row = partial_row(
                id,
                expires_at,
                Status::Quarantined,
                record.source,
                record.source_ref,
            );
            Some((Status::Quarantined, Some(row), Some(reason)))
        }
        ImageState::Processed(manifest) => Some((Status::Processed, Some(manifest.row), None)),
        unfinished @ (ImageState::Received | ImageState::Processing) => {
            let status = unfinished.status().unwrap_or(Status::Received);
            let row = lake::index::recorded_event(store, id)
                .await?
                .map(|ev: ImageReceived| {
                    partial_row(id, expires_at, status, ev.source, ev.source_ref)
                });
            Some((status, row, None))
        }
        ImageState::Erased | ImageState::Expired | ImageState::Unknown => None,
    })
}

/// What is known of an image before its row exists, in the row's shape, so
/// the principal's row filter can be applied to it.
fn partial_row(
    id: ImageId,
    expires_at: DateTime<Utc>,
    status: Status,
    source: Source,
    source_ref: Option<String>,
) -> MetadataRow {
    MetadataRow {
        id,
        source,
        source_ref,
        received_at: id.received_at(),
        expires_at,
        content_type: String::new(),
        format: String::new(),
        width: 0,
        height: 0,
        bytes: 0,
        sha256: String::new(),
        phash: String::new(),
        exif_make: None,
        exif_model: None,
        exif_taken_at: None,
        orientation: 1,
        has_gps: false,
        gps_lat: None,
        gps_lon: None,
        thumb_key: String::new(),
        raw_key: layout::raw_key(id),
        script: None,
        processing_ms: 0,
        status,
        script_version: None,
    }
}

/// `rows` through the caller's view, as JSON objects.
async fn visible_rows(
    state: &AppState,
    caller: &Caller,
    rows: &[MetadataRow],
    now: DateTime<Utc>,
) -> Result<Vec<Value>, ApiError> {
    let batch = schema::to_record_batch(rows).map_err(ApiError::internal)?;
    let batches = policies::query::visible(&state.policy, &caller.principal, vec![batch], now)
        .await
        .map_err(query_error)?;
    to_json(&batches)
}

/// The script's fields are a JSON object stored as text: show the object.
fn with_script_object(mut row: Value) -> Value {
    if let Some(text) = row.get("script").and_then(Value::as_str)
        && let Ok(fields) = serde_json::from_str::<Value>(text)
    {
        row["script"] = fields;
    }
    row
}

fn forbidden(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        crate::ApiErrorCode::AccessDenied,
        e.to_string(),
    )
}

pub fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::ColumnDenied(_) | QueryError::Policy(_) => forbidden(e),
        QueryError::Store(_) | QueryError::File { .. } => ApiError::unavailable(e),
        QueryError::Sql(_) => ApiError::internal(e),
    }
}

pub fn to_json(batches: &[RecordBatch]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    // Explicit nulls: every column the principal may see is in every row.
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(&mut out);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs).map_err(ApiError::internal)?;
    writer.finish().map_err(ApiError::internal)?;
    drop(writer);
    if out.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&out).map_err(ApiError::internal)
}
