//! What reaches the log and the collector, in OpenTelemetry's terms: the batch context (app, page,
//! browser, SDK), exceptions, the request's User-Agent and (opt-in) client address; old payloads
//! unchanged but for the server-side attributes; the bad inputs of the new fields; the app allow-list.
mod support;

use std::{collections::HashMap, time::Duration};

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value as V};
use serde_json::{Value, json};
use support::{Gateway, collector::Collector, wait_until};

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Chrome/126.0 Safari/537.36";

fn forwarding(collector: &Collector, protocol: &str, extra: &[(&str, &str)]) -> Gateway {
    let endpoint = format!("http://{}/v1/logs", collector.addr);
    let mut env = vec![
        ("OTEL_COLLECTOR_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "demo-web-client"),
        ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "20"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env)
}

fn post(gateway: &Gateway, body: &Value) -> support::Reply {
    gateway.post_with(&[("content-type", "application/json"), ("user-agent", UA)], &body.to_string())
}

/// The export as OTLP/JSON, with the one value that changes from run to run taken out.
fn export_json(collector: &Collector) -> Value {
    assert!(wait_until(Duration::from_secs(10), || !collector.received().is_empty()), "one export");
    let mut export: Value = serde_json::from_slice(&collector.received()[0].raw()).unwrap();
    for resource_logs in export["resourceLogs"].as_array_mut().unwrap() {
        for scope_logs in resource_logs["scopeLogs"].as_array_mut().unwrap() {
            for record in scope_logs["logRecords"].as_array_mut().unwrap() {
                record.as_object_mut().unwrap().remove("observedTimeUnixNano");
            }
        }
    }
    export
}

fn line_without_ts(gateway: &Gateway) -> Value {
    let mut line = gateway.wait_for_events(1).remove(0);
    line.as_object_mut().unwrap().remove("ts");
    line
}

fn string_kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The seed's payloads, without any new field: the log line and the export are what they were
/// before the batch context existed, plus only what the request itself says (`userAgent` /
/// `user_agent.original`) and the gateway naming itself as the distribution.
#[test]
fn old_payloads_give_the_same_line_and_export_plus_only_the_server_side_attributes() {
    let seed_event = json!({"level": "info", "scope": "component-name", "sessionId": "component-session-abc123",
        "message": "User action description", "timestamp": "2025-01-15T10:30:45.123Z", "requestId": "request-xyz789",
        "context": {"action": "button_click", "userId": "user-123"}});
    let version = env!("CARGO_PKG_VERSION");
    for body in [json!({"events": [seed_event.clone()]}), seed_event.clone()] {
        let collector = Collector::start();
        let gateway = forwarding(&collector, "http/json", &[]);
        assert_eq!(post(&gateway, &body).status, 204);
        assert_eq!(
            line_without_ts(&gateway),
            json!({"msg": "client event", "level": "info", "scope": "component-name",
                "sessionId": "component-session-abc123", "message": "User action description",
                "timestamp": "2025-01-15T10:30:45.123Z", "requestId": "request-xyz789",
                "context": {"action": "button_click", "userId": "user-123"},
                "userAgent": UA}),
            "{body}"
        );
        let export = export_json(&collector);
        let expected = json!({"resourceLogs": [{
            "resource": {"attributes": [
                string_kv("service.name", "demo-web-client"),
                string_kv("telemetry.sdk.name", "client-telemetry"),
                string_kv("telemetry.sdk.version", version),
                string_kv("telemetry.distro.name", "client-telemetry"),
                string_kv("telemetry.distro.version", version),
            ], "droppedAttributesCount": 0, "entityRefs": []},
            "scopeLogs": [{
                "scope": {"name": "component-name", "version": "", "attributes": [], "droppedAttributesCount": 0},
                "logRecords": [{
                    "timeUnixNano": "1736937045123000000", "severityNumber": 9, "severityText": "INFO",
                    "body": {"stringValue": "User action description"},
                    "attributes": [
                        string_kv("session.id", "component-session-abc123"),
                        string_kv("request.id", "request-xyz789"),
                        string_kv("user_agent.original", UA),
                        string_kv("action", "button_click"),
                        string_kv("userId", "user-123"),
                    ],
                    "droppedAttributesCount": 0, "flags": 0, "traceId": "", "spanId": "", "eventName": ""
                }]
            }]
        }]});
        assert_eq!(export, expected, "{body}");
    }
}

fn full_batch() -> Value {
    json!({
        "app": {"name": "shop", "version": "1.4.2", "environment": "production"},
        "page": {"url": "https://shop.example/checkout"},
        "browser": {"language": "de-DE", "brands": [{"brand": "Chromium", "version": "126"}], "platform": "macOS", "mobile": false},
        "sdk": {"name": "@client-telemetry/browser", "version": "0.2.0"},
        "events": [{"level": "error", "scope": "window", "sessionId": "3b1f", "message": "Uncaught TypeError: x is undefined",
            "timestamp": "2025-01-15T10:30:45.123Z",
            "exception": {"type": "TypeError", "message": "x is undefined",
                "stacktrace": "TypeError: x is undefined\n    at placeOrder (https://shop.example/app.js:10:5)"},
            "context": {"exception.count": 3, "url.full": "https://spoofed.example/"}}]
    })
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, Option<V>> {
    attributes.iter().map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value))).collect()
}

fn s(value: &str) -> Option<V> {
    Some(V::StringValue(value.into()))
}

#[test]
fn the_batch_context_and_exception_reach_the_log_and_the_collector_under_semantic_convention_names() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, "http/protobuf", &[("CLIENT_TELEMETRY_RECORD_CLIENT_ADDRESS", "true")]);
    let reply = gateway.post_with(
        &[("content-type", "application/json"), ("user-agent", UA), ("x-forwarded-for", "203.0.113.7")],
        &full_batch().to_string(),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);

    let line = line_without_ts(&gateway);
    assert_eq!(
        (
            &line["app"],
            &line["release"],
            &line["environment"],
            &line["pageUrl"],
            &line["userAgent"],
            &line["clientAddress"]
        ),
        (
            &json!("shop"),
            &json!("1.4.2"),
            &json!("production"),
            &json!("https://shop.example/checkout"),
            &json!(UA),
            &json!("203.0.113.7")
        )
    );
    assert_eq!(
        line["browser"],
        json!({"language": "de-DE", "brands": ["Chromium 126"], "platform": "macOS", "mobile": false})
    );
    assert_eq!(line["sdk"], json!({"name": "@client-telemetry/browser", "version": "0.2.0"}));
    assert_eq!(line["exception"]["type"], "TypeError");
    assert!(line["exception"]["stacktrace"].as_str().unwrap().contains("at placeOrder"));

    assert!(wait_until(Duration::from_secs(10), || !collector.received().is_empty()), "one export");
    let request = collector.received()[0].request();
    let [resource_logs] = request.resource_logs.as_slice() else { panic!("one resource") };
    let resource = attributes(&resource_logs.resource.as_ref().unwrap().attributes);
    assert_eq!(resource["service.name"], s("shop"));
    assert_eq!(resource["service.version"], s("1.4.2"));
    assert_eq!(resource["deployment.environment.name"], s("production"));
    assert_eq!(resource["browser.language"], s("de-DE"));
    assert_eq!(resource["browser.platform"], s("macOS"));
    assert_eq!(resource["browser.mobile"], Some(V::BoolValue(false)));
    assert_eq!(
        resource["browser.brands"],
        Some(V::ArrayValue(ArrayValue { values: vec![AnyValue { value: s("Chromium 126") }] }))
    );
    assert_eq!(resource["telemetry.sdk.name"], s("@client-telemetry/browser"));
    assert_eq!(resource["telemetry.sdk.language"], s("webjs"));
    assert_eq!(resource_logs.scope_logs[0].scope.as_ref().unwrap().name, "window", "the scope stays the event's");
    let record = &resource_logs.scope_logs[0].log_records[0];
    let attrs = attributes(&record.attributes);
    assert_eq!(attrs["session.id"], s("3b1f"));
    assert_eq!(attrs["exception.type"], s("TypeError"));
    assert_eq!(attrs["exception.message"], s("x is undefined"));
    assert_eq!(attrs["url.full"], s("https://shop.example/checkout"), "a context key never overwrites it");
    assert_eq!(attrs["user_agent.original"], s(UA));
    assert_eq!(attrs["client.address"], s("203.0.113.7"));
    assert_eq!(attrs["exception.count"], Some(V::IntValue(3)));
    assert_eq!(record.dropped_attributes_count, 1);
}

#[test]
fn the_client_address_is_not_kept_unless_asked_for() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, "http/json", &[]);
    assert_eq!(post(&gateway, &full_batch()).status, 204);
    assert!(line_without_ts(&gateway).get("clientAddress").is_none());
    let export = export_json(&collector);
    assert!(!export.to_string().contains("client.address"));
}

#[test]
fn pii_in_a_stack_trace_a_page_url_and_an_exception_message_is_redacted_everywhere() {
    let collector = Collector::start();
    let gateway = forwarding(&collector, "http/json", &[]);
    let mut body = full_batch();
    body["page"]["url"] = json!("https://shop.example/reset?token=s3cr3tT0ken&step=2");
    let exception = &mut body["events"][0]["exception"];
    exception["message"] = json!("no account for jane.doe@example.com");
    exception["stacktrace"] = json!(
        "Error: failed\n    at login (https://shop.example/app.js?api_key=abcdef0123456789:1:2)\n    at mail (alice@example.org)"
    );
    assert_eq!(post(&gateway, &body).status, 204);

    let line = line_without_ts(&gateway);
    assert_eq!(line["pageUrl"], "https://shop.example/reset?token=[REDACTED:secret]&step=2");
    assert_eq!(line["exception"]["message"], "no account for [REDACTED:email]");
    let stack = line["exception"]["stacktrace"].as_str().unwrap();
    assert!(stack.contains("[REDACTED:secret]") && stack.contains("[REDACTED:email]"), "{stack}");
    let export = export_json(&collector).to_string();
    for secret in ["s3cr3tT0ken", "jane.doe", "abcdef0123456789", "alice@"] {
        assert!(!export.contains(secret) && !line.to_string().contains(secret), "{secret} leaked");
    }
    assert!(gateway.metric(r#"client_telemetry_redactions_total{kind="email"}"#) >= 2.0);
}

#[test]
fn bad_new_fields_get_a_clear_400_or_refuse_only_their_event() {
    let gateway = Gateway::start(&[]);
    let batch_with = |path: &[&str], value: Value| {
        let mut body = full_batch();
        let mut at = &mut body;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        body
    };
    let brands: Vec<Value> = (0..11).map(|i| json!({"brand": format!("B{i}"), "version": "1"})).collect();
    let whole_batch = [
        (
            batch_with(&["browser", "brands"], json!(brands)),
            "`browser.brands` has 11 entries, more than the limit of 10",
        ),
        (batch_with(&["browser", "mobile"], json!("yes")), "expected a boolean"),
        (batch_with(&["app", "version"], json!(142)), "expected a string"),
        (batch_with(&["app"], json!("shop")), "expected struct App"),
        (batch_with(&["page", "url"], json!(format!("https://a.example/{}", "p".repeat(3000)))), "`page.url` is"),
    ];
    for (body, needle) in whole_batch {
        let reply = post(&gateway, &body);
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(reply.json()["error"].as_str().unwrap().contains(needle), "{} should mention {needle}", reply.body);
    }
    // A bad exception costs only its event.
    let mut body = full_batch();
    let good = body["events"][0].clone();
    let mut huge = good.clone();
    huge["exception"]["stacktrace"] = json!("at f (x.js)\n".repeat(3000));
    let mut typed = good.clone();
    typed["exception"]["message"] = json!({"not": "a string"});
    body["events"] = json!([good, huge, typed]);
    let reply = post(&gateway, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["accepted"], 1);
    let errors: Vec<&str> =
        answer["rejected"].as_array().unwrap().iter().map(|r| r["error"].as_str().unwrap()).collect();
    assert!(errors[0].contains("`exception.stacktrace` is 36000 bytes, more than the limit of 32768"), "{errors:?}");
    assert!(errors[1].contains("invalid type: map, expected a string"), "{errors:?}");
}

#[test]
fn an_app_not_on_the_allow_list_is_refused_and_only_listed_apps_get_a_label() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_ALLOWED_APPS", "shop, blog")]);
    let mut other = full_batch();
    other["app"]["name"] = json!("minted-123");
    let reply = post(&gateway, &other);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains(r#"app "minted-123" is not allowed"#), "{}", reply.body);
    assert_eq!(post(&gateway, &full_batch()).status, 204);
    let mut anonymous = full_batch();
    anonymous.as_object_mut().unwrap().remove("app");
    assert_eq!(post(&gateway, &anonymous).status, 204, "a batch naming no app is an old client's");

    assert_eq!(gateway.wait_for_events(2).len(), 2, "nothing of the refused batch is logged");
    assert_eq!(gateway.metric(r#"client_telemetry_events_total{app="shop",level="error"}"#), 1.0);
    assert_eq!(gateway.metric(r#"client_telemetry_events_total{app="",level="error"}"#), 1.0);
    assert_eq!(gateway.metric(r#"client_telemetry_app_errors_total{app="shop",release="1.4.2"}"#), 1.0);
    let metrics = gateway.get(&gateway.admin_url("/metrics")).body;
    assert!(!metrics.contains("minted-123"));
    assert!(metrics.contains(r#"client_telemetry_events_total{app="blog",level="info"} 0"#));
}
