use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lake::config::Permission;
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::{ApiError, AppState, auth, auth::Caller, error::ApiErrorCode, listing, status, upload};

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/images", post(upload::upload).get(listing::get_images))
        .route("/v1/images/{id}", get(get_image).delete(erase_image))
        .route("/metrics", get(metrics))
        // Upload size is enforced by the upload handler, per file and
        // before buffering, with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), deadline));
    Router::new()
        .merge(v1)
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ApiErrorCode::MethodNotAllowed,
                "method not allowed here",
            )
        })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every request gets `api.request_timeout`, answered as a JSON error.
async fn deadline(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ApiErrorCode::Timeout,
            format!(
                "the request took longer than {:?}",
                state.config.request_timeout
            ),
        )
        .into_response(),
    }
}

fn image_id(id: &str) -> Result<lake::ImageId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(
            ApiErrorCode::InvalidId,
            format!("{id:?} is not an image id"),
        )
    })
}

async fn get_image(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ImagesRead)?;
    Ok(Json(status::lookup(&state, &caller, image_id(&id)?).await?))
}

/// Erase every byte of the image now: 204, or 404 if nothing of it exists.
/// A privileged act: it needs `images:erase`.
async fn erase_image(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ImagesErase)?;
    let id = image_id(&id)?;
    match retention::erase::erase(&state.store, id, state.clock.now()).await {
        Ok(Some(_)) => Ok(StatusCode::NO_CONTENT),
        Ok(None) => Err(ApiError::not_found(format!(
            "image {id} does not exist or has expired"
        ))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

/// Open to load balancers, so it says only ok or unavailable: no bucket,
/// path or error text.
async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store not answering");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable" })),
            )
        }
    }
}

/// Prometheus text; needs `metrics:read`.
async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<String, ApiError> {
    caller.require(Permission::MetricsRead)?;
    Ok(state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default())
}
