//! The Redis limiter through Sentinel (a primary, a replica and three Sentinels, from Debian's
//! redis-server): the primary is found through the Sentinels, and when it is killed under load the
//! gateways follow the Sentinel-led failover without a restart, a 5xx, or a limit looser than the
//! failure policy.
mod support;

use std::time::Duration;

use support::{
    Gateway,
    fleet::{Failover, LIMIT, admitted, kill_under_load, round_robin, warm_up},
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

    let fresh: Vec<String> = (10..200).map(|i| format!("198.51.100.{i}")).collect();
    let Failover { killed, promoted, back, during_outage, requests } =
        kill_under_load(&fleet, "198.51.100.2", &fresh, |outage| {
            topology.primary.kill();
            outage();
            topology.wait_for_failover(Duration::from_secs(30))
        });
    let new_primary_keys: u64 = topology.replica.query(&["DBSIZE"]);
    assert!(new_primary_keys > 0, "the limit is now kept on the promoted replica");
    eprintln!(
        "sentinel failover: promoted {:?} after the kill, shared limit back {:?} after the promotion, {requests} requests, outage admitted {}/{}",
        promoted - killed,
        back - promoted,
        admitted(&during_outage),
        during_outage.len()
    );
}
