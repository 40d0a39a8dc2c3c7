//! The Redis backend: one sliding-window limit for the whole fleet, and Redis never takes telemetry
//! down. Every test runs its own redis-server (tests/support) so it can kill, pause, restart and
//! flush it; gateways are the real binary.
mod support;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use client_telemetry::{
    client_ip::IpBucket,
    observability::Metrics,
    ratelimit::{
        LimitKey, RedisLimiter,
        redis::ScriptReply,
        window::{SlidingWindow, WindowParams},
    },
    settings::Settings,
};
use support::{Gateway, RedisServer, batch, free_port, wait_until};

/// Deadline for tests about the arithmetic: a slow moment on a busy machine must not send them to
/// the fallback. Tests about failures use the default (25 ms).
const PATIENT: (&str, &str) = ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000");
const DEGRADED: &str = "client_telemetry_rate_limiter_degraded";

/// `count` gateways on `redis`, behind a trusted proxy so a test chooses the client address.
fn fleet(redis_url: &str, count: usize, max_requests: &str, extra: &[(&str, &str)]) -> Vec<Gateway> {
    let mut env = vec![
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", redis_url),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "60000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", max_requests),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    env.extend_from_slice(extra);
    (0..count).map(|_| Gateway::start(&env)).collect()
}

/// Statuses of `n` requests from `client`, sent in turn to each gateway.
fn round_robin(fleet: &[Gateway], client: &str, n: usize) -> Vec<u16> {
    (0..n).map(|i| fleet[i % fleet.len()].post_as(client, &batch(1)).status).collect()
}

fn admitted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 204).count()
}

fn redis_errors(gateway: &Gateway, kind: &str) -> f64 {
    gateway.metric(&format!(r#"client_telemetry_rate_limiter_errors_total{{backend="redis",kind="{kind}"}}"#))
}

fn all_redis_errors(gateway: &Gateway) -> f64 {
    ["timeout", "connection", "server", "reply", "circuit_open"].iter().map(|k| redis_errors(gateway, k)).sum()
}

#[test]
fn three_gateways_on_one_redis_share_one_limit_exactly() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis.url(), 3, "30", &[PATIENT]);
    let statuses = round_robin(&fleet, "198.51.100.7", 45);
    assert_eq!(statuses[..30], [204; 30]);
    assert_eq!(statuses[30..], [429; 15]);
    let refused = fleet[0].post_as("198.51.100.7", &batch(1));
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((60..=62).contains(&retry_after), "Retry-After {retry_after}");
    assert!(refused.header("ratelimit").unwrap().starts_with(r#""ip";r=0;t="#));
    assert_eq!(fleet[1].post_as("198.51.100.8", &batch(1)).status, 204, "another client has its own limit");
    for gateway in &fleet {
        assert_eq!(all_redis_errors(gateway), 0.0);
    }
}

#[test]
fn under_concurrent_load_from_many_threads_the_fleet_admits_exactly_the_limit() {
    let redis = RedisServer::start();
    let fleet = Arc::new(fleet(&redis.url(), 3, "50", &[PATIENT]));
    let clients = ["198.51.100.1", "198.51.100.2"];
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let fleet = fleet.clone();
            thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let client = clients[(t + i) % 2];
                        (client, fleet[(t + i) % 3].post_as(client, &batch(1)).status)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<(&str, u16)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|(_, status)| [204, 429].contains(status)), "{results:?}");
    for client in clients {
        let statuses: Vec<u16> = results.iter().filter(|(c, _)| *c == client).map(|(_, s)| *s).collect();
        assert_eq!(statuses.len(), 80);
        assert_eq!(admitted(&statuses), 50, "{client}");
    }
}

#[test]
fn each_worker_shares_one_connection_however_many_requests_run_at_once() {
    let redis = RedisServer::start();
    let gateway = Arc::new(Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", &redis.url()),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("CLIENT_TELEMETRY_WORKERS", "2"),
        PATIENT,
    ]));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let gateway = gateway.clone();
            thread::spawn(move || {
                (0..10).map(|i| gateway.post_as(&format!("198.51.100.{t}"), &batch(i + 1)).status).collect::<Vec<_>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses, [204; 160]);
    let clients: String = redis.query(&["CLIENT", "LIST"]);
    let gateways = clients.lines().filter(|line| !line.contains("cmd=client|list")).count();
    assert!((1..=2).contains(&gateways), "one connection per worker at most, not one per request:\n{clients}");
}

#[test]
fn with_the_memory_backend_each_instance_limits_alone() {
    let env = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "5"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1:1"), // never used
    ];
    let fleet: Vec<Gateway> = (0..3).map(|_| Gateway::start(&env)).collect();
    let statuses = round_robin(&fleet, "198.51.100.9", 30);
    assert_eq!(admitted(&statuses), 15, "three instances, three limits");
    assert_eq!(
        fleet[0].metric(r#"client_telemetry_rate_limit_decisions_total{backend="memory",decision="allowed"}"#),
        5.0
    );
}

// --- The script itself, called as one replica would (time is Redis', so tests read it from replies).

/// One replica's limiter on `redis`, with a patient deadline.
fn limiter(redis: &RedisServer, window_ms: u64, max_requests: u32) -> RedisLimiter {
    let vars = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis".to_string()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", redis.url()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", window_ms.to_string()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", max_requests.to_string()),
        (PATIENT.0, PATIENT.1.to_string()),
    ]
    .map(|(name, value)| (name.to_string(), value));
    let settings = Settings::from_vars(vars).unwrap();
    RedisLimiter::new(&settings.rate_limit, &Metrics::new(), slog::Logger::root(slog::Discard, slog::o!()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn ip_key(limiter: &RedisLimiter, ip: &str) -> (String, WindowParams) {
    (limiter.redis_key(&LimitKey::Ip(IpBucket::of(ip.parse().unwrap()))), limiter.params())
}

/// Checks a run of one key's replies against the reference arithmetic of `window.rs` on the same
/// timestamps (so the script mirrors it exactly), and that no window holds more than the limit.
fn assert_exact_and_never_over(replies: &[ScriptReply], params: &WindowParams) {
    let mut reference = SlidingWindow::default();
    for (i, reply) in replies.iter().enumerate() {
        let expected = reference.try_acquire(reply.now_us, params);
        let decision = reply.limits[0];
        assert_eq!(
            (reply.admitted, decision.remaining, decision.reset_after),
            (expected.room, expected.remaining, expected.reset_after),
            "call {i} at {} differs from window.rs",
            reply.now_us
        );
    }
    let accepted: Vec<u64> = replies.iter().filter(|r| r.admitted).map(|r| r.now_us).collect();
    for (i, &start) in accepted.iter().enumerate() {
        let in_window = accepted[i..].iter().take_while(|&&t| t < start + params.window_us).count();
        assert!(in_window <= params.limit as usize, "{in_window} accepted within one window from {start}");
    }
}

fn redis_now_us(redis: &RedisServer) -> u64 {
    let (seconds, micros): (u64, u64) = redis.query(&["TIME"]);
    seconds * 1_000_000 + micros
}

fn sleep_until_redis_time(redis: &RedisServer, at_us: u64) {
    thread::sleep(Duration::from_micros(at_us.saturating_sub(redis_now_us(redis))));
}

#[test]
fn the_window_slides_no_boundary_burst_a_second_burst_is_refused_and_quota_returns() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, 1000, 5);
    let (rt, key) = (runtime(), ip_key(&limiter, "198.51.100.20"));
    let window_us = limiter.params().window_us;
    let mut replies = Vec::new();
    let mut call = || {
        let reply = rt.block_on(limiter.acquire(std::slice::from_ref(&key), None)).unwrap();
        replies.push(reply.clone());
        reply
    };

    // A burst at the end of a fixed window…
    let now = redis_now_us(&redis);
    let fixed_window_start = now - now % window_us;
    sleep_until_redis_time(&redis, fixed_window_start + window_us + window_us * 85 / 100);
    let burst: Vec<ScriptReply> = (0..5).map(|_| call()).collect();
    assert!(burst.iter().all(|r| r.admitted));
    let refused = call();
    assert!(!refused.admitted);
    assert!(refused.limits[0].reset_after <= Duration::from_micros(window_us + limiter.params().granularity_us));

    // …and a second one just after the fixed window would have rolled over: still inside ours.
    sleep_until_redis_time(&redis, fixed_window_start + 2 * window_us + window_us / 10);
    assert!((0..5).all(|_| !call().admitted), "a fixed window would have admitted this burst");

    // Once the whole first burst has left the window, exactly the limit returns.
    let last = burst.last().unwrap().now_us;
    let granularity = limiter.params().granularity_us;
    sleep_until_redis_time(&redis, (last / granularity + 1) * granularity + window_us + 1000);
    assert!((0..5).all(|_| call().admitted), "quota returned");
    assert!(!call().admitted, "refused calls cost nothing and added nothing");

    assert_exact_and_never_over(&replies, &limiter.params());
}

#[test]
fn poisson_traffic_at_half_to_twice_the_limit_never_exceeds_it_and_admits_as_much_as_an_exact_log() {
    let redis = Arc::new(RedisServer::start());
    let runs: Vec<_> = [0.5, 1.0, 1.5, 2.0]
        .into_iter()
        .enumerate()
        .map(|(i, rate_factor)| {
            let redis = redis.clone();
            thread::spawn(move || {
                let limiter = limiter(&redis, 1000, 50);
                let (rt, key) = (runtime(), ip_key(&limiter, &format!("198.51.100.{}", 30 + i)));
                let mean_gap_s = 1.0 / (50.0 * rate_factor);
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 + i as u64;
                let mut replies = Vec::new();
                let end = Instant::now() + Duration::from_secs(6);
                while Instant::now() < end {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let uniform = (seed >> 11) as f64 / (1u64 << 53) as f64;
                    thread::sleep(Duration::from_secs_f64(-mean_gap_s * (1.0 - uniform).ln()));
                    replies.push(rt.block_on(limiter.acquire(std::slice::from_ref(&key), None)).unwrap());
                }
                (rate_factor, replies, limiter.params())
            })
        })
        .collect();
    for run in runs {
        let (rate_factor, replies, params) = run.join().unwrap();
        assert_exact_and_never_over(&replies, &params);
        let mut exact_log: VecDeque<u64> = VecDeque::new();
        let mut exact = 0;
        for t in replies.iter().map(|r| r.now_us) {
            while exact_log.front().is_some_and(|&a| a + params.window_us <= t) {
                exact_log.pop_front();
            }
            if exact_log.len() < params.limit as usize {
                exact_log.push_back(t);
                exact += 1;
            }
        }
        let ours = replies.iter().filter(|r| r.admitted).count();
        assert!(ours as f64 >= 0.95 * exact as f64, "{ours} admitted vs {exact} by an exact log at {rate_factor}x");
    }
}

#[test]
fn a_call_with_several_keys_admits_only_when_every_key_has_room_and_then_counts_in_each() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, 60_000, 5);
    let rt = runtime();
    let tag = limiter.redis_key(&LimitKey::Ip(IpBucket::of("198.51.100.40".parse().unwrap())));
    let tight = WindowParams::new(Duration::from_secs(60), 2);
    let keys = [(tag.clone(), limiter.params()), (format!("{tag}:session:abc"), tight)];
    for remaining in [(4, 1), (3, 0)] {
        let reply = rt.block_on(limiter.acquire(&keys, None)).unwrap();
        assert!(reply.admitted);
        assert_eq!((reply.limits[0].remaining, reply.limits[1].remaining), remaining);
    }
    let refused = rt.block_on(limiter.acquire(&keys, None)).unwrap();
    assert!(!refused.admitted);
    assert!(refused.limits[0].room && !refused.limits[1].room, "the tight key refused, the other had room");
    assert_eq!(refused.limits[0].remaining, 3, "nothing recorded in the key that had room");
    assert_eq!(counted(&redis, &tag), 2);
}

/// Weighted calls (records, when limits count records) on random timestamps: the script's every
/// answer equals `window.rs`'s for the same cost at the same time, Retry-After of a refused weight
/// included, and no window ever holds more than the limit's worth of weight.
#[test]
fn weighted_calls_admit_only_whole_weights_exactly_as_window_rs_and_never_exceed_the_limit() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, 1000, 50);
    let (rt, key) = (runtime(), ip_key(&limiter, "198.51.100.45"));
    let params = limiter.params();
    let mut reference = SlidingWindow::default();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let (mut admitted, mut refused_big) = (Vec::new(), 0);
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // mostly small batches, now and then a big export; sometimes 0 (nothing more to count)
        let cost = match seed % 10 {
            0 => 0,
            1 => 30 + (seed >> 8) as u32 % 21,
            _ => 1 + (seed >> 8) as u32 % 6,
        };
        thread::sleep(Duration::from_micros((seed >> 20) % 15_000));
        let reply = rt.block_on(limiter.acquire_costs(std::slice::from_ref(&key), &[cost], None)).unwrap();
        let expected = reference.try_acquire_cost(reply.now_us, &params, cost);
        let quota = reply.limits[0];
        assert_eq!(
            (reply.admitted, quota.room, quota.remaining, quota.reset_after),
            (expected.room, expected.room, expected.remaining, expected.reset_after),
            "cost {cost} at {} differs from window.rs",
            reply.now_us
        );
        if reply.admitted {
            admitted.push((reply.now_us, cost));
        } else if cost > 1 {
            refused_big += 1;
        }
    }
    assert!(refused_big > 0 && admitted.len() > 20, "the run must both admit and refuse weights");
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let weight: u32 = admitted[i..].iter().take_while(|(t, _)| *t < start + params.window_us).map(|(_, c)| c).sum();
        assert!(weight <= params.limit, "{weight} counted within one window from {start}");
    }
}

/// Requests a key counts: the sum of its sub-window fields, which its running count `n` must equal.
fn counted(redis: &RedisServer, key: &str) -> u64 {
    let fields: HashMap<String, u64> = redis.query(&["HGETALL", key]);
    let sum = fields.iter().filter(|(field, _)| !["n", "f"].contains(&field.as_str())).map(|(_, n)| n).sum();
    assert_eq!(fields.get("n").copied().unwrap_or(0), sum, "the running count is the sum: {fields:?}");
    sum
}

#[test]
fn a_call_whose_batch_key_exists_is_a_duplicate_and_records_nothing() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, 60_000, 5);
    let rt = runtime();
    let ip = LimitKey::Ip(IpBucket::of("198.51.100.41".parse().unwrap()));
    let keys = [(limiter.redis_key(&ip), limiter.params())];
    let seen = limiter.redis_key(&LimitKey::Batch(ip.ip(), "b-1".into()));
    assert!(seen.contains("{ip:198.51.100.41}"), "the batch key shares the IP's hash tag: {seen}");

    let new = rt.block_on(limiter.acquire(&keys, Some(&seen))).unwrap();
    assert!(new.admitted && !new.duplicate, "the script only reads the batch key");
    let _: () = redis.query(&["SET", &seen, "1", "PX", "60000"]);
    let duplicate = rt.block_on(limiter.acquire(&keys, Some(&seen))).unwrap();
    assert!(duplicate.duplicate && !duplicate.admitted);
    assert_eq!(duplicate.limits[0].remaining, 4, "a duplicate costs no quota");
    assert_eq!(counted(&redis, &keys[0].0), 1);
}

#[test]
fn session_limits_and_batch_ids_are_shared_by_every_replica() {
    let redis = RedisServer::start();
    let extra = [
        PATIENT,
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "2"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS", "60000"),
    ];
    let fleet = fleet(&redis.url(), 2, "10", &extra);
    let send = |gateway: &Gateway, session: &str, batch_id: &str| {
        let headers = [
            ("content-type", "application/json"),
            ("x-forwarded-for", "198.51.100.42"),
            ("x-session-id", session),
            ("x-batch-id", batch_id),
        ];
        gateway.post_with(&headers, &batch(1))
    };
    // One tab, its requests spread over both replicas: 2 in all, not 2 each.
    assert_eq!(send(&fleet[0], "tab-a", "a-1").status, 204);
    assert_eq!(send(&fleet[1], "tab-a", "a-2").status, 204);
    assert_eq!(send(&fleet[0], "tab-a", "a-3").status, 429);
    assert_eq!(send(&fleet[1], "tab-a", "a-4").status, 429);
    assert_eq!(send(&fleet[1], "tab-b", "b-1").status, 204, "another tab behind the same IP");

    // A batch accepted by one replica and retried on the other is a duplicate there.
    let seen = "client-telemetry:seen:{ip:198.51.100.42}:b-1";
    assert!(wait_until(Duration::from_secs(5), || redis.query::<bool>(&["EXISTS", seen])), "remembered in Redis");
    let retry = send(&fleet[0], "tab-b", "b-1");
    assert_eq!((retry.status, retry.json()["duplicate"].as_bool()), (200, Some(true)));
    let ttl_ms: i64 = redis.query(&["PTTL", seen]);
    assert!(ttl_ms > 0 && ttl_ms <= 60_000, "PTTL {ttl_ms}");
    let session_key = "client-telemetry:rl:v2:{ip:198.51.100.42}:session:tab-a";
    let ttl_ms: i64 = redis.query(&["PTTL", session_key]);
    assert!(ttl_ms > 0 && ttl_ms <= 62_001, "{session_key}: PTTL {ttl_ms}");
    let logged = || fleet.iter().map(|g| g.event_lines().len()).sum::<usize>();
    wait_until(Duration::from_secs(5), || logged() >= 3);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(logged(), 3, "a-1, a-2, b-1: each once");
}

#[test]
fn memory_per_tracked_key_stays_bounded_whatever_the_limit() {
    let redis = RedisServer::start();
    // A 1.2 s window: all of its 60 sub-windows fill in a second. Its sub-window indexes are larger
    // numbers than a 60 s window's, so this is the worst case of the encoding too.
    let limiter = limiter(&redis, 1200, 1_000_000);
    let (rt, key) = (runtime(), ip_key(&limiter, "198.51.100.50"));
    let end = Instant::now() + Duration::from_millis(1300);
    while Instant::now() < end {
        assert!(rt.block_on(limiter.acquire(std::slice::from_ref(&key), None)).unwrap().admitted);
        thread::sleep(Duration::from_millis(3));
    }
    // Less the running count and the oldest index: the sub-windows in use.
    let fields = redis.query::<u64>(&["HLEN", &key.0]) - 2;
    let in_window = counted(&redis, &key.0);
    assert!(in_window > 0 && in_window < 1300 / 3, "sub-windows that left the window were taken off: {in_window}");
    let bytes: u64 = redis.query(&["MEMORY", "USAGE", &key.0]);
    let one = ip_key(&limiter, "198.51.100.51");
    rt.block_on(limiter.acquire(std::slice::from_ref(&one), None)).unwrap();
    let one_bytes: u64 = redis.query(&["MEMORY", "USAGE", &one.0]);
    eprintln!("MEMORY USAGE of one key: {bytes} bytes with {fields} sub-windows in use, {one_bytes} with one");
    assert!((40..=62).contains(&fields), "{fields} sub-windows");
    assert!(bytes <= 600, "{bytes} bytes for one key");
}

// --- Through the gateways again: what Redis may do to us.

#[test]
fn the_script_never_receives_a_time_every_key_expires_and_a_decision_is_one_evalsha() {
    let redis = RedisServer::start();
    let gateway = &fleet(&redis.url(), 1, "100", &[PATIENT])[0];
    assert_eq!(gateway.post_as("198.51.100.99", &batch(1)).status, 204, "warm up: connect, load the script");
    let _: () = redis.query(&["CONFIG", "RESETSTAT"]);
    let _: () = redis.query(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    let _: () = redis.query(&["CONFIG", "SET", "slowlog-max-len", "1000"]);
    let _: () = redis.query(&["SLOWLOG", "RESET"]);
    for i in 0..40 {
        assert_eq!(gateway.post_as(&format!("203.0.113.{i}"), &batch(1)).status, 204);
    }

    let calls = redis.command_calls();
    assert_eq!(calls.get("evalsha"), Some(&40), "{calls:?}");
    assert!(!calls.contains_key("ping") && !calls.contains_key("script|load"), "{calls:?}");

    // Every argument the gateway sends: the script's hash, the key, no batch key, then window,
    // sub-window, limit, cost.
    type Entry = (i64, i64, i64, Vec<String>, String, String);
    let log: Vec<Entry> = redis.query(&["SLOWLOG", "GET", "1000"]);
    let evals: Vec<&Vec<String>> =
        log.iter().map(|e| &e.3).filter(|args| args[0].eq_ignore_ascii_case("evalsha")).collect();
    assert_eq!(evals.len(), 40);
    for args in evals {
        assert_eq!(args[2..4], ["1".to_string(), args[3].clone()]);
        assert!(args[3].starts_with("client-telemetry:rl:v2:{ip:203.0.113."), "{args:?}");
        assert_eq!(args[4..], ["0", "60000000", "1000000", "100", "1"], "static parameters only, no time");
    }

    let keys: Vec<String> = redis.query(&["KEYS", "*"]);
    assert_eq!(keys.len(), 41);
    for key in keys {
        let ttl_ms: i64 = redis.query(&["PTTL", &key]);
        assert!(ttl_ms > 0 && ttl_ms <= 62_001, "{key}: PTTL {ttl_ms}");
    }
}

#[test]
fn redis_killed_no_5xx_no_wait_each_replica_falls_back_to_its_own_limit_and_says_so() {
    let mut redis = RedisServer::start();
    let fleet = fleet(&redis.url(), 2, "5", &[]);
    for gateway in &fleet {
        // The first call also connects and loads the script: on a busy machine it may miss 25 ms.
        let on_redis = wait_until(Duration::from_secs(10), || {
            gateway.post_as("198.51.100.60", &batch(1));
            gateway.metric(DEGRADED) == 0.0
        });
        assert!(on_redis);
    }
    redis.kill();
    for gateway in &fleet {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            statuses.push(gateway.post_as("198.51.100.61", &batch(1)).status);
            assert!(started.elapsed() < Duration::from_secs(1), "{:?} for one request", started.elapsed());
        }
        assert_eq!(statuses, [204, 204, 204, 204, 204, 429, 429, 429], "the local fallback limits this replica alone");
        assert!(redis_errors(gateway, "connection") >= 1.0);
        assert!(redis_errors(gateway, "circuit_open") >= 1.0, "the breaker opened");
        assert_eq!(gateway.metric(DEGRADED), 1.0);
        let ready = gateway.get(&gateway.admin_url("/readyz"));
        assert_eq!(ready.status, 200, "a Redis outage must not take replicas out of the load balancer");
        assert_eq!(ready.json()["rateLimiter"]["degraded"], true);
    }
}

#[test]
fn a_stalled_redis_costs_a_request_at_most_the_timeout_then_nothing_while_the_circuit_is_open() {
    let redis = RedisServer::start();
    let gateway = &fleet(&redis.url(), 1, "100", &[])[0];
    assert_eq!(gateway.post_as("198.51.100.70", &batch(1)).status, 204);
    redis.pause();
    for _ in 0..12 {
        let started = Instant::now();
        assert_eq!(gateway.post_as("198.51.100.71", &batch(1)).status, 204);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?} for one request", started.elapsed());
    }
    assert!(redis_errors(gateway, "timeout") >= 1.0);
    assert!(redis_errors(gateway, "circuit_open") >= 1.0);
    // Every decision within the 25 ms deadline (the bucket leaves room for a busy machine).
    let histogram = "client_telemetry_rate_limiter_duration_seconds";
    let decisions = gateway.metric(&format!(r#"{histogram}_count{{backend="redis"}}"#));
    assert_eq!(decisions, 13.0);
    assert_eq!(gateway.metric(&format!(r#"{histogram}_bucket{{backend="redis",le="0.1"}}"#)), decisions);
    redis.resume();
}

#[test]
fn redis_restarted_empty_brings_the_shared_limit_back_without_restarting_the_gateways() {
    let mut redis = RedisServer::start();
    let fleet = fleet(&redis.url(), 3, "6", &[PATIENT]);
    assert_eq!(admitted(&round_robin(&fleet, "198.51.100.80", 3)), 3);
    redis.kill();
    // enough failures on every gateway to open its circuit
    assert!(round_robin(&fleet, "198.51.100.81", 15).iter().all(|s| [204, 429].contains(s)));
    assert!(fleet.iter().all(|gateway| redis_errors(gateway, "circuit_open") >= 1.0));
    redis.restart();
    for gateway in &fleet {
        let recovered = wait_until(Duration::from_secs(10), || {
            gateway.post_as("198.51.100.82", &batch(1));
            gateway.metric(DEGRADED) == 0.0
        });
        assert!(recovered, "still degraded 10 s after Redis came back");
    }
    let statuses = round_robin(&fleet, "198.51.100.83", 12);
    assert_eq!(admitted(&statuses), 6, "one shared limit again: {statuses:?}");
}

#[test]
fn script_flush_is_invisible_the_script_is_reloaded_on_noscript() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis.url(), 3, "6", &[PATIENT]);
    assert_eq!(admitted(&round_robin(&fleet, "198.51.100.90", 3)), 3);
    let _: () = redis.query(&["SCRIPT", "FLUSH"]);
    let statuses = round_robin(&fleet, "198.51.100.90", 6);
    assert_eq!(statuses, [204, 204, 204, 429, 429, 429], "the counts survived, the limit is shared");
    // Redis' script cache is shared: the first call ever sent the script's text (EVAL caches it), the
    // first after the flush again; every other call was an EVALSHA.
    assert_eq!(redis.command_calls().get("eval"), Some(&2));
    assert_eq!(redis.command_calls().get("script|load"), None);
    for gateway in &fleet {
        assert_eq!(all_redis_errors(gateway), 0.0, "NOSCRIPT is not a failure");
        assert_eq!(gateway.metric(DEGRADED), 0.0);
    }
}

#[test]
fn failure_policies_allow_and_deny() {
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let deny = &fleet(&nowhere, 1, "2", &[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", "deny")])[0];
    let refused = deny.post_as("198.51.100.100", &batch(1));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let allow = &fleet(&nowhere, 1, "2", &[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", "allow")])[0];
    assert!(round_robin(std::slice::from_ref(allow), "198.51.100.100", 6).iter().all(|s| *s == 204));
    assert_eq!(allow.get(&allow.admin_url("/readyz")).json()["rateLimiter"]["degraded"], true);
}

// --- Per-network overrides, shared by the fleet.

#[test]
fn a_listed_network_gets_its_own_limit_exactly_across_replicas_and_others_keep_the_default() {
    let redis = RedisServer::start();
    let overrides = ("CLIENT_TELEMETRY_RATE_LIMIT_OVERRIDES", "203.0.113.0/24=8,203.0.113.128/25=5");
    let fleet = fleet(&redis.url(), 2, "3", &[PATIENT, overrides]);
    let _: () = redis.query(&["CONFIG", "RESETSTAT"]);

    let statuses = round_robin(&fleet, "203.0.113.10", 12);
    assert_eq!(statuses[..8], [204; 8]);
    assert_eq!(statuses[8..], [429; 4]);
    // One call per decision: 8 admitted, then one refusal per replica (later ones are refused locally).
    assert_eq!(redis.command_calls().get("evalsha"), Some(&10));
    for gateway in &fleet {
        let refused = gateway.post_as("203.0.113.10", &batch(1));
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("ratelimit-policy"), Some(r#""ip";q=8;w=60"#), "the override, on each replica");
    }
    // Another address of the network has its own 8; the most specific entry wins; others get 3.
    assert_eq!(admitted(&round_robin(&fleet, "203.0.113.11", 12)), 8);
    assert_eq!(admitted(&round_robin(&fleet, "203.0.113.200", 12)), 5);
    assert_eq!(admitted(&round_robin(&fleet, "198.51.100.7", 12)), 3);
    let default = fleet[1].post_as("198.51.100.8", &batch(1));
    assert_eq!(default.header("ratelimit-policy"), Some(r#""ip";q=3;w=60"#));

    // The override changes the limit, not the key: one counter per address, as without it.
    let mut keys: Vec<String> = redis.query(&["KEYS", "*"]);
    keys.sort();
    let ips = ["198.51.100.7", "198.51.100.8", "203.0.113.10", "203.0.113.11", "203.0.113.200"];
    assert_eq!(keys, ips.map(|ip| format!("client-telemetry:rl:v2:{{ip:{ip}}}")));
    for gateway in &fleet {
        assert_eq!(all_redis_errors(gateway), 0.0);
    }
}
