//! Several gateways on one shared Redis topology, behind a trusted proxy so a test chooses each
//! request's client address.

use std::time::Duration;

use super::{Gateway, batch, wait_until};

/// The per-IP limit every fleet runs with.
pub const LIMIT: usize = 5;

/// `count` gateways on the Redis backend; `redis` names the topology (mode, URLs, …).
pub fn start(redis: &[(&str, &str)], count: usize, timeout_ms: &str) -> Vec<Gateway> {
    let mut env = vec![
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", timeout_ms),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "60000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "5"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    env.extend_from_slice(redis);
    (0..count).map(|_| Gateway::start(&env)).collect()
}

/// `n` requests of `client`, each to the next gateway in turn; their statuses.
pub fn round_robin(fleet: &[Gateway], client: &str, n: usize) -> Vec<u16> {
    (0..n).map(|i| fleet[i % fleet.len()].post_as(client, &batch(1)).status).collect()
}

/// Until every gateway decides on Redis: each worker's first call connects, and on a busy machine
/// that can miss the deadline and send a few calls to the failure policy.
pub fn warm_up(fleet: &[Gateway]) {
    for gateway in fleet {
        let warm = wait_until(Duration::from_secs(10), || {
            (0..4).for_each(|_| drop(gateway.post_as("192.0.2.250", &batch(1))));
            gateway.metric("client_telemetry_rate_limiter_degraded") == 0.0
        });
        assert!(warm, "the gateway reached Redis");
    }
}

pub fn admitted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 204).count()
}
