use std::sync::Arc;

use crate::config::{CorsConfig, Permission};
use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Serialize;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    ApiError, AppState, auth, auth::Caller, direct, error::ApiErrorCode, listing, page, rate_limit,
    request_id, status, telemetry, upload,
};

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/images", post(upload::upload).get(listing::get_images))
        .route("/v1/images/{id}", get(get_image).delete(erase_image))
        .route("/v1/images/{id}/thumbnail", get(thumbnail))
        .route("/v1/uploads", post(direct::create))
        .route("/v1/uploads/{id}/complete", post(direct::complete))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn(telemetry::record_http))
        // Upload size is enforced by the upload handler, per file and
        // before buffering, with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), deadline));
    // Authorized by what they carry (a signature) or public by nature.
    let open = Router::new()
        .route("/v1/uploads/{id}/data", put(direct::put_data))
        .route("/healthz", get(healthz))
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route_layer(middleware::from_fn(telemetry::record_http))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), deadline));
    let docs: Router<Arc<AppState>> = SwaggerUi::new("/docs")
        .url("/openapi.json", crate::openapi::spec())
        .into();
    let mut app = Router::new()
        .merge(v1)
        .merge(open)
        .merge(docs)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ApiErrorCode::MethodNotAllowed,
                "method not allowed here",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::per_ip,
        ));
    if let Some(cors) = cors_layer(&state.config.cors) {
        app = app.layer(cors);
    }
    app.layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// Browsers on the configured origins may call every route; preflights
/// are answered before authentication (they carry no credentials).
fn cors_layer(cfg: &CorsConfig) -> Option<CorsLayer> {
    if cfg.allowed_origins.is_empty() {
        return None;
    }
    let origin = if cfg.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cfg.allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-api-key"),
                request_id::X_REQUEST_ID.clone(),
            ])
            .expose_headers([
                request_id::X_REQUEST_ID.clone(),
                header::RETRY_AFTER,
                header::LOCATION,
            ])
            .allow_credentials(cfg.allow_credentials)
            .max_age(cfg.max_age),
    )
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

pub(crate) fn image_id(id: &str) -> Result<lake::ImageId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(
            ApiErrorCode::InvalidId,
            format!("{id:?} is not an image id"),
        )
    })
}

#[utoipa::path(
    get,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", description = "The image id (a UUIDv7)")),
    responses(
        (status = 200, description = "Where the image is, and its metadata as the caller's principal sees it", body = status::ImageStatus),
        (status = 400, description = "Not an image id", body = crate::openapi::ErrorBody),
        (status = 404, description = "Unknown, expired, erased or hidden by the row filter", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn get_image(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ImagesRead)?;
    Ok(Json(status::lookup(&state, &caller, image_id(&id)?).await?))
}

#[utoipa::path(
    get,
    path = "/v1/images/{id}/thumbnail",
    tag = "images",
    params(("id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", description = "The image id (a UUIDv7)")),
    responses(
        (status = 200, description = "The thumbnail (JPEG)", content_type = "image/jpeg", body = Vec<u8>),
        (status = 400, description = "Not an image id", body = crate::openapi::ErrorBody),
        (status = 404, description = "Not processed (yet), unknown, expired, erased or hidden", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// The processed image's thumbnail, to a caller who may see the image.
/// Never cached: it must not outlive the image in a browser either.
pub(crate) async fn thumbnail(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ImagesRead)?;
    let id = image_id(&id)?;
    // The thumbnail is the `thumb_key` column's object: a principal whose
    // policy hides that column does not get it through this route either.
    let who = state.policy.principal(&caller.principal).map_err(|e| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::AccessDenied,
            e.to_string(),
        )
    })?;
    if !state
        .policy
        .visible_columns(who)
        .iter()
        .any(|c| c == "thumb_key")
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::AccessDenied,
            "the policy does not grant this principal the thumb_key column",
        ));
    }
    let seen = status::lookup(&state, &caller, id).await?;
    if seen.status != status::Status::Processed {
        return Err(ApiError::not_found(format!(
            "image {id} has no thumbnail (yet): it is {}",
            seen.status.as_str()
        )));
    }
    let jpeg = state
        .store
        .get(&lake::layout::thumb_key(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("image {id} has no thumbnail")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", description = "The image id (a UUIDv7)")),
    responses(
        (status = 204, description = "Every byte of the image is gone"),
        (status = 400, description = "Not an image id", body = crate::openapi::ErrorBody),
        (status = 404, description = "Unknown, expired or already erased", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// Erase every byte of the image now: 204, or 404 if nothing of it exists.
/// A privileged act: it needs `images:erase`.
pub(crate) async fn erase_image(
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

/// `ok` or `unavailable`, nothing more.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The lake answers", body = Health),
        (status = 429, description = "Rate limited", body = crate::openapi::ErrorBody),
        (status = 503, description = "The lake is not answering", body = Health),
    ),
    security(())
)]
/// Open to load balancers, so it says only ok or unavailable: no bucket,
/// path or error text.
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store not answering");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable".into(),
                }),
            )
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// Prometheus text; needs `metrics:read`.
pub(crate) async fn metrics(
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
