//! The Redis limiter through Sentinel (a primary, a replica and three Sentinels, from Debian's
//! redis-server): the primary is found through the Sentinels, and when it is killed under load the
//! gateways follow the Sentinel-led failover without a restart, a 5xx, or a limit looser than the
//! failure policy.
mod support;

use std::time::{Duration, Instant};

use support::{
    Gateway,
    fleet::{LIMIT, admitted, round_robin, warm_up},
    load::Load,
    redis_topology::{MASTER_NAME, RedisSentinel},
};

/// `count` gateways finding the primary through the Sentinels.
fn fleet(topology: &RedisSentinel, count: usize, timeout_ms: &str) -> Vec<Gateway> {
    let urls = topology.sentinel_urls();
    let redis = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_MODE", "sentinel"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", urls.as_str()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_SENTINEL_MASTER", MASTER_NAME),
    ];
    support::fleet::start(&redis, count, timeout_ms)
}

#[test]
fn the_primary_is_found_through_sentinel_and_its_failover_is_followed_under_load_without_a_restart() {
    let mut topology = RedisSentinel::start();
    let fleet = fleet(&topology, 3, "250");
    warm_up(&fleet);
    let exact = round_robin(&fleet, "198.51.100.1", LIMIT + 3);
    assert_eq!(exact[..LIMIT], [204; LIMIT], "{exact:?}");
    assert_eq!(exact[LIMIT..], [429; 3], "{exact:?}");
    let keys: u64 = topology.primary.query(&["DBSIZE"]);
    assert!(keys > 0, "the limit is kept on the primary Sentinel names");
    for gateway in &fleet {
        let ready = gateway.get(&gateway.url("/readyz")).json();
        assert_eq!(ready["rateLimiter"]["redis"]["mode"], "sentinel", "{ready}");
    }

    let targets: Vec<String> = fleet.iter().map(|g| g.url("")).collect();
    let load = Load { threads: 3, max_requests_per_thread: 4000, ..Load::default() };
    let mut during_outage = Vec::new();
    let mut promotion = None;
    let mut back = None;
    let mut killed = None;
    let tallies = load.run(&targets, Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_millis(500));
        topology.primary.kill();
        killed = Some(Instant::now());
        // With no primary, each gateway limits alone (failure policy `local`).
        during_outage = round_robin(&fleet, "198.51.100.2", 3 * LIMIT + 6);
        promotion = topology.wait_for_failover(Duration::from_secs(30));
        let Some(promoted) = promotion else { return };
        // Back on the shared limit: a fresh client gets exactly the limit fleet-wide (limiting
        // alone, three gateways would admit all 8 requests).
        for i in 10..200 {
            if admitted(&round_robin(&fleet, &format!("198.51.100.{i}"), LIMIT + 3)) == LIMIT {
                back = Some(Instant::now());
                break;
            }
            if promoted.elapsed() > Duration::from_secs(12) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let promoted = promotion.expect("Sentinel promoted the replica");
    let back = back.expect("the shared limit came back");
    assert!(back - promoted <= Duration::from_secs(10), "back {:?} after the promotion", back - promoted);
    assert!(during_outage.iter().all(|s| [204, 429].contains(s)), "{during_outage:?}");
    assert!(admitted(&during_outage) <= 3 * LIMIT, "within the failure policy: {during_outage:?}");
    let new_primary_keys: u64 = topology.replica.query(&["DBSIZE"]);
    assert!(new_primary_keys > 0, "the limit is now kept on the promoted replica");
    let requests: u64 = tallies.iter().map(|t| t.requests()).sum();
    assert!(requests > 100, "the load ran: {requests} requests");
    for tally in &tallies {
        assert_eq!(tally.server_errors(), 0, "no 5xx: {:?}", tally.statuses);
        assert_eq!(tally.transport_errors, 0);
    }
    eprintln!(
        "sentinel failover: promoted {:?} after the kill, shared limit back {:?} after the promotion, {requests} requests, outage admitted {}/{}",
        promoted - killed.unwrap(),
        back - promoted,
        admitted(&during_outage),
        during_outage.len()
    );
}
