//! Who is calling and what they may do. A key arrives as
//! `Authorization: Bearer <key>` (or `X-Api-Key`); only its SHA-256 is
//! configured, and digests are compared to digests. A JWT from the web
//! app's identity provider arrives the same way (see [`crate::jwt`]). Each
//! caller maps to a policy principal (whose view every read goes through)
//! and a set of permissions (which every route checks). With no keys and no
//! token issuer configured the API is open, and then only binds loopback
//! (see config).

use std::sync::Arc;

use crate::config::{ApiConfig, Permission};
use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState, error::ApiErrorCode};

/// The caller, once its key is checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The policy principal whose view this caller reads through.
    pub principal: String,
    permissions: Vec<Permission>,
    /// Who exactly (a key's digest prefix or a token's subject): what the
    /// per-caller rate limit counts, and what logs name.
    pub identity: String,
}

impl Caller {
    /// 403 unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.permissions.contains(&permission) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::Forbidden,
            format!("this key lacks the {} permission", permission.as_str()),
        ))
    }
}

#[derive(Debug)]
struct Entry {
    digest: [u8; 32],
    caller: Caller,
}

/// The configured keys, as digests.
#[derive(Debug)]
pub struct Keys {
    entries: Vec<Entry>,
    /// Without keys everyone on loopback is this caller.
    open: Option<Caller>,
}

impl Keys {
    pub fn from_config(cfg: &ApiConfig) -> Self {
        let mut entries: Vec<Entry> = cfg
            .keys
            .iter()
            .filter_map(|k| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(k.sha256.to_ascii_lowercase(), &mut digest).ok()?;
                Some(Entry {
                    digest,
                    caller: Caller {
                        principal: k.principal.clone(),
                        permissions: k.permissions.clone(),
                        identity: format!("key:{}", &hex::encode(digest)[..16]),
                    },
                })
            })
            .collect();
        // The deprecated plain list: upload, read and metrics, never erase.
        entries.extend(cfg.api_keys.iter().map(|k| {
            let digest: [u8; 32] = Sha256::digest(k.as_bytes()).into();
            Entry {
                digest,
                caller: Caller {
                    principal: cfg.key_principals.get(k).unwrap_or(&cfg.principal).clone(),
                    permissions: vec![
                        Permission::ImagesWrite,
                        Permission::ImagesRead,
                        Permission::MetricsRead,
                    ],
                    identity: format!("key:{}", &hex::encode(digest)[..16]),
                },
            }
        }));
        let open = (!cfg.has_keys()).then(|| Caller {
            principal: cfg.principal.clone(),
            permissions: Permission::ALL.to_vec(),
            identity: "open".into(),
        });
        Self { entries, open }
    }

    fn find(&self, presented: &str) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Look at every entry, so timing does not say which one matched.
        let mut found = None;
        for e in &self.entries {
            if constant_eq(&e.digest, &digest) {
                found = Some(&e.caller);
            }
        }
        found
    }
}

pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match identify(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if let Some(limiter) = &state.limits.per_principal
        && let Err(e) = limiter.check(&caller.identity)
    {
        return e.into_response();
    }
    tracing::Span::current().record("caller", caller.identity.as_str());
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(open) = &state.keys.open {
        // Keyless is for this machine only: a page elsewhere that points a
        // DNS name at 127.0.0.1 (DNS rebinding) sends its own name as Host.
        if !loopback_host(headers) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ApiErrorCode::Forbidden,
                "without API keys this API answers only requests addressed to a loopback host",
            ));
        }
        return Ok(open.clone());
    }
    let unauthorized = |detail: String| {
        ApiError::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, detail)
    };
    let presented = presented(headers)
        .ok_or_else(|| unauthorized("a valid API key or token is required".into()))?;
    // A JWT is three base64url parts; an API key never has a dot.
    if let Some(verifier) = &state.jwt
        && presented.matches('.').count() == 2
    {
        let token = verifier.verify(presented).await.map_err(|e| match e {
            // A genuine token, but no principal of ours: refused, not unknown.
            crate::jwt::JwtError::NoPrincipal(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                ApiErrorCode::Forbidden,
                e.to_string(),
            ),
            e => unauthorized(e.to_string()),
        })?;
        if state.policy.principal(&token.principal).is_err() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ApiErrorCode::Forbidden,
                format!(
                    "the token's principal {:?} is not in the policy",
                    token.principal
                ),
            ));
        }
        return Ok(Caller {
            identity: format!("sub:{}", token.subject),
            principal: token.principal,
            permissions: token.permissions,
        });
    }
    state
        .keys
        .find(presented)
        .cloned()
        .ok_or_else(|| unauthorized("a valid API key or token is required".into()))
}

/// `Host` names 127.0.0.1, localhost or ::1 (any port), or is absent.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// Compare without leaking where the first difference is.
fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The hex SHA-256 to configure for `key` (`imgpipe keys hash`).
pub fn key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use crate::config::ApiKey;

    use super::*;

    #[test]
    fn keys_match_by_digest_and_carry_their_permissions() {
        let mut cfg = ApiConfig::default();
        let open = Keys::from_config(&cfg);
        assert!(open.open.is_some());

        cfg.keys = vec![ApiKey {
            sha256: key_digest("reader-key-0123456789").to_uppercase(),
            principal: "privacy-officer".into(),
            permissions: vec![Permission::ImagesRead],
        }];
        cfg.api_keys = vec!["legacy-key-0123456789".into()];
        let keys = Keys::from_config(&cfg);
        assert!(keys.open.is_none());
        let reader = keys.find("reader-key-0123456789").unwrap();
        assert_eq!(reader.principal, "privacy-officer");
        assert!(reader.require(Permission::ImagesRead).is_ok());
        let e = reader.require(Permission::ImagesErase).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, crate::ApiErrorCode::Forbidden)
        );
        let legacy = keys.find("legacy-key-0123456789").unwrap();
        assert_eq!(legacy.principal, "analyst");
        assert!(legacy.require(Permission::ImagesWrite).is_ok());
        assert!(legacy.require(Permission::ImagesErase).is_err());
        assert!(keys.find("reader-key-012345678").is_none());
        // The digest itself is not a key.
        assert!(keys.find(&key_digest("reader-key-0123456789")).is_none());
    }

    #[test]
    fn keyless_answers_only_loopback_hosts() {
        let with_host = |h: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, h.parse().unwrap());
            loopback_host(&headers)
        };
        for ok in ["127.0.0.1:8080", "localhost", "[::1]:80", "localhost:1"] {
            assert!(with_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "127.0.0.1.evil.example:80",
            "[::2]:80",
            "localhost.evil",
        ] {
            assert!(!with_host(bad), "{bad}");
        }
        assert!(loopback_host(&HeaderMap::new()));
    }
}
