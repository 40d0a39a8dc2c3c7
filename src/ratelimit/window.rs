//! The sliding-window arithmetic every backend shares (the Redis Lua script mirrors it, with a running
//! count so a call reads only the sub-windows that left the window).
//!
//! The window is cut into sub-windows of `granularity = ceil(window / 60)`. A request at time `t`
//! counts every sub-window that overlaps `(t - window, t]`, the oldest one whole. So no window of
//! length `window` ever holds more than `limit` accepted requests, and the limiter refuses early by
//! at most one sub-window's worth of requests. A refused request changes nothing. Memory per key is
//! at most 62 (index, count) pairs, whatever the limit.
//!
//! A request may weigh more than one (`cost`: records, when limits count records): it is admitted
//! only if the window has room for all of it, and then counts that much. A cost of 0 always has room
//! and records nothing.

use std::{collections::VecDeque, time::Duration};

use super::Quota;

pub const SUB_WINDOWS: u64 = 60;

#[derive(Debug, Clone, Copy)]
pub struct WindowParams {
    pub window_us: u64,
    pub granularity_us: u64,
    pub limit: u32,
}

impl WindowParams {
    pub fn new(window: Duration, limit: u32) -> Self {
        let window_us = (window.as_micros() as u64).max(1);
        Self { window_us, granularity_us: window_us.div_ceil(SUB_WINDOWS), limit }
    }

    /// The first sub-window still counted at `now_us`.
    fn oldest_counted(&self, now_us: u64) -> u64 {
        now_us.saturating_sub(self.window_us) / self.granularity_us
    }

    /// When sub-window `index` stops being counted.
    fn leaves_window_at(&self, index: u64) -> u64 {
        (index + 1) * self.granularity_us + self.window_us
    }
}

/// Request counts per sub-window for one key, oldest first; only sub-windows with requests.
#[derive(Debug, Default, Clone)]
pub struct SlidingWindow {
    counts: VecDeque<(u64, u32)>,
}

impl SlidingWindow {
    /// Admits and records one request at `now_us` if the window has room.
    pub fn try_acquire(&mut self, now_us: u64, params: &WindowParams) -> Quota {
        self.try_acquire_cost(now_us, params, 1)
    }

    /// Admits and records a request of `cost` at `now_us` if the window has room for all of it.
    pub fn try_acquire_cost(&mut self, now_us: u64, params: &WindowParams, cost: u32) -> Quota {
        let mut quota = self.quota(now_us, params, cost);
        if quota.room {
            self.record(now_us, params, cost);
            quota.remaining -= cost;
        }
        quota
    }

    /// Where the window stands for a request of `cost` at `now_us`, without recording it
    /// (`remaining` before it). Forgets what has left the window. `reset_after`: until the oldest
    /// counted sub-window leaves; when refused, until enough have left for `cost` to fit.
    pub fn quota(&mut self, now_us: u64, params: &WindowParams, cost: u32) -> Quota {
        let oldest = params.oldest_counted(now_us);
        while self.counts.front().is_some_and(|(index, _)| *index < oldest) {
            self.counts.pop_front();
        }
        let used: u32 = self.counts.iter().map(|(_, n)| n).sum();
        let room = cost == 0 || used.saturating_add(cost) <= params.limit;
        let mut frees = self.counts.front().map_or(now_us / params.granularity_us, |(i, _)| *i);
        if !room {
            // The sub-window whose leaving frees enough (there is one when cost <= limit; else the newest).
            let mut to_free = i64::from(used) + i64::from(cost) - i64::from(params.limit);
            for (index, n) in &self.counts {
                frees = *index;
                to_free -= i64::from(*n);
                if to_free <= 0 {
                    break;
                }
            }
        }
        Quota {
            room,
            limit: params.limit,
            remaining: params.limit.saturating_sub(used),
            reset_after: Duration::from_micros(params.leaves_window_at(frees).saturating_sub(now_us)),
        }
    }

    /// Records a request of `cost` at `now_us`, after `quota` said there was room (`reset_after`
    /// stays true).
    pub fn record(&mut self, now_us: u64, params: &WindowParams, cost: u32) {
        if cost == 0 {
            return;
        }
        let current = now_us / params.granularity_us;
        match self.counts.back_mut() {
            Some((index, n)) if *index == current => *n += cost,
            _ => self.counts.push_back((current, cost)),
        }
    }

    /// True when nothing in the window is counted any more (the key can be forgotten).
    pub fn is_idle(&self, now_us: u64, params: &WindowParams) -> bool {
        self.counts.back().is_none_or(|(index, _)| *index < params.oldest_counted(now_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn params(window_s: u64, limit: u32) -> WindowParams {
        WindowParams::new(Duration::from_secs(window_s), limit)
    }

    #[test]
    fn admits_up_to_the_limit_then_refuses() {
        let p = params(60, 3);
        let mut w = SlidingWindow::default();
        let t = 1000 * SECOND;
        assert_eq!(w.try_acquire(t, &p).remaining, 2);
        assert_eq!(w.try_acquire(t, &p).remaining, 1);
        assert!(w.try_acquire(t, &p).room);
        let refused = w.try_acquire(t, &p);
        assert!(!refused.room);
        assert_eq!(refused.remaining, 0);
        // the oldest request leaves the window one sub-window plus the window later at most
        assert!(refused.reset_after <= Duration::from_secs(61) && refused.reset_after >= Duration::from_secs(60));
    }

    #[test]
    fn refused_requests_cost_nothing() {
        let p = params(60, 1);
        let mut w = SlidingWindow::default();
        let t = 1000 * SECOND;
        assert!(w.try_acquire(t, &p).room);
        for i in 0..100 {
            assert!(!w.try_acquire(t + i * SECOND / 2, &p).room);
        }
        // quota returns exactly as if the refusals had not happened
        assert!(w.try_acquire(t + 62 * SECOND, &p).room);
    }

    #[test]
    fn no_boundary_burst() {
        // a fixed window admits `limit` at the end of one window and `limit` at the start of the next
        let p = params(60, 10);
        let mut w = SlidingWindow::default();
        let end_of_window = 1019 * SECOND + SECOND / 2;
        for _ in 0..10 {
            assert!(w.try_acquire(end_of_window, &p).room);
        }
        let next_window = 1021 * SECOND;
        assert!(!w.try_acquire(next_window, &p).room);
    }

    #[test]
    fn retry_after_is_when_a_slot_really_frees() {
        let p = params(60, 2);
        let mut w = SlidingWindow::default();
        let t = 5000 * SECOND;
        w.try_acquire(t, &p);
        w.try_acquire(t + 30 * SECOND, &p);
        let refused = w.try_acquire(t + 40 * SECOND, &p);
        assert!(!refused.room);
        let retry_at = t + 40 * SECOND + refused.reset_after.as_micros() as u64;
        assert!(!w.clone().try_acquire(retry_at - 1, &p).room);
        assert!(w.try_acquire(retry_at, &p).room);
    }

    /// Random traffic never puts more than the limit in any window (checked against the exact log)
    /// and admits nearly as much as an exact sliding log would.
    #[test]
    fn never_over_admits_and_rarely_under_admits() {
        let p = params(10, 20);
        let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state
        };
        for rate_factor in [0.5, 1.0, 1.5, 2.0] {
            let mut w = SlidingWindow::default();
            let mut exact_log: VecDeque<u64> = VecDeque::new();
            let mut accepted: Vec<u64> = Vec::new();
            let (mut ours, mut exact) = (0u32, 0u32);
            let mean_gap = (p.window_us as f64 / p.limit as f64 / rate_factor) as u64;
            let mut t = 100 * SECOND;
            for _ in 0..20_000 {
                t += next() % (2 * mean_gap);
                if w.try_acquire(t, &p).room {
                    ours += 1;
                    accepted.push(t);
                }
                while exact_log.front().is_some_and(|&a| a + p.window_us <= t) {
                    exact_log.pop_front();
                }
                if exact_log.len() < p.limit as usize {
                    exact_log.push_back(t);
                    exact += 1;
                }
            }
            for (i, &start) in accepted.iter().enumerate() {
                let in_window = accepted[i..].iter().take_while(|&&a| a < start + p.window_us).count();
                assert!(in_window <= p.limit as usize, "{in_window} in one window at {rate_factor}x");
            }
            assert!(ours as f64 >= 0.95 * exact as f64, "{ours} vs exact {exact} at {rate_factor}x");
        }
    }

    #[test]
    fn a_weighted_request_is_admitted_only_whole_and_then_counts_its_weight() {
        let p = params(60, 50);
        let mut w = SlidingWindow::default();
        let t = 1000 * SECOND;
        let forty = w.try_acquire_cost(t, &p, 40);
        assert!(forty.room);
        assert_eq!(forty.remaining, 10);
        let twenty = w.try_acquire_cost(t + SECOND, &p, 20);
        assert!(!twenty.room, "20 do not fit in the 10 left");
        assert_eq!(twenty.remaining, 10, "a refusal counts nothing");
        assert!(w.try_acquire_cost(t + SECOND, &p, 10).room, "10 do");
        assert!(!w.try_acquire(t + SECOND, &p).room);
        assert!(w.try_acquire_cost(t + SECOND, &p, 0).room, "a cost of 0 always fits and counts nothing");
        assert_eq!(w.quota(t + SECOND, &p, 1).remaining, 0);
    }

    #[test]
    fn a_weighted_refusal_says_when_enough_has_left_for_it_to_fit() {
        let p = params(60, 10);
        let mut w = SlidingWindow::default();
        let t = 7000 * SECOND;
        w.try_acquire_cost(t, &p, 3);
        w.try_acquire_cost(t + 20 * SECOND, &p, 4);
        w.try_acquire_cost(t + 40 * SECOND, &p, 3);
        // 6 need the first two sub-windows gone, 1 only the first
        let refused = w.quota(t + 50 * SECOND, &p, 6);
        assert!(!refused.room);
        let retry_at = t + 50 * SECOND + refused.reset_after.as_micros() as u64;
        assert!(!w.clone().try_acquire_cost(retry_at - 1, &p, 6).room);
        assert!(w.clone().try_acquire_cost(retry_at, &p, 6).room);
        let one = w.quota(t + 50 * SECOND, &p, 1);
        assert!(one.reset_after < refused.reset_after, "{one:?} vs {refused:?}");
        assert!(w.try_acquire(t + 50 * SECOND + one.reset_after.as_micros() as u64, &p).room);
    }

    #[test]
    fn memory_does_not_grow_with_the_limit() {
        let p = params(60, 1_000_000);
        let mut w = SlidingWindow::default();
        for i in 0..100_000u64 {
            w.try_acquire(1000 * SECOND + i * 1000, &p);
        }
        assert!(w.counts.len() <= SUB_WINDOWS as usize + 2);
        assert!(w.is_idle(2000 * SECOND, &p));
    }
}
