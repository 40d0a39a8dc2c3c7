//! Rate limiting: one sliding-window limit per client, behind a small backend trait.
//!
//! `RateLimiter` is what a backend implements; `Limiter` is what the request path calls: it adds the
//! decision metrics around whichever backend the settings chose.

mod memory;
pub mod window;

use std::{future::Future, pin::Pin, sync::Arc, time::Instant};

pub use memory::MemoryLimiter;
use prometheus::{HistogramVec, IntCounterVec};

use crate::{client_ip::IpBucket, settings::RateLimitSettings};

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
}

/// The limiter the request path uses.
pub struct Limiter {
    backend: Arc<dyn RateLimiter>,
    decisions: IntCounterVec,
    duration: HistogramVec,
}

impl Limiter {
    pub fn new(backend: Arc<dyn RateLimiter>, metrics: &crate::observability::Metrics) -> Self {
        Self {
            backend,
            decisions: metrics.rate_limit_decisions.clone(),
            duration: metrics.rate_limiter_duration.clone(),
        }
    }

    pub fn from_settings(settings: &RateLimitSettings, metrics: &crate::observability::Metrics) -> Self {
        Self::new(Arc::new(MemoryLimiter::new(settings)), metrics)
    }

    pub async fn check(&self, key: &LimitKey) -> Decision {
        let started = Instant::now();
        let decision = self.backend.check(key).await;
        let backend = self.backend.backend();
        self.duration.with_label_values(&[backend]).observe(started.elapsed().as_secs_f64());
        let outcome = if decision.allowed { "allowed" } else { "limited" };
        self.decisions.with_label_values(&[backend, outcome]).inc();
        decision
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.backend()
    }
}
