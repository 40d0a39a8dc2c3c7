//! The OTLP logs data model, in three jobs: `mapping` (an accepted event as a `LogRecord`),
//! `framing` (records into one `ExportLogsServiceRequest` body, OTLP/JSON or protobuf, optionally
//! gzipped) and `answer` (what a collector's answer says was refused).
//!
//! The generated `opentelemetry-proto` types do the encoding. Their JSON follows OTLP/JSON
//! (camelCase keys, integer enums, 64-bit integers as decimal strings, hex ids); it also writes
//! default-valued fields (`"flags":0`, `"traceId":""`, …), which proto3 JSON allows and collectors accept.

mod answer;
mod framing;
mod mapping;

use std::sync::Arc;

use bytes::Bytes;

pub use answer::rejected_log_records;
pub use framing::Encoder;
pub use mapping::log_record;

/// One accepted event, already in the export's encoding: encoded on the request's worker, so the
/// exporter only frames records into a body, and nothing borrowed from the request outlives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
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
        common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
        logs::v1::LogRecord,
        resource::v1::Resource,
    };
    use prost::Message;
    use serde_json::{Value, json, value::RawValue};

    use super::{
        mapping::{key_value, string},
        *,
    };
    use crate::{
        event::{Event, Level},
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
        let log = log_record(&e, 42);
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
            .map(|level| log_record(&event(level, "s", Value::Null), 0))
            .iter()
            .map(|log| (log.severity_number, log.severity_text.clone()))
            .collect();
        assert_eq!(severities, [(9, "INFO".into()), (13, "WARN".into()), (17, "ERROR".into())]);
    }

    /// What a batch means, built from the generated types: the reference the framed bodies must equal.
    fn expected(resource: &[(String, String)], events: &[Event<'_>], observed: u64) -> ExportLogsServiceRequest {
        let mut scope_logs: Vec<ScopeLogs> = Vec::new();
        for event in events {
            let log = log_record(event, observed);
            match scope_logs.iter_mut().find(|s| s.scope.as_ref().unwrap().name == *event.scope) {
                Some(same) => same.log_records.push(log),
                None => scope_logs.push(ScopeLogs {
                    scope: Some(InstrumentationScope { name: event.scope.to_string(), ..Default::default() }),
                    log_records: vec![log],
                    ..Default::default()
                }),
            }
        }
        let mut attributes: Vec<KeyValue> = resource.iter().map(|(k, v)| key_value(k.clone(), string(v))).collect();
        attributes.push(key_value("telemetry.sdk.name".into(), string(env!("CARGO_PKG_NAME"))));
        attributes.push(key_value("telemetry.sdk.version".into(), string(env!("CARGO_PKG_VERSION"))));
        let resource = Resource { attributes, ..Default::default() };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs { resource: Some(resource), scope_logs, ..Default::default() }],
        }
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
            let mut batch = encoder.records(&events[..2], 7);
            batch.extend(encoder.records(&events[2..], 7));
            let request = decode(&encoder.encode(&batch), protocol);
            assert_eq!(request, expected(&resource, &events, 7), "{protocol:?}");
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
        let records = encoder.records(&events, 1);
        assert!(Arc::ptr_eq(&records[0].scope, &records[1].scope));
        assert_eq!(&*records[2].scope, "b");
        let ends = records[0].log.as_ptr_range().end;
        assert_eq!(ends, records[1].log.as_ptr(), "slices of one buffer, back to back");
        assert_eq!(LogRecord::decode(records[2].log.clone()).unwrap(), log_record(&events[2], 1));
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
        let body = encoder.encode(&encoder.records(&[event(Level::Error, "s", context)], 5));
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
            let body = zipped.encode(&zipped.records(&events, 1));
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw).unwrap();
            assert_eq!(decode(&raw, protocol), expected(&[], &events, 1));
        }
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
