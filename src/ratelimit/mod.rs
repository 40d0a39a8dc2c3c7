//! Rate limiting: one sliding-window limit per client, behind a small backend trait.
//!
//! `RateLimiter` is what a backend implements; `Limiter` is what the request path calls: it adds what
//! does not depend on the backend (exempt clients, dry run, decision metrics) around whichever
//! backend the settings chose.

mod memory;
pub mod redis;
pub mod window;

use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc, time::Instant};

use ipnet::IpNet;
pub use memory::MemoryLimiter;
use prometheus::{HistogramVec, IntCounterVec};
pub use redis::RedisLimiter;

use crate::{
    client_ip::IpBucket,
    settings::{Backend, RateLimitSettings},
};

/// What a request is limited by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Ip(IpBucket),
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Ip(bucket) => write!(f, "ip:{bucket}"),
        }
    }
}

/// One decision, with what the RateLimit headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the oldest counted request leaves the window (a slot frees): `Retry-After` when refused.
    pub reset_after: std::time::Duration,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A limiter backend. A backend never fails the request: it answers with a decision, whatever
/// happens to what it depends on (its own failure policy decides how).
pub trait RateLimiter: Send + Sync {
    fn check<'a>(&'a self, key: &'a LimitKey) -> BoxFuture<'a, Decision>;
    /// Name used in metrics and `/readyz`.
    fn backend(&self) -> &'static str;
    /// True while decisions come from the failure policy instead of the backend itself.
    fn degraded(&self) -> bool {
        false
    }
}

/// The limiter the request path uses.
pub struct Limiter {
    backend: Arc<dyn RateLimiter>,
    limit: u32,
    dry_run: bool,
    exempt: Vec<IpNet>,
    decisions: IntCounterVec,
    duration: HistogramVec,
}

impl Limiter {
    pub fn new(
        backend: Arc<dyn RateLimiter>,
        settings: &RateLimitSettings,
        metrics: &crate::observability::Metrics,
    ) -> Self {
        // Every series exists from the start at 0, so rate() sees the first burst whole.
        for decision in ["allowed", "limited", "dry_run_limited", "exempt"] {
            metrics.rate_limit_decisions.with_label_values(&[backend.backend(), decision]);
        }
        Self {
            backend,
            limit: settings.max_requests,
            dry_run: settings.dry_run,
            exempt: settings.exempt.clone(),
            decisions: metrics.rate_limit_decisions.clone(),
            duration: metrics.rate_limiter_duration.clone(),
        }
    }

    pub fn from_settings(
        settings: &RateLimitSettings,
        metrics: &crate::observability::Metrics,
        log: &slog::Logger,
    ) -> Self {
        let backend: Arc<dyn RateLimiter> = match settings.backend {
            Backend::Memory => Arc::new(MemoryLimiter::new(settings)),
            Backend::Redis => Arc::new(RedisLimiter::new(settings, metrics, log.clone())),
        };
        Self::new(backend, settings, metrics)
    }

    /// Decides for `client` (the address exemptions are checked against), limited by `key`.
    pub async fn check(&self, client: IpAddr, key: &LimitKey) -> Decision {
        let backend = self.backend.backend();
        if self.exempt.iter().any(|net| net.contains(&client)) {
            self.decisions.with_label_values(&[backend, "exempt"]).inc();
            let unlimited =
                Decision { allowed: true, limit: self.limit, remaining: self.limit, reset_after: Default::default() };
            return unlimited;
        }
        let started = Instant::now();
        let mut decision = self.backend.check(key).await;
        self.duration.with_label_values(&[backend]).observe(started.elapsed().as_secs_f64());
        let outcome = match (decision.allowed, self.dry_run) {
            (true, _) => "allowed",
            (false, false) => "limited",
            (false, true) => {
                decision.allowed = true;
                "dry_run_limited"
            }
        };
        self.decisions.with_label_values(&[backend, outcome]).inc();
        decision
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.backend()
    }

    pub fn degraded(&self) -> bool {
        self.backend.degraded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{observability::Metrics, settings::Settings};

    fn limiter(vars: &[(&str, &str)]) -> (Limiter, Metrics) {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let settings =
            Settings::from_vars(vars.chain([("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS".into(), "1".into())]));
        let metrics = Metrics::new();
        let limiter = Limiter::from_settings(
            &settings.unwrap().rate_limit,
            &metrics,
            &slog::Logger::root(slog::Discard, slog::o!()),
        );
        (limiter, metrics)
    }

    fn decided(metrics: &Metrics, decision: &str) -> u64 {
        metrics.rate_limit_decisions.with_label_values(&["memory", decision]).get()
    }

    fn client(ip: &str) -> (IpAddr, LimitKey) {
        let ip: IpAddr = ip.parse().unwrap();
        (ip, LimitKey::Ip(IpBucket::of(ip)))
    }

    #[actix_web::test]
    async fn dry_run_admits_what_it_would_refuse_and_counts_it() {
        let (limiter, metrics) = limiter(&[("CLIENT_TELEMETRY_RATE_LIMIT_DRY_RUN", "true")]);
        let (ip, key) = client("198.51.100.1");
        assert!(limiter.check(ip, &key).await.allowed);
        let would_refuse = limiter.check(ip, &key).await;
        assert!(would_refuse.allowed);
        assert_eq!(would_refuse.remaining, 0);
        assert_eq!((decided(&metrics, "allowed"), decided(&metrics, "dry_run_limited")), (1, 1));
        assert_eq!(decided(&metrics, "limited"), 0);
    }

    #[actix_web::test]
    async fn exempt_clients_are_never_limited_nor_counted_against_a_limit() {
        let (limiter, metrics) = limiter(&[("CLIENT_TELEMETRY_RATE_LIMIT_EXEMPT_CIDRS", "10.0.0.0/8,2001:db8::5")]);
        for ip in ["10.1.2.3", "2001:db8::5"] {
            let (ip, key) = client(ip);
            for _ in 0..3 {
                assert!(limiter.check(ip, &key).await.allowed);
            }
        }
        assert_eq!(decided(&metrics, "exempt"), 6);
        // a neighbour in the same /64 as the exempt host is limited as usual
        let (ip, key) = client("2001:db8::6");
        assert!(limiter.check(ip, &key).await.allowed);
        assert!(!limiter.check(ip, &key).await.allowed);
        assert_eq!(decided(&metrics, "limited"), 1);
    }
}
