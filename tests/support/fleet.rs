//! Several gateways on one shared Redis topology, behind a trusted proxy so a test chooses each
//! request's client address.

use std::time::{Duration, Instant};

use super::{Gateway, batch, load::Load, wait_until};

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

/// What a primary killed under load came to (`kill_under_load`).
pub struct Failover {
    pub killed: Instant,
    pub promoted: Instant,
    /// When a fresh client first got exactly the limit fleet-wide again.
    pub back: Instant,
    /// The statuses of one client of the killed primary's shard during the outage.
    pub during_outage: Vec<u16>,
    /// Requests the load sent in all.
    pub requests: u64,
}

/// A primary killed under load, as every failover test drives it: load on every gateway while
/// `fail` kills the primary, calls `outage` at once (one client of the shard sent round robin:
/// each gateway then limits alone, failure policy `local`) and returns the moment a replica took
/// over; then fresh clients of that shard tried until one gets exactly the limit fleet-wide (limiting
/// alone, the gateways would admit more). Asserts what holds for every topology: the shared limit
/// back within 10 s of the promotion, the outage within the failure policy, no 5xx.
pub fn kill_under_load(
    fleet: &[Gateway],
    outage_client: &str,
    fresh: &[String],
    fail: impl FnOnce(&mut dyn FnMut()) -> Option<Instant>,
) -> Failover {
    let targets: Vec<String> = fleet.iter().map(|g| g.url("")).collect();
    let load = Load { threads: 3, max_requests_per_thread: 4000, ..Load::default() };
    let (mut during_outage, mut promoted, mut back, mut killed) = (Vec::new(), None, None, None);
    let tallies = load.run(&targets, Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_millis(500));
        promoted = fail(&mut || {
            killed = Some(Instant::now());
            during_outage = round_robin(fleet, outage_client, 3 * LIMIT + 6);
        });
        let Some(promoted) = promoted else { return };
        for client in fresh {
            if admitted(&round_robin(fleet, client, LIMIT + 3)) == LIMIT {
                back = Some(Instant::now());
                break;
            }
            if promoted.elapsed() > Duration::from_secs(12) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let promoted = promoted.expect("a replica was promoted");
    let back = back.expect("the shared limit came back");
    assert!(back - promoted <= Duration::from_secs(10), "back {:?} after the promotion", back - promoted);
    assert!(during_outage.iter().all(|s| [204, 429].contains(s)), "{during_outage:?}");
    assert!(admitted(&during_outage) <= 3 * LIMIT, "within the failure policy: {during_outage:?}");
    let requests: u64 = tallies.iter().map(|t| t.requests()).sum();
    assert!(requests > 100, "the load ran: {requests} requests");
    for tally in &tallies {
        assert_eq!(tally.server_errors(), 0, "no 5xx: {:?}", tally.statuses);
        assert_eq!(tally.transport_errors, 0);
    }
    Failover { killed: killed.expect("killed"), promoted, back, during_outage, requests }
}
