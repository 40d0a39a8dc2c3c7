//! OTLP/HTTP logs (`POST /v1/logs`): an `ExportLogsServiceRequest` in protobuf or OTLP/JSON, as the
//! OpenTelemetry JS exporters send it, decoded with `opentelemetry-proto` into the gateway's batch.
//!
//! The resource becomes the batch's `Origin` (`service.*`, `deployment.environment.name`,
//! `telemetry.sdk.*`, `browser.*` where the gateway has a field for them, the other attributes kept
//! as they are); each record becomes an event: its scope's name, severity, body, times, trace
//! context, `session.id` and `exception.*` attributes in the gateway's fields, its other attributes
//! as the event's context. Every field then meets the native format's bounds. One resource per
//! request, as a browser SDK sends it: records under a different resource are refused (partial
//! success), not merged under the wrong service.

use std::borrow::Cow;

use actix_web::{
    HttpResponse,
    body::BoxBody,
    http::header::{CONTENT_TYPE, HeaderValue},
};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value::Value as V},
    logs::v1::LogRecord,
    resource::v1::Resource,
};
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Batch, Content, Rejection};
use crate::{
    event::{
        Attributes, Detail, Exception, Invalid, Level, Limits, Origin, Parts, Reason, WireOrigin, bounded_object,
        validate_origin, validate_parts,
    },
    ingest::response::IngestError,
};

/// Where the route is mounted, under the optional prefix (`CLIENT_TELEMETRY_OTLP_PATH_PREFIX`).
pub const PATH: &str = "/v1/logs";

/// The scope name given to records whose scope has none (the gateway's events need one).
const NO_SCOPE: &str = "unknown";

pub fn decode(body: &[u8], content: Content, limits: &Limits) -> Result<Batch<'static>, IngestError> {
    let request = match content {
        Content::Protobuf => {
            ExportLogsServiceRequest::decode(body).map_err(|e| IngestError::MalformedOtlp(e.to_string()))
        }
        Content::Json => serde_json::from_slice(body).map_err(|e| {
            IngestError::MalformedOtlp(match e.classify() {
                serde_json::error::Category::Data => super::wrong_type::<ExportLogsServiceRequest>(body, e),
                _ => e.to_string(),
            })
        }),
    }?;
    let count: usize = request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
    if count > limits.max_events_per_request {
        return Err(IngestError::TooManyEvents { count, max: limits.max_events_per_request });
    }
    let (mut batch_origin, mut records) = (Origin::default(), Vec::with_capacity(count));
    let mut first: Option<Resource> = None;
    for resource_logs in request.resource_logs {
        let resource = resource_logs.resource.unwrap_or_default();
        let same = match &first {
            None => {
                batch_origin = origin(&resource, limits)?;
                first = Some(resource);
                true
            }
            Some(first) => *first == resource,
        };
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs.scope.map(|s| s.name).filter(|name| !name.is_empty());
            for record in scope_logs.log_records {
                let event = match same {
                    true => event(record, scope.as_deref().unwrap_or(NO_SCOPE), limits),
                    false => Err(Invalid::new(
                        Reason::Schema,
                        "one resource per request: this record's resource differs from the first one's",
                    )),
                };
                records.push(event);
            }
        }
    }
    Batch::split(batch_origin, records)
}

/// The resource as the batch's origin: the attributes the gateway has fields for go through the
/// native batch's checks; the others are kept, bounded like a context.
fn origin(resource: &Resource, limits: &Limits) -> Result<Origin<'static>, IngestError> {
    let (mut app, mut browser, mut sdk) = (Map::new(), Map::new(), Map::new());
    let mut others = Map::new();
    for KeyValue { key, value, .. } in &resource.attributes {
        let value = value.as_ref().map_or(Value::Null, json);
        let (map, field) = match key.as_str() {
            "service.name" => (&mut app, "name"),
            "service.version" => (&mut app, "version"),
            "deployment.environment.name" => (&mut app, "environment"),
            "deployment.environment" if !app.contains_key("environment") => (&mut app, "environment"),
            "telemetry.sdk.name" => (&mut sdk, "name"),
            "telemetry.sdk.version" => (&mut sdk, "version"),
            "browser.language" => (&mut browser, "language"),
            "browser.platform" => (&mut browser, "platform"),
            "browser.mobile" => (&mut browser, "mobile"),
            _ => (&mut others, key.as_str()),
        };
        map.insert(field.to_string(), value);
    }
    let wire = json!({ "app": app, "browser": browser, "sdk": sdk });
    let bad = |message: String| IngestError::BadShape(format!("resource: {message}"));
    let wire = WireOrigin::deserialize(&wire).map_err(|e| bad(e.to_string()))?;
    let mut origin = validate_origin(wire, &limits.origin).map_err(|invalid| bad(invalid.message))?.into_owned();
    if !others.is_empty() {
        let text = Value::Object(others).to_string();
        let attributes = bounded_object(text, "resource.attributes", limits).map_err(|invalid| bad(invalid.message))?;
        origin.attributes = Some(Attributes(attributes));
    }
    Ok(origin)
}

fn event(record: LogRecord, scope: &str, limits: &Limits) -> Result<crate::event::Event<'static>, Invalid> {
    let mut session_id = String::new();
    let mut exception = Exception::default();
    let mut context = Map::new();
    for KeyValue { key, value, .. } in record.attributes {
        let text = match &value {
            Some(AnyValue { value: Some(V::StringValue(text)) }) => Some(text.clone()),
            _ => None,
        };
        match (key.as_str(), text) {
            ("session.id", Some(id)) => session_id = id,
            ("exception.type", Some(text)) => exception.kind = Some(Cow::Owned(text)),
            ("exception.message", Some(text)) => exception.message = Some(Cow::Owned(text)),
            ("exception.stacktrace", Some(text)) => exception.stacktrace = Some(Cow::Owned(text)),
            _ => {
                context.insert(key, value.as_ref().map_or(Value::Null, json));
            }
        }
    }
    let message = match record.body.and_then(|body| body.value) {
        None => String::new(),
        Some(V::StringValue(text)) => text,
        Some(other) => json(&AnyValue { value: Some(other) }).to_string(),
    };
    let number = u8::try_from(record.severity_number).ok().filter(|n| (1..=24).contains(n));
    let level = match number {
        Some(13..=16) => Level::Warn,
        Some(17..=24) => Level::Error,
        _ => Level::Info,
    };
    let ids = (record.trace_id.len(), record.span_id.len());
    if !matches!(ids, (0, 0) | (16, 8) | (16, 0)) {
        return Err(Invalid::new(Reason::InvalidField, "`traceId` must be 16 bytes and `spanId` 8 bytes"));
    }
    let time_unix_nano = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or_default(),
        (0, observed) => observed,
        (time, _) => time,
    };
    validate_parts(
        Parts {
            level,
            scope: scope.to_string(),
            session_id,
            message,
            time_unix_nano,
            context: (!context.is_empty()).then(|| Value::Object(context).to_string()),
            exception: (exception != Exception::default()).then_some(exception),
            detail: Some(Box::new(Detail {
                severity_number: number,
                trace_id: record.trace_id,
                span_id: record.span_id,
                trace_flags: record.flags & 0xff,
            })),
        },
        limits,
    )
}

/// An OTLP value as JSON: the context's form. Bytes become lowercase hex.
fn json(value: &AnyValue) -> Value {
    match &value.value {
        // A string-table index only has a meaning in profiles.
        None | Some(V::StringValueStrindex(_)) => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(V::BytesValue(bytes)) => Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Some(V::ArrayValue(array)) => Value::Array(array.values.iter().map(json).collect()),
        Some(V::KvlistValue(list)) => Value::Object(
            list.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json))).collect(),
        ),
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP failure (its details are not used).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The error answer with its body replaced by a `Status` in the request's encoding: the status
/// and the headers (`Retry-After`, RateLimit) stay.
pub fn status_response(mut response: HttpResponse, content: Content, error: &IngestError) -> HttpResponse {
    // The gRPC code closest to the HTTP status.
    let code = match response.status().as_u16() {
        401 => 16,
        403 => 7,
        408 => 4,
        429 => 8,
        503 => 14,
        _ => 3,
    };
    let status = Status { code, message: error.to_string() };
    let (content_type, body) = match content {
        Content::Protobuf => ("application/x-protobuf", status.encode_to_vec()),
        Content::Json => ("application/json", serde_json::to_vec(&status).expect("a Status serialises")),
    };
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.set_body(BoxBody::new(body))
}

/// 200 with an `ExportLogsServiceResponse` in the request's encoding; `partial_success` says how
/// many records were refused and why (the first few reasons).
pub fn accepted(content: Content, rejected: &[Rejection]) -> HttpResponse {
    let partial_success = (!rejected.is_empty()).then(|| {
        let mut reasons: Vec<String> =
            rejected.iter().take(3).map(|r| format!("record {}: {}", r.index, r.invalid.message)).collect();
        if rejected.len() > 3 {
            reasons.push(format!("and {} more", rejected.len() - 3));
        }
        ExportLogsPartialSuccess { rejected_log_records: rejected.len() as i64, error_message: reasons.join("; ") }
    });
    let response = ExportLogsServiceResponse { partial_success };
    match content {
        Content::Protobuf => HttpResponse::Ok().content_type("application/x-protobuf").body(response.encode_to_vec()),
        // `{}` rather than `"partialSuccess": null` when everything was accepted.
        Content::Json if response.partial_success.is_none() => HttpResponse::Ok().json(json!({})),
        Content::Json => HttpResponse::Ok().json(response),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{ArrayValue, KeyValueList},
        logs::v1::{ResourceLogs, ScopeLogs},
    };

    use super::*;

    fn value(v: V) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    #[test]
    fn otlp_values_become_the_context_json() {
        let list = V::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: value(V::BytesValue(vec![0xab, 0x01])),
                ..Default::default()
            }],
        });
        let array = V::ArrayValue(ArrayValue {
            values: vec![value(V::IntValue(-1)).unwrap(), value(V::DoubleValue(f64::NAN)).unwrap()],
        });
        assert_eq!(json(&value(list).unwrap()), json!({"k": "ab01"}));
        assert_eq!(json(&value(array).unwrap()), json!([-1, null]));
    }

    #[test]
    fn records_under_a_second_resource_are_refused_not_merged() {
        let resource = |name: &str| Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: value(V::StringValue(name.into())),
                ..Default::default()
            }],
            ..Default::default()
        };
        let logs = |name: &str| ResourceLogs {
            resource: Some(resource(name)),
            scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default()], ..Default::default() }],
            ..Default::default()
        };
        let request = ExportLogsServiceRequest { resource_logs: vec![logs("shop"), logs("shop"), logs("blog")] };
        let body = request.encode_to_vec();
        let batch = decode(&body, Content::Protobuf, &Limits::default()).unwrap();
        assert_eq!(batch.origin.app.name.as_deref(), Some("shop"));
        assert_eq!(batch.events.len(), 2, "the same resource twice is one origin");
        assert_eq!(batch.rejected.len(), 1);
        assert!(batch.rejected[0].invalid.message.contains("one resource per request"));
        assert_eq!(batch.events[0].scope, NO_SCOPE);
    }
}
