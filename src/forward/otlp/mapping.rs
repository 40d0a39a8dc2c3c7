//! An accepted event as an OTLP `LogRecord` (severity, body, times, the semantic-convention
//! attributes, then the context's keys, parsed straight from its JSON), and a batch's `Origin` as
//! the `Resource` its records share.

use std::fmt;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, SeverityNumber},
    resource::v1::Resource,
};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::semconv::*;
use crate::event::{Event, Level, Origin};

/// The resource of a batch: the app as the service (else the gateway's configured service and
/// resource attributes), its browser, and the SDK that sent it. `base` is `service.name` first,
/// then `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource(base: &[(String, String)], origin: &Origin<'_>) -> Resource {
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(base.len() + 12);
    let app = &origin.app;
    for (key, value) in base {
        let value = match (key.as_str(), &app.name) {
            (SERVICE_NAME, Some(name)) => name.as_ref(),
            _ => value.as_str(),
        };
        attributes.push(key_value(key.clone(), string(value)));
    }
    let mut set = |key: &str, value: &Option<std::borrow::Cow<'_, str>>| {
        if let Some(value) = value {
            attributes.retain(|kv| kv.key != key);
            attributes.push(key_value(key.into(), string(value)));
        }
    };
    set(SERVICE_VERSION, &app.version);
    set(DEPLOYMENT_ENVIRONMENT_NAME, &app.environment);
    let browser = &origin.browser;
    set(BROWSER_LANGUAGE, &browser.language);
    set(BROWSER_PLATFORM, &browser.platform);
    if !browser.brands.is_empty() {
        let values = browser.brands.iter().map(|b| string(b)).collect();
        attributes.push(key_value(
            BROWSER_BRANDS.into(),
            AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values })) },
        ));
    }
    if let Some(mobile) = browser.mobile {
        attributes
            .push(key_value(BROWSER_MOBILE.into(), AnyValue { value: Some(any_value::Value::BoolValue(mobile)) }));
    }
    // The SDK that captured the events; an old client does not say, and the seed's names stay.
    let sdk = &origin.sdk;
    let (sdk_name, sdk_version) = match &sdk.name {
        Some(name) => (name.as_ref(), sdk.version.as_deref().unwrap_or_default()),
        None => (env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
    };
    attributes.push(key_value(TELEMETRY_SDK_NAME.into(), string(sdk_name)));
    if !sdk_version.is_empty() {
        attributes.push(key_value(TELEMETRY_SDK_VERSION.into(), string(sdk_version)));
    }
    if sdk.name.is_some() {
        attributes.push(key_value(TELEMETRY_SDK_LANGUAGE.into(), string(WEBJS)));
    }
    attributes.push(key_value(TELEMETRY_DISTRO_NAME.into(), string(env!("CARGO_PKG_NAME"))));
    attributes.push(key_value(TELEMETRY_DISTRO_VERSION.into(), string(env!("CARGO_PKG_VERSION"))));
    // The sender's other resource attributes (OTLP), after the gateway's: never over them.
    let mut dropped_attributes_count = 0;
    if let Some(extra) = origin.attributes.as_ref().map(|a| &*a.0) {
        let set: Vec<String> = attributes.iter().map(|kv| kv.key.clone()).collect();
        let reserved: Vec<&str> = set.iter().map(String::as_str).collect();
        let entries = ObjectAttributes {
            attributes: &mut attributes,
            dropped: &mut dropped_attributes_count,
            reserved: &reserved,
        };
        let mut deserializer = serde_json::Deserializer::from_str(extra.get());
        entries.deserialize(&mut deserializer).expect("validated attributes are a JSON object");
    }
    Resource { attributes, dropped_attributes_count, ..Default::default() }
}

pub fn log_record(origin: &Origin<'_>, event: &Event<'_>, observed_time_unix_nano: u64) -> LogRecord {
    let (severity, severity_text) = match event.level {
        Level::Info => (SeverityNumber::Info, "INFO"),
        Level::Warn => (SeverityNumber::Warn, "WARN"),
        Level::Error => (SeverityNumber::Error, "ERROR"),
    };
    let mut attributes = Vec::with_capacity(8);
    if !event.session_id.is_empty() {
        attributes.push(key_value(SESSION_ID.into(), string(&event.session_id)));
    }
    let mut set = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            attributes.push(key_value(key.into(), string(value)));
        }
    };
    set(REQUEST_ID, event.request_id.as_deref());
    if let Some(exception) = &event.exception {
        set(EXCEPTION_TYPE, exception.kind.as_deref());
        set(EXCEPTION_MESSAGE, exception.message.as_deref());
        set(EXCEPTION_STACKTRACE, exception.stacktrace.as_deref());
    }
    set(URL_FULL, origin.page_url.as_deref());
    set(USER_AGENT_ORIGINAL, origin.user_agent.as_deref());
    set(CLIENT_ADDRESS, origin.client_address.as_deref());
    let mut dropped_attributes_count = 0;
    if let Some(context) = event.context.as_deref() {
        let attributes = ObjectAttributes {
            attributes: &mut attributes,
            dropped: &mut dropped_attributes_count,
            reserved: &RECORD_RESERVED,
        };
        let mut deserializer = serde_json::Deserializer::from_str(context.get());
        attributes.deserialize(&mut deserializer).expect("a validated context is a JSON object");
    }
    let mut record = LogRecord {
        time_unix_nano: event.time_unix_nano,
        observed_time_unix_nano,
        severity_number: severity as i32,
        severity_text: severity_text.into(),
        body: Some(string(&event.message)),
        attributes,
        dropped_attributes_count,
        ..Default::default()
    };
    if let Some(detail) = event.detail.as_deref() {
        if let Some(number) = detail.severity_number {
            record.severity_number = i32::from(number);
            record.severity_text = severity_name(number).into();
        }
        record.trace_id.clone_from(&detail.trace_id);
        record.span_id.clone_from(&detail.span_id);
        record.flags = detail.trace_flags;
    }
    record
}

/// The short name of a `SeverityNumber` (1 to 24) as the data model gives it: the sender's own
/// `severityText` is not kept.
pub(super) fn severity_name(number: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO", "INFO2", "INFO3",
        "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3", "ERROR4", "FATAL", "FATAL2", "FATAL3",
        "FATAL4",
    ];
    NAMES.get(usize::from(number).wrapping_sub(1)).copied().unwrap_or("UNSPECIFIED")
}

/// A JSON object's entries (the context, or an OTLP sender's resource attributes) appended to the
/// attributes, read straight from its text; a key the gateway sets itself is dropped and counted.
struct ObjectAttributes<'v> {
    attributes: &'v mut Vec<KeyValue>,
    dropped: &'v mut u32,
    reserved: &'v [&'v str],
}

impl<'de> DeserializeSeed<'de> for ObjectAttributes<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectAttributes<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if self.reserved.contains(&key.as_str()) {
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
