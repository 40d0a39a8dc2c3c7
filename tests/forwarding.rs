//! OTLP forwarding, end to end: the real gateway binary, a collector stand-in, and payloads decoded
//! with the generated OTLP types. The tests that count also check the accounting identity:
//! exported + failed + dropped == accepted, and exported == what the collector took.
mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V},
    logs::v1::LogRecord,
};
use serde_json::{Value, json};
use support::{
    Gateway, OtlpCounts as Counts, batch,
    collector::{Answer, Collector},
    event, free_port, wait_until,
};

/// A gateway forwarding to `endpoint` with quick batching and retries; `extra` overrides.
fn forwarding_to(endpoint: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("OTEL_COLLECTOR_ENDPOINT", endpoint),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "100000"),
        ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "50"),
        ("CLIENT_TELEMETRY_OTLP_RETRY_INITIAL_BACKOFF_MS", "50"),
        ("OTEL_COLLECTOR_TIMEOUT_MS", "2000"),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env)
}

fn counts(gateway: &Gateway) -> Counts {
    gateway.otlp_counts()
}

/// Waits until every accepted event is exported, failed or dropped, and checks that they add up.
fn settled(gateway: &Gateway, accepted: u64) -> Counts {
    let mut last = counts(gateway);
    wait_until(Duration::from_secs(15), || {
        last = counts(gateway);
        last.settled() && last.accepted == accepted
    });
    assert_eq!(last.accepted, accepted, "{last:?}");
    assert_eq!(last.exported + last.failed + last.dropped, last.accepted, "the identity: {last:?}");
    last
}

fn post_events(gateway: &Gateway, n: usize) {
    let reply = gateway.post(&batch(n));
    assert_eq!(reply.status, 204, "{}", reply.body);
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn lines_with(gateway: &Gateway, msg: &str) -> Vec<Value> {
    gateway.log_lines().into_iter().filter(|l| l["msg"] == msg).collect()
}

fn string(s: &str) -> Option<V> {
    Some(V::StringValue(s.into()))
}

fn key_value(key: &str, value: Option<V>) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value }), ..Default::default() }
}

fn attributes(log: &LogRecord) -> HashMap<String, Option<V>> {
    log.attributes.iter().map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value))).collect()
}

/// The version in the test client's `User-Agent: ureq/<version>`, as the record carries it.
fn ureq_version(log: &LogRecord) -> String {
    match attributes(log).get("user_agent.original") {
        Some(Some(V::StringValue(ua))) => ua.strip_prefix("ureq/").expect("the test client's User-Agent").to_string(),
        other => panic!("no user_agent.original: {other:?}"),
    }
}

fn check_mapping(protocol: &str, compression: &str) {
    let collector = Collector::start();
    let base = format!("http://{}", collector.addr);
    let gateway = forwarding_to(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", compression),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k%3D1"),
            ("OTEL_SERVICE_NAME", "shop-web"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    let body = json!({ "events": [
        { "level": "info", "scope": "checkout", "sessionId": "s-1", "message": "clicked",
          "timestamp": "2025-01-15T10:30:45.123Z", "requestId": "r-1",
          "context": { "text": "a", "int": -7, "float": 2.5, "yes": true, "none": null,
                       "list": [1, "two", false], "nested": { "depth": { "x": 1 } } } },
        { "level": "warn", "scope": "navigation", "sessionId": "s-2", "message": "slow",
          "timestamp": "2025-01-15T10:30:46Z" },
        { "level": "error", "scope": "checkout", "sessionId": "s-1", "message": "failed",
          "timestamp": "2025-01-15T10:30:47.5+01:00", "context": { "code": 500 } },
    ]});
    let before = unix_nanos();
    assert_eq!(gateway.post(&body.to_string()).status, 204);
    let after = unix_nanos();
    assert!(wait_until(Duration::from_secs(10), || collector.received().len() == 1), "one export");
    let received = &collector.received()[0];

    assert_eq!(received.path, "/v1/logs");
    let content_type = if protocol == "http/protobuf" { "application/x-protobuf" } else { "application/json" };
    assert_eq!(received.header("content-type"), Some(content_type));
    let gzip = (compression == "gzip").then_some("gzip");
    assert_eq!(received.header("content-encoding"), gzip);
    assert_eq!(received.header("x-api-key"), Some("k=1"));
    if protocol == "http/json" {
        let raw: Value = serde_json::from_slice(&received.raw()).unwrap();
        let log = &raw["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert!(log["severityNumber"].is_u64(), "enums are integers: {log}");
        assert!(log["timeUnixNano"].is_string(), "64-bit integers are strings: {log}");
    }

    let request = received.request();
    let [resource_logs] = request.resource_logs.as_slice() else { panic!("one resourceLogs") };
    let resource =
        attributes(&LogRecord { attributes: resource_logs.resource.clone().unwrap().attributes, ..Default::default() });
    assert_eq!(resource["service.name"], string("shop-web"));
    assert_eq!(resource["deployment.environment"], string("test"));
    assert_eq!(resource["telemetry.sdk.name"], string("client-telemetry"), "an old client: the seed's name");
    let scopes: HashMap<&str, usize> = resource_logs
        .scope_logs
        .iter()
        .map(|s| (s.scope.as_ref().unwrap().name.as_str(), s.log_records.len()))
        .collect();
    assert_eq!(scopes, HashMap::from([("checkout", 2), ("navigation", 1)]));

    let records = received.records();
    let by_message = |m: &str| records.iter().find(|r| r.body == Some(AnyValue { value: string(m) })).unwrap().clone();
    let (info, warn, error) = (by_message("clicked"), by_message("slow"), by_message("failed"));
    for log in [&info, &warn, &error] {
        assert!((before..=after).contains(&log.observed_time_unix_nano), "observed = receive time");
    }
    let head = |l: &LogRecord| (l.time_unix_nano, l.severity_number, l.severity_text.clone());
    assert_eq!(head(&info), (1_736_937_045_123_000_000, 9, "INFO".into()));
    assert_eq!(head(&warn), (1_736_937_046_000_000_000, 13, "WARN".into()));
    assert_eq!(head(&error), (1_736_933_447_500_000_000, 17, "ERROR".into()));

    let int = |i| Some(V::IntValue(i));
    let expected_info = HashMap::from([
        ("session.id".to_string(), string("s-1")),
        ("request.id".to_string(), string("r-1")),
        ("text".to_string(), string("a")),
        ("int".to_string(), int(-7)),
        ("float".to_string(), Some(V::DoubleValue(2.5))),
        ("yes".to_string(), Some(V::BoolValue(true))),
        ("none".to_string(), None),
        (
            "list".to_string(),
            Some(V::ArrayValue(ArrayValue {
                values: [int(1), string("two"), Some(V::BoolValue(false))].map(|value| AnyValue { value }).to_vec(),
            })),
        ),
        (
            "nested".to_string(),
            Some(V::KvlistValue(KeyValueList {
                values: vec![key_value(
                    "depth",
                    Some(V::KvlistValue(KeyValueList { values: vec![key_value("x", int(1))] })),
                )],
            })),
        ),
    ]);
    // The request's User-Agent (the test client's) is the one attribute the gateway adds.
    let ua = || ("user_agent.original".to_string(), string(&format!("ureq/{}", ureq_version(&info))));
    let mut expected_info = expected_info;
    expected_info.extend([ua()]);
    assert_eq!(attributes(&info), expected_info);
    assert_eq!(attributes(&warn), HashMap::from([("session.id".to_string(), string("s-2")), ua()]));
    assert_eq!(
        attributes(&error),
        HashMap::from([("session.id".to_string(), string("s-1")), ("code".to_string(), int(500)), ua()])
    );

    let counts = settled(&gateway, 3);
    assert_eq!((counts.exported, counts.exports_ok), (3, 1));
}

#[test]
fn maps_every_level_and_context_type_as_json() {
    check_mapping("http/json", "none");
}

#[test]
fn maps_every_level_and_context_type_as_gzipped_json() {
    check_mapping("http/json", "gzip");
}

#[test]
fn maps_every_level_and_context_type_as_protobuf() {
    check_mapping("http/protobuf", "none");
}

#[test]
fn maps_every_level_and_context_type_as_gzipped_protobuf() {
    check_mapping("http/protobuf", "gzip");
}

#[test]
fn events_from_many_requests_share_one_export() {
    let collector = Collector::start();
    let gateway = forwarding_to(
        &collector.endpoint(),
        &[("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "40"), ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "30000")],
    );
    for _ in 0..8 {
        post_events(&gateway, 5);
    }
    assert!(wait_until(Duration::from_secs(10), || collector.delivered() == 40));
    let sizes: Vec<usize> = collector.received().iter().map(|r| r.records().len()).collect();
    assert_eq!(sizes, [40], "a full batch leaves at once, without waiting for the delay");
    settled(&gateway, 40);
}

#[test]
fn a_partial_batch_leaves_after_the_batch_delay() {
    let collector = Collector::start();
    let gateway = forwarding_to(&collector.endpoint(), &[("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "1000")]);
    let first_post = Instant::now();
    for _ in 0..3 {
        post_events(&gateway, 2);
    }
    assert!(wait_until(Duration::from_secs(10), || collector.delivered() == 6));
    let received = collector.received();
    assert_eq!(received.iter().map(|r| r.records().len()).collect::<Vec<_>>(), [6]);
    assert!(received[0].at - first_post >= Duration::from_millis(950), "held for the batch delay");
    settled(&gateway, 6);
}

#[test]
fn collector_down_costs_ingest_nothing_and_failures_are_counted_and_logged_sparingly() {
    let closed_port = free_port();
    let gateway = forwarding_to(
        &format!("http://127.0.0.1:{closed_port}/v1/logs"),
        &[("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "300"), ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "10")],
    );
    for _ in 0..20 {
        post_events(&gateway, 10);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(gateway.get(&gateway.url("/readyz")).status, 200, "readiness ignores the collector");
    let counts = settled(&gateway, 200);
    assert_eq!((counts.exported, counts.failed, counts.dropped), (0, 200, 0));
    assert!(counts.exports_failed >= 2, "{counts:?}");
    assert!(wait_until(Duration::from_secs(5), || !lines_with(&gateway, "otlp export failed").is_empty()));
    assert_eq!(lines_with(&gateway, "otlp export failed").len(), 1, "one line per 10 s, not one per failure");
}

#[test]
fn a_hanging_collector_never_slows_ingest_and_forwarding_recovers() {
    let collector = Collector::start();
    collector.answer(Answer::Hang);
    let gateway = forwarding_to(
        &collector.endpoint(),
        &[("OTEL_COLLECTOR_TIMEOUT_MS", "2000"), ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "0")],
    );
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        post_events(&gateway, 5);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A request that waited for the collector would take its 2 s timeout.
    assert!(slowest < Duration::from_secs(1), "slowest ingest request took {slowest:?}");
    let counts = settled(&gateway, 50);
    assert_eq!((counts.exported, counts.failed), (0, 50));

    collector.answer(Answer::Ok);
    post_events(&gateway, 5);
    let counts = settled(&gateway, 55);
    assert_eq!(counts.exported, 5);
    assert_eq!(collector.delivered(), 5);
}

#[test]
fn transient_503_and_429_are_retried_until_delivered_honouring_retry_after() {
    let collector = Collector::start();
    collector.script(&[Answer::Status(503), Answer::RetryAfter(429, 1)]);
    let gateway = forwarding_to(&collector.endpoint(), &[]);
    post_events(&gateway, 5);
    assert!(wait_until(Duration::from_secs(10), || collector.delivered() == 5));
    let received = collector.received();
    let answers: Vec<Answer> = received.iter().map(|r| r.answer).collect();
    assert_eq!(answers, [Answer::Status(503), Answer::RetryAfter(429, 1), Answer::Ok]);
    assert!(received[2].at - received[1].at >= Duration::from_millis(950), "waited for Retry-After: 1");
    assert!(received.iter().all(|r| r.body == received[0].body), "encoded once, sent as is");
    let counts = settled(&gateway, 5);
    assert_eq!((counts.exported, counts.failed, counts.exports_ok, counts.exports_failed), (5, 0, 1, 0));
}

#[test]
fn a_400_is_not_retried_and_the_events_are_counted_failed() {
    let collector = Collector::start();
    collector.script(&[Answer::Status(400)]);
    let gateway = forwarding_to(&collector.endpoint(), &[]);
    post_events(&gateway, 5);
    let counts = settled(&gateway, 5);
    assert_eq!((counts.failed, counts.exports_failed), (5, 1));
    std::thread::sleep(Duration::from_millis(500)); // ten backoffs' worth
    assert_eq!(collector.received().len(), 1, "never retried");

    post_events(&gateway, 2);
    let counts = settled(&gateway, 7);
    assert_eq!(counts.exported, 2, "later batches still go");
}

#[test]
fn partial_success_counts_the_refused_records_as_failed_without_retrying() {
    let collector = Collector::start();
    collector.script(&[Answer::Partial(2)]);
    let gateway = forwarding_to(&collector.endpoint(), &[]);
    post_events(&gateway, 5);
    let counts = settled(&gateway, 5);
    assert_eq!((counts.exported, counts.failed, counts.exports_ok), (3, 2, 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(collector.received().len(), 1);
}

#[test]
fn a_full_queue_drops_the_newest_events_and_counts_them() {
    let collector = Collector::start();
    collector.answer(Answer::Hang);
    let gateway = forwarding_to(
        &collector.endpoint(),
        &[
            ("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", "10"),
            ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "5"),
            ("CLIENT_TELEMETRY_OTLP_MAX_IN_FLIGHT", "1"),
            ("OTEL_COLLECTOR_TIMEOUT_MS", "3000"),
            ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "0"),
        ],
    );
    let request = |i: usize| json!({ "events": vec![event("info", &format!("request {i}")); 5] }).to_string();
    assert_eq!(gateway.post(&request(0)).status, 204);
    assert!(wait_until(Duration::from_secs(10), || collector.received().len() == 1), "first batch in flight");
    // The only export slot is taken: the queue holds 10, the other 40 are dropped, newest first.
    for i in 1..=10 {
        let started = Instant::now();
        assert_eq!(gateway.post(&request(i)).status, 204);
        assert!(started.elapsed() < Duration::from_secs(1), "a full queue never blocks a request");
    }
    let counts = counts(&gateway);
    assert_eq!((counts.dropped, counts.queue_depth), (40, 10), "{counts:?}");
    assert!(wait_until(Duration::from_secs(5), || !lines_with(&gateway, QUEUE_FULL).is_empty()));
    assert_eq!(lines_with(&gateway, QUEUE_FULL).len(), 1, "rate-limited");

    collector.answer(Answer::Ok);
    let counts = settled(&gateway, 55);
    assert_eq!((counts.exported, counts.failed, counts.dropped), (10, 5, 40));
    let delivered: Vec<String> = collector
        .received()
        .iter()
        .filter(|r| r.delivered() > 0)
        .flat_map(|r| r.records())
        .map(|r| match r.body.and_then(|b| b.value) {
            Some(V::StringValue(message)) => message,
            other => panic!("{other:?}"),
        })
        .collect();
    let kept = ["request 1", "request 2"].map(|m| vec![m.to_string(); 5]).concat();
    assert_eq!(delivered, kept, "the oldest are kept, the newest dropped");
}

const QUEUE_FULL: &str = "otlp queue full: newest events dropped";

#[test]
fn sigterm_exports_what_is_queued_before_exiting() {
    let collector = Collector::start();
    let mut gateway = forwarding_to(&collector.endpoint(), &[("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "30000")]);
    for _ in 0..3 {
        post_events(&gateway, 10);
    }
    assert_eq!(counts(&gateway).queue_depth, 30, "held by the 30 s batch delay");
    let signalled = Instant::now();
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(20)).success());
    // Idle keep-alive connections may hold the listeners up to 5 s; the batch delay is 30 s.
    assert!(signalled.elapsed() < Duration::from_secs(12), "did not wait for the batch delay");
    assert_eq!(collector.delivered(), 30);
    assert_eq!(lines_with(&gateway, "otlp forwarder drained").len(), 1);
}

#[test]
fn sigterm_drops_what_cannot_be_sent_within_the_grace_period_and_says_so_once() {
    let collector = Collector::start();
    collector.answer(Answer::Hang);
    let mut gateway = forwarding_to(
        &collector.endpoint(),
        &[("CLIENT_TELEMETRY_SHUTDOWN_GRACE_MS", "1000"), ("OTEL_COLLECTOR_TIMEOUT_MS", "30000")],
    );
    post_events(&gateway, 20);
    assert!(wait_until(Duration::from_secs(10), || collector.received().len() == 1));
    let signalled = Instant::now();
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(10)).success());
    let took = signalled.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "exited after {took:?}");
    let lines = lines_with(&gateway, "otlp forwarder: shutdown deadline reached, unsent events dropped");
    assert_eq!(lines.len(), 1, "logged once");
    assert_eq!(lines[0]["dropped"], 20);
}

#[test]
fn the_accounting_identity_holds_against_a_flapping_collector() {
    let collector = Collector::start();
    collector.cycle(&[
        Answer::Ok,
        Answer::Status(503),
        Answer::Partial(1),
        Answer::Status(400),
        Answer::RetryAfter(429, 0),
        Answer::Hang,
        Answer::Status(500),
    ]);
    let gateway = forwarding_to(
        &collector.endpoint(),
        &[
            ("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", "40"),
            ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "10"),
            ("CLIENT_TELEMETRY_OTLP_MAX_IN_FLIGHT", "2"),
            ("CLIENT_TELEMETRY_OTLP_RETRY_INITIAL_BACKOFF_MS", "20"),
            ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "400"),
            ("OTEL_COLLECTOR_TIMEOUT_MS", "200"),
        ],
    );
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    post_events(&gateway, 5);
                }
            });
        }
    });
    let counts = settled(&gateway, 500);
    assert_eq!(counts.exported as usize, collector.delivered(), "exported == what the collector took: {counts:?}");
    assert!(counts.exported > 0 && counts.failed > 0, "{counts:?}");
}

#[test]
fn forwarding_is_off_without_an_endpoint_and_its_metrics_read_zero() {
    let gateway = Gateway::start(&[]);
    post_events(&gateway, 3);
    let counts = counts(&gateway);
    assert_eq!(counts.accepted, 3);
    assert_eq!((counts.exported, counts.failed, counts.dropped, counts.queue_depth), (0, 0, 0, 0));
    let metrics = gateway.get(&gateway.url("/metrics")).body;
    for name in [
        "client_telemetry_otlp_exports_total{result=\"success\"}",
        "client_telemetry_otlp_events_total{result=\"dropped\"}",
        "client_telemetry_otlp_queue_depth",
        "client_telemetry_otlp_export_duration_seconds_count",
    ] {
        assert!(metrics.lines().any(|l| l.starts_with(name)), "{name} is exposed");
    }
    assert!(lines_with(&gateway, "otlp forwarding on").is_empty());
}
