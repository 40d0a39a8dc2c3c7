//! An accepted event's `LogRecord` written as protobuf straight from the event, the bytes
//! `mapping::log_record(…).encode(…)` would give, without building the owned message first.
//!
//! Why: the owned `LogRecord` costs an allocation per attribute key and value (the context's
//! included), and prost measures nested messages again while encoding them; the request path pays
//! that for every event it forwards. Here strings are copied once, into the output, and a nested
//! message's length is written in front of it once its content is (`close`). `mapping` stays the
//! reference: the tests compare the bytes, and OTLP/JSON is still written from it.

use std::fmt;

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{mapping::severity_name, semconv::*};
use crate::event::{Event, Level, ObjectKey, Origin};

/// Field numbers (opentelemetry/proto/logs/v1/logs.proto and common/v1/common.proto).
mod field {
    pub const TIME_UNIX_NANO: u32 = 1;
    pub const SEVERITY_NUMBER: u32 = 2;
    pub const SEVERITY_TEXT: u32 = 3;
    pub const BODY: u32 = 5;
    pub const ATTRIBUTES: u32 = 6;
    pub const DROPPED_ATTRIBUTES_COUNT: u32 = 7;
    pub const FLAGS: u32 = 8;
    pub const TRACE_ID: u32 = 9;
    pub const SPAN_ID: u32 = 10;
    pub const OBSERVED_TIME_UNIX_NANO: u32 = 11;
    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const STRING_VALUE: u32 = 1;
    pub const BOOL_VALUE: u32 = 2;
    pub const INT_VALUE: u32 = 3;
    pub const DOUBLE_VALUE: u32 = 4;
    pub const ARRAY_VALUE: u32 = 5;
    pub const KVLIST_VALUE: u32 = 6;
    /// `ArrayValue.values` and `KeyValueList.values`.
    pub const VALUES: u32 = 1;
}

/// The attributes every record of a batch shares (page URL, User-Agent, client address), encoded
/// once per batch and copied into each record.
pub struct SharedAttributes(Vec<u8>);

impl SharedAttributes {
    pub fn new(origin: &Origin<'_>) -> Self {
        let mut out = Vec::new();
        let shared = [
            (URL_FULL, origin.page_url.as_deref()),
            (USER_AGENT_ORIGINAL, origin.user_agent.as_deref()),
            (CLIENT_ADDRESS, origin.client_address.as_deref()),
        ];
        for (key, value) in shared {
            if let Some(value) = value {
                string_attribute(&mut out, key, value);
            }
        }
        Self(out)
    }
}

/// Appends the event's `LogRecord` message (without a length prefix) to `out`.
pub fn encode_log_record(
    shared: &SharedAttributes,
    event: &Event<'_>,
    observed_time_unix_nano: u64,
    out: &mut Vec<u8>,
) {
    let detail = event.detail.as_deref();
    let (severity, severity_text) = match (detail.and_then(|d| d.severity_number), event.level) {
        (Some(number), _) => (u64::from(number), severity_name(number)),
        (None, Level::Info) => (9, "INFO"),
        (None, Level::Warn) => (13, "WARN"),
        (None, Level::Error) => (17, "ERROR"),
    };
    fixed64(out, field::TIME_UNIX_NANO, event.time_unix_nano);
    encode_key(field::SEVERITY_NUMBER, WireType::Varint, out);
    encode_varint(severity, out);
    string(out, field::SEVERITY_TEXT, severity_text);
    // body: an AnyValue holding the message
    encode_key(field::BODY, WireType::LengthDelimited, out);
    encode_varint(string_len(field::STRING_VALUE, &event.message) as u64, out);
    string(out, field::STRING_VALUE, &event.message);

    if !event.session_id.is_empty() {
        string_attribute(out, SESSION_ID, &event.session_id);
    }
    if let Some(request_id) = &event.request_id {
        string_attribute(out, REQUEST_ID, request_id);
    }
    if let Some(exception) = &event.exception {
        let fields = [
            (EXCEPTION_TYPE, &exception.kind),
            (EXCEPTION_MESSAGE, &exception.message),
            (EXCEPTION_STACKTRACE, &exception.stacktrace),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                string_attribute(out, key, value);
            }
        }
    }
    out.extend_from_slice(&shared.0);
    let mut dropped = 0u32;
    if let Some(context) = event.context.as_deref() {
        let mut deserializer = serde_json::Deserializer::from_str(context.get());
        ContextAttributes { out: &mut *out, dropped: &mut dropped }
            .deserialize(&mut deserializer)
            .expect("a validated context is a JSON object");
    }
    if dropped > 0 {
        encode_key(field::DROPPED_ATTRIBUTES_COUNT, WireType::Varint, out);
        encode_varint(dropped.into(), out);
    }
    if let Some(detail) = detail {
        if detail.trace_flags != 0 {
            encode_key(field::FLAGS, WireType::ThirtyTwoBit, out);
            out.extend_from_slice(&detail.trace_flags.to_le_bytes());
        }
        for (tag, bytes) in [(field::TRACE_ID, &detail.trace_id), (field::SPAN_ID, &detail.span_id)] {
            if !bytes.is_empty() {
                encode_key(tag, WireType::LengthDelimited, out);
                encode_varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
        }
    }
    if observed_time_unix_nano != 0 {
        fixed64(out, field::OBSERVED_TIME_UNIX_NANO, observed_time_unix_nano);
    }
}

fn fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
    // proto3: a zero is not written
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn string(out: &mut Vec<u8>, tag: u32, value: &str) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

/// The encoded length of a string field, key included.
fn string_len(tag: u32, value: &str) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
}

/// A `KeyValue` attribute with a string value: every length known up front.
fn string_attribute(out: &mut Vec<u8>, key: &str, value: &str) {
    let any_value = string_len(field::STRING_VALUE, value);
    let key_value = string_len(field::KEY_VALUE_KEY, key)
        + prost::encoding::key_len(field::KEY_VALUE_VALUE)
        + encoded_len_varint(any_value as u64)
        + any_value;
    encode_key(field::ATTRIBUTES, WireType::LengthDelimited, out);
    encode_varint(key_value as u64, out);
    string(out, field::KEY_VALUE_KEY, key);
    encode_key(field::KEY_VALUE_VALUE, WireType::LengthDelimited, out);
    encode_varint(any_value as u64, out);
    string(out, field::STRING_VALUE, value);
}

/// Opens a length-delimited field whose length is not known yet; `close` writes it. One byte is
/// set aside for the length: most contents are under 128 bytes, and then nothing moves.
fn open(out: &mut Vec<u8>, tag: u32) -> usize {
    encode_key(tag, WireType::LengthDelimited, out);
    out.push(0);
    out.len()
}

/// Writes the length of the content written since `open` in front of it, moving the content up
/// when the length takes more than the byte set aside.
fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let extra = encoded_len_varint(len as u64) - 1;
    if extra > 0 {
        out.resize(out.len() + extra, 0);
        out.copy_within(start..start + len, start + extra);
    }
    encode_varint(len as u64, &mut &mut out[start - 1..start + extra]);
}

/// A `KeyValue` whose value is read from the JSON text.
fn key_value<'de, A: MapAccess<'de>>(out: &mut Vec<u8>, tag: u32, key: &str, map: &mut A) -> Result<(), A::Error> {
    let entry = open(out, tag);
    string(out, field::KEY_VALUE_KEY, key);
    let value = open(out, field::KEY_VALUE_VALUE);
    map.next_value_seed(AnyValueSeed(out))?;
    close(out, value);
    close(out, entry);
    Ok(())
}

/// The context's entries as attributes, read straight from its text; the names the record sets
/// itself are dropped and counted, as `mapping` does.
struct ContextAttributes<'o> {
    out: &'o mut Vec<u8>,
    dropped: &'o mut u32,
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
        while let Some(key) = map.next_key_seed(ObjectKey)? {
            if RECORD_RESERVED.contains(&key.as_ref()) {
                *self.dropped += 1;
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            key_value(self.out, field::ATTRIBUTES, &key, &mut map)?;
        }
        Ok(())
    }
}

/// A JSON value written as the content of an `AnyValue`; `null` leaves it empty, as OTLP defines.
struct AnyValueSeed<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for AnyValueSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        encode_key(field::BOOL_VALUE, WireType::Varint, self.0);
        encode_varint(v.into(), self.0);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        encode_key(field::INT_VALUE, WireType::Varint, self.0);
        encode_varint(v as u64, self.0);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        // Integers beyond i64 are kept approximately rather than refused (as in `mapping`).
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => self.visit_f64(v as f64),
        }
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        encode_key(field::DOUBLE_VALUE, WireType::SixtyFourBit, self.0);
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        string(self.0, field::STRING_VALUE, v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        let array = open(out, field::ARRAY_VALUE);
        loop {
            let element = open(out, field::VALUES);
            if seq.next_element_seed(AnyValueSeed(&mut *out))?.is_none() {
                // the key and length byte of an element that is not there
                out.truncate(element - 1 - prost::encoding::key_len(field::VALUES));
                break;
            }
            close(out, element);
        }
        close(out, array);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.0;
        let list = open(out, field::KVLIST_VALUE);
        while let Some(key) = map.next_key_seed(ObjectKey)? {
            key_value(out, field::VALUES, &key, &mut map)?;
        }
        close(out, list);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use prost::Message;
    use serde_json::{Value, json, value::RawValue};

    use super::*;
    use crate::{
        event::{Exception, Origin},
        forward::otlp::mapping::log_record,
    };

    fn event(level: Level, context: Value) -> Event<'static> {
        Event {
            level,
            scope: Cow::Borrowed("checkout"),
            session_id: Cow::Borrowed("s-1"),
            message: Cow::Borrowed("clicked \"pay\" é"),
            timestamp: Cow::Borrowed("2025-01-15T10:30:45.123Z"),
            time_unix_nano: 1_736_937_045_123_000_000,
            request_id: None,
            context: (!context.is_null()).then(|| Cow::Owned(RawValue::from_string(context.to_string()).unwrap())),
            exception: None,
            detail: None,
        }
    }

    fn direct(origin: &Origin<'_>, event: &Event<'_>, observed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_log_record(&SharedAttributes::new(origin), event, observed, &mut out);
        out
    }

    #[test]
    fn the_bytes_are_those_of_the_mapped_log_record() {
        let origin = Origin {
            page_url: Some("https://shop.example/checkout".into()),
            user_agent: Some("Mozilla/5.0 (Macintosh)".into()),
            client_address: Some("203.0.113.9".into()),
            ..Origin::default()
        };
        let long = "x".repeat(300); // lengths of two varint bytes
        let longer = "y".repeat(20_000); // and of three
        let contexts = [
            Value::Null,
            json!({}),
            json!({"action": "click", "n": -3, "zero": 0, "big": 18446744073709551615u64, "x": 0.5, "nil": 0.0,
                   "ok": false, "yes": true, "none": null, "list": [1, "a", null, [], {}], "empty": [],
                   "nested": {"k": "v", "deeper": {"l": [true, {"m": null}]}}, "long": long,
                   "deep": {"list": [longer, {"m": long}]}}),
            json!({"session.id": "spoofed", "url.full": 1, "k\"ey\n": "v\\al\u{2028}", "ü": "ö"}),
        ];
        for context in contexts {
            for level in [Level::Info, Level::Warn, Level::Error] {
                let mut e = event(level, context.clone());
                for observed in [0, 42] {
                    for with_origin in [false, true] {
                        let o = if with_origin { origin.clone() } else { Origin::default() };
                        let expected = log_record(&o, &e, observed).encode_to_vec();
                        assert_eq!(direct(&o, &e, observed), expected, "{context} {level:?} {observed} {with_origin}");
                    }
                }
                e.request_id = Some("r-1".into());
                e.exception = Some(Exception {
                    kind: Some("TypeError".into()),
                    message: None,
                    stacktrace: Some(long.clone().into()),
                });
                e.time_unix_nano = 0;
                assert_eq!(direct(&origin, &e, 7), log_record(&origin, &e, 7).encode_to_vec(), "{context}");
                // What an OTLP sender brings: its severity number, trace context, and no session.
                e.session_id = Cow::Borrowed("");
                for (severity_number, trace_flags) in [(None, 0), (Some(21), 1)] {
                    e.detail = Some(Box::new(crate::event::Detail {
                        severity_number,
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        trace_flags,
                    }));
                    let expected = log_record(&origin, &e, 7).encode_to_vec();
                    assert_eq!(direct(&origin, &e, 7), expected, "{context} {severity_number:?}");
                }
            }
        }
    }
}
