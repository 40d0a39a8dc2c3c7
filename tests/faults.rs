//! Faults under sustained load: the collector down, hanging or flapping; Redis killed, stalled,
//! flushed and restarted; a replica killed with SIGKILL or stopped with SIGTERM. Client threads post
//! batches of uniquely named events for a few seconds (tests/support/load.rs) while the fault is
//! injected, then the accounting must add up:
//!
//! - every event a client saw accepted (204, or 200 less its `rejected`) is in the local log;
//! - `client_telemetry_otlp_events_total` exported + failed + dropped == accepted once drained;
//! - what the collector stand-in took (answered 200) == exported, each event at most once, and only
//!   events that are in the local log;
//! - no 5xx from the gateway, and peak RSS (`VmHWM`) within `RSS_GROWTH_BOUND_MIB` of the idle RSS.
//!
//! Each test prints one `FAULT FIGURES` line (run with `--no-capture` to see them).
mod support;

use std::{
    collections::HashSet,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use support::{
    Gateway, RedisServer,
    collector::{Answer, Collector},
    free_port,
    load::{Load, Tally},
    wait_until,
};

/// Memory is bounded by the OTLP queue (`QUEUE_CAPACITY` records of about 1 KB), a forming batch,
/// `MAX_IN_FLIGHT` encoded batches, the log channel (8192 lines of about 1 KB) and its 256 KiB
/// buffer: about 20-30 MiB with the default queue (measured, mimalloc); the flapping and SIGTERM
/// tests size the queue to hold the whole run (~20 000 events), measured at up to ~41 MiB. Anything
/// that grows with the number of requests or with the length of an outage exceeds this quickly.
const RSS_GROWTH_BOUND_MIB: f64 = 64.0;
/// A request that waited on the collector (3 s timeout) or on a stalled Redis (2 s stalls) would
/// take longer; the limiter deadline is 200 ms. Loose, for a noisy 2-core machine.
const SLOWEST_ANSWER: Duration = Duration::from_millis(1500);
const LIMIT: usize = 20;
const REDIS_DEGRADED: &str = "client_telemetry_rate_limiter_degraded";

/// A gateway forwarding to `endpoint` (quick batching, short retries), behind a trusted proxy so
/// the load chooses its client addresses; `extra` overrides.
fn gateway(endpoint: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("OTEL_COLLECTOR_ENDPOINT", endpoint),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "20"),
        ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "100"),
        ("CLIENT_TELEMETRY_OTLP_RETRY_INITIAL_BACKOFF_MS", "50"),
        ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "2000"),
        ("OTEL_COLLECTOR_TIMEOUT_MS", "500"),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env)
}

/// Two replicas on one Redis, with a limiter deadline that load on a busy machine does not miss
/// by itself (so "degraded" means the fault, and the shared-limit check is exact).
fn redis_fleet(redis: &RedisServer, collector: &Collector) -> [Gateway; 2] {
    let url = redis.url();
    let env = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", url.as_str()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "200"),
    ];
    let fleet = [gateway(&collector.endpoint(), &env), gateway(&collector.endpoint(), &env)];
    for replica in &fleet {
        assert!(on_redis(replica), "a replica never reached Redis");
    }
    fleet
}

/// One event named uniquely, so a probe's event is told apart from every other at the collector.
fn probe() -> String {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    serde_json::json!({ "events": [support::event("info", &format!("probe-{n}"))] }).to_string()
}

/// Waits until the replica decides on Redis again (the degraded gauge is reset by a success).
fn on_redis(replica: &Gateway) -> bool {
    wait_until(Duration::from_secs(10), || {
        replica.post_as("192.0.2.1", &probe());
        replica.metric(REDIS_DEGRADED) == 0.0
    })
}

/// One client spreading `2 * LIMIT` requests over the fleet: exactly `LIMIT` admitted when the
/// limit is shared, up to `LIMIT` per replica when each falls back to its own.
fn admitted_across(fleet: &[Gateway], client: &str) -> usize {
    (0..2 * LIMIT).filter(|i| fleet[i % fleet.len()].post_as(client, &probe()).status == 204).count()
}

fn redis_errors(replica: &Gateway) -> f64 {
    ["timeout", "connection", "server", "reply", "circuit_open"]
        .iter()
        .map(|kind| {
            replica.metric(&format!(r#"client_telemetry_rate_limiter_errors_total{{backend="redis",kind="{kind}"}}"#))
        })
        .sum()
}

fn targets(fleet: &[&Gateway]) -> Vec<String> {
    fleet.iter().map(|g| g.url("")).collect()
}

fn message(record: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> String {
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(V::StringValue(message)) => message.clone(),
        other => panic!("a record without a string body: {other:?}"),
    }
}

/// The messages the collector took (answered 200), in arrival order, duplicates kept.
fn delivered_messages(collector: &Collector) -> Vec<String> {
    let received = collector.received();
    assert!(received.iter().all(|r| !matches!(r.answer, Answer::Partial(_))), "these tests use no partial success");
    received.iter().filter(|r| r.answer == Answer::Ok).flat_map(|r| r.records()).map(|r| message(&r)).collect()
}

/// The `message` of every event line the gateway wrote.
fn logged_messages(gateway: &Gateway) -> Vec<String> {
    gateway.event_lines().iter().map(|l| l["message"].as_str().expect("a message").to_string()).collect()
}

/// The figures of one scenario, as the issue note quotes them.
#[derive(Debug, Default)]
struct Figures {
    accepted: u64,
    logged: u64,
    exported: u64,
    failed: u64,
    dropped: u64,
    requests: u64,
    slowest: Duration,
    peak_rss_growth_mib: f64,
}

impl Figures {
    fn print(&self, scenario: &str) {
        println!(
            "FAULT FIGURES {scenario}: accepted={} logged={} exported={} failed={} dropped={} requests={} \
             slowest_ms={} peak_rss_growth_mib={:.1}",
            self.accepted,
            self.logged,
            self.exported,
            self.failed,
            self.dropped,
            self.requests,
            self.slowest.as_millis(),
            self.peak_rss_growth_mib
        );
    }
}

/// The accounting of live replicas after the load (each with the tally of its clients and its
/// idle RSS), forwarding to `collector` (`None`: nothing listens). Waits for the queues to drain.
fn account(fleet: &[(&Gateway, &Tally, f64)], collector: Option<&Collector>) -> Figures {
    let mut figures = Figures::default();
    let mut logged_everywhere = HashSet::new();
    for (gateway, tally, idle_rss) in fleet {
        assert_eq!(tally.server_errors(), 0, "no 5xx: {:?}", tally.statuses);
        assert_eq!(tally.transport_errors, 0, "a live replica answers every request: {:?}", tally.statuses);
        assert!(!tally.accepted.is_empty(), "the load was accepted at all: {:?}", tally.statuses);
        // Logging is asynchronous: the lines may trail the answers by a moment.
        gateway.wait_for_events(tally.accepted.len());
        let lines = logged_messages(gateway);
        let logged: HashSet<String> = lines.iter().cloned().collect();
        assert_eq!(logged.len(), lines.len(), "an event was logged twice");
        let missing: Vec<&String> = tally.accepted.iter().filter(|m| !logged.contains(*m)).collect();
        assert!(
            missing.is_empty(),
            "{} accepted events are not in the local log: {:?}",
            missing.len(),
            &missing[..5.min(missing.len())]
        );
        assert_eq!(gateway.metric("client_telemetry_log_lines_dropped_total"), 0.0, "no log line dropped");

        let mut counts = gateway.otlp_counts();
        let drained = wait_until(Duration::from_secs(30), || {
            counts = gateway.otlp_counts();
            counts.settled()
        });
        assert!(drained, "exported + failed + dropped != accepted 30 s after the load: {counts:?}");
        // The load is all this replica accepted (the probes of the Redis tests come on top).
        assert!(counts.accepted >= tally.accepted.len() as u64, "{counts:?}");
        assert_eq!(counts.accepted as usize, logged.len(), "accepted == written to the local log: {counts:?}");

        let peak = gateway.memory_mib("VmHWM");
        assert!(peak - idle_rss <= RSS_GROWTH_BOUND_MIB, "RSS grew from {idle_rss:.1} to {peak:.1} MiB");
        figures.accepted += counts.accepted;
        figures.logged += logged.len() as u64;
        figures.exported += counts.exported;
        figures.failed += counts.failed;
        figures.dropped += counts.dropped;
        figures.requests += tally.requests();
        figures.slowest = figures.slowest.max(tally.slowest);
        figures.peak_rss_growth_mib = figures.peak_rss_growth_mib.max(peak - idle_rss);
        logged_everywhere.extend(logged);
    }
    let delivered = collector.map(delivered_messages).unwrap_or_default();
    assert_eq!(delivered.len() as u64, figures.exported, "the collector took exactly what was counted exported");
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "an event reached the collector twice");
    assert!(delivered.iter().all(|m| logged_everywhere.contains(m)), "forwarded an event that is not in the log");
    figures
}

fn idle_rss(gateway: &Gateway) -> f64 {
    gateway.memory_mib("VmRSS")
}

#[test]
fn collector_down_for_the_whole_run_every_event_is_logged_and_counted_failed_or_dropped() {
    let nowhere = format!("http://127.0.0.1:{}/v1/logs", free_port());
    let gateway = gateway(&nowhere, &[("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "1000")]);
    let idle = idle_rss(&gateway);
    let [tally] = <[Tally; 1]>::try_from(Load::default().run(&targets(&[&gateway]), Duration::ZERO, || {
        std::thread::sleep(Duration::from_secs(3));
    }))
    .unwrap();
    assert!(tally.slowest < SLOWEST_ANSWER, "ingest waited on the collector: {:?}", tally.slowest);
    assert_eq!(gateway.get(&gateway.url("/readyz")).status, 200, "readiness ignores the collector");
    let figures = account(&[(&gateway, &tally, idle)], None);
    figures.print("collector down");
    assert_eq!(figures.exported, 0);
    assert!(figures.failed > 0, "batches were tried and retried to the end of their budget: {figures:?}");
}

#[test]
fn collector_hanging_past_the_timeout_costs_ingest_nothing_and_forwarding_recovers() {
    let collector = Collector::start();
    collector.answer(Answer::Hang);
    // A request that waited on the collector would take its 3 s timeout.
    let gateway = gateway(
        &collector.endpoint(),
        &[("OTEL_COLLECTOR_TIMEOUT_MS", "3000"), ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "0")],
    );
    let idle = idle_rss(&gateway);
    let [tally] = <[Tally; 1]>::try_from(Load::default().run(&targets(&[&gateway]), Duration::from_secs(1), || {
        std::thread::sleep(Duration::from_millis(2500));
        collector.answer(Answer::Ok);
    }))
    .unwrap();
    assert!(tally.slowest < SLOWEST_ANSWER, "ingest waited on the collector: {:?}", tally.slowest);
    let figures = account(&[(&gateway, &tally, idle)], Some(&collector));
    figures.print("collector hanging, then back");
    assert!(figures.failed + figures.dropped > 0, "the hanging exports were counted: {figures:?}");
    assert!(figures.exported > 0, "forwarding recovered: {figures:?}");
}

#[test]
fn collector_flapping_between_200_and_503_or_429_with_retry_after_loses_nothing() {
    let collector = Collector::start();
    // A queue that holds the whole run, and a retry budget longer than the flapping: every batch is
    // retried until a 200, so nothing may fail or be dropped.
    let gateway = gateway(
        &collector.endpoint(),
        &[("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", "65536"), ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "6000")],
    );
    let idle = idle_rss(&gateway);
    let [tally] =
        <[Tally; 1]>::try_from(Load::default().run(&targets(&[&gateway]), Duration::from_millis(500), || {
            for _ in 0..3 {
                for answer in [Answer::Ok, Answer::RetryAfter(503, 1), Answer::RetryAfter(429, 1)] {
                    collector.answer(answer);
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            collector.answer(Answer::Ok);
        }))
        .unwrap();
    let figures = account(&[(&gateway, &tally, idle)], Some(&collector));
    figures.print("collector flapping 200/503/429");
    let refused = collector.received().iter().filter(|r| matches!(r.answer, Answer::RetryAfter(..))).count();
    assert!(refused > 0, "the collector did refuse exports");
    assert_eq!((figures.failed, figures.dropped), (0, 0), "{figures:?}");
    assert_eq!(figures.exported, figures.accepted, "every event reached the collector: {figures:?}");
}

#[test]
fn redis_killed_mid_load_then_restarted_empty_falls_back_and_the_shared_limit_returns() {
    let mut redis = RedisServer::start();
    let collector = Collector::start();
    let fleet = redis_fleet(&redis, &collector);
    let idle = fleet.each_ref().map(idle_rss);
    let tallies = Load::default().run(&targets(&[&fleet[0], &fleet[1]]), Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_millis(500));
        redis.kill();
        // Each replica notices on its own and decides locally.
        for replica in &fleet {
            assert!(wait_until(Duration::from_secs(5), || replica.metric(REDIS_DEGRADED) == 1.0), "never degraded");
        }
        std::thread::sleep(Duration::from_secs(1));
        redis.restart();
        for replica in &fleet {
            assert!(on_redis(replica), "still degraded 10 s after Redis came back");
        }
        assert_eq!(admitted_across(&fleet, "198.51.100.1"), LIMIT, "one shared limit again, under load");
    });
    assert!(fleet.iter().all(|replica| redis_errors(replica) > 0.0), "the fallback was counted");
    for tally in &tallies {
        assert!(tally.slowest < SLOWEST_ANSWER, "a request waited on Redis: {:?}", tally.slowest);
    }
    let figures = account(&[(&fleet[0], &tallies[0], idle[0]), (&fleet[1], &tallies[1], idle[1])], Some(&collector));
    figures.print("redis killed, restarted empty");
}

#[test]
fn redis_stalled_by_client_pause_sigstop_and_debug_sleep_costs_at_most_the_limiter_deadline() {
    let redis = RedisServer::start();
    let collector = Collector::start();
    let fleet = redis_fleet(&redis, &collector);
    let idle = fleet.each_ref().map(idle_rss);
    let stall = Duration::from_secs(2);
    let stall_ms = stall.as_millis().to_string();
    // Lighter load: this test lasts three stalls and their recoveries.
    let load = Load { pause: Duration::from_millis(10), ..Load::default() };
    let tallies = load.run(&targets(&[&fleet[0], &fleet[1]]), Duration::from_millis(500), || {
        for how in ["CLIENT PAUSE", "SIGSTOP", "DEBUG SLEEP"] {
            std::thread::sleep(Duration::from_millis(300));
            let before: f64 = fleet.iter().map(redis_errors).sum();
            let started = Instant::now();
            match how {
                "CLIENT PAUSE" => redis.query::<()>(&["CLIENT", "PAUSE", &stall_ms, "ALL"]),
                "SIGSTOP" => {
                    redis.pause();
                    std::thread::sleep(stall);
                    redis.resume();
                }
                // Blocks this connection too, for the whole sleep.
                _ => redis.query::<()>(&["DEBUG", "SLEEP", &stall.as_secs_f64().to_string()]),
            }
            std::thread::sleep(stall.saturating_sub(started.elapsed()));
            let after: f64 = fleet.iter().map(redis_errors).sum();
            assert!(after > before, "{how}: the replicas never noticed the stall");
            for replica in &fleet {
                assert!(on_redis(replica), "{how}: still degraded 10 s after Redis came back");
            }
        }
        assert_eq!(admitted_across(&fleet, "198.51.100.2"), LIMIT, "one shared limit again, under load");
    });
    for tally in &tallies {
        assert!(tally.slowest < SLOWEST_ANSWER, "a request waited on the stalled Redis: {:?}", tally.slowest);
    }
    let figures = account(&[(&fleet[0], &tallies[0], idle[0]), (&fleet[1], &tallies[1], idle[1])], Some(&collector));
    figures.print("redis stalled (CLIENT PAUSE, SIGSTOP, DEBUG SLEEP)");
}

#[test]
fn redis_flushed_under_load_forgets_the_counts_reloads_the_script_and_stays_shared() {
    let redis = RedisServer::start();
    let collector = Collector::start();
    let fleet = redis_fleet(&redis, &collector);
    let idle = fleet.each_ref().map(idle_rss);
    let client = "198.51.100.3";
    let tallies = Load::default().run(&targets(&[&fleet[0], &fleet[1]]), Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_millis(500));
        // Half the quota spent (a refused client would be refused by each replica itself until its
        // Retry-After, flush or not: that cache never over-admits).
        let spent = (0..LIMIT / 2).filter(|i| fleet[i % 2].post_as(client, &probe()).status == 204).count();
        assert_eq!(spent, LIMIT / 2);
        let _: () = redis.query(&["FLUSHALL"]);
        let _: () = redis.query(&["SCRIPT", "FLUSH"]);
        // The counts are gone: the whole quota again (not half), once across the fleet (not twice).
        assert_eq!(admitted_across(&fleet, client), LIMIT, "forgotten and shared after the flush");
        std::thread::sleep(Duration::from_millis(500));
    });
    // NOSCRIPT is answered by EVAL, which sends the script's text and caches it again.
    let script_loads = redis.command_calls().get("eval").copied().unwrap_or(0);
    assert!(script_loads >= 2, "the script was reloaded after SCRIPT FLUSH ({script_loads} EVALs)");
    for tally in &tallies {
        assert!(tally.slowest < SLOWEST_ANSWER, "{:?}", tally.slowest);
    }
    let figures = account(&[(&fleet[0], &tallies[0], idle[0]), (&fleet[1], &tallies[1], idle[1])], Some(&collector));
    figures.print("redis FLUSHALL + SCRIPT FLUSH");
}

#[test]
fn a_replica_killed_with_sigkill_keeps_what_it_logged_and_the_other_keeps_serving() {
    let (collector_a, collector_b) = (Collector::start(), Collector::start());
    let (mut victim, survivor) = (gateway(&collector_a.endpoint(), &[]), gateway(&collector_b.endpoint(), &[]));
    let idle = idle_rss(&survivor);
    let tallies = Load::default().run(&targets(&[&victim, &survivor]), Duration::from_secs(1), || {
        std::thread::sleep(Duration::from_millis(1500));
        victim.signal("KILL");
    });
    assert!(!victim.wait_exit(Duration::from_secs(5)).success());
    victim.wait_stdout_closed();
    let (victim_tally, survivor_tally) = (&tallies[0], &tallies[1]);
    assert!(victim_tally.transport_errors > 0, "the victim's clients saw it die: {victim_tally:?}");
    assert_eq!(victim_tally.server_errors(), 0, "{:?}", victim_tally.statuses);

    // A SIGKILL loses what was only in the process: events queued for OTLP (and exports in flight)
    // never reach the collector, and nothing counts them. The local log is written before the
    // answer, so nothing the victim answered 204 for may be missing from it.
    let logged: HashSet<String> = logged_messages(&victim).into_iter().collect();
    let missing: Vec<&String> = victim_tally.accepted.iter().filter(|m| !logged.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "{} events answered 204 are not in the victim's log: {:?}",
        missing.len(),
        &missing[..5.min(missing.len())]
    );
    let delivered = delivered_messages(&collector_a);
    assert!(delivered.iter().all(|m| logged.contains(m)), "the victim forwarded an event it had not logged");
    assert_eq!(delivered.iter().collect::<HashSet<_>>().len(), delivered.len(), "delivered twice");
    println!(
        "FAULT FIGURES replica SIGKILL (victim): accepted={} logged={} exported={} lost_for_otlp={} \
         requests={} transport_errors={}",
        victim_tally.accepted.len(),
        logged.len(),
        delivered.len(),
        logged.len() - delivered.len(),
        victim_tally.requests(),
        victim_tally.transport_errors
    );

    let figures = account(&[(&survivor, survivor_tally, idle)], Some(&collector_b));
    figures.print("replica SIGKILL (survivor)");
}

#[test]
fn a_replica_stopped_with_sigterm_mid_load_drains_everything_it_accepted_and_exits_0() {
    let collector = Collector::start();
    // The queue holds the whole run, so "dropped" can only mean the shutdown deadline.
    let mut gateway = gateway(&collector.endpoint(), &[("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", "65536")]);
    let tallies = Load::default().run(&targets(&[&gateway]), Duration::from_millis(500), || {
        std::thread::sleep(Duration::from_millis(1500));
        gateway.signal("TERM");
    });
    assert!(gateway.wait_exit(Duration::from_secs(20)).success(), "exit 0 after draining");
    gateway.wait_stdout_closed();
    let tally = &tallies[0];
    assert_eq!(tally.server_errors(), 0, "no 5xx while draining: {:?}", tally.statuses);

    let logged: HashSet<String> = logged_messages(&gateway).into_iter().collect();
    let missing: Vec<&String> = tally.accepted.iter().filter(|m| !logged.contains(*m)).collect();
    assert!(missing.is_empty(), "{} accepted events are not in the log", missing.len());
    let delivered = delivered_messages(&collector);
    assert_eq!(delivered.iter().collect::<HashSet<_>>().len(), delivered.len(), "delivered twice");
    assert!(delivered.iter().all(|m| logged.contains(m)), "forwarded an event it had not logged");
    let lines = gateway.log_lines();
    let said = |msg: &str| lines.iter().filter(|l| l["msg"] == msg).cloned().collect::<Vec<_>>();
    let deadline = said("otlp forwarder: shutdown deadline reached, unsent events dropped");
    let dropped = deadline.first().map_or(0, |l| l["dropped"].as_u64().unwrap());
    assert_eq!(said("otlp forwarder drained").len() + deadline.len(), 1, "the drain said how it ended, once");
    // The collector always answers 200, so nothing fails: what was not exported was dropped.
    assert_eq!(delivered.len() as u64 + dropped, logged.len() as u64, "exported + dropped == accepted");
    Figures {
        accepted: logged.len() as u64,
        logged: logged.len() as u64,
        exported: delivered.len() as u64,
        dropped,
        requests: tally.requests(),
        slowest: tally.slowest,
        ..Figures::default()
    }
    .print("replica SIGTERM");
}
