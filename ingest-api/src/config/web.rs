//! The web app's front door: CORS, bearer tokens from an identity provider,
//! rate limits, TLS and direct uploads (`[api.cors]`, `[api.jwt]`,
//! `[api.rate_limit]`, `[api.tls]`, `[api.direct_uploads]`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Browser calls from other origins. Off unless origins are listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`), or `["*"]` for any
    /// origin without credentials.
    pub allowed_origins: Vec<String>,
    /// Answer `Access-Control-Allow-Credentials: true`; never with `*`.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Bearer tokens (JWT) signed by the web app's identity provider, accepted
/// beside API keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// An `aud` every token must carry.
    pub audience: String,
    /// Accepted `alg` values: asymmetric only (RS*, PS*, ES*, EdDSA), so a
    /// public key can never be used as an HMAC secret.
    pub algorithms: Vec<String>,
    /// A JWKS document on disk…
    pub jwks_file: Option<PathBuf>,
    /// …or at a URL (fetched at start, again on an unknown `kid`).
    pub jwks_url: Option<String>,
    /// Least time between two JWKS fetches triggered by unknown `kid`s.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim holding permissions: a space-separated string (`scope`)
    /// or an array of strings (`permissions`), with values such as
    /// `images:write`; others are ignored.
    pub permissions_claim: String,
    /// The claim whose value picks the caller's policy principal.
    pub principal_claim: String,
    /// Claim value → policy principal. Only listed values pick one: a user
    /// who can choose their own claim value cannot name a principal.
    pub principals: BTreeMap<String, String>,
    /// The principal of a token whose value is not listed; unset: such a
    /// token is refused (403).
    pub default_principal: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            algorithms: vec!["RS256".into()],
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(60),
            leeway: Duration::from_secs(60),
            permissions_claim: "scope".into(),
            principal_claim: "sub".into(),
            principals: BTreeMap::new(),
            default_principal: None,
        }
    }
}

pub const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Requests per second with a burst, per caller and per client address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Per API key or token subject; 0 turns the limit off.
    pub per_principal_per_second: u32,
    pub per_principal_burst: u32,
    /// Per client IP, checked before authentication; 0 turns it off.
    pub per_ip_per_second: u32,
    pub per_ip_burst: u32,
    /// Behind a load balancer: take the client address from the last entry
    /// of `X-Forwarded-For` (what the balancer appended), not the peer.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_principal_per_second: 50,
            per_principal_burst: 100,
            per_ip_per_second: 100,
            per_ip_burst: 200,
            trust_forwarded_for: false,
        }
    }
}

/// HTTPS on the API's own listener (also `--tls-cert`/`--tls-key`);
/// both files are read again on SIGHUP.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `POST /v1/uploads`: the browser PUTs large images straight to storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectUploadConfig {
    /// How long an upload URL stays valid (at most an hour: unfinished
    /// uploads are swept two hours after they begin, see
    /// `layout::STAGED_UPLOAD_TTL`).
    #[serde(with = "humantime_serde")]
    pub url_ttl: Duration,
    /// Above this size the upload page uses a direct upload.
    pub page_threshold_bytes: u64,
}

impl Default for DirectUploadConfig {
    fn default() -> Self {
        Self {
            url_ttl: Duration::from_secs(15 * 60),
            page_threshold_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What is wrong with the front-door settings, if anything.
pub(super) fn check(
    cors: &CorsConfig,
    jwt: Option<&JwtConfig>,
    tls: &TlsConfig,
    uploads: &DirectUploadConfig,
) -> Result<(), String> {
    let any = cors.allowed_origins.iter().any(|o| o == "*");
    if any && cors.allowed_origins.len() > 1 {
        return Err("api.cors.allowed_origins: \"*\" must be the only entry".into());
    }
    if any && cors.allow_credentials {
        return Err(
            "api.cors: allow_credentials needs exact origins, not \"*\" (browsers refuse both)"
                .into(),
        );
    }
    for origin in cors.allowed_origins.iter().filter(|o| *o != "*") {
        if !is_origin(origin) {
            return Err(format!(
                "api.cors.allowed_origins: {origin:?} is not an origin (scheme://host[:port], no path)"
            ));
        }
    }
    if let Some(jwt) = jwt {
        if jwt.issuer.is_empty() || jwt.audience.is_empty() {
            return Err("api.jwt needs an issuer and an audience".into());
        }
        if jwt.jwks_file.is_some() == jwt.jwks_url.is_some() {
            return Err("api.jwt needs exactly one of jwks_file and jwks_url".into());
        }
        if jwt.algorithms.is_empty() {
            return Err("api.jwt.algorithms must not be empty".into());
        }
        if let Some(alg) = jwt
            .algorithms
            .iter()
            .find(|a| !JWT_ALGORITHMS.contains(&a.as_str()))
        {
            return Err(format!(
                "api.jwt.algorithms: {alg:?} is not accepted; use {}",
                JWT_ALGORITHMS.join(", ")
            ));
        }
        if jwt.permissions_claim.is_empty() || jwt.principal_claim.is_empty() {
            return Err("api.jwt.permissions_claim and principal_claim must name claims".into());
        }
        if jwt.jwks_refresh < Duration::from_secs(1) {
            return Err("api.jwt.jwks_refresh must be at least 1s".into());
        }
        // Keys fetched in clear text could be swapped by anyone on the path.
        if let Some(url) = &jwt.jwks_url
            && !url.starts_with("https://")
            && !is_loopback_url(url)
        {
            return Err(format!(
                "api.jwt.jwks_url must be https:// (or on loopback), got {url:?}"
            ));
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("api.tls needs both cert and key".into());
    }
    if uploads.url_ttl.is_zero() || uploads.url_ttl > Duration::from_secs(3600) {
        return Err("api.direct_uploads.url_ttl must be between 1s and 1h".into());
    }
    Ok(())
}

/// `http://127.0.0.1…`, `http://localhost…`, `http://[::1]…`.
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|host| {
        rest.strip_prefix(host)
            .is_some_and(|after| after.is_empty() || after.starts_with([':', '/']))
    })
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn is_origin(s: &str) -> bool {
    let Some((scheme, authority)) = s.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") || authority.contains(['/', '?', '#', '@', ' ']) {
        return false;
    }
    // A bracketed IPv6 host has colons of its own.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    !host.is_empty() && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "https://app.example.com",
            "http://127.0.0.1:8080",
            "https://a.b:443",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://",
            "https://x:port",
            "https://u@x",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn wildcard_with_credentials_is_refused() {
        let cors = CorsConfig {
            allowed_origins: vec!["*".into()],
            allow_credentials: true,
            ..CorsConfig::default()
        };
        let err = check(
            &cors,
            None,
            &TlsConfig::default(),
            &DirectUploadConfig::default(),
        )
        .unwrap_err();
        assert!(err.contains("allow_credentials"), "{err}");
        let hs = JwtConfig {
            issuer: "i".into(),
            audience: "a".into(),
            algorithms: vec!["HS256".into()],
            jwks_file: Some("k.json".into()),
            ..JwtConfig::default()
        };
        let err = check(
            &CorsConfig::default(),
            Some(&hs),
            &TlsConfig::default(),
            &DirectUploadConfig::default(),
        )
        .unwrap_err();
        assert!(err.contains("HS256"), "{err}");
    }
}
