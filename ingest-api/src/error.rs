//! JSON errors with stable codes.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Every error code the API answers with: clients and dashboards match on
/// these strings, so they are declared once, here (the README's table of
/// codes is checked against this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorCode {
    AccessDenied,
    BadMultipart,
    BodyReadFailed,
    EmptyBody,
    Erased,
    Forbidden,
    IdempotencyKeyReused,
    Internal,
    InvalidCursor,
    InvalidId,
    InvalidIdempotencyKey,
    InvalidJson,
    InvalidQuery,
    InvalidSha256,
    MethodNotAllowed,
    NoFiles,
    NotFound,
    RateLimited,
    ShuttingDown,
    StorageUnavailable,
    Timeout,
    TooLarge,
    TooManyFiles,
    Unauthorized,
    UnsupportedMediaType,
    UploadAlreadyPut,
    UploadIncomplete,
}

impl ApiErrorCode {
    pub const ALL: [ApiErrorCode; 27] = [
        Self::AccessDenied,
        Self::BadMultipart,
        Self::BodyReadFailed,
        Self::EmptyBody,
        Self::Erased,
        Self::Forbidden,
        Self::IdempotencyKeyReused,
        Self::Internal,
        Self::InvalidCursor,
        Self::InvalidId,
        Self::InvalidIdempotencyKey,
        Self::InvalidJson,
        Self::InvalidQuery,
        Self::InvalidSha256,
        Self::MethodNotAllowed,
        Self::NoFiles,
        Self::NotFound,
        Self::RateLimited,
        Self::ShuttingDown,
        Self::StorageUnavailable,
        Self::Timeout,
        Self::TooLarge,
        Self::TooManyFiles,
        Self::Unauthorized,
        Self::UnsupportedMediaType,
        Self::UploadAlreadyPut,
        Self::UploadIncomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::BadMultipart => "bad_multipart",
            Self::BodyReadFailed => "body_read_failed",
            Self::EmptyBody => "empty_body",
            Self::Erased => "erased",
            Self::Forbidden => "forbidden",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Internal => "internal",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidId => "invalid_id",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidJson => "invalid_json",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidSha256 => "invalid_sha256",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NoFiles => "no_files",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::ShuttingDown => "shutting_down",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::TooManyFiles => "too_many_files",
            Self::Unauthorized => "unauthorized",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UploadAlreadyPut => "upload_already_put",
            Self::UploadIncomplete => "upload_incomplete",
        }
    }
}

impl std::fmt::Display for ApiErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ApiErrorCode,
    pub detail: String,
    /// Seconds to send as `Retry-After` (429); 503 always says 2.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ApiErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: ApiErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, detail)
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorCode::TooLarge,
            format!("the upload exceeds the limit of {limit} bytes"),
        )
    }

    /// A bug on our side; the detail goes to the log, not the client.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            "something went wrong on our side",
        )
    }

    /// Storage trouble: the client may retry.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::StorageUnavailable,
            "the lake is not answering; retry later",
        )
    }
}

impl From<lake::StoreError> for ApiError {
    fn from(e: lake::StoreError) -> Self {
        Self::unavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": self.code.as_str(), "detail": self.detail })),
        )
            .into_response();
        // Nothing was accepted; the client should come back shortly.
        let retry_after = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => Some(2),
            _ => self.retry_after,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            // Refused before (the rest of) the body was read: this
            // connection cannot carry another request, so say so instead
            // of letting the client reuse it.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table of codes is the list clients read: it names
    /// exactly the codes the API can answer with.
    #[test]
    fn the_readme_table_lists_exactly_these_codes() {
        let readme = include_str!("../../README.md");
        let mut documented: Vec<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once("` | "))
            .filter(|(_, rest)| rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .map(|(code, _)| code)
            .collect();
        documented.sort_unstable();
        let mut declared: Vec<&str> = ApiErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        declared.sort_unstable();
        assert_eq!(documented, declared);
    }
}
