//! In-process backend: exact for one replica, and the development default.
//!
//! State lives in a bounded moka cache: keys idle for a whole window are evicted, and the total is
//! capped, so an IP spray cannot grow memory without bound. Under the cap moka keeps the keys seen
//! most often, which are the ones a limit matters for.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::{
    BoxFuture, Decision, Keys, LimitKey, LimitOverrides, RateLimiter,
    seen::SeenIds,
    window::{SlidingWindow, WindowParams},
};
use crate::settings::RateLimitSettings;

pub struct MemoryLimiter {
    ip: WindowParams,
    overrides: LimitOverrides,
    session: Option<WindowParams>,
    windows: Cache<LimitKey, Arc<Mutex<SlidingWindow>>>,
    /// Accepted batch ids, each kept for the de-duplication window; `None` when it is off.
    seen: Option<SeenIds>,
    epoch: Instant,
}

impl MemoryLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let ip = WindowParams::new(settings.window, settings.max_requests);
        // Idle for a window and a sub-window: nothing of the key is counted any more.
        let idle = settings.window + Duration::from_micros(ip.granularity_us);
        Self {
            ip,
            overrides: settings.overrides.clone(),
            session: settings.session_max_requests.map(|limit| WindowParams::new(settings.window, limit)),
            windows: Cache::builder().max_capacity(settings.memory_max_keys).time_to_idle(idle).build(),
            seen: settings
                .dedup_window
                .map(|window| SeenIds::new(window, usize::try_from(settings.memory_max_keys).unwrap_or(usize::MAX))),
            epoch: Instant::now(),
        }
    }

    /// Decides at an explicit time (microseconds on this limiter's monotonic clock).
    pub fn check_at(&self, keys: &Keys, now_us: u64) -> Decision {
        let duplicate = self.seen.as_ref().zip(keys.batch.as_ref()).is_some_and(|(seen, batch)| seen.contains(batch));
        let ip_params = self.overrides.window_for(&keys.ip, self.ip);
        let ip_window = self.window(&keys.ip);
        let session_window = self.session.zip(keys.session.as_ref()).map(|(params, key)| (params, self.window(key)));
        // The IP's lock is always taken first, so two calls never wait on each other in a cycle.
        let mut ip = lock(&ip_window);
        let mut session = session_window.as_ref().map(|(params, window)| (params, lock(window)));
        let ip_quota = ip.quota(now_us, &ip_params);
        let session_quota = session.as_mut().map(|(params, window)| window.quota(now_us, params));
        let mut decision = Decision::of(ip_quota, session_quota, duplicate);
        if decision.allowed {
            ip.record(now_us, &ip_params);
            decision.ip.remaining -= 1;
            if let (Some((params, window)), Some(quota)) = (&mut session, &mut decision.session) {
                window.record(now_us, params);
                quota.remaining -= 1;
            }
        }
        decision
    }

    fn window(&self, key: &LimitKey) -> Arc<Mutex<SlidingWindow>> {
        self.windows.get_with_by_ref(key, Default::default)
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn remember(&self, batch: LimitKey) {
        if let Some(seen) = &self.seen {
            seen.insert(&batch);
        }
    }

    /// Keys currently tracked (approximate; moka applies evictions lazily).
    pub fn tracked_keys(&self) -> u64 {
        self.windows.run_pending_tasks();
        self.windows.entry_count()
    }
}

fn lock(window: &Mutex<SlidingWindow>) -> MutexGuard<'_, SlidingWindow> {
    window.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RateLimiter for MemoryLimiter {
    fn check<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Decision> {
        let decision = self.check_at(keys, self.now_us());
        Box::pin(std::future::ready(decision))
    }

    fn remember(&self, batch: LimitKey) {
        MemoryLimiter::remember(self, batch);
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

    fn key(i: u32) -> Keys {
        Keys { ip: LimitKey::Ip(IpBucket::V4(i.to_be_bytes())), session: None, batch: None }
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
