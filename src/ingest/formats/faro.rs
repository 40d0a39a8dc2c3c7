//! The Grafana Faro web SDK's payload (`POST /collect`, `/collect/{app-key}`), as
//! `@grafana/faro-core` sends it (`TransportBody`): `meta` once, then `logs`, `exceptions`,
//! `measurements` and `events`. `meta` (app, session, page, browser, SDK) becomes the batch's
//! `Origin`; each item an event of scope `faro.<kind>` carrying the session's id. `meta.user` is
//! not kept (personal data the gateway has no use for). `traces` are refused: this gateway
//! forwards logs, so they are counted as refused items and the rest of the payload is accepted.
//! An unknown item kind is refused (400) rather than silently dropped.

use std::borrow::Cow;

use actix_web::HttpResponse;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Batch, Rejection};
use crate::{
    event::{
        Detail, Event, Exception, Invalid, Level, Limits, Parts, Reason, WireOrigin, parse_timestamp, validate_origin,
        validate_parts,
    },
    ingest::response::IngestError,
};

/// The header the Faro SDK names its session in: the per-session limit's key.
pub const SESSION_HEADER: &str = "x-faro-session-id";
/// The id the Faro SDK gives a payload, the same on each retry: the batch id of de-duplication.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const PATH: &str = "/collect";
pub const PATH_WITH_KEY: &str = "/collect/{app_key}";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    #[serde(default)]
    meta: Meta,
    #[serde(default)]
    logs: Vec<Log>,
    #[serde(default)]
    exceptions: Vec<FaroException>,
    #[serde(default)]
    measurements: Vec<Measurement>,
    #[serde(default)]
    events: Vec<FaroEvent>,
    #[serde(default)]
    traces: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    app: Option<MetaApp>,
    #[serde(default)]
    session: Option<MetaSession>,
    #[serde(default)]
    page: Option<MetaPage>,
    #[serde(default)]
    browser: Option<MetaBrowser>,
    #[serde(default)]
    sdk: Option<MetaSdk>,
}

#[derive(Deserialize)]
struct MetaApp {
    name: Option<String>,
    version: Option<String>,
    release: Option<String>,
    environment: Option<String>,
}

#[derive(Deserialize)]
struct MetaSession {
    id: Option<String>,
}

#[derive(Deserialize)]
struct MetaPage {
    url: Option<String>,
}

#[derive(Deserialize)]
struct MetaBrowser {
    name: Option<String>,
    version: Option<String>,
    os: Option<String>,
    mobile: Option<bool>,
    language: Option<String>,
    /// An array of `{brand, version}`, or a string in older SDKs (then ignored).
    brands: Option<Value>,
}

#[derive(Deserialize)]
struct MetaSdk {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct Trace {
    trace_id: Option<String>,
    span_id: Option<String>,
}

#[derive(Deserialize)]
struct Log {
    message: String,
    level: Option<String>,
    timestamp: String,
    context: Option<Map<String, Value>>,
    trace: Option<Trace>,
}

#[derive(Deserialize)]
struct FaroException {
    #[serde(rename = "type")]
    kind: String,
    value: String,
    timestamp: String,
    stacktrace: Option<Stacktrace>,
    context: Option<Map<String, Value>>,
    trace: Option<Trace>,
}

#[derive(Deserialize)]
struct Stacktrace {
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    filename: Option<String>,
    function: Option<String>,
    lineno: Option<u64>,
    colno: Option<u64>,
}

#[derive(Deserialize)]
struct Measurement {
    #[serde(rename = "type")]
    kind: String,
    values: Map<String, Value>,
    timestamp: String,
    context: Option<Map<String, Value>>,
    trace: Option<Trace>,
}

#[derive(Deserialize)]
struct FaroEvent {
    name: String,
    domain: Option<String>,
    timestamp: String,
    attributes: Option<Map<String, Value>>,
    trace: Option<Trace>,
}

pub fn decode(body: &[u8], limits: &Limits) -> Result<Batch<'static>, IngestError> {
    let text = std::str::from_utf8(body).map_err(|_| IngestError::InvalidUtf8)?;
    let payload: Payload = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            IngestError::BadShape(format!("the Faro payload: {}", super::wrong_type::<Payload>(body, e)))
        }
        _ => IngestError::from_json(e),
    })?;
    let Payload { meta, logs, exceptions, measurements, events, traces } = payload;
    let count = logs.len() + exceptions.len() + measurements.len() + events.len() + usize::from(traces.is_some());
    if count == 0 {
        return Err(IngestError::BadShape("the Faro payload has no logs, exceptions, measurements or events".into()));
    }
    if count > limits.max_events_per_request {
        return Err(IngestError::TooManyEvents { count, max: limits.max_events_per_request });
    }
    let session = meta.session.as_ref().and_then(|s| s.id.clone()).unwrap_or_default();
    let origin = origin(meta, limits)?;
    let item = |level, scope: &str, message: String, timestamp: &str, context: Map<String, Value>| {
        let time_unix_nano = parse_timestamp(timestamp)?;
        Ok::<_, Invalid>(Parts {
            level,
            scope: scope.to_string(),
            session_id: session.clone(),
            message,
            time_unix_nano,
            context: (!context.is_empty()).then(|| Value::Object(context).to_string()),
            exception: None,
            detail: None,
        })
    };
    let mut results: Vec<Result<Event<'static>, Invalid>> = Vec::with_capacity(count);
    for log in logs {
        let (level, severity) = log_level(log.level.as_deref());
        let parts = item(level, "faro.logs", log.message, &log.timestamp, log.context.unwrap_or_default());
        results.push(parts.and_then(|parts| finish(parts, severity, log.trace, limits)));
    }
    for error in exceptions {
        let stacktrace = error.stacktrace.map(|s| stack(&error.kind, &error.value, &s.frames));
        let message = format!("{}: {}", error.kind, error.value);
        let parts = item(Level::Error, "faro.exceptions", message, &error.timestamp, error.context.unwrap_or_default());
        let parts = parts.map(|parts| Parts {
            exception: Some(Exception {
                kind: Some(Cow::Owned(error.kind)),
                message: Some(Cow::Owned(error.value)),
                stacktrace: stacktrace.map(Cow::Owned),
            }),
            ..parts
        });
        results.push(parts.and_then(|parts| finish(parts, Some(17), error.trace, limits)));
    }
    for measurement in measurements {
        let mut context = measurement.values;
        context.extend(measurement.context.unwrap_or_default());
        let parts = item(Level::Info, "faro.measurements", measurement.kind, &measurement.timestamp, context);
        results.push(parts.and_then(|parts| finish(parts, None, measurement.trace, limits)));
    }
    for event in events {
        let mut context = event.attributes.unwrap_or_default();
        if let Some(domain) = event.domain {
            context.insert("event.domain".into(), Value::String(domain));
        }
        let parts = item(Level::Info, "faro.events", event.name, &event.timestamp, context);
        results.push(parts.and_then(|parts| finish(parts, None, event.trace, limits)));
    }
    if traces.is_some() {
        results.push(Err(Invalid::new(
            Reason::Schema,
            "`traces` are not accepted: this gateway forwards logs; send traces to an OpenTelemetry Collector",
        )));
    }
    Batch::split(origin, results)
}

fn finish(
    mut parts: Parts,
    severity: Option<u8>,
    trace: Option<Trace>,
    limits: &Limits,
) -> Result<Event<'static>, Invalid> {
    let id = |hex: Option<String>, len: usize| -> Result<Vec<u8>, Invalid> {
        let Some(hex) = hex else { return Ok(Vec::new()) };
        let bytes: Option<Vec<u8>> = (hex.len() == 2 * len && hex.is_ascii())
            .then(|| (0..len).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect())
            .flatten();
        bytes.ok_or_else(|| {
            Invalid::new(Reason::InvalidField, "`trace` ids must be hex: 32 digits, and 16 for the span")
        })
    };
    let (trace_id, span_id) = match trace {
        Some(trace) => (id(trace.trace_id, 16)?, id(trace.span_id, 8)?),
        None => (Vec::new(), Vec::new()),
    };
    parts.detail = Some(Box::new(Detail { severity_number: severity, trace_id, span_id, trace_flags: 0 }));
    validate_parts(parts, limits)
}

/// Faro's levels (trace, debug, info, log, warn, error) as the gateway's level and the OTLP
/// severity number.
fn log_level(level: Option<&str>) -> (Level, Option<u8>) {
    match level {
        Some("trace") => (Level::Info, Some(1)),
        Some("debug") => (Level::Info, Some(5)),
        Some("warn") => (Level::Warn, Some(13)),
        Some("error") => (Level::Error, Some(17)),
        Some("info") => (Level::Info, Some(9)),
        _ => (Level::Info, Some(10)),
    }
}

/// The parsed frames back as a JavaScript stack, as `exception.stacktrace` wants it.
fn stack(kind: &str, value: &str, frames: &[Frame]) -> String {
    let mut text = format!("{kind}: {value}");
    for frame in frames {
        let function = frame.function.as_deref().filter(|f| !f.is_empty()).unwrap_or("<anonymous>");
        let file = frame.filename.as_deref().unwrap_or("<unknown>");
        let line = frame.lineno.map(|l| format!(":{l}")).unwrap_or_default();
        let column = frame.colno.map(|c| format!(":{c}")).unwrap_or_default();
        text.push_str(&format!("\n    at {function} ({file}{line}{column})"));
    }
    text
}

/// `meta` as the batch's origin, through the native batch's checks.
fn origin(meta: Meta, limits: &Limits) -> Result<crate::event::Origin<'static>, IngestError> {
    let app =
        meta.app.map(|a| json!({ "name": a.name, "version": a.version.or(a.release), "environment": a.environment }));
    let browser = meta.browser.map(|b| {
        let brands = match b.brands {
            Some(Value::Array(brands)) => Value::Array(brands),
            _ => match (&b.name, &b.version) {
                (Some(name), version) => json!([{ "brand": name, "version": version.clone().unwrap_or_default() }]),
                _ => Value::Null,
            },
        };
        json!({ "language": b.language, "platform": b.os, "mobile": b.mobile, "brands": brands })
    });
    let page = meta.page.map(|p| json!({ "url": p.url }));
    let sdk = meta.sdk.map(|s| json!({ "name": s.name, "version": s.version }));
    let wire = json!({ "app": app, "page": page, "browser": browser, "sdk": sdk });
    let bad = |message: String| IngestError::BadShape(format!("meta: {message}"));
    let wire = WireOrigin::deserialize(&wire).map_err(|e| bad(e.to_string()))?;
    Ok(validate_origin(wire, &limits.origin).map_err(|invalid| bad(invalid.message))?.into_owned())
}

/// 202, as Alloy's `faro.receiver` answers, with what was accepted and what was not.
pub fn accepted(count: usize, rejected: &[Rejection]) -> HttpResponse {
    let rejected: Vec<Value> =
        rejected.iter().map(|r| json!({ "index": r.index, "error": r.invalid.message })).collect();
    HttpResponse::Accepted().json(json!({ "accepted": count, "rejected": rejected }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_frames_become_a_javascript_stack_again() {
        let frames = [
            Frame {
                filename: Some("https://a.example/app.js".into()),
                function: Some("pay".into()),
                lineno: Some(3),
                colno: Some(9),
            },
            Frame { filename: None, function: Some(String::new()), lineno: None, colno: None },
        ];
        assert_eq!(
            stack("TypeError", "x is null", &frames),
            "TypeError: x is null\n    at pay (https://a.example/app.js:3:9)\n    at <anonymous> (<unknown>)"
        );
    }

    #[test]
    fn faro_levels_keep_their_severity_number() {
        assert_eq!(log_level(Some("debug")), (Level::Info, Some(5)));
        assert_eq!(log_level(Some("log")), (Level::Info, Some(10)));
        assert_eq!(log_level(Some("warn")), (Level::Warn, Some(13)));
        assert_eq!(log_level(Some("error")), (Level::Error, Some(17)));
        assert_eq!(log_level(None), (Level::Info, Some(10)), "Faro's default level is `log`");
    }

    #[test]
    fn an_item_with_a_bad_timestamp_or_trace_id_is_refused_alone() {
        let body = br#"{"meta":{"session":{"id":"s"}},"logs":[
            {"message":"ok","timestamp":"2025-01-15T10:30:45Z"},
            {"message":"bad time","timestamp":"yesterday"},
            {"message":"bad trace","timestamp":"2025-01-15T10:30:45Z","trace":{"trace_id":"xyz","span_id":"0102030405060708"}}]}"#;
        let batch = decode(body, &Limits::default()).unwrap();
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].session_id, "s");
        let reasons: Vec<_> = batch.rejected.iter().map(|r| (r.index, r.invalid.reason)).collect();
        assert_eq!(reasons, [(1, Reason::InvalidTimestamp), (2, Reason::InvalidField)]);
    }
}
