//! Every answer of the ingest route: one error type mapped to status, headers, body and log level
//! in one place, plus the success answers and the RateLimit headers.

use std::fmt;

use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE},
    },
};
use serde_json::json;

use super::formats::{Format, Rejection};
use crate::{
    challenge::{CHALLENGE_HEADER, Refusal},
    ratelimit::{Decision, Quota, RateLimitSettings},
};

#[derive(Debug)]
pub enum IngestError {
    RateLimited(Decision, Challenged),
    UnsupportedMediaType {
        found: String,
        format: Format,
    },
    /// An OTLP body that does not decode as an `ExportLogsServiceRequest`.
    MalformedOtlp(String),
    PayloadTooLarge {
        limit: usize,
    },
    BodyRead(String),
    InvalidUtf8,
    MalformedJson(String),
    BadShape(String),
    TooManyEvents {
        count: usize,
        max: usize,
    },
    NoValidEvents(Vec<Rejection>),
    MissingApiKey,
    InvalidApiKey,
    OriginNotAllowed(String),
    /// The batch names an app that is not on `CLIENT_TELEMETRY_ALLOWED_APPS`.
    AppNotAllowed(String),
    UnsupportedEncoding(String),
    DecompressedTooLarge {
        limit: usize,
    },
    CompressionRatio {
        max: usize,
    },
    InvalidGzip(String),
    BodyTimeout(std::time::Duration),
    /// A session or batch id that is not a short URL-safe token.
    InvalidId {
        what: &'static str,
        max: usize,
    },
    /// A session or batch id given twice (query parameter or header): which one counts is unclear.
    DuplicateId {
        what: &'static str,
    },
    /// The log writer could not take the lines (overload): nothing was accepted.
    LogUnavailable,
}

/// What a refusal by the limiter says about the challenge (all empty when it is off).
#[derive(Debug, Default)]
pub struct Challenged {
    /// A challenge to solve, with its difficulty: the address is suspected.
    pub challenge: Option<(String, u8)>,
    /// Why the solution or token the request presented did not count.
    pub refused: Option<Refusal>,
}

impl IngestError {
    pub fn from_json(error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof => IngestError::MalformedJson(error.to_string()),
            Category::Data => IngestError::BadShape(format!(
                "the body must be a JSON object: a batch {{\"events\":[…]}} or a single event ({error})"
            )),
            Category::Io => IngestError::BodyRead(error.to_string()),
        }
    }

    /// Logged at debug only: nearly every ingest error is the client's doing (an attacker must not
    /// be able to flood the log through it), and the one that is not, a log writer that cannot keep
    /// up, is counted in `client_telemetry_log_lines_dropped_total` instead of adding to its load.
    pub fn log(&self, log: &slog::Logger) {
        slog::debug!(log, "ingest request refused"; "status" => self.status_code().as_u16(), "error" => %self);
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::RateLimited(d, _) => {
                write!(f, "rate limit exceeded: retry after {} s", retry_after_seconds(d))
            }
            IngestError::UnsupportedMediaType { found, format } => {
                write!(f, "unsupported Content-Type {found:?}: send {}", format.content_types())
            }
            IngestError::MalformedOtlp(e) => write!(f, "not an OTLP ExportLogsServiceRequest: {e}"),
            IngestError::PayloadTooLarge { limit } => write!(f, "the body exceeds the limit of {limit} bytes"),
            IngestError::BodyRead(e) => write!(f, "could not read the body: {e}"),
            IngestError::InvalidUtf8 => f.write_str("the body is not valid UTF-8"),
            IngestError::MalformedJson(e) => write!(f, "malformed JSON: {e}"),
            IngestError::BadShape(e) => f.write_str(e),
            IngestError::TooManyEvents { count, max } => {
                write!(f, "{count} events in one request, more than the limit of {max}: split the batch")
            }
            IngestError::NoValidEvents(rejected) => match rejected.as_slice() {
                [only] => write!(f, "invalid event: {}", only.invalid.message),
                all => write!(f, "none of the {} events is valid", all.len()),
            },
            IngestError::MissingApiKey => {
                f.write_str("missing API key: send it in the X-Api-Key header or the `key` query parameter")
            }
            IngestError::InvalidApiKey => f.write_str("invalid API key"),
            IngestError::OriginNotAllowed(o) => write!(f, "origin {o:?} is not allowed to send telemetry here"),
            IngestError::AppNotAllowed(app) => {
                write!(
                    f,
                    "app {app:?} is not allowed to send telemetry here: `app.name` must be on the gateway's list of apps"
                )
            }
            IngestError::UnsupportedEncoding(e) => {
                write!(f, "unsupported Content-Encoding {e:?}: send the body uncompressed or gzip-compressed")
            }
            IngestError::DecompressedTooLarge { limit } => {
                write!(f, "the decompressed body exceeds the limit of {limit} bytes")
            }
            IngestError::CompressionRatio { max } => {
                write!(f, "the body decompresses to more than {max} times its compressed size")
            }
            IngestError::InvalidGzip(e) => write!(f, "the body is not valid gzip: {e}"),
            IngestError::BodyTimeout(t) => write!(f, "the body was not received within {} ms", t.as_millis()),
            IngestError::InvalidId { what, max } => write!(
                f,
                "invalid {what} id: use 1 to {max} characters of A-Z a-z 0-9 - _ . : ~ (X-{}-Id header or `{what}` query parameter)",
                if *what == "session" { "Session" } else { "Batch" }
            ),
            IngestError::DuplicateId { what } => write!(
                f,
                "the `{what}` query parameter (or X-{}-Id header) is given more than once: send one {what} id",
                if *what == "session" { "Session" } else { "Batch" }
            ),
            IngestError::LogUnavailable => {
                f.write_str("the gateway is overloaded and accepted nothing of this request: retry later")
            }
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::PayloadTooLarge { .. }
            | IngestError::DecompressedTooLarge { .. }
            | IngestError::CompressionRatio { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::MissingApiKey | IngestError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            IngestError::OriginNotAllowed(_) | IngestError::AppNotAllowed(_) => StatusCode::FORBIDDEN,
            IngestError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::LogUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::InvalidGzip(_)
            | IngestError::BodyRead(_)
            | IngestError::InvalidUtf8
            | IngestError::MalformedJson(_)
            | IngestError::MalformedOtlp(_)
            | IngestError::BadShape(_)
            | IngestError::TooManyEvents { .. }
            | IngestError::InvalidId { .. }
            | IngestError::DuplicateId { .. }
            | IngestError::NoValidEvents(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        // The rest of the body is unread (or still trickling in): the connection cannot be reused.
        if matches!(self, IngestError::PayloadTooLarge { .. } | IngestError::BodyTimeout(_)) {
            response.force_close();
        }
        let body = match self {
            IngestError::MissingApiKey | IngestError::InvalidApiKey => {
                response.insert_header((WWW_AUTHENTICATE, "ApiKey realm=\"client-telemetry\""));
                json!({ "error": self.to_string() })
            }
            IngestError::RateLimited(decision, challenged) => {
                response.insert_header((RETRY_AFTER, retry_after_seconds(decision)));
                let mut body = json!({ "error": self.to_string(), "retryAfter": retry_after_seconds(decision) });
                if let Some((value, difficulty)) = &challenged.challenge {
                    response.insert_header((CHALLENGE_HEADER, value.as_str()));
                    body["challenge"] = json!({ "algorithm": "SHA-256", "value": value, "difficulty": difficulty });
                }
                if let Some(refused) = challenged.refused {
                    body["challengeRefused"] = refused.as_str().into();
                }
                body
            }
            IngestError::NoValidEvents(rejected) => {
                json!({ "error": self.to_string(), "rejected": rejections(rejected) })
            }
            IngestError::LogUnavailable => {
                response.insert_header((RETRY_AFTER, 1));
                json!({ "error": self.to_string(), "retryAfter": 1 })
            }
            _ => json!({ "error": self.to_string() }),
        };
        response.json(body)
    }
}

/// 204 when every event was accepted; 200 with the refused ones otherwise.
pub fn accepted(count: usize, rejected: &[Rejection]) -> HttpResponse {
    if rejected.is_empty() {
        return HttpResponse::NoContent().finish();
    }
    HttpResponse::Ok().json(json!({ "accepted": count, "rejected": rejections(rejected) }))
}

fn rejections(rejected: &[Rejection]) -> Vec<serde_json::Value> {
    rejected.iter().map(|r| json!({ "index": r.index, "error": r.invalid.message })).collect()
}

/// A batch whose id was already accepted: success, and nothing is logged again.
pub fn duplicate() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "accepted": 0, "duplicate": true }))
}

/// Seconds until every limit that refused has a free slot, rounded up, at least 1.
pub fn retry_after_seconds(decision: &Decision) -> u64 {
    decision.retry_after().as_secs_f64().ceil().max(1.0) as u64
}

/// The IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers-10), one list item per limit
/// that applied: `RateLimit-Policy: "ip";q=100;w=60, "session";q=20;w=60` and
/// `RateLimit: "ip";r=37;t=12, "session";r=0;t=40`. The policy's `ip` quota is the client's own:
/// its network's override when it has one.
pub struct RateLimitHeaders {
    window_s: u64,
    /// The policies with the default IP limit, built once: most clients have no override.
    ip_only: HeaderValue,
    with_session: HeaderValue,
    default_limit: u32,
}

impl RateLimitHeaders {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let window_s = settings.window.as_secs_f64().ceil().max(1.0) as u64;
        let policy = |session| Self::policy(window_s, settings.max_requests, session);
        Self {
            window_s,
            ip_only: policy(None),
            with_session: policy(settings.session_max_requests),
            default_limit: settings.max_requests,
        }
    }

    fn policy(window_s: u64, ip: u32, session: Option<u32>) -> HeaderValue {
        let ip = format!("\"ip\";q={ip};w={window_s}");
        let session = session.map(|q| format!(", \"session\";q={q};w={window_s}"));
        HeaderValue::from_str(&(ip + &session.unwrap_or_default())).expect("ASCII")
    }

    pub fn apply(&self, response: &mut HttpResponse, decision: &Decision) {
        let item = |name: &str, quota: &Quota| {
            format!("\"{name}\";r={};t={}", quota.remaining, quota.reset_after.as_secs_f64().ceil() as u64)
        };
        let policy = match (&decision.session, decision.ip.limit == self.default_limit) {
            (None, true) => self.ip_only.clone(),
            (Some(_), true) => self.with_session.clone(),
            (session, false) => Self::policy(self.window_s, decision.ip.limit, session.map(|s| s.limit)),
        };
        let current = match &decision.session {
            None => item("ip", &decision.ip),
            Some(session) => item("ip", &decision.ip) + ", " + &item("session", session),
        };
        let headers = response.headers_mut();
        headers.insert(HeaderName::from_static("ratelimit-policy"), policy);
        headers.insert(HeaderName::from_static("ratelimit"), HeaderValue::from_str(&current).expect("ASCII"));
    }
}
