//! `POST /v1/images`: a raw body or `multipart/form-data` with files.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use lake::{
    ImageId, Source,
    admission::{AdmitError, Admitted, Incoming, Reuse},
    sniff::{ImageFormat, Sniffed, sniff},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    ApiError, AppState, Permission, auth::Caller, error::ApiErrorCode, request_id::RequestId,
    status,
};

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[schema(value_type = String, format = Uuid)]
    pub id: ImageId,
    /// Stored by this request (not a retry's earlier image).
    #[serde(skip)]
    pub new: bool,
    pub status: status::Status,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The answer to a multipart upload: one entry per file part.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedMany {
    pub images: Vec<Accepted>,
}

/// What `POST /v1/images` answers: one image, or one per file part.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum UploadAnswer {
    One(Accepted),
    Many(AcceptedMany),
}

pub(crate) struct Upload {
    pub data: Bytes,
    /// Sniffed from the bytes by `check_image`.
    pub format: ImageFormat,
    /// The file name, for multipart parts that have one.
    pub name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/images",
    tag = "images",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Retrying with the same key (same caller, same bytes) answers with the first image"),
    ),
    request_body(
        description = "The image's bytes (any Content-Type), or multipart/form-data with one or more file parts",
        content(
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
        ),
    ),
    responses(
        (status = 202, description = "Stored; processing follows (a multipart body answers one entry per file)", body = UploadAnswer),
        (status = 400, description = "Empty body, bad multipart or Idempotency-Key", body = crate::openapi::ErrorBody),
        (status = 409, description = "A retry whose first image was erased", body = crate::openapi::ErrorBody),
        (status = 413, description = "Over max_upload_bytes or max_files_per_request", body = crate::openapi::ErrorBody),
        (status = 415, description = "Not an image format imgpipe takes", body = crate::openapi::ErrorBody),
        (status = 422, description = "Idempotency-Key reused with other bytes", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(Permission::ImagesWrite)?;
    let slot = state.upload_slot().await?;
    // The upload runs to its end in a task of its own, so that a request
    // cancelled half-way (`api.request_timeout`, the client gone) cannot
    // stop it between two parts: what it stored is then taken back.
    let task = tokio::spawn(store_upload(
        state.clone(),
        caller,
        request_id,
        request,
        slot,
    ));
    let answer = Unanswered::new(state, task).answer().await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

async fn store_upload(
    state: Arc<AppState>,
    caller: Caller,
    request_id: String,
    request: Request,
    _slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<UploadAnswer, ApiError> {
    let idempotency_key = idempotency_key(request.headers())?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        let images =
            multipart_upload(&state, &caller, request, idempotency_key, &request_id).await?;
        return Ok(UploadAnswer::Many(AcceptedMany { images }));
    }
    let data = tokio::time::timeout(state.config.request_timeout, read_body(&state, request))
        .await
        .unwrap_or_else(|_| Err(timed_out(&state)))?;
    let format = check_image(&data)?;
    let upload = Upload {
        data,
        format,
        name: None,
    };
    let dedup = idempotency_key.as_deref().map(|k| dedup_key(&caller, k));
    let accepted = accept(&state, upload, dedup, idempotency_key, Some(request_id)).await?;
    Ok(UploadAnswer::One(accepted))
}

fn timed_out(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        ApiErrorCode::Timeout,
        format!(
            "the upload took longer than {:?}",
            state.config.request_timeout
        ),
    )
}

/// An upload whose answer has not reached its request yet. Dropped before
/// it has (the request was cancelled), whatever the upload stores is
/// erased once it ends: the client was told it failed, so all of it goes.
struct Unanswered {
    state: Arc<AppState>,
    task: Option<tokio::task::JoinHandle<Result<UploadAnswer, ApiError>>>,
}

impl Unanswered {
    fn new(
        state: Arc<AppState>,
        task: tokio::task::JoinHandle<Result<UploadAnswer, ApiError>>,
    ) -> Self {
        Self {
            state,
            task: Some(task),
        }
    }

    async fn answer(mut self) -> Result<UploadAnswer, ApiError> {
        let Some(task) = self.task.as_mut() else {
            return Err(ApiError::internal("an upload answered twice"));
        };
        let result = task.await;
        self.task = None;
        result.map_err(ApiError::internal)?
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Ok(Ok(answer)) = task.await {
                let stored = match answer {
                    UploadAnswer::One(one) => vec![one],
                    UploadAnswer::Many(many) => many.images,
                };
                undo(&state, &stored).await;
            }
        });
    }
}

/// Erase what a refused or abandoned upload stored: only what it made (a
/// retried key's earlier image stays).
async fn undo(state: &AppState, stored: &[Accepted]) {
    for accepted in stored.iter().filter(|a| a.new) {
        crate::telemetry::withdrawn();
        if let Err(e) = retention::erase::erase(&state.store, accepted.id, state.clock.now()).await
        {
            tracing::error!(id = %accepted.id, error = %e, "could not undo a refused upload");
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(k.to_owned())),
        _ => Err(ApiError::bad_request(
            ApiErrorCode::InvalidIdempotencyKey,
            format!("Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

/// Client keys live in their own namespace, per caller (a key's digest or
/// a token's subject, not the principal many callers may share): a client
/// can neither plant an internal record (`content:…`, `kafka:…`,
/// `event:…`), nor reach, probe or take first another caller's keys. The
/// identity is hashed to a fixed length, so no identity and key can spell
/// another's.
fn dedup_key(caller: &Caller, client_key: &str) -> String {
    let identity = hex::encode(Sha256::digest(caller.identity.as_bytes()));
    format!("api:{identity}:{client_key}")
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The whole body, refused with 413 as soon as it is known to be too big:
/// from Content-Length before reading anything, or when the stream passes
/// the limit — never buffering the rest.
async fn read_body(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let limit = state.config.max_upload_bytes;
    if declared_length(request.headers()).is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let limited = http_body_util::Limited::new(
        request.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    );
    match limited.collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::bad_request(
            ApiErrorCode::BodyReadFailed,
            format!("could not read the request body: {e}"),
        )),
    }
}

/// Each file part is stored as soon as it has streamed in and passed its
/// checks, so a request holds one part in memory, not all of them. All or
/// nothing still: when a later part is refused (or the body breaks), the
/// parts already stored are erased before the error is answered.
async fn multipart_upload(
    state: &AppState,
    caller: &Caller,
    request: Request,
    idempotency_key: Option<String>,
    request_id: &str,
) -> Result<Vec<Accepted>, ApiError> {
    let mut stored = Vec::new();
    // Bounded like the request it serves, which may have been cancelled
    // (then nobody else would stop a client that stops sending).
    let result = tokio::time::timeout(
        state.config.request_timeout,
        store_parts(
            state,
            caller,
            request,
            idempotency_key,
            request_id,
            &mut stored,
        ),
    )
    .await
    .unwrap_or_else(|_| Err(timed_out(state)));
    if result.is_err() {
        undo(state, &stored).await;
    }
    result.map(|()| stored)
}

async fn store_parts(
    state: &AppState,
    caller: &Caller,
    request: Request,
    idempotency_key: Option<String>,
    request_id: &str,
    stored: &mut Vec<Accepted>,
) -> Result<(), ApiError> {
    let cfg = &state.config;
    let total_limit = cfg
        .max_upload_bytes
        .saturating_mul(cfg.max_files_per_request as u64);
    if declared_length(request.headers()).is_some_and(|n| n > total_limit.saturating_add(1 << 20)) {
        return Err(ApiError::too_large(total_limit));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(ApiErrorCode::BadMultipart, e.body_text()))?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(ApiErrorCode::BadMultipart, e.body_text())
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        // Files are the parts with a file name; other form fields are ignored.
        let Some(name) = field.file_name().map(str::to_owned) else {
            continue;
        };
        let index = stored.len();
        if index == cfg.max_files_per_request {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiErrorCode::TooManyFiles,
                format!("at most {} files per request", cfg.max_files_per_request),
            ));
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if (data.len() + chunk.len()) as u64 > cfg.max_upload_bytes {
                let mut e = ApiError::too_large(cfg.max_upload_bytes);
                e.detail = format!(
                    "file {name:?} exceeds the limit of {} bytes",
                    cfg.max_upload_bytes
                );
                return Err(e);
            }
            data.extend_from_slice(&chunk);
        }
        let data = data.freeze();
        let format = check_image(&data).map_err(|e| name_part(e, index, &name))?;
        let upload = Upload {
            data,
            format,
            name: Some(name),
        };
        let key = idempotency_key.as_ref().map(|k| format!("{k}#{index}"));
        let dedup = key.as_deref().map(|k| dedup_key(caller, k));
        stored.push(accept(state, upload, dedup, key, Some(request_id.to_owned())).await?);
    }
    if stored.is_empty() {
        return Err(ApiError::bad_request(
            ApiErrorCode::NoFiles,
            "the multipart body has no file parts",
        ));
    }
    Ok(())
}

/// Empty → 400; not an image we take (by magic bytes) → 415.
pub(crate) fn check_image(data: &[u8]) -> Result<ImageFormat, ApiError> {
    if data.is_empty() {
        return Err(ApiError::bad_request(
            ApiErrorCode::EmptyBody,
            "the upload is empty",
        ));
    }
    let unsupported = |detail: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorCode::UnsupportedMediaType,
            detail,
        )
    };
    match sniff(data) {
        Sniffed::Supported(format) => Ok(format),
        Sniffed::Unsupported(name) => Err(unsupported(format!(
            "{name} images are not supported; send JPEG, PNG, WebP, GIF, TIFF or BMP"
        ))),
        Sniffed::Unknown => Err(unsupported(
            "the bytes are not an image format imgpipe accepts (JPEG, PNG, WebP, GIF, TIFF, BMP)"
                .into(),
        )),
    }
}

fn name_part(mut e: ApiError, index: usize, name: &str) -> ApiError {
    e.detail = format!("file {index} ({name}): {}", e.detail);
    e
}

/// Store one image through the lake's one admission path; a repeated
/// dedup key (same principal and client key, or the same direct upload;
/// same bytes) answers with the first image and completes whatever a crash
/// left of it.
pub(crate) async fn accept(
    state: &AppState,
    upload: Upload,
    dedup_key: Option<String>,
    client_ref: Option<String>,
    request_id: Option<String>,
) -> Result<Accepted, ApiError> {
    let bytes = upload.data.len() as u64;
    let incoming = Incoming {
        data: upload.data,
        format: upload.format,
        source: Source::Http,
        source_ref: upload.name.or(client_ref),
        dedup_key,
        on_reuse: Reuse::Refuse,
        request_id,
        arrived_at: None,
    };
    // Embedded: raw is durable before the event is emitted, so if the
    // processor is gone the next start's reconciliation picks the image
    // up. Distributed: the events topic is how the image reaches a
    // processor, so failing to publish fails the upload (a retry with the
    // same Idempotency-Key publishes again without storing twice).
    let admitted = state.admission.admit(incoming).await.map_err(|e| match e {
        AdmitError::KeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different upload",
        ),
        e => ApiError::unavailable(e),
    })?;
    match admitted {
        Admitted::New(id) => {
            crate::telemetry::accepted(bytes);
            Ok(Accepted {
                id,
                new: true,
                status: status::Status::Received,
                received_at: id.received_at(),
                expires_at: state.layout.expires_at(id),
            })
        }
        Admitted::Again(id) => accepted_again(state, id).await,
    }
}

/// The answer to a retry: the first image, as it is now (409 if erased).
pub(crate) async fn accepted_again(state: &AppState, id: ImageId) -> Result<Accepted, ApiError> {
    let status = status::current(state, id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ApiErrorCode::Erased,
            format!("the image this retry stored first, {id}, was erased"),
        )
    })?;
    Ok(Accepted {
        id,
        new: false,
        status,
        received_at: id.received_at(),
        expires_at: state.layout.expires_at(id),
    })
}
