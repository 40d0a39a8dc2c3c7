//! The OTLP logs data model: accepted events as `LogRecord`s, batches as one
//! `ExportLogsServiceRequest`, encoded as OTLP/JSON or protobuf, optionally gzipped.
//!
//! The generated `opentelemetry-proto` types do the encoding. Their JSON follows OTLP/JSON
//! (camelCase keys, integer enums, 64-bit integers as decimal strings, hex ids); it also writes
//! default-valued fields (`"flags":0`, `"traceId":""`, …), which proto3 JSON allows and collectors accept.

use std::{collections::HashMap, fmt, io::Write, sync::Arc};

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceResponse,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, SeverityNumber},
    resource::v1::Resource,
};
use prost::{Message, encoding};
use serde::{
    Deserialize,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};

use super::settings::Protocol;
use crate::event::{Event, Level};

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

/// Attribute keys the gateway sets itself; a context key with the same name is dropped (and
/// counted in `droppedAttributesCount`), since OTLP attribute keys must be unique.
const SESSION_ID: &str = "session.id";
const REQUEST_ID: &str = "request.id";

pub fn log_record(event: &Event<'_>, observed_time_unix_nano: u64) -> LogRecord {
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
    LogRecord {
        time_unix_nano: event.time_unix_nano,
        observed_time_unix_nano,
        severity_number: severity as i32,
        severity_text: severity_text.into(),
        body: Some(string(&event.message)),
        attributes,
        dropped_attributes_count,
        ..Default::default()
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

/// Encodes records on the request path and frames batches of them into request bodies: the same
/// resource on each, one `scopeLogs` per event scope.
///
/// The generated types encode each record; only the three envelopes around the records
/// (`ExportLogsServiceRequest` → `ResourceLogs` → `ScopeLogs`) are framed here, from encoded parts, so
/// an export copies bytes instead of building and re-measuring a tree of owned messages.
pub struct Encoder {
    /// The `Resource` message, encoded once.
    resource: Vec<u8>,
    protocol: Protocol,
    gzip: bool,
}

/// Field numbers of the envelopes (opentelemetry/proto/collector/logs/v1 and logs/v1).
const REQUEST_RESOURCE_LOGS: u32 = 1;
const RESOURCE_LOGS_RESOURCE: u32 = 1;
const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
const SCOPE_LOGS_SCOPE: u32 = 1;
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;

impl Encoder {
    pub fn new(resource_attributes: &[(String, String)], protocol: Protocol, gzip: bool) -> Self {
        let mut attributes: Vec<KeyValue> =
            resource_attributes.iter().map(|(k, v)| key_value(k.clone(), string(v))).collect();
        attributes.push(key_value("telemetry.sdk.name".into(), string(env!("CARGO_PKG_NAME"))));
        attributes.push(key_value("telemetry.sdk.version".into(), string(env!("CARGO_PKG_VERSION"))));
        let resource = Resource { attributes, ..Default::default() };
        Self { resource: encode_message(&resource, protocol), protocol, gzip }
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

    /// A request's events as records, encoded into one buffer that their `log` slices share.
    pub fn records(&self, events: &[Event<'_>], observed_time_unix_nano: u64) -> Vec<Record> {
        let mut buffer = Vec::with_capacity(events.len() * 512);
        let mut ends = Vec::with_capacity(events.len());
        for event in events {
            let log = log_record(event, observed_time_unix_nano);
            match self.protocol {
                Protocol::Json => serde_json::to_writer(&mut buffer, &log).expect("OTLP messages serialise to JSON"),
                Protocol::Protobuf => log.encode(&mut buffer).expect("a Vec grows as needed"),
            }
            ends.push(buffer.len());
        }
        let buffer = Bytes::from(buffer);
        let mut scope: Option<Arc<str>> = None;
        let mut start = 0;
        events
            .iter()
            .zip(ends)
            .map(|(event, end)| {
                let scope = match &scope {
                    Some(same) if **same == *event.scope => same.clone(),
                    _ => scope.insert(Arc::from(&*event.scope)).clone(),
                };
                let log = buffer.slice(start..end);
                start = end;
                Record { scope, log }
            })
            .collect()
    }

    /// The body of one export. Encoded once: retries send the same bytes.
    pub fn encode(&self, batch: &[Record]) -> Bytes {
        let mut scopes: Vec<(&str, Vec<&[u8]>)> = Vec::new();
        let mut by_scope: HashMap<&str, usize> = HashMap::new();
        for record in batch {
            let index = *by_scope.entry(&record.scope).or_insert_with(|| {
                scopes.push((&record.scope, Vec::new()));
                scopes.len() - 1
            });
            scopes[index].1.push(&record.log);
        }
        let scopes: Vec<(Vec<u8>, Vec<&[u8]>)> = scopes
            .into_iter()
            .map(|(name, logs)| {
                let scope = InstrumentationScope { name: name.to_string(), ..Default::default() };
                (encode_message(&scope, self.protocol), logs)
            })
            .collect();
        let body = match self.protocol {
            Protocol::Json => self.json_body(&scopes),
            Protocol::Protobuf => self.protobuf_body(&scopes),
        };
        if !self.gzip {
            return body.into();
        }
        // Fast compression: most of the gain for a fraction of the CPU, on the ingest machine.
        let mut gzip = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        gzip.write_all(&body).expect("writing to memory cannot fail");
        gzip.finish().expect("writing to memory cannot fail").into()
    }

    fn protobuf_body(&self, scopes: &[(Vec<u8>, Vec<&[u8]>)]) -> Vec<u8> {
        let scope_logs_len = |(scope, logs): &(Vec<u8>, Vec<&[u8]>)| {
            field_len(SCOPE_LOGS_SCOPE, scope.len())
                + logs.iter().map(|log| field_len(SCOPE_LOGS_LOG_RECORDS, log.len())).sum::<usize>()
        };
        let resource_logs_len = field_len(RESOURCE_LOGS_RESOURCE, self.resource.len())
            + scopes.iter().map(|s| field_len(RESOURCE_LOGS_SCOPE_LOGS, scope_logs_len(s))).sum::<usize>();
        let mut body = Vec::with_capacity(field_len(REQUEST_RESOURCE_LOGS, resource_logs_len));
        field_header(REQUEST_RESOURCE_LOGS, resource_logs_len, &mut body);
        field_header(RESOURCE_LOGS_RESOURCE, self.resource.len(), &mut body);
        body.extend_from_slice(&self.resource);
        for scope_logs in scopes {
            field_header(RESOURCE_LOGS_SCOPE_LOGS, scope_logs_len(scope_logs), &mut body);
            let (scope, logs) = scope_logs;
            field_header(SCOPE_LOGS_SCOPE, scope.len(), &mut body);
            body.extend_from_slice(scope);
            for log in logs {
                field_header(SCOPE_LOGS_LOG_RECORDS, log.len(), &mut body);
                body.extend_from_slice(log);
            }
        }
        body
    }

    fn json_body(&self, scopes: &[(Vec<u8>, Vec<&[u8]>)]) -> Vec<u8> {
        let logs_len: usize = scopes.iter().flat_map(|(_, logs)| logs).map(|log| log.len() + 1).sum();
        let mut body = Vec::with_capacity(self.resource.len() + logs_len + 64 * (scopes.len() + 1));
        body.extend_from_slice(br#"{"resourceLogs":[{"resource":"#);
        body.extend_from_slice(&self.resource);
        body.extend_from_slice(br#","scopeLogs":["#);
        for (i, (scope, logs)) in scopes.iter().enumerate() {
            body.extend_from_slice(if i == 0 { br#"{"scope":"# } else { br#",{"scope":"# });
            body.extend_from_slice(scope);
            body.extend_from_slice(br#","logRecords":["#);
            for (j, log) in logs.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(log);
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}]}");
        body
    }
}

fn encode_message<M: Message + serde::Serialize>(message: &M, protocol: Protocol) -> Vec<u8> {
    match protocol {
        Protocol::Json => serde_json::to_vec(message).expect("OTLP messages serialise to JSON"),
        Protocol::Protobuf => message.encode_to_vec(),
    }
}

/// Length of a length-delimited field: key, length, then the bytes.
fn field_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

fn field_header(tag: u32, len: usize, body: &mut Vec<u8>) {
    encoding::encode_key(tag, encoding::WireType::LengthDelimited, body);
    encoding::encode_varint(len as u64, body);
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

    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        logs::v1::{ResourceLogs, ScopeLogs},
    };
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
