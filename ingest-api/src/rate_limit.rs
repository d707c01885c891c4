//! Requests per second per client address (before authentication, so a
//! flood of bad keys is cut early) and per caller (after it). Over the
//! limit: 429 with `Retry-After`.

use std::{
    hash::Hash,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::config::RateLimitConfig;
use axum::{
    extract::{ConnectInfo, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::{ApiError, AppState, error::ApiErrorCode, telemetry};

/// Forget idle keys every this many checks, so the key tables stay the
/// size of the recent callers, not of everyone ever seen.
const PRUNE_EVERY: u64 = 4096;

pub struct Limiter<K: Hash + Eq + Clone> {
    inner: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
    scope: &'static str,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `None` when the limit is off (0 per second).
    fn new(per_second: u32, burst: u32, scope: &'static str) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Self {
            inner: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            checks: AtomicU64::new(0),
            scope,
        })
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.inner.retain_recent();
            self.inner.shrink_to_fit();
        }
        self.inner.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            telemetry::rate_limited(self.scope);
            limited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}

fn limited(retry_after: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ApiErrorCode::RateLimited,
        format!("too many requests; retry in {retry_after} s"),
    );
    e.retry_after = Some(retry_after);
    e
}

#[derive(Debug)]
pub struct Limits {
    pub per_ip: Option<Limiter<IpAddr>>,
    pub per_principal: Option<Limiter<String>>,
    trust_forwarded_for: bool,
}

impl Limits {
    pub fn from_config(cfg: &RateLimitConfig) -> Self {
        Self {
            per_ip: Limiter::new(cfg.per_ip_per_second, cfg.per_ip_burst, "ip"),
            per_principal: Limiter::new(
                cfg.per_principal_per_second,
                cfg.per_principal_burst,
                "principal",
            ),
            trust_forwarded_for: cfg.trust_forwarded_for,
        }
    }

    /// The client's address: the peer, or behind a load balancer we were
    /// told to trust, the last address it appended to `X-Forwarded-For`.
    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_forwarded_for
            && let Some(ip) = request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    }
}

/// What one client is, by address: an IPv4 address, or an IPv6 /64 (one
/// host is handed a whole /64, so its single addresses are free to it).
/// Both the per-address rate limit and the connection cap count by it.
pub(crate) fn client_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// The per-address limit, ahead of authentication.
pub async fn per_ip(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(limiter) = &state.limits.per_ip
        && let Some(ip) = state.limits.client_ip(&request)
        && let Err(e) = limiter.check(&client_block(ip))
    {
        return e.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_its_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_block(a), client_block(b));
        assert_ne!(client_block(a), client_block(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_block(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_block(v4), v4);
    }

    #[test]
    fn a_burst_passes_then_429_with_retry_after() {
        let limiter = Limiter::<String>::new(1, 3, "principal").unwrap();
        let key = "uploader".to_string();
        for _ in 0..3 {
            assert!(limiter.check(&key).is_ok());
        }
        let e = limiter.check(&key).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        // Another caller has its own budget.
        assert!(limiter.check(&"reader".to_string()).is_ok());
        assert!(Limiter::<String>::new(0, 10, "principal").is_none());
    }
}
