//! The wire format of one event, and the checks that make it an accepted `Event`.
//!
//! Strings are borrowed from the request body unless they hold escapes. `context` is kept as the
//! text sent, checked against its bounds (depth, key count, size) with duplicate keys refused
//! rather than silently collapsed (see `context`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

mod context;
mod limits;
mod origin;
mod timestamp;

pub use limits::{Limits, LimitsConfig, OriginLimits};
pub use origin::{App, Attributes, Browser, Origin, Sdk, WireBrowser, WireOrigin, WirePage, truncate, validate_origin};
pub use timestamp::parse_timestamp;

pub use context::ObjectKey;
use context::{compact, parse_context};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    /// Every level, in declaration order (`level as usize` indexes it).
    pub const ALL: [Level; 3] = [Level::Info, Level::Warn, Level::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// An event that passed validation.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub level: Level,
    pub scope: Cow<'a, str>,
    pub session_id: Cow<'a, str>,
    pub message: Cow<'a, str>,
    /// As the client sent it (RFC 3339).
    pub timestamp: Cow<'a, str>,
    pub time_unix_nano: u64,
    pub request_id: Option<Cow<'a, str>>,
    /// The validated JSON object as sent (borrowed from the body), or as rewritten by scrubbing.
    /// Logged as it is; parsed again only where a structure is needed (scrubbing a flagged event,
    /// OTLP attributes).
    pub context: Option<Cow<'a, RawValue>>,
    pub exception: Option<Exception<'a>>,
    /// What an OTLP or Faro record said beyond the native event; `None` for the native format.
    pub detail: Option<Box<Detail>>,
}

/// What other formats carry that the native event has not: kept through to the export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// The OTLP `SeverityNumber` (1 to 24), finer than `level`.
    pub severity_number: Option<u8>,
    /// 16 bytes, when the record was emitted inside a trace.
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    pub span_id: Vec<u8>,
    pub trace_flags: u32,
}

/// An error the page caught or did not (`exception.*` in the semantic conventions). `type` may be
/// `string` or `object` when something other than an `Error` was thrown.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Exception<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stacktrace: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The context as a JSON map (parsed from its text), for tests that inspect its structure.
    #[cfg(test)]
    pub fn context_map(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        let raw = self.context.as_deref()?;
        Some(serde_json::from_str(raw.get()).expect("a validated context is a JSON object"))
    }
}

/// One event as sent, before validation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEvent<'a> {
    level: Level,
    #[serde(borrow)]
    scope: Cow<'a, str>,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    exception: Option<Exception<'a>>,
}

/// Why an event was refused: the `reason` label of `client_telemetry_events_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Schema,
    FieldTooLong,
    InvalidField,
    InvalidTimestamp,
    InvalidContext,
}

impl Reason {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [Reason; 5] =
        [Reason::Schema, Reason::FieldTooLong, Reason::InvalidField, Reason::InvalidTimestamp, Reason::InvalidContext];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Schema => "schema",
            Reason::FieldTooLong => "field_too_long",
            Reason::InvalidField => "invalid_field",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::InvalidContext => "invalid_context",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// Parses and validates one event.
pub fn parse_event<'a>(json: &'a str, limits: &Limits) -> Result<Event<'a>, Invalid> {
    let wire: WireEvent<'a> = serde_json::from_str(json).map_err(|e| Invalid::new(Reason::Schema, e.to_string()))?;
    validate(wire, limits)
}

/// The checks serde cannot make: sizes, emptiness, NULs, the timestamp and the context's bounds.
pub fn validate<'a>(wire: WireEvent<'a>, limits: &Limits) -> Result<Event<'a>, Invalid> {
    text_field("scope", &wire.scope, limits.max_scope_bytes, true)?;
    text_field("sessionId", &wire.session_id, limits.max_id_bytes, true)?;
    text_field("message", &wire.message, limits.max_message_bytes, false)?;
    if let Some(request_id) = &wire.request_id {
        text_field("requestId", request_id, limits.max_id_bytes, true)?;
    }
    let time_unix_nano = parse_timestamp(&wire.timestamp)?;
    let context = wire.context.map(|raw| parse_context(raw, limits)).transpose()?.map(compact);
    if let Some(exception) = &wire.exception {
        check_exception(exception, &limits.origin)?;
    }
    Ok(Event {
        level: wire.level,
        scope: wire.scope,
        session_id: wire.session_id,
        message: wire.message,
        timestamp: wire.timestamp,
        time_unix_nano,
        request_id: wire.request_id,
        context,
        exception: wire.exception,
        detail: None,
    })
}

/// An event decoded from another format (OTLP, Faro), before validation: owned text, the context
/// as a JSON object's text.
pub struct Parts {
    pub level: Level,
    pub scope: String,
    /// Empty when the record names no session.
    pub session_id: String,
    pub message: String,
    pub time_unix_nano: u64,
    pub context: Option<String>,
    pub exception: Option<Exception<'static>>,
    pub detail: Option<Box<Detail>>,
}

/// The checks `validate` makes, on an event of another format: the same bounds on every field
/// (the session may be absent), the timestamp written as RFC 3339 for the log line.
pub fn validate_parts(parts: Parts, limits: &Limits) -> Result<Event<'static>, Invalid> {
    text_field("scope", &parts.scope, limits.max_scope_bytes, true)?;
    text_field("session.id", &parts.session_id, limits.max_id_bytes, false)?;
    text_field("message", &parts.message, limits.max_message_bytes, false)?;
    let context = parts.context.map(|json| bounded_object(json, "attributes", limits)).transpose()?;
    if let Some(exception) = &parts.exception {
        check_exception(exception, &limits.origin)?;
    }
    let timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(parts.time_unix_nano))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| Invalid::new(Reason::InvalidTimestamp, "the time is out of range"))?;
    Ok(Event {
        level: parts.level,
        scope: Cow::Owned(parts.scope),
        session_id: Cow::Owned(parts.session_id),
        message: Cow::Owned(parts.message),
        timestamp: Cow::Owned(timestamp),
        time_unix_nano: parts.time_unix_nano,
        request_id: None,
        context,
        exception: parts.exception,
        detail: parts.detail,
    })
}

/// A JSON object's text within the context bounds (size, keys, depth), as the native `context` is
/// checked; `what` names it in the message.
pub fn bounded_object(json: String, what: &str, limits: &Limits) -> Result<Cow<'static, RawValue>, Invalid> {
    let raw = RawValue::from_string(json).map_err(|e| Invalid::new(Reason::InvalidContext, e.to_string()))?;
    parse_context(&raw, limits).map_err(|invalid| Invalid {
        message: invalid.message.replacen("`context`", &format!("`{what}`"), 1),
        ..invalid
    })?;
    Ok(Cow::Owned(raw))
}

fn check_exception(exception: &Exception<'_>, limits: &OriginLimits) -> Result<(), Invalid> {
    let fields = [
        ("exception.type", &exception.kind, limits.max_exception_type_bytes, true),
        ("exception.message", &exception.message, limits.max_exception_message_bytes, false),
        ("exception.stacktrace", &exception.stacktrace, limits.max_stacktrace_bytes, false),
    ];
    for (name, value, max, required) in fields {
        if let Some(value) = value {
            text_field(name, value, max, required)?;
        }
    }
    if exception.kind.is_none() && exception.message.is_none() && exception.stacktrace.is_none() {
        return Err(Invalid::new(Reason::InvalidField, "`exception` needs at least one of type, message, stacktrace"));
    }
    Ok(())
}

/// `name` is only formatted into a refusal's message: a valid field costs no formatting.
pub(crate) fn text_field(
    name: impl std::fmt::Display,
    value: &str,
    max_bytes: usize,
    required: bool,
) -> Result<(), Invalid> {
    if required && value.trim().is_empty() {
        return Err(Invalid::new(Reason::InvalidField, format!("`{name}` must not be empty")));
    }
    if value.len() > max_bytes {
        return Err(Invalid::new(
            Reason::FieldTooLong,
            format!("`{name}` is {} bytes, more than the limit of {max_bytes}", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(Reason::InvalidField, format!("`{name}` contains a NUL character")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    const VALID: &str = r#"{"level":"warn","scope":"checkout","sessionId":"s-1","message":"hi","timestamp":"2025-01-15T10:30:45.123Z","requestId":"r-1","context":{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}}"#;

    #[test]
    fn a_valid_event_borrows_and_keeps_its_context() {
        let e = parse_event(VALID, &limits()).unwrap();
        assert_eq!(e.level, Level::Warn);
        assert!(matches!(e.scope, Cow::Borrowed("checkout")));
        assert_eq!(e.time_unix_nano, 1_736_937_045_123_000_000);
        assert!(matches!(e.context, Some(Cow::Borrowed(_))));
        assert_eq!(e.context_map().unwrap()["c"]["d"], 1.5);
    }

    fn reason_of(json: &str) -> (Reason, String) {
        let e = parse_event(json, &limits()).unwrap_err();
        (e.reason, e.message)
    }

    #[test]
    fn each_bad_field_gets_a_reason_a_developer_can_act_on() {
        let cases = [
            (VALID.replace(r#""level":"warn""#, r#""level":"debug""#), Reason::Schema, "unknown variant `debug`"),
            (VALID.replace(r#""scope":"checkout","#, ""), Reason::Schema, "missing field `scope`"),
            (
                VALID.replace(r#""scope":"checkout""#, r#""scope":"""#),
                Reason::InvalidField,
                "`scope` must not be empty",
            ),
            (
                VALID.replace(r#""scope":"checkout""#, &format!(r#""scope":"{}""#, "x".repeat(129))),
                Reason::FieldTooLong,
                "`scope` is 129 bytes",
            ),
            (VALID.replace(r#""message":"hi""#, r#""message":"a\u0000b""#), Reason::InvalidField, "NUL"),
            (VALID.replace("2025-01-15T10:30:45.123Z", "yesterday"), Reason::InvalidTimestamp, "RFC 3339"),
            (VALID.replace(r#"{"a":1,"#, r#"{"a":1,"a":2,"#), Reason::InvalidContext, "duplicate key"),
            (
                VALID.replace(r#""context":{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}"#, r#""context":[1]"#),
                Reason::InvalidContext,
                "must be a JSON object",
            ),
            (
                VALID.replace(r#""context":{"a":1,"#, r#""context":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}},"#),
                Reason::InvalidContext,
                "deeper than 5",
            ),
        ];
        for (json, reason, needle) in cases {
            let (got, message) = reason_of(&json);
            assert_eq!(got, reason, "{json}: {message}");
            assert!(message.contains(needle), "{message:?} should mention {needle:?}");
        }
    }

    /// OTLP carries 64-bit nanoseconds since 1970: the message states that range, both of its ends.
    #[test]
    fn timestamps_are_accepted_over_the_whole_range_otlp_carries_and_the_bound_is_stated() {
        let limits = Limits::default();
        for (time, nanos) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2554-07-21T23:34:33.709551615Z", u64::MAX),
            ("2554-07-21T23:34:33.709551615+00:00", u64::MAX),
        ] {
            let json = VALID.replace("2025-01-15T10:30:45.123Z", time);
            let event = parse_event(&json, &limits).unwrap();
            assert_eq!(event.time_unix_nano, nanos, "{time}");
        }
        for time in ["2554-07-21T23:34:33.709551616Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"] {
            let (reason, message) = reason_of(&VALID.replace("2025-01-15T10:30:45.123Z", time));
            assert_eq!(reason, Reason::InvalidTimestamp);
            assert!(message.contains("from 1970-01-01T00:00:00Z to 2554-07-21T23:34:33Z"), "{message}");
            assert!(!message.contains("after 1970"), "{message}");
        }
    }

    #[test]
    fn context_key_count_is_bounded() {
        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let json = VALID.replace(r#"{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}"#, &format!("{{{}}}", many.join(",")));
        assert!(reason_of(&json).1.contains("more than 64 keys"));
    }
}
