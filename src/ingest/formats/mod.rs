//! The three ingest formats: the native batch (`/api/client-telemetry`), OTLP/HTTP logs
//! (`/v1/logs`) and the Grafana Faro web SDK's payload (`/collect`). A format only says how its
//! request names a session, which content types it takes, how its body decodes into the gateway's
//! own `Batch` (an `Origin` and validated `Event`s) and how it answers a success. Every other step
//! (access, limiter, body limits, scrubbing, log line, forwarding, errors) is the handler's, once.

pub mod faro;
pub mod native;
pub mod otlp;

use actix_web::{HttpRequest, HttpResponse, http::header};

pub use native::{Batch, Rejection};

use super::{
    attempt::{BATCH_HEADER, SESSION_HEADER},
    response::IngestError,
};
use crate::{event::Limits, setting};

setting::component! {
    /// Where the OTLP and Faro routes are mounted.
    pub struct FormatsConfig {
        /// path prefix of the OTLP/HTTP logs route: `/otel` mounts it at `/otel/v1/logs`; empty: `/v1/logs`
        otlp_path_prefix: String = String::new(),
    }
}

impl FormatsConfig {
    /// The OTLP route's full path.
    pub fn resolve(&self) -> Result<String, setting::Error> {
        let prefix = self.otlp_path_prefix.trim_end_matches('/');
        let valid = prefix.is_empty()
            || (prefix.starts_with('/')
                && prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
                && !prefix.contains("//"));
        if !valid {
            let reason = "a path such as /otel: a leading slash, then letters, digits, - _ . and /";
            return Err(setting::invalid_key("otlp_path_prefix", &self.otlp_path_prefix, reason));
        }
        Ok(format!("{prefix}{}", otlp::PATH))
    }
}

/// A JSON body of the right syntax but a wrong type somewhere, as a message that names the field's
/// path (`logs[0].message: invalid type: integer `5`, expected a string …`). The path is found by
/// decoding again, tracking it, only once the fast decode has failed: valid bodies pay nothing.
pub fn wrong_type<T: serde::de::DeserializeOwned>(body: &[u8], error: serde_json::Error) -> String {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(tracked) if tracked.path().iter().next().is_some() => format!("`{}`: {}", tracked.path(), tracked.inner()),
        _ => error.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Native,
    Otlp,
    Faro,
}

/// How the body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Json,
    Protobuf,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Native, Format::Otlp, Format::Faro];

    /// The `route` label of the metrics (bounded: one per format; `native` is `/api/client-telemetry`).
    pub fn label(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Otlp => "otlp",
            Format::Faro => "faro",
        }
    }

    /// The header that names the session before the body is read, for the per-session limit.
    /// OTLP has none: its records name their session inside the body, after the limiter.
    pub fn session_header(self) -> Option<&'static str> {
        match self {
            Format::Native => Some(SESSION_HEADER),
            Format::Faro => Some(faro::SESSION_HEADER),
            Format::Otlp => None,
        }
    }

    /// The header naming the batch, for de-duplication of retries: `X-Batch-Id`, or the
    /// `Idempotency-Key` the Faro SDK keeps across the attempts of one payload. OTLP has none.
    pub fn batch_header(self) -> Option<&'static str> {
        match self {
            Format::Native => Some(BATCH_HEADER),
            Format::Faro => Some(faro::IDEMPOTENCY_HEADER),
            Format::Otlp => None,
        }
    }

    /// The body's encoding, from its `Content-Type` (media type only, any parameters): JSON or
    /// `text/plain` (what `sendBeacon` sends for a string) or none; protobuf for OTLP only.
    pub fn content(self, request: &HttpRequest) -> Result<Content, IngestError> {
        let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
            return Ok(Content::Json);
        };
        let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match (essence.as_str(), self) {
            ("" | "application/json" | "text/plain", _) => Ok(Content::Json),
            ("application/x-protobuf" | "application/protobuf", Format::Otlp) => Ok(Content::Protobuf),
            _ => Err(IngestError::UnsupportedMediaType { found: essence, format: self }),
        }
    }

    /// What the format accepts, for the 415 message.
    pub fn content_types(self) -> &'static str {
        match self {
            Format::Otlp => "application/x-protobuf or application/json",
            _ => "application/json or text/plain",
        }
    }

    /// The body (decompressed) as the gateway's batch.
    pub fn decode<'a>(self, body: &'a [u8], content: Content, limits: &Limits) -> Result<Batch<'a>, IngestError> {
        match self {
            Format::Native => native::decode_body(body, limits),
            Format::Otlp => otlp::decode(body, content, limits),
            Format::Faro => faro::decode(body, limits),
        }
    }

    /// The answer to a request whose accepted events are logged and queued.
    pub fn accepted(self, content: Content, count: usize, rejected: &[Rejection]) -> HttpResponse {
        match self {
            Format::Native => super::response::accepted(count, rejected),
            Format::Otlp => otlp::accepted(content, rejected),
            Format::Faro => faro::accepted(count, rejected),
        }
    }
}
