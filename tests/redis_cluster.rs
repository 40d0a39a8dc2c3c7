//! The Redis limiter on a real Redis Cluster (three primaries, one replica each, from Debian's
//! redis-server): one exact limit whichever shard a client's keys land on, and a primary's failover
//! followed under load without a restart, a 5xx, or a limit looser than the failure policy.
mod support;

use std::{collections::BTreeSet, time::Duration};

use client_telemetry::{
    client_ip::IpBucket, observability::Metrics, ratelimit::LimitKey, ratelimit::RedisLimiter, settings::Settings,
};
use support::{
    Gateway,
    fleet::{Failover, LIMIT, admitted, kill_under_load, round_robin, warm_up},
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

    let failover = kill_under_load(&fleet, &outage_client, &fresh[1..], |outage| {
        cluster.node(victim).kill();
        outage();
        cluster.wait_for_failover(slot, victim, Duration::from_secs(20))
    });
    for gateway in &fleet {
        let ready = gateway.get(&gateway.url("/readyz")).json();
        assert_eq!(ready["status"], "ready");
        assert_eq!(ready["rateLimiter"]["redis"]["primariesAnswering"], 3, "{ready}");
    }
    let Failover { killed, promoted, back, during_outage, requests } = failover;
    eprintln!(
        "cluster failover: node timeout {NODE_TIMEOUT_MS} ms, promoted {:?} after the kill, shared limit back {:?} after the promotion, {requests} requests, outage admitted {}/{}",
        promoted - killed,
        back - promoted,
        admitted(&during_outage),
        during_outage.len()
    );
}
