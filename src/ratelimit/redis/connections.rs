//! Redis connections: on each worker's runtime, `per_worker` multiplexed connections used in turn.
//!
//! Calls a worker makes at the same time share a connection, so the client pipelines them (one write
//! and one read for many) and the connection's I/O stays on the worker's own runtime, with no
//! hand-off to another thread. That is why this is not a pool of exclusive connections, which gives
//! each call its own write, read and wake-up of a connection task on any thread.
//! A connection that fails or misses a deadline is replaced on its next use (unless it repairs
//! itself: see `Connector::replaces_after`). The same holds whatever the connections are made to.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use redis::RedisError;
use tokio::{runtime, sync::OnceCell};

use super::connector::{Connection, Connector};

pub struct Connections {
    connector: Connector,
    per_worker: usize,
    workers: Mutex<HashMap<runtime::Id, Worker>>,
}

/// One worker's connections, and which one the next call takes.
struct Worker {
    slots: Vec<Arc<Slot>>,
    next: usize,
}

/// Connected once, by whichever call gets there first; the others wait for that connection.
#[derive(Default)]
struct Slot(OnceCell<Connection>);

/// A connection in use, and the slot it came from (to replace it if it fails).
pub struct Lease {
    slot: Arc<Slot>,
    pub connection: Connection,
}

impl Connections {
    pub fn new(connector: Connector, per_worker: usize) -> Self {
        Self { connector, per_worker: per_worker.max(1), workers: Mutex::default() }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// A connection of the calling runtime (a worker), connecting it first if needed.
    pub async fn get(&self) -> Result<Lease, RedisError> {
        let slot = self.next_slot();
        let connect = || self.connector.connect();
        let connection = slot.0.get_or_try_init(connect).await?.clone();
        Ok(Lease { slot, connection })
    }

    /// The lease's connection is not used again: a failed call, or one that missed its deadline (a
    /// stalled server or a half-open socket would hold every later call too).
    pub fn discard(&self, lease: Lease) {
        for worker in self.lock().values_mut() {
            if let Some(slot) = worker.slots.iter_mut().find(|slot| Arc::ptr_eq(slot, &lease.slot)) {
                *slot = Arc::default();
                return;
            }
        }
    }

    fn next_slot(&self) -> Arc<Slot> {
        let mut workers = self.lock();
        let worker = workers
            .entry(runtime::Handle::current().id())
            .or_insert_with(|| Worker { slots: (0..self.per_worker).map(|_| Arc::default()).collect(), next: 0 });
        worker.next = (worker.next + 1) % worker.slots.len();
        worker.slots[worker.next].clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<runtime::Id, Worker>> {
        self.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
