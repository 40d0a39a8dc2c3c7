//! The Redis limiter on a real Redis Cluster (three primaries, one replica each, from Debian's
//! redis-server): one exact limit whichever shard a client's keys land on, and a primary's failover
//! followed under load without a restart, a 5xx, or a limit looser than the failure policy.
mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use client_telemetry::{
    client_ip::IpBucket, observability::Metrics, ratelimit::LimitKey, ratelimit::RedisLimiter, settings::Settings,
};
use support::{
    Gateway,
    fleet::{LIMIT, admitted, round_robin, warm_up},
    load::Load,
    redis_topology::{NODE_TIMEOUT_MS, RedisCluster},
};

/// `count` gateways on the cluster.
fn fleet(cluster: &RedisCluster, count: usize, timeout_ms: &str) -> Vec<Gateway> {
    let urls = cluster.urls();
    let redis =
        [("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_MODE", "cluster"), ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", &urls)];
    support::fleet::start(&redis, count, timeout_ms)
}

/// The hash slot of a client's keys, from the gateway's own key naming.
fn slot_of(cluster: &RedisCluster, ip: &str) -> u16 {
    let vars = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1:1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let settings = Settings::from_vars(vars).unwrap();
    let limiter =
        RedisLimiter::new(&settings.rate_limit, &Metrics::new(), slog::Logger::root(slog::Discard, slog::o!()));
    let key = limiter.redis_key(&LimitKey::Ip(IpBucket::of(ip.parse().unwrap())));
    let node = cluster.nodes.iter().find(|n| n.is_running()).unwrap();
    node.query(&["CLUSTER", "KEYSLOT", &key])
}

/// Client addresses (`prefix.N`) whose keys the primary at `port` serves, `n` of them from `from`.
fn clients_on(cluster: &RedisCluster, port: u16, prefix: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + 250)
        .map(|i| format!("{prefix}.{i}"))
        .filter(|ip| cluster.primary_of_slot(slot_of(cluster, ip)) == Some(port))
        .take(n)
        .collect()
}

#[test]
fn three_gateways_on_a_three_primary_cluster_share_one_exact_limit_for_clients_on_every_shard() {
    let cluster = RedisCluster::start(3);
    let fleet = fleet(&cluster, 3, "2000");
    let clients: Vec<String> = (1..=30).map(|i| format!("198.51.100.{i}")).collect();
    for client in &clients {
        let statuses = round_robin(&fleet, client, LIMIT + 3);
        assert_eq!(statuses[..LIMIT], [204; LIMIT], "{client}: {statuses:?}");
        assert_eq!(statuses[LIMIT..], [429; 3], "{client}: {statuses:?}");
    }
    let primaries = cluster.primary_ports();
    assert_eq!(primaries.len(), 3);
    let shards: BTreeSet<u16> =
        clients.iter().filter_map(|ip| cluster.primary_of_slot(slot_of(&cluster, ip))).collect();
    assert_eq!(shards, primaries.iter().copied().collect(), "the clients' keys land on every shard");
    for port in &primaries {
        assert!(cluster.keys_on(*port) > 0, "primary {port} holds keys");
    }
    for gateway in &fleet {
        let ready = gateway.get(&gateway.url("/readyz")).json();
        let redis = &ready["rateLimiter"]["redis"];
        assert_eq!(
            (redis["mode"].as_str(), redis["primaries"].as_u64(), redis["primariesAnswering"].as_u64()),
            (Some("cluster"), Some(3), Some(3)),
            "{ready}"
        );
        assert_eq!(gateway.metric(r#"client_telemetry_rate_limiter_redis_primaries{state="answering"}"#), 3.0);
        assert_eq!(gateway.metric("client_telemetry_rate_limiter_degraded"), 0.0);
    }
}

#[test]
fn a_primary_killed_under_load_fails_over_with_no_5xx_and_the_shared_limit_is_back_within_10_s() {
    let mut cluster = RedisCluster::start(3);
    let fleet = fleet(&cluster, 3, "250");
    let victim = cluster.primary_ports()[0];
    let on_victim = clients_on(&cluster, victim, "203.0.113", 1, 40);
    assert!(on_victim.len() >= 20, "enough clients on the victim's shard");
    let (outage_client, fresh) = (on_victim[0].clone(), &on_victim[1..]);
    let slot = slot_of(&cluster, &outage_client);
    warm_up(&fleet);
    let exact_before = round_robin(&fleet, &fresh[0], LIMIT + 3);
    assert_eq!(admitted(&exact_before), LIMIT, "shared before the failure: {exact_before:?}");

    let targets: Vec<String> = fleet.iter().map(|g| g.url("")).collect();
    let load = Load { threads: 3, max_requests_per_thread: 4000, ..Load::default() };
    let mut during_outage = Vec::new();
    let mut promotion = None;
    let mut back = None;
    let mut killed = None;
    let tallies = load.run(&targets, Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_millis(500));
        cluster.node(victim).kill();
        killed = Some(Instant::now());
        // While the slot has no primary, each gateway limits alone (failure policy `local`).
        during_outage = round_robin(&fleet, &outage_client, 3 * LIMIT + 6);
        promotion = cluster.wait_for_failover(slot, victim, Duration::from_secs(20));
        let Some(promoted) = promotion else { return };
        // Back on the shared limit: a fresh client of that shard gets exactly the limit, fleet-wide
        // (limiting alone, three gateways would admit all 8 requests).
        for client in &fresh[1..] {
            if admitted(&round_robin(&fleet, client, LIMIT + 3)) == LIMIT {
                back = Some(Instant::now());
                break;
            }
            if promoted.elapsed() > Duration::from_secs(12) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let promoted = promotion.expect("the replica was promoted");
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
    for gateway in &fleet {
        let ready = gateway.get(&gateway.url("/readyz")).json();
        assert_eq!(ready["status"], "ready");
        assert_eq!(ready["rateLimiter"]["redis"]["primariesAnswering"], 3, "{ready}");
    }
    eprintln!(
        "cluster failover: node timeout {NODE_TIMEOUT_MS} ms, promoted {:?} after the kill, shared limit back {:?} after the promotion, {requests} requests, outage admitted {}/{}",
        promoted - killed.unwrap(),
        back - promoted,
        admitted(&during_outage),
        during_outage.len()
    );
}
