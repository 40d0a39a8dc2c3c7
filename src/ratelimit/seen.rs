//! Batch ids accepted within the de-duplication window, on this replica.
//!
//! Ids are kept as keyed 64-bit hashes in slices of a quarter window, oldest first: a few times
//! smaller than a cache entry per id (figures in docs/benchmarks.md), so a busy replica's window of
//! ids stays at tens of megabytes.
//! An id is remembered for the window and at most a quarter more. The hash key is random per
//! process, so nobody can aim a collision at another client's batch. Past `max_ids` the oldest
//! slice goes early: a retry may then be logged twice (at least once, never lost).

use std::{
    collections::{HashSet, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::LimitKey;

const SLICES_PER_WINDOW: u32 = 4;

pub struct SeenIds {
    window: Duration,
    slice: Duration,
    max_ids: usize,
    hasher: RandomState,
    /// (when the slice began, the ids accepted from then until the next slice), oldest first.
    slices: Mutex<VecDeque<(Instant, HashSet<u64>)>>,
}

impl SeenIds {
    pub fn new(window: Duration, max_ids: usize) -> Self {
        let slice = (window / SLICES_PER_WINDOW).max(Duration::from_millis(1));
        Self { window, slice, max_ids: max_ids.max(1), hasher: RandomState::new(), slices: Mutex::default() }
    }

    pub fn contains(&self, batch: &LimitKey) -> bool {
        self.contains_at(batch, Instant::now())
    }

    pub fn insert(&self, batch: &LimitKey) {
        self.insert_at(batch, Instant::now());
    }

    fn contains_at(&self, batch: &LimitKey, now: Instant) -> bool {
        let id = self.hasher.hash_one(batch);
        let mut slices = self.lock();
        self.expire(&mut slices, now);
        slices.iter().any(|(_, ids)| ids.contains(&id))
    }

    fn insert_at(&self, batch: &LimitKey, now: Instant) {
        let id = self.hasher.hash_one(batch);
        let mut slices = self.lock();
        self.expire(&mut slices, now);
        while slices.iter().map(|(_, ids)| ids.len()).sum::<usize>() >= self.max_ids {
            slices.pop_front();
        }
        match slices.back_mut() {
            Some((began, ids)) if now.saturating_duration_since(*began) < self.slice => {
                ids.insert(id);
            }
            _ => slices.push_back((now, HashSet::from([id]))),
        }
    }

    /// Drops the slices whose every id was accepted more than a window ago.
    fn expire(&self, slices: &mut VecDeque<(Instant, HashSet<u64>)>, now: Instant) {
        while slices.front().is_some_and(|(began, _)| now.saturating_duration_since(*began) >= self.slice + self.window)
        {
            slices.pop_front();
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(Instant, HashSet<u64>)>> {
        self.slices.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::IpBucket;

    fn batch(ip: u8, id: &str) -> LimitKey {
        LimitKey::Batch(IpBucket::V4([192, 0, 2, ip]), id.into())
    }

    #[test]
    fn an_id_is_remembered_for_the_window_and_at_most_a_quarter_more() {
        let seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t = Instant::now();
        seen.insert_at(&batch(1, "b-1"), t);
        assert!(seen.contains_at(&batch(1, "b-1"), t + Duration::from_secs(60)));
        assert!(!seen.contains_at(&batch(2, "b-1"), t), "the same id from another address is another batch");
        assert!(!seen.contains_at(&batch(1, "b-2"), t));
        assert!(!seen.contains_at(&batch(1, "b-1"), t + Duration::from_secs(75)), "forgotten");
    }

    #[test]
    fn ids_of_a_later_slice_outlive_the_earlier_one() {
        let seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t = Instant::now();
        seen.insert_at(&batch(1, "early"), t);
        seen.insert_at(&batch(1, "late"), t + Duration::from_secs(20));
        let later = t + Duration::from_secs(76);
        assert!(!seen.contains_at(&batch(1, "early"), later));
        assert!(seen.contains_at(&batch(1, "late"), later), "accepted 56 s before");
    }

    #[test]
    fn past_the_cap_the_oldest_slice_goes_first() {
        let seen = SeenIds::new(Duration::from_secs(60), 100);
        let t = Instant::now();
        for i in 0..60 {
            seen.insert_at(&batch(1, &format!("old-{i}")), t);
        }
        for i in 0..60 {
            seen.insert_at(&batch(1, &format!("new-{i}")), t + Duration::from_secs(16));
        }
        let now = t + Duration::from_secs(17);
        assert!(!seen.contains_at(&batch(1, "old-0"), now), "dropped early, to stay under the cap");
        assert!(seen.contains_at(&batch(1, "new-0"), now) && seen.contains_at(&batch(1, "new-59"), now));
        assert!(seen.lock().iter().map(|(_, ids)| ids.len()).sum::<usize>() <= 100);
    }
}
