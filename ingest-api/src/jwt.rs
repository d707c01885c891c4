//! Bearer tokens from the web app's identity provider: signature checked
//! against its JWKS, then issuer, audience, expiry (with clock skew) and an
//! allow-listed asymmetric algorithm. A claim gives the permissions, another
//! the policy principal.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::RwLock,
    time::{Duration, Instant},
};

use crate::config::{JwtConfig, Permission};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{JwkSet, KeyAlgorithm},
};
use serde_json::{Map, Value};

/// Largest JWKS document we read.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key for this token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token has no usable {0:?} claim")]
    MissingClaim(String),
    #[error("the token's {0:?} claim names no principal of this API")]
    NoPrincipal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading {0}: {1}")]
    Read(String, String),
    #[error("{0} is not a JWKS document: {1}")]
    Parse(String, String),
}

/// What a valid token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCaller {
    /// The principal claim's value, before mapping.
    pub subject: String,
    pub principal: String,
    pub permissions: Vec<Permission>,
}

struct Key {
    key: DecodingKey,
    /// The key's own `alg`, when the JWKS pins one.
    alg: Option<Algorithm>,
}

struct KeySet {
    keys: HashMap<Option<String>, Vec<Key>>,
    fetched: Instant,
}

pub struct Verifier {
    cfg: JwtConfig,
    allowed: Vec<Algorithm>,
    keys: RwLock<KeySet>,
    /// One refetch at a time.
    refreshing: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Loads the JWKS once: a bad file or an unreachable URL stops the
    /// server at start rather than refusing every token later.
    pub async fn new(cfg: &JwtConfig) -> Result<Self, JwksError> {
        let allowed = cfg
            .algorithms
            .iter()
            .filter_map(|a| Algorithm::from_str(a).ok())
            .collect();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Read("JWKS client".into(), e.to_string()))?;
        let verifier = Self {
            cfg: cfg.clone(),
            allowed,
            keys: RwLock::new(KeySet {
                keys: HashMap::new(),
                fetched: Instant::now(),
            }),
            refreshing: tokio::sync::Mutex::new(()),
            http,
        };
        let set = verifier.fetch().await?;
        verifier.install(set);
        Ok(verifier)
    }

    pub async fn verify(&self, token: &str) -> Result<TokenCaller, JwtError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        if !self.allowed.contains(&header.alg) {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let claims = match self.check_with_keys(token, header.alg, &header.kid) {
            Err(JwtError::UnknownKey(kid)) => {
                self.refresh_if_due().await;
                self.check_with_keys(token, header.alg, &header.kid)
                    .map_err(|e| match e {
                        JwtError::UnknownKey(_) => JwtError::UnknownKey(kid),
                        e => e,
                    })?
            }
            other => other?,
        };
        self.caller(&claims)
    }

    fn check_with_keys(
        &self,
        token: &str,
        alg: Algorithm,
        kid: &Option<String>,
    ) -> Result<Map<String, Value>, JwtError> {
        let set = self
            .keys
            .read()
            .map_err(|_| JwtError::UnknownKey(kid.clone()))?;
        // A token without `kid` may use any key of its algorithm's family.
        let candidates: Vec<&Key> = match kid {
            Some(_) => set.keys.get(kid).into_iter().flatten().collect(),
            None => set.keys.values().flatten().collect(),
        };
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_issuer(&[&self.cfg.issuer]);
        validation.set_audience(&[&self.cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.cfg.leeway.as_secs();
        validation.validate_nbf = true;
        let mut last = None;
        for key in candidates {
            if key.alg.is_some_and(|pinned| pinned != alg) {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => Err(JwtError::UnknownKey(kid.clone())),
            Some(e) => Err(JwtError::Invalid(reason(&e))),
        }
    }

    fn caller(&self, claims: &Map<String, Value>) -> Result<TokenCaller, JwtError> {
        let claim = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| JwtError::MissingClaim(name.to_owned()))
        };
        // Who exactly: the issuer's subject, whatever picks the principal.
        let subject = claim("sub")?;
        let value = claim(&self.cfg.principal_claim)?;
        let principal = self
            .cfg
            .principals
            .get(value)
            .or(self.cfg.default_principal.as_ref())
            .ok_or_else(|| JwtError::NoPrincipal(self.cfg.principal_claim.clone()))?
            .clone();
        let granted: Vec<&str> = match claims.get(&self.cfg.permissions_claim) {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let permissions = Permission::ALL
            .into_iter()
            .filter(|p| granted.contains(&p.as_str()))
            .collect();
        Ok(TokenCaller {
            subject: subject.to_owned(),
            principal,
            permissions,
        })
    }

    /// Refetch for an unknown `kid` (a key rotation), at most once per
    /// `jwks_refresh`: unknown kids cannot make us hammer the provider.
    async fn refresh_if_due(&self) {
        let _one = self.refreshing.lock().await;
        let due = self
            .keys
            .read()
            .map(|s| s.fetched.elapsed() >= self.cfg.jwks_refresh)
            .unwrap_or(true);
        if !due {
            return;
        }
        match self.fetch().await {
            Ok(set) => self.install(set),
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the JWKS; keeping the keys we have");
                if let Ok(mut keys) = self.keys.write() {
                    keys.fetched = Instant::now();
                }
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let (name, body) = if let Some(path) = &self.cfg.jwks_file {
            let name = path.display().to_string();
            let body = tokio::fs::read(path)
                .await
                .map_err(|e| JwksError::Read(name.clone(), e.to_string()))?;
            (name, body)
        } else {
            let url = self.cfg.jwks_url.clone().unwrap_or_default();
            let read = |e: reqwest::Error| JwksError::Read(url.clone(), e.to_string());
            let mut response = self
                .http
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(read)?;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(read)? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_JWKS_BYTES {
                    return Err(JwksError::Read(url, "larger than 1 MiB".into()));
                }
            }
            (url, body)
        };
        serde_json::from_slice(&body).map_err(|e| JwksError::Parse(name, e.to_string()))
    }

    fn install(&self, set: JwkSet) {
        let mut keys: HashMap<Option<String>, Vec<Key>> = HashMap::new();
        for jwk in &set.keys {
            // Symmetric (`oct`) keys are never used: a public JWKS holding a
            // shared secret would let anyone sign.
            if matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            ) {
                continue;
            }
            // Encryption keys never verify a signature.
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            // A key pinned to an algorithm we do not accept is not used.
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match Algorithm::from_str(key_alg_name(a)) {
                    Ok(alg) => Some(alg),
                    Err(_) => continue,
                },
            };
            keys.entry(jwk.common.key_id.clone())
                .or_default()
                .push(Key { key, alg });
        }
        if let Ok(mut current) = self.keys.write() {
            *current = KeySet {
                keys,
                fetched: Instant::now(),
            };
        }
    }
}

fn key_alg_name(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::EdDSA => "EdDSA",
        // Anything else pins the key to an algorithm we never accept.
        _ => "none",
    }
}

/// Why a token failed, in words a client can act on (no key material).
fn reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "it has expired".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm => "algorithm does not match the key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing the {c:?} claim"),
        _ => "it could not be verified".into(),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt");

    fn config() -> JwtConfig {
        JwtConfig {
            issuer: "https://id.example.com/".into(),
            audience: "imgpipe".into(),
            jwks_file: Some(format!("{FIXTURES}/jwks.json").into()),
            principals: [("user-7".to_string(), "privacy-officer".to_string())].into(),
            default_principal: Some("analyst".into()),
            ..JwtConfig::default()
        }
    }

    fn private_key() -> EncodingKey {
        let pem = std::fs::read(format!("{FIXTURES}/test-issuer.key.pem")).unwrap();
        EncodingKey::from_rsa_pem(&pem).unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(overrides: Value) -> Value {
        let mut c = json!({
            "iss": "https://id.example.com/",
            "aud": "imgpipe",
            "sub": "user-7",
            "exp": now() + 300,
            "scope": "openid images:write images:read",
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn rs256(claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-2026".into());
        encode(&header, claims, &private_key()).unwrap()
    }

    #[tokio::test]
    async fn a_valid_token_maps_to_its_principal_and_permissions() {
        let v = Verifier::new(&config()).await.unwrap();
        let caller = v.verify(&rs256(&claims(json!({})))).await.unwrap();
        assert_eq!(caller.principal, "privacy-officer");
        assert_eq!(caller.subject, "user-7");
        assert_eq!(
            caller.permissions,
            vec![Permission::ImagesWrite, Permission::ImagesRead]
        );
        // An array claim works too; an unmapped subject gets the default
        // principal, even one that names another principal.
        let cfg = JwtConfig {
            permissions_claim: "permissions".into(),
            ..config()
        };
        let v = Verifier::new(&cfg).await.unwrap();
        let token = rs256(&claims(
            json!({"sub": "privacy-officer", "permissions": ["images:erase", "admin"]}),
        ));
        let caller = v.verify(&token).await.unwrap();
        assert_eq!(caller.principal, "analyst");
        assert_eq!(caller.subject, "privacy-officer");
        assert_eq!(caller.permissions, vec![Permission::ImagesErase]);
        // Without a default, an unmapped subject is refused.
        let strict = JwtConfig {
            default_principal: None,
            ..config()
        };
        let v = Verifier::new(&strict).await.unwrap();
        let e = v
            .verify(&rs256(&claims(json!({"sub": "someone"}))))
            .await
            .unwrap_err();
        assert!(matches!(e, JwtError::NoPrincipal(_)), "{e}");
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_a_reason() {
        let v = Verifier::new(&config()).await.unwrap();
        let refused = |token: String| {
            let v = &v;
            async move { v.verify(&token).await.unwrap_err().to_string() }
        };
        let e = refused(rs256(&claims(json!({"exp": now() - 3600})))).await;
        assert!(e.contains("expired"), "{e}");
        // Within the clock skew an expired token still passes.
        assert!(
            v.verify(&rs256(&claims(json!({"exp": now() - 30}))))
                .await
                .is_ok()
        );
        let e = refused(rs256(&claims(json!({"nbf": now() + 3600})))).await;
        assert!(e.contains("not valid yet"), "{e}");
        let e = refused(rs256(&claims(json!({"iss": "https://evil.example/"})))).await;
        assert!(e.contains("issuer"), "{e}");
        let e = refused(rs256(&claims(json!({"aud": "someone-else"})))).await;
        assert!(e.contains("audience"), "{e}");
        let e = refused(rs256(&claims(json!({"exp": null})))).await;
        assert!(e.contains("exp"), "{e}");
        let e = refused(rs256(&claims(json!({"sub": null})))).await;
        assert!(e.contains("sub"), "{e}");

        // alg=none: no signature at all.
        let b64 = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": "test-2026"})),
            b64(&claims(json!({})))
        );
        assert!(v.verify(&none).await.is_err());

        // HS/RS confusion: HS256 keyed with the RSA public key's PEM.
        let public = std::fs::read(format!("{FIXTURES}/test-issuer.pub.pem")).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-2026".into());
        let hs = encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        let e = refused(hs).await;
        assert!(e.contains("HS256"), "{e}");
        // Nor does the JWKS's symmetric key sign anything.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("shared-secret".into());
        let hs = encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(b"never-use-a-symmetric-key-here"),
        )
        .unwrap();
        assert!(v.verify(&hs).await.is_err());

        // A forged signature, and an unknown kid.
        let good = rs256(&claims(json!({})));
        let (head, _) = good.rsplit_once('.').unwrap();
        let e = refused(format!("{head}.AAAA")).await;
        assert!(e.contains("signature") || e.contains("verified"), "{e}");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rotated-away".into());
        let e = refused(encode(&header, &claims(json!({})), &private_key()).unwrap()).await;
        assert!(e.contains("no key"), "{e}");
        assert!(v.verify("not-a-token").await.is_err());
    }
}
