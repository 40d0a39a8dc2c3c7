//! An accepted event as an OTLP `LogRecord`: severity, body, times and attributes; the context's
//! keys become attributes, parsed straight from its JSON.

use std::fmt;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, SeverityNumber},
};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::event::{Event, Level};

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

pub(super) fn string(s: &str) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(s.to_string())) }
}

pub(super) fn key_value(key: String, value: AnyValue) -> KeyValue {
    KeyValue { key, value: Some(value), ..Default::default() }
}
