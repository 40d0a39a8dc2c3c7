//! The OTLP logs data model, in three jobs: `mapping` (an accepted event as a `LogRecord`, which
//! `protobuf` writes straight from the event),
//! `framing` (records into one `ExportLogsServiceRequest` body, OTLP/JSON or protobuf, optionally
//! gzipped) and `answer` (what a collector's answer says was refused).
//!
//! The generated `opentelemetry-proto` types do the encoding. Their JSON follows OTLP/JSON
//! (camelCase keys, integer enums, 64-bit integers as decimal strings, hex ids); it also writes
//! default-valued fields (`"flags":0`, `"traceId":""`, …), which proto3 JSON allows and collectors accept.

mod answer;
mod framing;
mod mapping;
mod protobuf;
pub mod semconv;

use std::sync::Arc;

use bytes::Bytes;

pub use answer::rejected_log_records;
pub use framing::Encoder;
#[cfg(test)]
use mapping::{log_record, resource};

/// One accepted event, already in the export's encoding: encoded on the request's worker, so the
/// exporter only frames records into a body, and nothing borrowed from the request outlives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The encoded `Resource` of the request's batch; the records of one request share it.
    pub resource: Arc<[u8]>,
    /// The event's scope; consecutive events of one request share the allocation.
    pub scope: Arc<str>,
    /// The `LogRecord` message: protobuf bytes, or an OTLP/JSON object. A slice of one buffer per
    /// request.
    pub log: Bytes,
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        logs::v1::{ResourceLogs, ScopeLogs},
    };
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceResponse,
        common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value},
        logs::v1::LogRecord,
    };
    use prost::Message;
    use serde_json::{Value, json, value::RawValue};

    use super::{
        mapping::{key_value, string},
        *,
    };
    use crate::{
        event::{App, Browser, Event, Exception, Level, Origin, Sdk},
        forward::settings::Protocol,
    };

    fn event(level: Level, scope: &'static str, context: Value) -> Event<'static> {
        Event {
            level,
            scope: Cow::Borrowed(scope),
            session_id: Cow::Borrowed("s-1"),
            message: Cow::Borrowed("hello"),
            timestamp: Cow::Borrowed("2025-01-15T10:30:45.123Z"),
            time_unix_nano: 1_736_937_045_123_000_000,
            request_id: None,
            context: context.is_object().then(|| Cow::Owned(RawValue::from_string(context.to_string()).unwrap())),
            exception: None,
            detail: None,
        }
    }

    fn none() -> Origin<'static> {
        Origin::default()
    }

    /// Everything a batch can say about itself, and what the gateway adds.
    fn shop() -> Origin<'static> {
        Origin {
            app: App {
                name: Some("shop".into()),
                version: Some("1.4.2".into()),
                environment: Some("production".into()),
            },
            page_url: Some("https://shop.example/checkout".into()),
            browser: Browser {
                language: Some("de-DE".into()),
                brands: vec!["Chromium 126".into(), "Not/A)Brand 8".into()],
                platform: Some("macOS".into()),
                mobile: Some(false),
            },
            sdk: Sdk { name: Some("@client-telemetry/browser".into()), version: Some("0.2.0".into()) },
            user_agent: Some("Mozilla/5.0 (Macintosh)".into()),
            client_address: Some("203.0.113.9".into()),
            attributes: None,
        }
    }

    fn attribute<'a>(log: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        log.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn an_event_becomes_a_log_record() {
        let context = json!({"n": -3, "big": 18446744073709551615u64, "x": 0.5, "ok": false, "none": null,
            "list": [1, "a"], "nested": {"k": "v"}, "session.id": "spoofed"});
        let mut e = event(Level::Warn, "checkout", context);
        e.request_id = Some(Cow::Borrowed("r-1"));
        let log = log_record(&none(), &e, 42);
        assert_eq!((log.time_unix_nano, log.observed_time_unix_nano), (1_736_937_045_123_000_000, 42));
        assert_eq!((log.severity_number, log.severity_text.as_str()), (13, "WARN"));
        assert_eq!(log.body, Some(string("hello")));
        use any_value::Value as V;
        assert_eq!(attribute(&log, "session.id"), Some(&V::StringValue("s-1".into())));
        assert_eq!(attribute(&log, "request.id"), Some(&V::StringValue("r-1".into())));
        assert_eq!(attribute(&log, "n"), Some(&V::IntValue(-3)));
        assert_eq!(attribute(&log, "big"), Some(&V::DoubleValue(18446744073709551615.0)));
        assert_eq!(attribute(&log, "x"), Some(&V::DoubleValue(0.5)));
        assert_eq!(attribute(&log, "ok"), Some(&V::BoolValue(false)));
        assert_eq!(attribute(&log, "none"), None);
        assert!(log.attributes.iter().any(|kv| kv.key == "none"), "null is an empty AnyValue, not a missing key");
        let Some(V::ArrayValue(list)) = attribute(&log, "list") else { panic!("list") };
        assert_eq!(list.values, [AnyValue { value: Some(V::IntValue(1)) }, string("a")]);
        let Some(V::KvlistValue(nested)) = attribute(&log, "nested") else { panic!("nested") };
        assert_eq!(nested.values, [key_value("k".into(), string("v"))]);
        assert_eq!(log.attributes.iter().filter(|kv| kv.key == "session.id").count(), 1);
        assert_eq!(log.dropped_attributes_count, 1);
        let severities: Vec<_> = [Level::Info, Level::Warn, Level::Error]
            .map(|level| log_record(&none(), &event(level, "s", Value::Null), 0))
            .iter()
            .map(|log| (log.severity_number, log.severity_text.clone()))
            .collect();
        assert_eq!(severities, [(9, "INFO".into()), (13, "WARN".into()), (17, "ERROR".into())]);
    }

    /// What a batch means, built from the generated types: the reference the framed bodies must
    /// equal. One `ResourceLogs` per distinct resource, one `ScopeLogs` per scope within it.
    fn expected(
        base: &[(String, String)],
        batches: &[(&Origin<'_>, &[Event<'_>])],
        observed: u64,
    ) -> ExportLogsServiceRequest {
        let mut resource_logs: Vec<ResourceLogs> = Vec::new();
        for (origin, events) in batches {
            let resource = resource(base, origin);
            let index = match resource_logs.iter().position(|r| r.resource.as_ref() == Some(&resource)) {
                Some(index) => index,
                None => {
                    resource_logs.push(ResourceLogs { resource: Some(resource), ..Default::default() });
                    resource_logs.len() - 1
                }
            };
            let scope_logs = &mut resource_logs[index].scope_logs;
            for event in *events {
                let log = log_record(origin, event, observed);
                match scope_logs.iter_mut().find(|s| s.scope.as_ref().unwrap().name == *event.scope) {
                    Some(same) => same.log_records.push(log),
                    None => scope_logs.push(ScopeLogs {
                        scope: Some(InstrumentationScope { name: event.scope.to_string(), ..Default::default() }),
                        log_records: vec![log],
                        ..Default::default()
                    }),
                }
            }
        }
        ExportLogsServiceRequest { resource_logs }
    }

    fn decode(body: &[u8], protocol: Protocol) -> ExportLogsServiceRequest {
        match protocol {
            Protocol::Json => serde_json::from_slice(body).unwrap(),
            Protocol::Protobuf => ExportLogsServiceRequest::decode(body).unwrap(),
        }
    }

    #[test]
    fn a_batch_has_one_resource_and_one_scope_logs_per_scope_in_both_encodings() {
        let resource = [("service.name".to_string(), "web".to_string())];
        let context = json!({"k": [true, {"n": 1.5}], "s": "\"quoted\" \u{e9}"});
        let events: Vec<_> =
            ["a", "b", "a", "a", "c\"d"].map(|scope| event(Level::Info, scope, context.clone())).into_iter().collect();
        for protocol in [Protocol::Json, Protocol::Protobuf] {
            let encoder = Encoder::new(&resource, protocol, false);
            // Records from two requests, as the exporter batches them.
            let mut batch = encoder.records(&none(), &events[..2], 7);
            batch.extend(encoder.records(&none(), &events[2..], 7));
            let request = decode(&encoder.encode(&batch), protocol);
            assert_eq!(request, expected(&resource, &[(&none(), &events)], 7), "{protocol:?}");
            let scopes: Vec<_> = request.resource_logs[0]
                .scope_logs
                .iter()
                .map(|s| (s.scope.as_ref().unwrap().name.as_str(), s.log_records.len()))
                .collect();
            assert_eq!(scopes, [("a", 3), ("b", 1), ("c\"d", 1)], "{protocol:?}");
        }
    }

    #[test]
    fn records_of_one_request_share_one_buffer_and_their_scope() {
        let encoder = Encoder::new(&[], Protocol::Protobuf, false);
        let events = ["a", "a", "b"].map(|scope| event(Level::Warn, scope, Value::Null));
        let records = encoder.records(&none(), &events, 1);
        assert!(Arc::ptr_eq(&records[0].scope, &records[1].scope));
        assert!(Arc::ptr_eq(&records[0].resource, &records[2].resource), "one resource per request");
        assert_eq!(&*records[2].scope, "b");
        let ends = records[0].log.as_ptr_range().end;
        assert_eq!(ends, records[1].log.as_ptr(), "slices of one buffer, back to back");
        assert_eq!(LogRecord::decode(records[2].log.clone()).unwrap(), log_record(&none(), &events[2], 1));
    }

    #[test]
    fn an_empty_batch_is_a_valid_request() {
        for protocol in [Protocol::Json, Protocol::Protobuf] {
            let encoder = Encoder::new(&[], protocol, false);
            assert_eq!(decode(&encoder.encode(&[]), protocol), expected(&[], &[], 0));
        }
    }

    #[test]
    fn json_follows_the_otlp_json_rules() {
        let encoder = Encoder::new(&[], Protocol::Json, false);
        let context = json!({"count": 7, "none": null});
        let body = encoder.encode(&encoder.records(&shop(), &[event(Level::Error, "s", context)], 5));
        let json: Value = serde_json::from_slice(&body).unwrap();
        let log = &json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(log["severityNumber"], json!(17), "enums are integers");
        assert_eq!(log["timeUnixNano"], json!("1736937045123000000"), "64-bit integers are strings");
        assert_eq!(log["observedTimeUnixNano"], json!("5"));
        assert_eq!(log["body"], json!({"stringValue": "hello"}));
        let count = log["attributes"].as_array().unwrap().iter().find(|kv| kv["key"] == "count").unwrap();
        assert_eq!(count["value"], json!({"intValue": "7"}));
        let none = log["attributes"].as_array().unwrap().iter().find(|kv| kv["key"] == "none").unwrap();
        assert_eq!(none["value"], json!({}), "null is the empty AnyValue");
        fn snake_keys(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => m.iter().for_each(|(k, v)| {
                    if k.contains('_') {
                        out.push(k.clone());
                    }
                    snake_keys(v, out)
                }),
                Value::Array(a) => a.iter().for_each(|v| snake_keys(v, out)),
                _ => {}
            }
        }
        let mut snake = Vec::new();
        snake_keys(&json, &mut snake);
        assert!(snake.is_empty(), "keys must be camelCase: {snake:?}");
    }

    #[test]
    fn gzip_round_trips() {
        let events = [event(Level::Info, "s", json!({"k": [true]}))];
        for protocol in [Protocol::Json, Protocol::Protobuf] {
            let zipped = Encoder::new(&[], protocol, true);
            let body = zipped.encode(&zipped.records(&none(), &events, 1));
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw).unwrap();
            assert_eq!(decode(&raw, protocol), expected(&[], &[(&none(), &events)], 1));
        }
    }

    #[test]
    fn one_resource_logs_per_distinct_resource_then_one_scope_logs_per_scope_in_both_encodings() {
        let base =
            [("service.name".to_string(), "gateway-default".to_string()), ("team".to_string(), "web".to_string())];
        let mut blog = shop();
        blog.app.name = Some("blog".into());
        let events: Vec<_> = ["a", "b", "a"].map(|scope| event(Level::Error, scope, json!({"k": 1}))).into();
        for protocol in [Protocol::Json, Protocol::Protobuf] {
            let encoder = Encoder::new(&base, protocol, false);
            // Three requests from two apps (the first and last share a resource), and an old client.
            let mut batch = encoder.records(&shop(), &events[..2], 3);
            batch.extend(encoder.records(&blog, &events[..1], 3));
            batch.extend(encoder.records(&shop(), &events[2..], 3));
            batch.extend(encoder.records(&none(), &events[1..2], 3));
            let body = encoder.encode(&batch);
            let request = decode(&body, protocol);
            let wanted =
                [(&shop(), &events[..2]), (&blog, &events[..1]), (&shop(), &events[2..]), (&none(), &events[1..2])];
            assert_eq!(request, expected(&base, &wanted, 3), "{protocol:?}");
            let services: Vec<_> = request
                .resource_logs
                .iter()
                .map(|r| {
                    let service = r.resource.as_ref().unwrap().attributes.iter().find(|kv| kv.key == "service.name");
                    let scopes: Vec<_> = r
                        .scope_logs
                        .iter()
                        .map(|s| (s.scope.as_ref().unwrap().name.clone(), s.log_records.len()))
                        .collect();
                    (service.unwrap().value.clone().unwrap(), scopes)
                })
                .collect();
            assert_eq!(
                services,
                [
                    (string("shop"), vec![("a".to_string(), 2), ("b".to_string(), 1)]),
                    (string("blog"), vec![("a".to_string(), 1)]),
                    (string("gateway-default"), vec![("b".to_string(), 1)]),
                ],
                "{protocol:?}"
            );
            // Strict: the protobuf body is byte for byte the generated types' encoding.
            if protocol == Protocol::Protobuf {
                assert!(body.to_vec() == request.encode_to_vec(), "framed bytes differ from prost's");
            }
        }
    }

    fn keys(attributes: &[KeyValue]) -> Vec<&str> {
        attributes.iter().map(|kv| kv.key.as_str()).collect()
    }

    /// Every attribute name the gateway writes, pinned: renaming one is a breaking change downstream.
    #[test]
    fn the_semantic_convention_names_are_pinned() {
        let base = [("service.name".to_string(), "client-telemetry".to_string())];
        let resource = resource(&base, &shop());
        assert_eq!(
            keys(&resource.attributes),
            [
                "service.name",
                "service.version",
                "deployment.environment.name",
                "browser.language",
                "browser.platform",
                "browser.brands",
                "browser.mobile",
                "telemetry.sdk.name",
                "telemetry.sdk.version",
                "telemetry.sdk.language",
                "telemetry.distro.name",
                "telemetry.distro.version",
            ]
        );
        let attribute = |key: &str| resource.attributes.iter().find(|kv| kv.key == key).unwrap().value.clone().unwrap();
        assert_eq!(attribute("service.name"), string("shop"));
        assert_eq!(attribute("telemetry.sdk.language"), string("webjs"));
        assert_eq!(attribute("telemetry.distro.name"), string(env!("CARGO_PKG_NAME")));
        let brands = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![string("Chromium 126"), string("Not/A)Brand 8")],
            })),
        };
        assert_eq!(attribute("browser.brands"), brands);

        let mut e = event(
            Level::Error,
            "window",
            json!({"exception.count": 3, "url.full": "spoofed", "exception.type": "spoofed"}),
        );
        e.request_id = Some(Cow::Borrowed("r-1"));
        e.exception = Some(Exception {
            kind: Some("TypeError".into()),
            message: Some("x is undefined".into()),
            stacktrace: Some("TypeError: x is undefined\n    at placeOrder (https://shop.example/app.js:1:2)".into()),
        });
        let log = log_record(&shop(), &e, 0);
        assert_eq!(
            keys(&log.attributes),
            [
                "session.id",
                "request.id",
                "exception.type",
                "exception.message",
                "exception.stacktrace",
                "url.full",
                "user_agent.original",
                "client.address",
                "exception.count",
            ]
        );
        assert_eq!(log.dropped_attributes_count, 2, "context keys never overwrite what the gateway set");
        assert_eq!(attribute_of(&log, "exception.type"), string("TypeError"));
        assert_eq!(attribute_of(&log, "url.full"), string("https://shop.example/checkout"));
    }

    fn attribute_of(log: &LogRecord, key: &str) -> AnyValue {
        log.attributes.iter().find(|kv| kv.key == key).unwrap().value.clone().unwrap()
    }

    /// An old client's batch: the seed's resource (telemetry.sdk.* naming the gateway), plus the
    /// gateway as the distribution; records carry only what the request adds.
    #[test]
    fn an_old_clients_batch_keeps_the_seed_resource() {
        let base = [("service.name".to_string(), "demo-web-client".to_string())];
        let resource = resource(&base, &none());
        assert_eq!(
            keys(&resource.attributes),
            [
                "service.name",
                "telemetry.sdk.name",
                "telemetry.sdk.version",
                "telemetry.distro.name",
                "telemetry.distro.version"
            ]
        );
        assert_eq!(resource.attributes[1].value, Some(string("client-telemetry")));
    }

    #[test]
    fn partial_success_is_read_in_both_encodings_and_both_integer_forms() {
        let json = |s: &str| rejected_log_records(s.as_bytes(), Some("application/json"), Protocol::Json);
        assert_eq!(json(r#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"x"}}"#), 3);
        assert_eq!(json(r#"{"partialSuccess":{"rejectedLogRecords":4}}"#), 4);
        assert_eq!(json(r#"{}"#), 0);
        assert_eq!(json(""), 0);
        assert_eq!(json("not json"), 0);
        let response = ExportLogsServiceResponse {
            partial_success: Some(opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "bad".into(),
            }),
        };
        let body = response.encode_to_vec();
        assert_eq!(rejected_log_records(&body, Some("application/x-protobuf"), Protocol::Json), 2);
        assert_eq!(rejected_log_records(&body, None, Protocol::Protobuf), 2);
    }
}
