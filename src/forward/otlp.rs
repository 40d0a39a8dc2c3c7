//! The OTLP logs data model: accepted events as `LogRecord`s, batches as one
//! `ExportLogsServiceRequest`, encoded as OTLP/JSON or protobuf, optionally gzipped.
//!
//! The generated `opentelemetry-proto` types do the encoding. Their JSON follows OTLP/JSON
//! (camelCase keys, integer enums, 64-bit integers as decimal strings, hex ids); it also writes
//! default-valued fields (`"flags":0`, `"traceId":""`, …), which proto3 JSON allows and collectors accept.

use std::{collections::HashMap, fmt, io::Write};

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use prost::Message;
use serde::{
    Deserialize,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};

use super::settings::Protocol;
use crate::ingest::event::{Event, Level};

/// One accepted event, owned: nothing borrowed from the request outlives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub scope: String,
    pub log: LogRecord,
}

/// Attribute keys the gateway sets itself; a context key with the same name is dropped (and
/// counted in `droppedAttributesCount`), since OTLP attribute keys must be unique.
const SESSION_ID: &str = "session.id";
const REQUEST_ID: &str = "request.id";

pub fn record(event: &Event<'_>, observed_time_unix_nano: u64) -> Record {
    let (severity, severity_text) = match event.level {
        Level::Info => (SeverityNumber::Info, "INFO"),
        Level::Warn => (SeverityNumber::Warn, "WARN"),
        Level::Error => (SeverityNumber::Error, "ERROR"),
    };
    let mut attributes = Vec::with_capacity(8);
    attributes.push(key_value(SESSION_ID.into(), string(&event.session_id)));
    if let Some(request_id) = &event.request_id {
        attributes.push(key_value(REQUEST_ID.into(), string(request_id)));
    }
    let mut dropped_attributes_count = 0;
    if let Some(context) = event.context.as_deref() {
        let attributes = ContextAttributes { attributes: &mut attributes, dropped: &mut dropped_attributes_count };
        let mut deserializer = serde_json::Deserializer::from_str(context.get());
        attributes.deserialize(&mut deserializer).expect("a validated context is a JSON object");
    }
    Record {
        scope: event.scope.to_string(),
        log: LogRecord {
            time_unix_nano: event.time_unix_nano,
            observed_time_unix_nano,
            severity_number: severity as i32,
            severity_text: severity_text.into(),
            body: Some(string(&event.message)),
            attributes,
            dropped_attributes_count,
            ..Default::default()
        },
    }
}

/// The context's entries appended to the attributes, read straight from its text.
struct ContextAttributes<'v> {
    attributes: &'v mut Vec<KeyValue>,
    dropped: &'v mut u32,
}

impl<'de> DeserializeSeed<'de> for ContextAttributes<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ContextAttributes<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == SESSION_ID || key == REQUEST_ID {
                *self.dropped += 1;
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            let value = map.next_value_seed(AnyValueSeed)?;
            self.attributes.push(key_value(key, value));
        }
        Ok(())
    }
}

/// A JSON value read straight into its typed OTLP form; `null` is the empty `AnyValue`, as OTLP
/// defines it.
struct AnyValueSeed;

impl<'de> DeserializeSeed<'de> for AnyValueSeed {
    type Value = AnyValue;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<AnyValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValueSeed {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<AnyValue, E> {
        Ok(AnyValue { value: Some(any_value::Value::BoolValue(v)) })
    }

    fn visit_i64<E>(self, v: i64) -> Result<AnyValue, E> {
        Ok(AnyValue { value: Some(any_value::Value::IntValue(v)) })
    }

    fn visit_u64<E>(self, v: u64) -> Result<AnyValue, E> {
        // Integers beyond i64 are kept approximately rather than refused.
        Ok(AnyValue {
            value: Some(i64::try_from(v).map_or(any_value::Value::DoubleValue(v as f64), any_value::Value::IntValue)),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<AnyValue, E> {
        Ok(AnyValue { value: Some(any_value::Value::DoubleValue(v)) })
    }

    fn visit_str<E>(self, v: &str) -> Result<AnyValue, E> {
        Ok(string(v))
    }

    fn visit_string<E>(self, v: String) -> Result<AnyValue, E> {
        Ok(AnyValue { value: Some(any_value::Value::StringValue(v)) })
    }

    fn visit_unit<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }

    fn visit_none<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(AnyValueSeed)? {
            values.push(value);
        }
        Ok(AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values })) })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            values.push(key_value(key, map.next_value_seed(AnyValueSeed)?));
        }
        Ok(AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values })) })
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(s.to_string())) }
}

fn key_value(key: String, value: AnyValue) -> KeyValue {
    KeyValue { key, value: Some(value), ..Default::default() }
}

/// Turns batches into request bodies: the same resource on each, one `scopeLogs` per event scope.
pub struct Encoder {
    resource: Resource,
    protocol: Protocol,
    gzip: bool,
}

impl Encoder {
    pub fn new(resource_attributes: &[(String, String)], protocol: Protocol, gzip: bool) -> Self {
        let mut attributes: Vec<KeyValue> =
            resource_attributes.iter().map(|(k, v)| key_value(k.clone(), string(v))).collect();
        attributes.push(key_value("telemetry.sdk.name".into(), string(env!("CARGO_PKG_NAME"))));
        attributes.push(key_value("telemetry.sdk.version".into(), string(env!("CARGO_PKG_VERSION"))));
        Self { resource: Resource { attributes, ..Default::default() }, protocol, gzip }
    }

    pub fn content_type(&self) -> &'static str {
        match self.protocol {
            Protocol::Json => "application/json",
            Protocol::Protobuf => "application/x-protobuf",
        }
    }

    pub fn gzip(&self) -> bool {
        self.gzip
    }

    pub fn request(&self, batch: Vec<Record>) -> ExportLogsServiceRequest {
        let mut scope_logs: Vec<ScopeLogs> = Vec::new();
        let mut by_scope: HashMap<String, usize> = HashMap::new();
        for Record { scope, log } in batch {
            let index = *by_scope.entry(scope).or_insert_with_key(|name| {
                let scope = InstrumentationScope { name: name.clone(), ..Default::default() };
                scope_logs.push(ScopeLogs { scope: Some(scope), ..Default::default() });
                scope_logs.len() - 1
            });
            scope_logs[index].log_records.push(log);
        }
        let resource_logs = ResourceLogs { resource: Some(self.resource.clone()), scope_logs, ..Default::default() };
        ExportLogsServiceRequest { resource_logs: vec![resource_logs] }
    }

    /// The body of one export. Encoded once: retries send the same bytes.
    pub fn encode(&self, batch: Vec<Record>) -> Bytes {
        let request = self.request(batch);
        let body = match self.protocol {
            Protocol::Json => serde_json::to_vec(&request).expect("OTLP messages always serialise to JSON"),
            Protocol::Protobuf => request.encode_to_vec(),
        };
        if !self.gzip {
            return body.into();
        }
        // Fast compression: most of the gain for a fraction of the CPU, on the ingest machine.
        let mut gzip = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        gzip.write_all(&body).expect("writing to memory cannot fail");
        gzip.finish().expect("writing to memory cannot fail").into()
    }
}

/// Log records a collector refused in a 200 answer (`partialSuccess.rejectedLogRecords`); an empty
/// or unreadable answer means none. The encoding is the answer's `Content-Type`, else the request's.
pub fn rejected_log_records(body: &[u8], content_type: Option<&str>, protocol: Protocol) -> u64 {
    let protobuf = match content_type {
        Some(t) if t.contains("protobuf") => true,
        Some(t) if t.contains("json") => false,
        _ => protocol == Protocol::Protobuf,
    };
    let rejected = if protobuf {
        ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records)
    } else {
        // Not the generated type: it reads `rejectedLogRecords` only as a number, while collectors
        // write 64-bit integers as strings, as OTLP/JSON says.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Response {
            partial_success: Option<Partial>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Partial {
            #[serde(default)]
            rejected_log_records: Option<Int>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Int {
            Number(i64),
            Text(String),
        }
        let response: Option<Response> = serde_json::from_slice(body).ok();
        match response.and_then(|r| r.partial_success).and_then(|p| p.rejected_log_records) {
            Some(Int::Number(n)) => n,
            Some(Int::Text(s)) => s.parse().unwrap_or(0),
            None => 0,
        }
    };
    u64::try_from(rejected).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::{Value, json, value::RawValue};

    use super::*;

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
        let Record { scope, log } = record(&e, 42);
        assert_eq!(scope, "checkout");
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
            .map(|level| record(&event(level, "s", Value::Null), 0).log)
            .iter()
            .map(|log| (log.severity_number, log.severity_text.clone()))
            .collect();
        assert_eq!(severities, [(9, "INFO".into()), (13, "WARN".into()), (17, "ERROR".into())]);
    }

    #[test]
    fn a_batch_has_one_resource_and_one_scope_logs_per_scope() {
        let encoder = Encoder::new(&[("service.name".into(), "web".into())], Protocol::Json, false);
        let batch = ["a", "b", "a"].map(|scope| record(&event(Level::Info, scope, Value::Null), 0)).to_vec();
        let request = encoder.request(batch);
        let [resource_logs] = request.resource_logs.as_slice() else { panic!("one resource") };
        let keys: Vec<_> =
            resource_logs.resource.as_ref().unwrap().attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["service.name", "telemetry.sdk.name", "telemetry.sdk.version"]);
        let scopes: Vec<_> = resource_logs
            .scope_logs
            .iter()
            .map(|s| (s.scope.as_ref().unwrap().name.as_str(), s.log_records.len()))
            .collect();
        assert_eq!(scopes, [("a", 2), ("b", 1)]);
    }

    #[test]
    fn json_follows_the_otlp_json_rules() {
        let encoder = Encoder::new(&[], Protocol::Json, false);
        let context = json!({"count": 7, "none": null});
        let body = encoder.encode(vec![record(&event(Level::Error, "s", context), 5)]);
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
        let decoded: ExportLogsServiceRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(decoded.resource_logs[0].scope_logs[0].log_records[0].severity_number, 17);
    }

    #[test]
    fn protobuf_and_gzip_round_trip() {
        let batch = vec![record(&event(Level::Info, "s", json!({"k": [true]})), 1)];
        let plain = Encoder::new(&[], Protocol::Protobuf, false);
        let expected = plain.request(batch.clone());
        assert_eq!(ExportLogsServiceRequest::decode(plain.encode(batch.clone())).unwrap(), expected);
        let zipped = Encoder::new(&[], Protocol::Protobuf, true).encode(batch);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut raw).unwrap();
        assert_eq!(ExportLogsServiceRequest::decode(&raw[..]).unwrap(), expected);
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
