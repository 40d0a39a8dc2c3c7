//! In-process backend: exact for one replica, and the development default.
//!
//! State lives in a bounded moka cache: keys idle for a whole window are evicted, and the total is
//! capped, so an IP spray cannot grow memory without bound. Under the cap moka keeps the keys seen
//! most often, which are the ones a limit matters for; but its admission policy forgets, so a
//! client it has refused is also pinned in a second cache for a window: a stream of one-shot
//! clients cannot evict a limited client and hand it a fresh window.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::RateLimitSettings;
use super::{
    BoxFuture, Charges, Decision, Keys, LimitKey, LimitOverrides, Quota, RateLimiter,
    seen::SeenIds,
    window::{SlidingWindow, WindowParams},
};

pub struct MemoryLimiter {
    ip: WindowParams,
    overrides: LimitOverrides,
    session: Option<WindowParams>,
    windows: Cache<LimitKey, Arc<Mutex<SlidingWindow>>>,
    /// The windows of clients refused within the last window (same cap), found here first.
    limited: Cache<LimitKey, Arc<Mutex<SlidingWindow>>>,
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
            // A refused client's window frees a slot within a window and a sub-window of the refusal.
            limited: Cache::builder().max_capacity(settings.memory_max_keys).time_to_live(idle).build(),
            seen: settings
                .dedup_window
                .map(|window| SeenIds::new(window, usize::try_from(settings.memory_max_keys).unwrap_or(usize::MAX))),
            epoch: Instant::now(),
        }
    }

    /// Decides at an explicit time (microseconds on this limiter's monotonic clock).
    pub fn check_at(&self, keys: &Keys, charges: Charges, now_us: u64) -> Decision {
        let duplicate = self.seen.as_ref().zip(keys.batch.as_ref()).is_some_and(|(seen, batch)| seen.contains(batch));
        let ip_params = self.overrides.window_for(&keys.ip, self.ip);
        let ip_window = self.window(&keys.ip);
        let session_window = self.session.zip(keys.session.as_ref()).map(|(params, key)| (params, self.window(key)));
        // The IP's lock is always taken first, so two calls never wait on each other in a cycle.
        let mut ip = lock(&ip_window);
        let mut session = session_window.as_ref().map(|(params, window)| (params, lock(window)));
        let ip_cost = charges.ip.cost(ip_params.limit);
        let session_cost = session.as_ref().map_or(0, |(params, _)| charges.session.cost(params.limit));
        let ip_quota = ip.quota(now_us, &ip_params, ip_cost);
        let session_quota = session.as_mut().map(|(params, window)| window.quota(now_us, params, session_cost));
        if !ip_quota.room {
            self.limited.insert(keys.ip.clone(), ip_window.clone());
        }
        if let (Some(Quota { room: false, .. }), Some(key), Some((_, window))) =
            (&session_quota, &keys.session, &session_window)
        {
            self.limited.insert(key.clone(), window.clone());
        }
        let mut decision = Decision::of(ip_quota, session_quota, duplicate);
        if decision.allowed {
            ip.record(now_us, &ip_params, ip_cost);
            decision.ip.remaining -= ip_cost;
            if let (Some((params, window)), Some(quota)) = (&mut session, &mut decision.session) {
                window.record(now_us, params, session_cost);
                quota.remaining -= session_cost;
            }
        }
        decision
    }

    fn window(&self, key: &LimitKey) -> Arc<Mutex<SlidingWindow>> {
        match self.limited.get(key) {
            Some(window) => window,
            None => self.windows.get_with_by_ref(key, Default::default),
        }
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
    fn check<'a>(&'a self, keys: &'a Keys, charges: Charges) -> BoxFuture<'a, Decision> {
        let decision = self.check_at(keys, charges, self.now_us());
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
    use crate::{client_ip::IpBucket, ratelimit::RateLimitConfig};

    fn limiter(max_keys: u64) -> MemoryLimiter {
        let defaults = RateLimitConfig::default().resolve().unwrap();
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
        assert!(l.check_at(&key(1), Charges::ONE, t).allowed);
        assert!(l.check_at(&key(1), Charges::ONE, t).allowed);
        assert!(!l.check_at(&key(1), Charges::ONE, t).allowed);
        assert!(l.check_at(&key(2), Charges::ONE, t).allowed);
    }

    /// The cap is for memory, not a way out: however many one-shot clients pass by, a client over
    /// its limit stays refused until its window frees a slot.
    #[test]
    fn a_limited_client_is_not_evicted_by_a_stream_of_one_shot_clients() {
        let l = limiter(4);
        let t = 10_000_000;
        assert!(l.check_at(&key(0), Charges::ONE, t).allowed);
        assert!(l.check_at(&key(0), Charges::ONE, t).allowed);
        assert!(!l.check_at(&key(0), Charges::ONE, t).allowed);
        for i in 1..20_000 {
            assert!(l.check_at(&key(i), Charges::ONE, t + u64::from(i)).allowed);
            if i % 2000 == 0 {
                l.windows.run_pending_tasks();
                assert!(
                    !l.check_at(&key(0), Charges::ONE, t + u64::from(i)).allowed,
                    "limited client let through after {i} others"
                );
            }
        }
        assert!(l.tracked_keys() <= 4 + 1, "{} keys", l.tracked_keys());
        // Its window frees a slot once the first requests leave it (60 s and a sub-window later).
        assert!(l.check_at(&key(0), Charges::ONE, t + 62_000_000).allowed);
    }

    #[test]
    fn a_limited_session_is_not_evicted_by_a_stream_of_one_shot_sessions() {
        let defaults = RateLimitConfig::default().resolve().unwrap();
        let l = MemoryLimiter::new(&RateLimitSettings {
            window: Duration::from_secs(60),
            max_requests: 1_000_000,
            session_max_requests: Some(1),
            memory_max_keys: 4,
            ..defaults
        });
        let session = |id: u32| {
            let Keys { ip, .. } = key(0);
            Keys { session: Some(LimitKey::Session(ip.ip(), id.to_string().into())), ip, batch: None }
        };
        let t = 10_000_000;
        assert!(l.check_at(&session(0), Charges::ONE, t).allowed);
        assert!(!l.check_at(&session(0), Charges::ONE, t).allowed);
        for i in 1..20_000 {
            assert!(l.check_at(&session(i), Charges::ONE, t + u64::from(i)).allowed);
            if i % 2000 == 0 {
                l.windows.run_pending_tasks();
                assert!(
                    !l.check_at(&session(0), Charges::ONE, t + u64::from(i)).allowed,
                    "limited session let through after {i}"
                );
            }
        }
    }

    #[test]
    fn an_ip_spray_stays_under_the_cap() {
        let l = limiter(1000);
        for i in 0..50_000 {
            l.check_at(&key(i), Charges::ONE, 10_000_000);
        }
        assert!(l.tracked_keys() <= 1000, "{} keys", l.tracked_keys());
    }
}
