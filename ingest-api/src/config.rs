//! The HTTP API's section of the config file (`[api]` and its tables):
//! its types, defaults and checks. `web` holds the front door's tables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use lake::config::Invalid;
use serde::{Deserialize, Serialize};

mod web;
pub use web::{
    CorsConfig, DirectUploadConfig, JWT_ALGORITHMS, JwtConfig, RateLimitConfig, TlsConfig,
};

/// Keys of this section (below `api.`) whose environment value is a
/// comma-separated list.
pub const LIST_KEYS: &[&str] = &["api_keys", "cors.allowed_origins"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Largest accepted image, in bytes (per file for multipart).
    pub max_upload_bytes: u64,
    pub max_files_per_request: usize,
    /// API keys, each stored as its SHA-256 with a principal and
    /// permissions (`[[api.keys]]`). With no keys at all the API is open to
    /// loopback callers only.
    pub keys: Vec<ApiKey>,
    /// Deprecated: plain keys, each granted `images:write`, `images:read`
    /// and `metrics:read` (never `images:erase`) as `key_principals` says.
    pub api_keys: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Uploads handled at once; bounds memory at about this × max_upload_bytes.
    pub max_concurrent_uploads: usize,
    /// The policy principal whose view the metadata listing shows to a
    /// caller whose key has no entry in `key_principals` (or to everyone,
    /// without keys).
    pub principal: String,
    /// API key → policy principal, for the metadata listing.
    pub key_principals: std::collections::BTreeMap<String, String>,
    /// The policy file; unset means the shipped `policies/default.toml`.
    pub policy: Option<PathBuf>,
    /// Longest wait for a request's headers (slow-client protection).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections one client address (an IPv6 /64) may hold at once.
    pub max_connections_per_address: usize,
    pub cors: CorsConfig,
    /// Bearer tokens from an identity provider; unset: API keys only.
    pub jwt: Option<JwtConfig>,
    pub rate_limit: RateLimitConfig,
    pub tls: TlsConfig,
    pub direct_uploads: DirectUploadConfig,
}

impl ApiConfig {
    /// Does the API check callers at all?
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty() || !self.api_keys.is_empty() || self.jwt.is_some()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_upload_bytes: 32 * 1024 * 1024,
            max_files_per_request: 32,
            keys: Vec::new(),
            api_keys: Vec::new(),
            request_timeout: Duration::from_secs(60),
            max_concurrent_uploads: 16,
            principal: "analyst".into(),
            key_principals: Default::default(),
            policy: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_address: 256,
            cors: CorsConfig::default(),
            jwt: None,
            rate_limit: RateLimitConfig::default(),
            tls: TlsConfig::default(),
            direct_uploads: DirectUploadConfig::default(),
        }
    }
}

/// What an API key may do; every route checks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "images:write")]
    ImagesWrite,
    #[serde(rename = "images:read")]
    ImagesRead,
    #[serde(rename = "images:erase")]
    ImagesErase,
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::ImagesWrite,
        Permission::ImagesRead,
        Permission::ImagesErase,
        Permission::MetricsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ImagesWrite => "images:write",
            Permission::ImagesRead => "images:read",
            Permission::ImagesErase => "images:erase",
            Permission::MetricsRead => "metrics:read",
        }
    }
}

/// One `[[api.keys]]` entry. Only the key's digest is configured, so the
/// config file holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Hex SHA-256 of the key as sent (`imgpipe keys hash` prints it).
    pub sha256: String,
    /// A principal of the policy file: the view this key reads through.
    pub principal: String,
    pub permissions: Vec<Permission>,
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_upload_bytes == 0 {
            return Invalid::err("api.max_upload_bytes must be positive");
        }
        if self.max_files_per_request == 0 || self.max_concurrent_uploads == 0 {
            return Invalid::err(
                "api.max_files_per_request and api.max_concurrent_uploads must be positive",
            );
        }
        if let Some(key) = self
            .key_principals
            .keys()
            .find(|k| !self.api_keys.contains(k))
        {
            return Invalid::err(format!(
                "api.key_principals names a key that is not in api.api_keys (starting {:?})",
                key.chars().take(4).collect::<String>()
            ));
        }
        if self.api_keys.iter().any(|k| k.len() < 16) {
            return Invalid::err("api.api_keys: every key must be at least 16 characters");
        }
        let mut digests = std::collections::BTreeSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Invalid::err(format!(
                    "api.keys[{i}].sha256 must be 64 hex digits (imgpipe keys hash prints one)"
                ));
            }
            if !digests.insert(key.sha256.to_ascii_lowercase()) {
                return Invalid::err(format!("api.keys[{i}].sha256 appears twice"));
            }
            if key.permissions.is_empty() || key.principal.is_empty() {
                return Invalid::err(format!(
                    "api.keys[{i}] needs a principal and at least one permission"
                ));
            }
        }
        if !self.has_keys() && !self.cors.allowed_origins.is_empty() {
            return Invalid::err(
                "api.cors needs API keys or [api.jwt]: a keyless API must not be callable from other origins' pages",
            );
        }
        if self.header_read_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Invalid::err("api.header_read_timeout and api.idle_timeout must be positive");
        }
        if self.max_connections_per_address == 0 {
            return Invalid::err("api.max_connections_per_address must be positive");
        }
        web::check(
            &self.cors,
            self.jwt.as_ref(),
            &self.tls,
            &self.direct_uploads,
        )
        .map_err(Invalid)
    }

    /// The serving commands may listen publicly only behind API keys.
    pub fn check_listen(&self) -> Result<(), Invalid> {
        if !self.listen.ip().is_loopback() && !self.has_keys() {
            return Invalid::err(format!(
                "refusing to listen on {} without api.keys (or api.api_keys): anyone could \
                 upload; configure keys or listen on 127.0.0.1",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_listen_needs_keys() {
        let mut cfg = ApiConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..ApiConfig::default()
        };
        assert!(cfg.check_listen().is_err());
        cfg.api_keys = vec!["k".repeat(32)];
        assert!(cfg.check_listen().is_ok());
        cfg.api_keys.clear();
        cfg.keys = vec![ApiKey {
            sha256: "ab".repeat(32),
            principal: "analyst".into(),
            permissions: vec![Permission::ImagesRead],
        }];
        assert!(cfg.check_listen().is_ok());
    }
}
