//! The front door for the browser SDKs teams already run: OTLP/HTTP logs on `/v1/logs` and the
//! Grafana Faro payload on `/collect`, through the same request path as `/api/client-telemetry`:
//! one limiter (shared across formats and replicas), the same bounds, scrubbing, log line and
//! forwarding. Bad inputs of each format get a clear 4xx and cost nothing but the limiter's count.
mod support;

use std::{io::Write, time::Duration};

use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message;
use serde_json::{Value, json};
use support::{Gateway, RedisServer, collector::Collector, wait_until};

/// `google.rpc.Status`, as OTLP/HTTP answers a failure.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");
const TRACE_ID: [u8; 16] =
    [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c];

fn forwarding(collector: &Collector, extra: &[(&str, &str)]) -> Gateway {
    let endpoint = format!("http://{}/v1/logs", collector.addr);
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", endpoint.as_str()),
        ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "20"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env)
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(V::StringValue(s.into())) })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.into(), value, ..Default::default() }
}

fn record(body: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_736_937_045_123_000_000,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: string(body),
        attributes,
        trace_id: TRACE_ID.to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        flags: 1,
        ..Default::default()
    }
}

fn export(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    let resource = Resource {
        attributes: vec![
            kv("service.name", string("shop")),
            kv("service.version", string("1.4.2")),
            kv("telemetry.sdk.name", string("opentelemetry")),
            kv("telemetry.sdk.language", string("webjs")),
            kv("k8s.namespace.name", string("web")),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope { name: "checkout".into(), version: "2.0.0".into(), ..Default::default() };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs { scope: Some(scope), log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// An error record with a session, an exception and PII in its body, attributes and stack.
fn error_record() -> LogRecord {
    record(
        "payment failed for jane.doe@example.com",
        vec![
            kv("session.id", string("sess-42")),
            kv("exception.type", string("TypeError")),
            kv("exception.message", string("card 4111 1111 1111 1111 declined")),
            kv(
                "exception.stacktrace",
                string("TypeError: x\n    at pay (https://shop.example/app.js?token=9f8e7d6c5b4a3f2e:1:2)"),
            ),
            kv("cart.items", Some(AnyValue { value: Some(V::IntValue(3)) })),
            kv("user.email", string("jane.doe@example.com")),
        ],
    )
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a V> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> &'a str {
    match attribute(attributes, key) {
        Some(V::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn otlp_records_in_protobuf_and_gzipped_json_arrive_with_resource_scope_session_exception_and_pii_redacted() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, &[]);
    let body = export(vec![error_record()]);

    let reply = gateway.post_path("/v1/logs", &[PROTOBUF], &body.encode_to_vec());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/x-protobuf"));
    let answer = ExportLogsServiceResponse::decode(&reply.raw[..]).expect("an ExportLogsServiceResponse");
    assert_eq!(answer.partial_success, None, "everything accepted");

    let json_body = gzip(&serde_json::to_vec(&body).unwrap());
    let reply = gateway.post_path("/v1/logs", &[JSON, ("content-encoding", "gzip")], &json_body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({}), "an empty ExportLogsServiceResponse in JSON");

    assert!(wait_until(Duration::from_secs(10), || collector.records().len() >= 2), "both records forwarded");
    for received in collector.received() {
        // Parses strictly with opentelemetry-proto (the collector's decoder).
        for resource_logs in received.request().resource_logs {
            let resource = resource_logs.resource.unwrap().attributes;
            assert_eq!(text(&resource, "service.name"), "shop");
            assert_eq!(text(&resource, "service.version"), "1.4.2");
            assert_eq!(text(&resource, "k8s.namespace.name"), "web", "the sender's other resource attributes stay");
            assert_eq!(text(&resource, "telemetry.sdk.name"), "opentelemetry");
            let scope_logs = &resource_logs.scope_logs[0];
            assert_eq!(scope_logs.scope.as_ref().unwrap().name, "checkout");
            for log in &scope_logs.log_records {
                assert_eq!(log.severity_number, 17);
                assert_eq!(log.trace_id, TRACE_ID, "the trace context is kept");
                assert_eq!(log.span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
                let attributes = &log.attributes;
                assert_eq!(text(attributes, "session.id"), "sess-42");
                assert_eq!(text(attributes, "exception.type"), "TypeError");
                assert!(!text(attributes, "exception.message").contains("4111"), "card redacted");
                assert!(
                    !text(attributes, "exception.stacktrace").contains("9f8e7d6c5b4a3f2e"),
                    "token in a URL redacted"
                );
                assert!(
                    text(attributes, "exception.stacktrace")
                        .contains("at pay (https://shop.example/app.js?token=[REDACTED:secret]:1:2)"),
                    "the stack stays, line and column too"
                );
                assert_eq!(attribute(attributes, "cart.items"), Some(&V::IntValue(3)));
                assert!(!text(attributes, "user.email").contains("jane"), "{attributes:?}");
                let body = format!("{:?}", log.body);
                assert!(body.contains("payment failed") && !body.contains("jane"), "{body}");
            }
        }
    }
    let lines = gateway.wait_for_events(2);
    assert_eq!(lines[0]["sessionId"], "sess-42");
    assert_eq!(lines[0]["app"], "shop");
    assert_eq!(lines[0]["resource"]["k8s.namespace.name"], "web");
    assert_eq!(lines[0]["traceId"], "5b8efff798038103d269b633813fc60c");
    assert!(!lines[0].to_string().contains("jane.doe"), "{}", lines[0]);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="otlp",status="200"}"#), 2.0);
}

#[test]
fn otlp_json_with_hex_ids_and_string_integers_as_the_js_exporter_sends_it() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, &[]);
    let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeLogs": [{"scope": {"name": "web"}, "logRecords": [{
            "timeUnixNano": "1736937045123000000", "observedTimeUnixNano": "1736937045123000000",
            "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": "hello"},
            "attributes": [{"key": "n", "value": {"intValue": "7"}}, {"key": "session.id", "value": {"stringValue": "s-1"}}],
            "droppedAttributesCount": 0, "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0102030405060708"}]}]}]});
    let reply = gateway.post_path("/v1/logs", &[JSON], body.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(wait_until(Duration::from_secs(10), || collector.records().len() == 1));
    let log = collector.records().remove(0);
    assert_eq!(log.time_unix_nano, 1_736_937_045_123_000_000);
    assert_eq!(log.trace_id, TRACE_ID);
    assert_eq!(attribute(&log.attributes, "n"), Some(&V::IntValue(7)));
}

#[test]
fn refused_otlp_records_are_a_partial_success_and_a_request_with_none_valid_is_400() {
    let gateway = Gateway::start(&[]);
    let long = "x".repeat(9000);
    let body = export(vec![error_record(), record(&long, vec![])]);
    let reply = gateway.post_path("/v1/logs", &[PROTOBUF], &body.encode_to_vec());
    assert_eq!(reply.status, 200);
    let partial = ExportLogsServiceResponse::decode(&reply.raw[..]).unwrap().partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("record 1: `message` is 9000 bytes"), "{}", partial.error_message);
    assert_eq!(gateway.wait_for_events(1).len(), 1);

    let reply = gateway.post_path("/v1/logs", &[PROTOBUF], &export(vec![record(&long, vec![])]).encode_to_vec());
    assert_eq!(reply.status, 400, "{}", reply.body);
    // An empty export is a success, as the specification has it.
    let reply = gateway.post_path("/v1/logs", &[PROTOBUF], &ExportLogsServiceRequest::default().encode_to_vec());
    assert_eq!(reply.status, 200);
}

/// A route, the request's headers and body, and the status and a word of the message expected.
type BadInput = (&'static str, Vec<(&'static str, &'static str)>, Vec<u8>, u16, &'static str);

/// Each bad input: its status and a word of the message. None reaches the log or the collector.
#[test]
fn bad_inputs_of_each_format_get_a_clear_4xx_and_cost_nothing_but_the_limiter() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, &[]);
    let whole = export(vec![error_record()]).encode_to_vec();
    let deep = (0..120).fold(AnyValue { value: Some(V::IntValue(1)) }, |inner, _| AnyValue {
        value: Some(V::KvlistValue(KeyValueList { values: vec![kv("a", Some(inner))] })),
    });
    let nested_6 = (0..6).fold(AnyValue { value: Some(V::IntValue(1)) }, |inner, _| AnyValue {
        value: Some(V::KvlistValue(KeyValueList { values: vec![kv("a", Some(inner))] })),
    });
    let many = export((0..10_000).map(|_| LogRecord::default()).collect()).encode_to_vec();
    let bomb = gzip(&vec![0u8; 10 << 20]);
    let faro_meta = json!({"app": {"name": "shop"}, "session": {"id": "s-1"}});
    let cases: Vec<BadInput> = vec![
        ("/v1/logs", vec![PROTOBUF], whole[..whole.len() - 5].to_vec(), 400, "not an OTLP"),
        (
            "/v1/logs",
            vec![PROTOBUF],
            export(vec![record("x", vec![kv("deep", Some(deep))])]).encode_to_vec(),
            400,
            "recursion",
        ),
        (
            "/v1/logs",
            vec![PROTOBUF],
            export(vec![record("x", vec![kv("d", Some(nested_6))])]).encode_to_vec(),
            400,
            "nested deeper",
        ),
        ("/v1/logs", vec![PROTOBUF], many, 400, "10000 events"),
        (
            "/v1/logs",
            vec![JSON],
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":true}]}]}]}"#.to_vec(),
            400,
            "`resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano`",
        ),
        ("/v1/logs", vec![JSON], br#"{"resourceLogs":"many"}"#.to_vec(), 400, "not an OTLP"),
        ("/v1/logs", vec![PROTOBUF, ("content-encoding", "gzip")], bomb.clone(), 413, "decompress"),
        ("/v1/logs", vec![("content-type", "application/xml")], b"<x/>".to_vec(), 415, "application/x-protobuf"),
        (
            "/collect",
            vec![JSON],
            json!({"meta": faro_meta, "profiles": []}).to_string().into_bytes(),
            400,
            "unknown field `profiles`",
        ),
        (
            "/collect",
            vec![JSON],
            json!({"meta": faro_meta, "logs": [{"message": 5}]}).to_string().into_bytes(),
            400,
            "`logs[0].message`: invalid type: integer `5`, expected a string",
        ),
        (
            "/collect",
            vec![JSON],
            json!({"meta": {"session": "x"}, "logs": []}).to_string().into_bytes(),
            400,
            "`meta.session`: invalid type: string",
        ),
        (
            "/collect",
            vec![JSON],
            json!({"meta": {"app": {"name": 7}}, "logs": []}).to_string().into_bytes(),
            400,
            "expected a string",
        ),
        ("/collect", vec![JSON], json!({"meta": faro_meta}).to_string().into_bytes(), 400, "no logs"),
        ("/collect", vec![JSON, ("content-encoding", "gzip")], bomb, 413, "decompress"),
        ("/collect", vec![PROTOBUF], whole, 415, "application/json"),
    ];
    for (path, headers, body, status, needle) in &cases {
        let reply = gateway.post_path(path, headers, body);
        assert_eq!(reply.status, *status, "{path} {needle}: {}", reply.body);
        // OTLP answers a failure with a google.rpc.Status in the request's encoding.
        let message = match (*path, reply.header("content-type")) {
            ("/v1/logs", Some("application/x-protobuf")) => Status::decode(&reply.raw[..]).expect("a Status").message,
            ("/v1/logs", _) => reply.json()["message"].as_str().expect("a Status in JSON").to_string(),
            _ => reply.json()["error"].as_str().unwrap().to_string(),
        };
        assert!(message.contains(needle), "{path}: {message:?} should mention {needle:?}");
    }
    let otlp_400 = gateway.metric(r#"client_telemetry_requests_total{route="otlp",status="400"}"#);
    assert_eq!(otlp_400, 6.0);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="faro",status="400"}"#), 5.0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(gateway.event_lines().is_empty(), "nothing logged");
    assert!(collector.received().is_empty(), "nothing forwarded");
}

fn faro_payload() -> Value {
    json!({
        "meta": {
            "sdk": {"name": "@grafana/faro-web-sdk", "version": "2.12.1"},
            "app": {"name": "shop", "version": "1.4.2", "environment": "production"},
            "session": {"id": "faro-sess-1", "attributes": {"isSampled": "true"}},
            "page": {"url": "https://shop.example/checkout"},
            "browser": {"name": "Chrome", "version": "126", "os": "Linux", "mobile": false, "language": "en-US"},
            "user": {"email": "jane.doe@example.com"}
        },
        "logs": [{"message": "hello from jane.doe@example.com", "level": "warn", "context": {"cart": "3"},
                  "timestamp": "2025-01-15T10:30:45.123Z"}],
        "exceptions": [{"type": "Error", "value": "boom", "timestamp": "2025-01-15T10:30:46Z",
                        "stacktrace": {"frames": [{"filename": "https://shop.example/app.js", "function": "checkout", "lineno": 10, "colno": 5}]},
                        "trace": {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "0102030405060708"}}],
        "measurements": [{"type": "web-vitals", "values": {"lcp": 1234.5, "cls": 0.01}, "timestamp": "2025-01-15T10:30:47Z"}],
        "events": [{"name": "click", "domain": "ui", "attributes": {"target": "buy"}, "timestamp": "2025-01-15T10:30:48Z"}],
        "traces": {"resourceSpans": []}
    })
}

#[test]
fn a_faro_payload_arrives_as_records_with_session_exception_and_meta_and_traces_are_refused() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, &[]);
    let reply = gateway.post_path("/collect", &[JSON], faro_payload().to_string().as_bytes());
    assert_eq!(reply.status, 202, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["accepted"], 4);
    assert!(answer["rejected"][0]["error"].as_str().unwrap().contains("`traces` are not accepted"), "{answer}");

    assert!(wait_until(Duration::from_secs(10), || collector.records().len() >= 4), "four records");
    let request = collector.received()[0].request();
    let resource_logs = &request.resource_logs[0];
    let resource = &resource_logs.resource.as_ref().unwrap().attributes;
    assert_eq!(text(resource, "service.name"), "shop");
    assert_eq!(text(resource, "deployment.environment.name"), "production");
    assert_eq!(text(resource, "telemetry.sdk.name"), "@grafana/faro-web-sdk");
    let scopes: Vec<&str> = resource_logs.scope_logs.iter().map(|s| s.scope.as_ref().unwrap().name.as_str()).collect();
    assert_eq!(scopes, ["faro.logs", "faro.exceptions", "faro.measurements", "faro.events"]);
    let records = collector.records();
    for log in &records {
        assert_eq!(text(&log.attributes, "session.id"), "faro-sess-1");
        assert_eq!(text(&log.attributes, "url.full"), "https://shop.example/checkout");
    }
    assert_eq!(records[0].severity_number, 13, "warn");
    assert!(!format!("{:?}", records[0].body).contains("jane"), "PII in a Faro log redacted");
    let error = &records[1];
    assert_eq!(text(&error.attributes, "exception.type"), "Error");
    assert_eq!(text(&error.attributes, "exception.message"), "boom");
    assert!(text(&error.attributes, "exception.stacktrace").contains("at checkout (https://shop.example/app.js:10:5)"));
    assert_eq!(error.trace_id, TRACE_ID);
    assert_eq!(attribute(&records[2].attributes, "lcp"), Some(&V::DoubleValue(1234.5)));
    assert_eq!(text(&records[3].attributes, "event.domain"), "ui");
    let lines = gateway.wait_for_events(4);
    assert!(!lines.iter().any(|l| l.to_string().contains("jane.doe")), "meta.user is not kept");
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="faro",status="202"}"#), 1.0);
}

#[test]
fn faro_api_keys_follow_alloys_conventions_header_or_app_key_in_the_path() {
    let key = "faro-key-0123456789";
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_API_KEYS", key)]);
    let body = faro_payload().to_string();
    assert_eq!(gateway.post_path("/collect", &[JSON], body.as_bytes()).status, 401);
    assert_eq!(gateway.post_path("/collect/wrong-key-000000000", &[JSON], body.as_bytes()).status, 401);
    assert_eq!(gateway.post_path("/collect", &[JSON, ("x-api-key", key)], body.as_bytes()).status, 202);
    assert_eq!(gateway.post_path(&format!("/collect/{key}"), &[JSON], body.as_bytes()).status, 202);
    assert_eq!(gateway.post_path("/v1/logs", &[PROTOBUF], &export(vec![error_record()]).encode_to_vec()).status, 401);
}

#[test]
fn the_faro_session_header_is_the_session_of_the_per_session_limit() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "1"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "60000"),
    ]);
    let body = faro_payload().to_string();
    let send = |session: &str| gateway.post_path("/collect", &[JSON, ("x-faro-session-id", session)], body.as_bytes());
    assert_eq!(send("sess-a").status, 202);
    let refused = send("sess-a");
    assert_eq!(refused.status, 429);
    assert!(refused.header("ratelimit").unwrap().contains("\"session\";r=0"), "{:?}", refused.headers);
    assert_eq!(send("sess-b").status, 202, "another session has its own quota");
}

#[test]
fn the_otlp_route_can_be_mounted_under_a_prefix() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_OTLP_PATH_PREFIX", "/otel/")]);
    let body = export(vec![error_record()]).encode_to_vec();
    assert_eq!(gateway.post_path("/otel/v1/logs", &[PROTOBUF], &body).status, 200);
    assert_eq!(gateway.post_path("/v1/logs", &[PROTOBUF], &body).status, 404);
}

/// One IP's quota, spent on OTLP through two replicas, is spent for every format on every replica.
#[test]
fn the_limit_is_shared_across_formats_and_replicas() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", url.as_str()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "60000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "4"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let fleet = [Gateway::start(&env), Gateway::start(&env)];
    let otlp = export(vec![error_record()]).encode_to_vec();
    let client = ("x-forwarded-for", "198.51.100.7");
    for i in 0..4 {
        let reply = fleet[i % 2].post_path("/v1/logs", &[PROTOBUF, client], &otlp);
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
    for gateway in &fleet {
        let refused = gateway.post_path("/v1/logs", &[PROTOBUF, client], &otlp);
        assert_eq!(refused.status, 429);
        assert_eq!(Status::decode(&refused.raw[..]).unwrap().code, 8, "RESOURCE_EXHAUSTED");
        let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=61).contains(&retry_after), "{retry_after}");
        let faro = gateway.post_path("/collect", &[JSON, client], faro_payload().to_string().as_bytes());
        assert_eq!(faro.status, 429, "{}", faro.body);
        assert!(faro.header("retry-after").is_some());
        let native = gateway.post_path("/api/client-telemetry", &[JSON, client], support::batch(1).as_bytes());
        assert_eq!(native.status, 429);
    }
    let other = ("x-forwarded-for", "198.51.100.8");
    assert_eq!(fleet[1].post_path("/collect", &[JSON, other], faro_payload().to_string().as_bytes()).status, 202);
}

/// Faro keeps one `Idempotency-Key` across the attempts of a payload: a retry of an accepted
/// payload is answered as a duplicate and not logged or forwarded again.
#[test]
fn a_faro_retry_with_the_same_idempotency_key_is_not_logged_twice() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS", "60000")]);
    let body = faro_payload().to_string();
    let send = |key: &str| gateway.post_path("/collect", &[JSON, ("idempotency-key", key)], body.as_bytes());
    assert_eq!(send("k1k2k3k4k5k6k7k8k9k0").status, 202);
    let again = send("k1k2k3k4k5k6k7k8k9k0");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(send("another-key-00000000").status, 202);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gateway.event_lines().len(), 8, "two payloads of four items each");
}

// --- Limits that fit the formats: counting requests (the default) or records.

/// An OTLP export of `n` error records, each naming `session`.
fn export_of(n: usize, session: &str) -> Vec<u8> {
    let record = || record("x", vec![kv("session.id", string(session))]);
    export((0..n).map(|_| record()).collect()).encode_to_vec()
}

/// `"ip";r=…` of a reply's RateLimit header: what the IP has left.
fn ip_remaining(reply: &support::Reply) -> u32 {
    let header = reply.header("ratelimit").expect("a RateLimit header");
    let r = header.strip_prefix("\"ip\";r=").and_then(|rest| rest.split(';').next());
    r.and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("{header}"))
}

/// Limit 50 per window. Counting records, a 40-record export leaves too little for a 20-event batch
/// (429 with Retry-After, counted), but a 1-event beacon still weighs 1; counting requests, each
/// request weighs 1 whatever it carries.
fn a_40_record_export_then_a_20_event_batch(extra: &[(&str, &str)], unit: &str) -> Gateway {
    let mut env = vec![
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "50"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "60000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_UNIT", unit),
    ];
    env.extend_from_slice(extra);
    let gateway = Gateway::start(&env);
    let export = gateway.post_path("/v1/logs", &[PROTOBUF], &export_of(40, "s-1"));
    assert_eq!(export.status, 200, "{}", export.body);
    let batch = gateway.post_path("/api/client-telemetry", &[JSON], support::batch(20).as_bytes());
    let beacon = gateway.post_path("/api/client-telemetry", &[JSON], support::batch(1).as_bytes());
    assert_eq!(beacon.status, 204, "{}", beacon.body);
    match unit {
        "record" => {
            assert_eq!(ip_remaining(&export), 10, "40 records counted");
            assert_eq!(batch.status, 429, "{}", batch.body);
            let retry_after: u64 = batch.header("retry-after").expect("Retry-After").parse().unwrap();
            assert!((1..=61).contains(&retry_after), "{retry_after}");
            assert_eq!(batch.json()["retryAfter"], retry_after);
            assert_eq!(ip_remaining(&batch), 9, "its first event spent, the other 19 refused");
            assert_eq!(ip_remaining(&beacon), 8, "a beacon of one event weighs 1");
            let refused = r#"client_telemetry_requests_total{route="native",status="429"}"#;
            assert_eq!(gateway.metric(refused), 1.0, "the refusal after the body is counted");
            assert_eq!(gateway.wait_for_events(41).len(), 41, "the refused batch is not logged");
        }
        _ => {
            assert_eq!(ip_remaining(&export), 49, "one request");
            assert_eq!(batch.status, 204, "{}", batch.body);
            assert_eq!((ip_remaining(&batch), ip_remaining(&beacon)), (48, 47));
            assert_eq!(gateway.wait_for_events(61).len(), 61);
        }
    }
    gateway
}

#[test]
fn counting_records_a_big_export_leaves_no_room_for_a_batch_and_a_beacon_weighs_one() {
    a_40_record_export_then_a_20_event_batch(&[], "record");
}

#[test]
fn counting_requests_the_default_every_request_weighs_one_whatever_it_carries() {
    a_40_record_export_then_a_20_event_batch(&[], "request");
    let default = Gateway::start(&[("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "50")]);
    let export = default.post_path("/v1/logs", &[PROTOBUF], &export_of(40, "s-1"));
    assert_eq!(ip_remaining(&export), 49, "the default counts requests");
}

#[test]
fn counting_records_on_redis_weighs_the_same_in_one_script_call_per_limiter_call() {
    let redis = RedisServer::start();
    let url = redis.url();
    let on_redis = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", url.as_str()),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000"),
    ];
    let gateway = a_40_record_export_then_a_20_event_batch(&on_redis, "record");
    let errors = r#"client_telemetry_rate_limiter_errors_total{backend="redis",kind="timeout"}"#;
    assert_eq!(gateway.metric(errors), 0.0, "decided by Redis, not the fallback");
    // A request of several records is two script calls (before and after its body), of one record one.
    let _: () = redis.query(&["CONFIG", "RESETSTAT"]);
    assert_eq!(gateway.post_path("/v1/logs", &[PROTOBUF], &export_of(3, "s-1")).status, 200);
    assert_eq!(gateway.post_path("/api/client-telemetry", &[JSON], support::batch(1).as_bytes()).status, 204);
    assert_eq!(redis.command_calls().get("evalsha"), Some(&3));
    drop(gateway);
    let _: () = redis.query(&["FLUSHALL"]);
    let gateway = a_40_record_export_then_a_20_event_batch(&on_redis, "request");
    assert_eq!(gateway.metric(errors), 0.0);
}

/// OTLP names its session only in its records: with session limits on, a request that named none
/// before its body is limited by the session its records name.
#[test]
fn an_otlp_export_is_limited_by_the_session_its_records_name() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "10"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "2"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "60000"),
    ]);
    let send = |session: &str| gateway.post_path("/v1/logs", &[PROTOBUF], &export_of(3, session));
    for _ in 0..2 {
        let reply = send("tab-a");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let refused = send("tab-a");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(Status::decode(&refused.raw[..]).unwrap().code, 8, "RESOURCE_EXHAUSTED");
    assert!(refused.header("retry-after").is_some());
    assert!(refused.header("ratelimit").unwrap().contains("\"session\";r=0"), "{:?}", refused.headers);
    assert_eq!(ip_remaining(&refused), 7, "the IP counted the three requests once each");
    assert_eq!(send("tab-b").status, 200, "another session has its own quota");
    let limited = r#"client_telemetry_rate_limit_decisions_total{backend="memory",decision="session_limited"}"#;
    assert_eq!(gateway.metric(limited), 1.0);
    assert_eq!(gateway.wait_for_events(9).len(), 9, "three exports of three records");
}

#[test]
fn counting_records_a_session_named_in_the_records_is_charged_each_record() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "100"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "30"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_UNIT", "record"),
    ]);
    let first = gateway.post_path("/v1/logs", &[PROTOBUF], &export_of(20, "tab-a"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.header("ratelimit").unwrap().contains("\"session\";r=10;"), "{:?}", first.headers);
    let second = gateway.post_path("/v1/logs", &[PROTOBUF], &export_of(20, "tab-a"));
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(ip_remaining(&second), 79, "the IP has room: only the session refused");
    assert_eq!(gateway.post_path("/v1/logs", &[PROTOBUF], &export_of(20, "tab-b")).status, 200);
}
