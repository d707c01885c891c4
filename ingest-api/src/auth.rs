//! Who is calling and what they may do. A key arrives as
//! `Authorization: Bearer <key>` (or `X-Api-Key`); only its SHA-256 is
//! configured, and digests are compared to digests. Each key maps to a
//! policy principal (whose view every read goes through) and a set of
//! permissions (which every route checks). With no keys configured the API
//! is open, and then only binds loopback (see config).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use lake::config::{ApiConfig, Permission};
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState, error::ApiErrorCode};

/// The caller, once its key is checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The policy principal whose view this caller reads through.
    pub principal: String,
    permissions: Vec<Permission>,
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
                    },
                })
            })
            .collect();
        // The deprecated plain list: upload, read and metrics, never erase.
        entries.extend(cfg.api_keys.iter().map(|k| Entry {
            digest: Sha256::digest(k.as_bytes()).into(),
            caller: Caller {
                principal: cfg.key_principals.get(k).unwrap_or(&cfg.principal).clone(),
                permissions: vec![
                    Permission::ImagesWrite,
                    Permission::ImagesRead,
                    Permission::MetricsRead,
                ],
            },
        }));
        let open = (!cfg.has_keys()).then(|| Caller {
            principal: cfg.principal.clone(),
            permissions: Permission::ALL.to_vec(),
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
    let caller = match &state.keys.open {
        Some(open) => Some(open.clone()),
        None => presented(request.headers()).and_then(|k| state.keys.find(k).cloned()),
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ApiErrorCode::Unauthorized,
            "a valid API key is required",
        )
        .into_response(),
    }
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
    use lake::config::ApiKey;

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
}
