//! In-process backend: exact for one replica, and the development default.
//!
//! State lives in a bounded moka cache: keys idle for a whole window are evicted, and the total is
//! capped, so an IP spray cannot grow memory without bound. Under the cap moka keeps the keys seen
//! most often, which are the ones a limit matters for.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::{
    BoxFuture, Decision, LimitKey, RateLimiter,
    window::{SlidingWindow, WindowParams},
};
use crate::settings::RateLimitSettings;

pub struct MemoryLimiter {
    params: WindowParams,
    keys: Cache<LimitKey, Arc<Mutex<SlidingWindow>>>,
    epoch: Instant,
}

impl MemoryLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let params = WindowParams::new(settings.window, settings.max_requests);
        // Idle for a window and a sub-window: nothing of the key is counted any more.
        let idle = settings.window + Duration::from_micros(params.granularity_us);
        Self {
            params,
            keys: Cache::builder().max_capacity(settings.memory_max_keys).time_to_idle(idle).build(),
            epoch: Instant::now(),
        }
    }

    /// Decides at an explicit time (microseconds on this limiter's monotonic clock).
    pub fn check_at(&self, key: &LimitKey, now_us: u64) -> Decision {
        let window = self.keys.get_with_by_ref(key, Default::default);
        let mut window = window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        window.try_acquire(now_us, &self.params)
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Keys currently tracked (approximate; moka applies evictions lazily).
    pub fn tracked_keys(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }
}

impl RateLimiter for MemoryLimiter {
    fn check<'a>(&'a self, key: &'a LimitKey) -> BoxFuture<'a, Decision> {
        let decision = self.check_at(key, self.now_us());
        Box::pin(std::future::ready(decision))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client_ip::IpBucket, settings::Settings};

    fn limiter(max_keys: u64) -> MemoryLimiter {
        let defaults = Settings::from_vars([]).unwrap().rate_limit;
        MemoryLimiter::new(&RateLimitSettings {
            window: Duration::from_secs(60),
            max_requests: 2,
            memory_max_keys: max_keys,
            ..defaults
        })
    }

    fn key(i: u32) -> LimitKey {
        LimitKey::Ip(IpBucket::V4(i.to_be_bytes()))
    }

    #[test]
    fn clients_are_limited_separately() {
        let l = limiter(1000);
        let t = 10_000_000;
        assert!(l.check_at(&key(1), t).allowed);
        assert!(l.check_at(&key(1), t).allowed);
        assert!(!l.check_at(&key(1), t).allowed);
        assert!(l.check_at(&key(2), t).allowed);
    }

    #[test]
    fn an_ip_spray_stays_under_the_cap() {
        let l = limiter(1000);
        for i in 0..50_000 {
            l.check_at(&key(i), 10_000_000);
        }
        assert!(l.tracked_keys() <= 1000, "{} keys", l.tracked_keys());
    }
}
