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
use lake::ImageId;
use policies::query::Listing;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ApiError, AppState, Permission,
    auth::Caller,
    error::ApiErrorCode,
    status::{self, query_error, to_json},
};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImagesQuery {
    /// Find the live images with exactly these bytes (64 hex digits),
    /// a page of `limit` from `cursor` on; the other parameters are then
    /// ignored.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: Option<String>,
    /// RFC 3339; default: the start of the retention period.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `http` or `kafka`.
    #[param(pattern = "^(http|kafka)$")]
    source: Option<String>,
    /// `received`, `processed` or `quarantined`.
    status: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")]
    cursor: Option<String>,
}

/// A page of metadata rows, as the caller's principal sees them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImagePage {
    /// Rows (listing) or image statuses (`sha256` lookup).
    #[schema(value_type = Vec<Object>)]
    pub images: Vec<Value>,
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<Value>,
}

#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "images",
    params(ImagesQuery),
    responses(
        (status = 200, description = "Rows received in [from, to), oldest first; or, with sha256, the images with those bytes", body = ImagePage),
        (status = 400, description = "A parameter is wrong", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_images(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ImagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ImagesRead)?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(ApiErrorCode::InvalidQuery, e.body_text()))?;
    // Listings read Parquet and run a query: a few at a time, the rest
    // wait (within the request's deadline), so they cannot crowd out uploads.
    let _turn = state.listing_slot().await?;
    match &q.sha256 {
        Some(sha256) => by_content(&state, &caller, sha256, &q).await,
        None => list(&state, &caller, q).await,
    }
}

fn page_limit(q: &ImagesQuery) -> Result<usize, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            ApiErrorCode::InvalidQuery,
            format!("limit must be 1..={MAX_LIMIT}"),
        ));
    }
    Ok(limit)
}

fn cursor(q: &ImagesQuery) -> Result<Option<ImageId>, ApiError> {
    q.cursor
        .as_deref()
        .map(|c| {
            c.parse::<ImageId>().map_err(|_| {
                ApiError::bad_request(
                    ApiErrorCode::InvalidCursor,
                    "cursor is not one this API returned",
                )
            })
        })
        .transpose()
}

/// The live images with exactly these bytes, oldest first — so a client
/// can tell whether an image is already in — each as the caller's
/// principal sees it.
async fn by_content(
    state: &AppState,
    caller: &Caller,
    sha256: &str,
    q: &ImagesQuery,
) -> Result<Json<Value>, ApiError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            ApiErrorCode::InvalidSha256,
            "sha256 must be 64 hex digits",
        ));
    }
    let (limit, after) = (page_limit(q)?, cursor(q)?);
    let mut ids = lake::index::find_by_content(&state.store, sha256).await?;
    ids.sort();
    // One lookup per id, so a page of them: `limit`, from the cursor on.
    let mut images = Vec::new();
    let mut next_cursor = None;
    let mut looked_at = None;
    for id in ids.into_iter().filter(|id| after.is_none_or(|a| *id > a)) {
        if images.len() == limit {
            next_cursor = looked_at.map(|last: ImageId| Value::String(last.to_string()));
            break;
        }
        looked_at = Some(id);
        match status::lookup(state, caller, id).await {
            Ok(s) => images.push(s),
            // Expired or erased since it was indexed, or hidden from the
            // caller by its row filter.
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(
        json!({ "images": images, "next_cursor": next_cursor }),
    ))
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        ApiErrorCode::InvalidQuery,
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
    // Nothing is received in the future either: the range read is at most
    // the retention period's hours, whatever the client asks.
    let latest = now + chrono::Duration::seconds(1);
    let to = instant("to", q.to.as_deref())?.map_or(latest, |t| t.min(latest));
    let limit = page_limit(&q)?;
    if let Some(source) = &q.source
        && !matches!(source.as_str(), "http" | "kafka")
    {
        return Err(ApiError::bad_request(
            ApiErrorCode::InvalidQuery,
            "source must be http or kafka",
        ));
    }
    let after = cursor(&q)?;
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
    // Ids sort by receipt time: a later page reads from its cursor's hour
    // on, in windows of hours that double until the page is full, so a
    // page costs the hours it spans, not the retention period.
    let mut start = after.map_or(from, |id| from.max(id.received_at()));
    let mut hours = 1;
    let mut found = Vec::new();
    let mut rows = 0;
    while start < to && rows < page.limit {
        let end = (lake::layout::hour_start(start) + chrono::Duration::hours(hours)).min(to);
        let batches = policies::query::load_range(&state.store, start, end)
            .await
            .map_err(query_error)?;
        let window = Listing {
            from: start.max(from),
            to: end,
            limit: page.limit - rows,
            ..page.clone()
        };
        let got = policies::query::list(&state.policy, &caller.principal, batches, now, &window)
            .await
            .map_err(query_error)?;
        rows += got.iter().map(|b| b.num_rows()).sum::<usize>();
        found.extend(got);
        start = end;
        hours *= 2;
    }
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
