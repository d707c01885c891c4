//! API keys: `Authorization: Bearer <key>` (or `X-Api-Key`). With no keys
//! configured the API is open, and then only binds loopback (see config).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{ApiError, AppState};

/// Who is calling, as a principal of the policy (for the metadata listing).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: String,
}

pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let keys = &state.config.api_keys;
    let key = presented(request.headers()).and_then(|k| keys.iter().find(|ok| constant_eq(ok, k)));
    if keys.is_empty() || key.is_some() {
        let principal = key
            .and_then(|k| state.config.key_principals.get(k))
            .unwrap_or(&state.config.principal)
            .clone();
        request.extensions_mut().insert(Caller { principal });
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid API key is required",
    )
    .into_response()
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// Compare without leaking where the first difference is.
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
