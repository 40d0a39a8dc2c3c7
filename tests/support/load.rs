//! Sustained load for fault-injection tests: client threads posting batches of uniquely named events
//! over keep-alive connections, each request as a different client address (through a trusted
//! proxy, so the rate limit never refuses the load itself), bounded in time and in count. What the
//! clients saw — which events were answered 204/200, every status, transport errors, the slowest
//! answer — is the test's record of what the gateway accepted.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{INGEST, event};

/// The load's shape. Each thread posts to one target (thread `i` to `targets[i % len]`).
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: usize,
    pub events_per_request: usize,
    /// Safety net: a thread stops after this many requests even if the test has not finished.
    pub max_requests_per_thread: usize,
    /// Between two requests of one thread: keeps a 2-core machine responsive (and the figures small).
    pub pause: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Load { threads: 4, events_per_request: 10, max_requests_per_thread: 1500, pause: Duration::from_millis(3) }
    }
}

/// What the clients of one target saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The `message` of every event the gateway accepted (204, or 200 less its `rejected`).
    pub accepted: Vec<String>,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests with no HTTP answer at all (connection refused or reset).
    pub transport_errors: u64,
    pub slowest: Duration,
}

impl Tally {
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.transport_errors
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses.iter().filter(|(status, _)| **status >= 500).map(|(_, n)| n).sum()
    }

    fn merge(&mut self, other: Tally) {
        self.accepted.extend(other.accepted);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.slowest = self.slowest.max(other.slowest);
    }
}

impl Load {
    /// Runs the load against `targets` (ingest base URLs, `http://host:port`) while `during` runs on
    /// this thread, and for `tail` after it returns; one tally per target.
    pub fn run(&self, targets: &[String], tail: Duration, during: impl FnOnce()) -> Vec<Tally> {
        let stop = AtomicBool::new(false);
        let mut tallies = vec![Tally::default(); targets.len()];
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..self.threads)
                .map(|thread| {
                    let (target, stop) = (&targets[thread % targets.len()], &stop);
                    scope.spawn(move || (thread % targets.len(), self.client(thread, target, stop)))
                })
                .collect();
            during();
            std::thread::sleep(tail);
            stop.store(true, Ordering::SeqCst);
            for worker in workers {
                let (target, tally) = worker.join().expect("a load thread panicked");
                tallies[target].merge(tally);
            }
        });
        tallies
    }

    fn client(&self, thread: usize, target: &str, stop: &AtomicBool) -> Tally {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
        let url = format!("{target}{INGEST}");
        let mut tally = Tally::default();
        for request in 0..self.max_requests_per_thread {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let messages: Vec<String> =
                (0..self.events_per_request).map(|i| format!("t{thread}-r{request}-e{i}")).collect();
            let body = json!({ "events": messages.iter().map(|m| event("info", m)).collect::<Vec<_>>() });
            // A client address per request: 10.<thread>.<request>, unique for 65 536 requests a thread.
            let client = format!("10.{}.{}.{}", thread % 256, (request / 256) % 256, request % 256);
            let started = Instant::now();
            let result = agent
                .post(&url)
                .set("content-type", "application/json")
                .set("x-forwarded-for", &client)
                .send_string(&body.to_string());
            tally.slowest = tally.slowest.max(started.elapsed());
            let response = match result {
                Ok(response) | Err(ureq::Error::Status(_, response)) => response,
                Err(ureq::Error::Transport(_)) => {
                    tally.transport_errors += 1;
                    std::thread::sleep(self.pause.max(Duration::from_millis(20)));
                    continue;
                }
            };
            let status = response.status();
            *tally.statuses.entry(status).or_default() += 1;
            match status {
                204 => tally.accepted.extend(messages),
                200 => {
                    let answer: Value = response.into_json().expect("a 200 carries JSON");
                    let rejected: Vec<u64> = answer["rejected"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["index"].as_u64())
                        .collect();
                    let kept = messages.into_iter().enumerate().filter(|(i, _)| !rejected.contains(&(*i as u64)));
                    tally.accepted.extend(kept.map(|(_, m)| m));
                }
                _ => {}
            }
            std::thread::sleep(self.pause);
        }
        tally
    }
}
