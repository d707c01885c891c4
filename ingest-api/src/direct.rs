//! Direct uploads (the "direct creator upload" pattern): a large image goes
//! from the browser straight to storage, not through this process.
//!
//! 1. `POST /v1/uploads {"bytes": n}` → an upload id and a URL to PUT
//!    exactly `n` bytes to: presigned S3 on an S3 lake, or, on the
//!    filesystem lake, this server's own `PUT /v1/uploads/{id}/data`
//!    carrying an HMAC signature (both short-lived, both self-authorizing).
//! 2. `POST /v1/uploads/{id}/complete` → size and magic bytes checked, then
//!    the image is admitted through the same path as every other upload
//!    (the upload id is its dedup key, so completing twice gives one
//!    image), and the staged bytes are removed. A refused upload is removed
//!    at once; one never completed is swept two hours after it began.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use http_body_util::BodyExt;
use lake::{ImageId, layout, store::PutOptions};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    ApiError, AppState, Permission,
    auth::Caller,
    error::ApiErrorCode,
    request_id::RequestId,
    upload::{self, Accepted, Upload},
};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What `POST /v1/uploads` asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The exact size of the image to be PUT, in bytes.
    #[schema(minimum = 1)]
    pub bytes: u64,
}

/// Where to PUT the bytes, and until when.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTicket {
    #[schema(value_type = String, format = Uuid)]
    pub id: ImageId,
    /// PUT the image's bytes here, with exactly `bytes` bytes of body.
    pub url: String,
    pub method: &'static str,
    /// Headers the PUT must carry as given.
    pub headers: std::collections::BTreeMap<String, String>,
    pub bytes: u64,
    pub expires_at: DateTime<Utc>,
    /// POST here (with the same credentials as this request) once the PUT
    /// has succeeded.
    pub complete_url: String,
}

/// Kept beside the staged bytes: who may complete the upload.
#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    identity: String,
    bytes: u64,
    request_id: Option<String>,
}

/// The dedup key of a direct upload's image: its upload id.
fn dedup_key(upload: ImageId) -> String {
    format!("upload:{upload}")
}

/// Signs the filesystem lake's upload URLs and remembers which were used.
/// The key lives in this process only: a restart voids outstanding URLs
/// (the client asks for another), so the memory of used ones can too.
pub struct UrlSigner {
    key: Vec<u8>,
    /// Uploads whose URL took (or is taking) its bytes, until the URL
    /// expires: an upload URL is used once.
    used: std::sync::Mutex<std::collections::HashMap<ImageId, i64>>,
}

/// A URL's claim on its one PUT; dropped unconfirmed (the PUT failed), the
/// URL may be used again.
struct PutClaim<'a> {
    signer: &'a UrlSigner,
    upload: ImageId,
    stored: bool,
}

impl Drop for PutClaim<'_> {
    fn drop(&mut self) {
        if !self.stored {
            self.signer.used().remove(&self.upload);
        }
    }
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner")
    }
}

impl UrlSigner {
    pub fn random() -> Self {
        Self {
            key: rand::random::<[u8; 32]>().to_vec(),
            used: std::sync::Mutex::default(),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ImageId, i64>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one PUT of `upload`'s URL (valid until `expires`), unless it was
    /// taken already. Forgets URLs that have expired (they are refused by
    /// their signature's time anyway), so the memory is bounded by the URLs
    /// handed out within their lifetime.
    fn claim(&self, upload: ImageId, expires: i64, now: i64) -> Option<PutClaim<'_>> {
        let mut used = self.used();
        used.retain(|_, until| *until >= now);
        if used.insert(upload, expires).is_some() {
            return None;
        }
        Some(PutClaim {
            signer: self,
            upload,
            stored: false,
        })
    }

    fn mac(&self, upload: ImageId, bytes: u64, expires: i64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(format!("{upload}\n{bytes}\n{expires}").as_bytes());
        mac
    }

    fn sign(&self, upload: ImageId, bytes: u64, expires: i64) -> String {
        hex::encode(self.mac(upload, bytes, expires).finalize().into_bytes())
    }

    fn verify(&self, upload: ImageId, bytes: u64, expires: i64, signature: &str) -> bool {
        hex::decode(signature)
            .is_ok_and(|sig| self.mac(upload, bytes, expires).verify_slice(&sig).is_ok())
    }
}

#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "uploads",
    request_body = NewUpload,
    responses(
        (status = 201, description = "Where to PUT the image", body = UploadTicket),
        (status = 400, description = "Malformed request", body = crate::openapi::ErrorBody),
        (status = 413, description = "Over max_upload_bytes", body = crate::openapi::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::openapi::ErrorBody),
        (status = 422, description = "Not a valid request body", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(Permission::ImagesWrite)?;
    let headers = request.headers().clone();
    let uri = request.uri().clone();
    let body = small_body(request).await?;
    let wanted: NewUpload = crate::json_body(&headers, &body)?;
    let limit = state.config.max_upload_bytes;
    if wanted.bytes == 0 {
        return Err(ApiError::bad_request(
            ApiErrorCode::EmptyBody,
            "an upload needs at least one byte",
        ));
    }
    if wanted.bytes > limit {
        return Err(ApiError::too_large(limit));
    }
    let now = state.clock.now();
    let id = ImageId::new(now);
    let ttl = state.config.direct_uploads.url_ttl;
    let ticket = Ticket {
        identity: caller.identity.clone(),
        bytes: wanted.bytes,
        request_id: Some(request_id),
    };
    let body = Bytes::from(serde_json::to_vec(&ticket).map_err(ApiError::internal)?);
    state
        .store
        .put(&layout::upload_ticket_key(id), body, &json_opts())
        .await?;
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
    let base = base_url(&state, &headers, &uri);
    let (url, signed_headers) = match state
        .store
        .presign_put(&layout::upload_data_key(id), wanted.bytes, ttl)
        .await?
    {
        Some(presigned) => (presigned.url, presigned.headers),
        None => {
            let expires = expires_at.timestamp();
            let signature = state.url_signer.sign(id, wanted.bytes, expires);
            (
                format!(
                    "{base}/v1/uploads/{id}/data?bytes={}&expires={expires}&signature={signature}",
                    wanted.bytes
                ),
                Vec::new(),
            )
        }
    };
    let ticket = UploadTicket {
        id,
        url,
        method: "PUT",
        headers: signed_headers.into_iter().collect(),
        bytes: wanted.bytes,
        expires_at,
        complete_url: format!("{base}/v1/uploads/{id}/complete"),
    };
    Ok((StatusCode::CREATED, Json(ticket)).into_response())
}

/// Largest JSON body `POST /v1/uploads` reads.
const MAX_REQUEST_JSON: usize = 4096;

/// A small JSON body, read only up to [`MAX_REQUEST_JSON`].
async fn small_body(request: Request) -> Result<Bytes, ApiError> {
    http_body_util::Limited::new(request.into_body(), MAX_REQUEST_JSON)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::too_large(MAX_REQUEST_JSON as u64)
            } else {
                ApiError::bad_request(
                    ApiErrorCode::BodyReadFailed,
                    format!("could not read the request body: {e}"),
                )
            }
        })
}

/// `https://host` as the client addressed us, for absolute URLs: our own
/// TLS, or behind a load balancer we trust, the scheme it says the client
/// used (`X-Forwarded-Proto`), so a client following the URL never sends
/// its credentials in clear text. Relative when the host is not known.
fn base_url(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let forwarded = state
        .config
        .rate_limit
        .trust_forwarded_for
        .then(|| {
            headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
        })
        .flatten()
        .filter(|p| matches!(*p, "http" | "https"));
    let scheme = match forwarded {
        Some(proto) => proto,
        None if state.config.tls.cert.is_some() => "https",
        None => "http",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match host {
        Some(host) if !host.is_empty() && !host.contains(['/', ' ', '@', '\\']) => {
            format!("{scheme}://{host}")
        }
        _ => String::new(),
    }
}

fn json_opts() -> PutOptions {
    PutOptions {
        content_type: Some("application/json".into()),
        metadata: Vec::new(),
    }
}

/// The signed query of a filesystem lake's upload URL.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signed {
    bytes: u64,
    expires: i64,
    signature: String,
}

#[utoipa::path(
    put,
    path = "/v1/uploads/{id}/data",
    tag = "uploads",
    params(("id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", description = "The upload id (a UUIDv7)"), Signed),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored; now complete the upload"),
        (status = 400, description = "Malformed request", body = crate::openapi::ErrorBody),
        (status = 403, description = "Bad or expired signature", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such upload", body = crate::openapi::ErrorBody),
        (status = 409, description = "The bytes were PUT already (an upload URL is used once)", body = crate::openapi::ErrorBody),
        (status = 413, description = "More bytes than signed for", body = crate::openapi::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::openapi::ErrorBody),
        (status = 503, description = "The lake is not answering", body = crate::openapi::ErrorBody),
    ),
    security(())
)]
/// The filesystem lake's stand-in for a presigned S3 PUT: the signature is
/// the credential, as it is for S3.
pub async fn put_data(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    signed: Result<Query<Signed>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = crate::routes::image_id(&id)?;
    let Query(signed) = signed.map_err(|_| {
        ApiError::bad_request(
            ApiErrorCode::InvalidQuery,
            "an upload URL carries bytes, expires and signature; ask POST /v1/uploads for one",
        )
    })?;
    let refused = |detail: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::Forbidden,
            detail.to_owned(),
        )
    };
    if !state
        .url_signer
        .verify(id, signed.bytes, signed.expires, &signed.signature)
    {
        return Err(refused("the upload URL's signature does not match"));
    }
    if state.clock.now().timestamp() > signed.expires {
        return Err(refused("the upload URL has expired; ask for a new one"));
    }
    let now = state.clock.now().timestamp();
    let Some(mut claim) = state.url_signer.claim(id, signed.expires, now) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ApiErrorCode::UploadAlreadyPut,
            "this upload URL was used already; ask POST /v1/uploads for another",
        ));
    };
    // The bytes are held in memory: the same slots as every upload.
    let _slot = state.upload_slot().await?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n != signed.bytes) {
        return Err(ApiError::too_large(signed.bytes));
    }
    let limited =
        http_body_util::Limited::new(body, usize::try_from(signed.bytes).unwrap_or(usize::MAX));
    let data = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::too_large(signed.bytes));
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                ApiErrorCode::BodyReadFailed,
                format!("could not read the request body: {e}"),
            ));
        }
    };
    state
        .store
        .put(&layout::upload_data_key(id), data, &PutOptions::default())
        .await?;
    claim.stored = true;
    Ok(StatusCode::OK)
}

#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    tag = "uploads",
    params(("id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", description = "The upload id (a UUIDv7)")),
    responses(
        (status = 202, description = "Admitted: the image's id and status", body = Accepted),
        (status = 400, description = "Not an upload id", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such upload for this caller, or it expired", body = crate::openapi::ErrorBody),
        (status = 409, description = "The bytes were not (all) PUT yet, or the image was erased", body = crate::openapi::ErrorBody),
        (status = 413, description = "Over max_upload_bytes", body = crate::openapi::ErrorBody),
        (status = 415, description = "Not an image imgpipe takes; the upload is removed", body = crate::openapi::ErrorBody),
        crate::openapi::Refusals,
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ImagesWrite)?;
    let id = crate::routes::image_id(&id)?;
    let gone = || ApiError::not_found(format!("upload {id} does not exist or has expired"));
    let ticket_key = layout::upload_ticket_key(id);
    let data_key = layout::upload_data_key(id);
    let Some(ticket) = state.store.get(&ticket_key).await? else {
        return Err(gone());
    };
    let ticket: Ticket = serde_json::from_slice(&ticket).map_err(ApiError::internal)?;
    // Someone else's upload does not exist for this caller.
    if ticket.identity != caller.identity {
        return Err(gone());
    }
    let size = state
        .store
        .list(&data_key)
        .await?
        .into_iter()
        .find(|o| o.key == data_key)
        .map(|o| o.size);
    let incomplete = |detail: String| {
        ApiError::new(StatusCode::CONFLICT, ApiErrorCode::UploadIncomplete, detail)
    };
    if size.is_none()
        && let Some((image, _)) = lake::index::dedup_records(&state.store, &dedup_key(id))
            .await?
            .first()
    {
        // Completed before: the same answer again.
        let accepted = upload::accepted_again(&state, *image).await?;
        return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
    }
    match size {
        None => return Err(incomplete(format!("nothing was PUT for upload {id} yet"))),
        Some(n) if n > state.config.max_upload_bytes => {
            discard(&state, &[data_key.clone(), ticket_key.clone()]).await;
            return Err(ApiError::too_large(state.config.max_upload_bytes));
        }
        Some(n) if n != ticket.bytes => {
            return Err(incomplete(format!(
                "upload {id} has {n} of its {} bytes",
                ticket.bytes
            )));
        }
        Some(_) => {}
    }
    let _slot = state.upload_slot().await?;
    let Some(data) = state.store.get(&data_key).await? else {
        return Err(incomplete(format!("nothing was PUT for upload {id} yet")));
    };
    let format = match upload::check_image(&data) {
        Ok(format) => format,
        Err(e) => {
            discard(&state, &[data_key.clone(), ticket_key.clone()]).await;
            return Err(e);
        }
    };
    let upload = Upload {
        data,
        format,
        name: None,
    };
    let accepted = upload::accept(
        &state,
        upload,
        Some(dedup_key(id)),
        Some(format!("upload:{id}")),
        ticket.request_id,
    )
    .await?;
    // Admitted: the staged bytes have done their job. The ticket stays
    // (until swept) so that completing again answers the same image.
    discard(&state, &[layout::upload_data_key(id)]).await;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Remove staged objects, every version. A failure only delays it: the
/// sweeper removes them within two hours.
async fn discard(state: &AppState, keys: &[String]) {
    for key in keys {
        let result = async {
            let versions = lake::erasure::versions_of(&state.store, key).await?;
            state.store.purge(&versions).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%key, error = %e, "could not remove a staged upload; the sweeper will");
        }
    }
}
