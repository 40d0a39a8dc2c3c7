//! The queue between the request path and the exporter: one message per request, bounded in events.
//!
//! A request's records travel together (one channel operation and at most one exporter wake-up
//! per request, not per event); the bound counts events, so a batch of 100 takes 100 places. Room is
//! taken before the records are encoded, so events that will be dropped cost nothing.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::mpsc;

use super::otlp::Record;

pub fn bounded(capacity: usize) -> (Sender, Receiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let room = Arc::new(Room { capacity, used: AtomicUsize::new(0) });
    (Sender { sender, room: room.clone() }, Receiver { receiver, room, carry: VecDeque::new() })
}

/// Events in the queue, at most `capacity`: taken by senders, given back as the exporter receives.
struct Room {
    capacity: usize,
    used: AtomicUsize,
}

impl Room {
    fn take(&self, wanted: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let take = wanted.min(self.capacity.saturating_sub(used));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(used, used + take, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return take,
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, count: usize) {
        self.used.fetch_sub(count, Ordering::AcqRel);
    }
}

#[derive(Clone)]
pub struct Sender {
    sender: mpsc::UnboundedSender<Vec<Record>>,
    room: Arc<Room>,
}

impl Sender {
    /// Takes room for up to `wanted` events without waiting; returns how many fit (the oldest first).
    pub fn reserve(&self, wanted: usize) -> usize {
        self.room.take(wanted)
    }

    /// Sends records that `reserve` made room for. `Err` gives the count back when the exporter has
    /// closed the queue (shutdown): those records were not queued.
    pub fn send(&self, records: Vec<Record>) -> Result<(), usize> {
        self.sender.send(records).map_err(|refused| {
            self.room.give_back(refused.0.len());
            refused.0.len()
        })
    }

    pub fn capacity(&self) -> usize {
        self.room.capacity
    }
}

pub struct Receiver {
    receiver: mpsc::UnboundedReceiver<Vec<Record>>,
    room: Arc<Room>,
    /// The rest of a request whose records did not all fit in the last batch.
    carry: VecDeque<Record>,
}

impl Receiver {
    /// Moves up to `limit` records into `batch`, waiting for the first; returns how many, 0 once the
    /// queue is closed and empty. Cancel-safe: a message received is never lost.
    pub async fn recv_many(&mut self, batch: &mut Vec<Record>, limit: usize) -> usize {
        if self.carry.is_empty() {
            match self.receiver.recv().await {
                Some(records) => self.carry = records.into(),
                None => return 0,
            }
        }
        let mut moved = 0;
        loop {
            let take = self.carry.len().min(limit - moved);
            batch.extend(self.carry.drain(..take));
            moved += take;
            if moved == limit {
                break;
            }
            // Whatever else is already queued, without waiting.
            match self.receiver.try_recv() {
                Ok(records) => self.carry = records.into(),
                Err(_) => break,
            }
        }
        self.room.give_back(moved);
        moved
    }

    /// No more sends succeed; what is queued can still be received.
    pub fn close(&mut self) {
        self.receiver.close();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn records(scope: &str, count: usize) -> Vec<Record> {
        (0..count)
            .map(|i| Record { resource: Arc::from(&b""[..]), scope: scope.into(), log: Bytes::from(vec![i as u8]) })
            .collect()
    }

    #[tokio::test]
    async fn room_is_counted_in_events_and_given_back_as_they_are_received() {
        let (sender, mut receiver) = bounded(5);
        assert_eq!(sender.reserve(3), 3);
        sender.send(records("a", 3)).unwrap();
        assert_eq!(sender.reserve(4), 2, "only two places left");
        sender.send(records("b", 2)).unwrap();
        assert_eq!(sender.reserve(1), 0, "full");
        let mut batch = Vec::new();
        assert_eq!(receiver.recv_many(&mut batch, 4).await, 4, "across requests, up to the limit");
        assert_eq!(sender.reserve(10), 4, "received records no longer take room");
        let scopes: Vec<_> = batch.iter().map(|r| &*r.scope).collect();
        assert_eq!(scopes, ["a", "a", "a", "b"]);
        batch.clear();
        assert_eq!(receiver.recv_many(&mut batch, 4).await, 1, "the rest of the split request");
        assert_eq!(batch[0].log, Bytes::from(vec![1]));
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_sends_and_returns_what_it_held() {
        let (sender, mut receiver) = bounded(10);
        sender.reserve(2);
        sender.send(records("a", 2)).unwrap();
        receiver.close();
        assert_eq!(sender.reserve(3), 3);
        assert_eq!(sender.send(records("b", 3)), Err(3));
        assert_eq!(sender.reserve(10), 8, "refused records gave their room back");
        let mut batch = Vec::new();
        assert_eq!(receiver.recv_many(&mut batch, 10).await, 2);
        assert_eq!(receiver.recv_many(&mut batch, 10).await, 0, "closed and empty");
    }
}
