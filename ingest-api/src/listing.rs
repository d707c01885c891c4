//! `GET /v1/images`: find images by content (`?sha256=`), or list metadata
//! by receipt time (`?from=&to=&source=&status=&limit=&cursor=`) as the
//! caller's policy principal sees it — the same view `imgpipe query` and
//! Lake Formation give that principal.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Query, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use datafusion::arrow::{
    array::RecordBatch,
    json::{WriterBuilder, writer::JsonArray},
};
use lake::ImageId;
use policies::query::{Listing, QueryError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, auth::Caller, status};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct ImagesQuery {
    sha256: Option<String>,
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn get_images(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ImagesQuery>,
) -> Result<Json<Value>, ApiError> {
    match &q.sha256 {
        Some(sha256) => by_content(&state, sha256).await,
        None => list(&state, &caller, q).await,
    }
}

/// The live images with exactly these bytes, oldest first — so a client
/// can tell whether an image is already in.
async fn by_content(state: &AppState, sha256: &str) -> Result<Json<Value>, ApiError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_sha256",
            "sha256 must be 64 hex digits",
        ));
    }
    let mut images = Vec::new();
    for id in lake::index::find_by_content(&state.store, sha256).await? {
        match status::lookup(state, id).await {
            Ok(s) => images.push(s),
            // Expired or erased since it was indexed.
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(json!({ "images": images })))
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{name} must be an RFC 3339 instant, e.g. 2026-11-23T00:00:00Z"),
                    )
                })
        })
        .transpose()
}

async fn list(state: &AppState, caller: &Caller, q: ImagesQuery) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    // Nothing older than the retention period exists.
    let earliest = now - state.layout.retention;
    let from = instant("from", q.from.as_deref())?.map_or(earliest, |t| t.max(earliest));
    let to = instant("to", q.to.as_deref())?.unwrap_or(now + chrono::Duration::seconds(1));
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={MAX_LIMIT}"),
        ));
    }
    if let Some(source) = &q.source
        && !matches!(source.as_str(), "http" | "kafka")
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "source must be http or kafka",
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<ImageId>().map_err(|_| {
                ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
            })
        })
        .transpose()?;
    let page = Listing {
        from,
        to,
        source: q.source,
        status: q.status,
        after: after.map(|id| id.to_string()),
        // One more than asked, to know whether there is a next page.
        limit: limit + 1,
    };
    if from >= to {
        return Ok(Json(json!({ "images": [], "next_cursor": null })));
    }
    // Ids sort by receipt time: a later page reads from its cursor's hour on.
    let read_from = after.map_or(from, |id| from.max(id.received_at()));
    let batches = policies::query::load_range(&state.store, read_from, to)
        .await
        .map_err(query_error)?;
    let found = policies::query::list(&state.policy, &caller.principal, batches, now, &page)
        .await
        .map_err(query_error)?;
    let mut images = to_json(&found)?;
    let next_cursor = if images.len() > limit {
        images.truncate(limit);
        images.last().and_then(|r| r.get("id")).cloned()
    } else {
        None
    };
    Ok(Json(
        json!({ "images": images, "next_cursor": next_cursor }),
    ))
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::ColumnDenied(_) | QueryError::Policy(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "access_denied", e.to_string())
        }
        QueryError::Store(_) | QueryError::File { .. } => ApiError::unavailable(e),
        QueryError::Sql(_) => ApiError::internal(e),
    }
}

fn to_json(batches: &[RecordBatch]) -> Result<Vec<Value>, ApiError> {
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
