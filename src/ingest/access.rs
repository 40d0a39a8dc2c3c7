//! Who may send: an optional API key and an optional `Origin` allow-list.
//!
//! Checked before the rate limiter, so a refused request costs no quota, no limiter round trip and
//! no body read. The same allowed origins get CORS headers (see `server`): a page whose origin is
//! missing is refused loudly (403, and a warning per origin at most once a minute) instead of
//! having its accepted answers hidden by the browser and its batches retried.

use std::time::Duration;

use actix_web::{HttpRequest, http::header, web};
use moka::sync::Cache;
use ring::digest::{SHA256, digest as sha256};
use serde::Deserialize;
use slog::{Logger, warn};
use subtle::ConstantTimeEq;

use super::response::IngestError;
use crate::setting;

setting::component! {
    /// Who may send.
    pub struct AccessConfig {
        /// comma-separated accepted API keys, each at least 16 characters; none = no key needed; only their SHA-256 digests are kept
        #[serde(deserialize_with = "setting::comma_list", serialize_with = "setting::redact_list")]
        api_keys: Vec<String> = Vec::new(),
        /// comma-separated exact origins (`https://app.example.com`: scheme and host, no path, no wildcard) allowed to send, and given CORS headers; a browser request with another `Origin` (not the gateway's own host) gets 403; none = any origin, no CORS headers
        #[serde(deserialize_with = "setting::comma_list")]
        allowed_origins: Vec<String> = Vec::new(),
    }
}

impl AccessConfig {
    pub fn resolve(&self) -> Result<AccessSettings, setting::Error> {
        let too_short = || setting::invalid_key("api_keys", "(hidden)", "each key must be at least 16 characters");
        Ok(AccessSettings {
            api_key_digests: self
                .api_keys
                .iter()
                .map(|key| if key.len() >= 16 { Ok(digest(key)) } else { Err(too_short()) })
                .collect::<Result<_, _>>()?,
            allowed_origins: setting::each("allowed_origins", &self.allowed_origins, setting::origin)?,
        })
    }
}

/// Who may send: optional API keys and an optional `Origin` allow-list.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// SHA-256 of each accepted key (several, for rotation); the keys themselves are not kept.
    pub api_key_digests: Vec<[u8; 32]>,
    /// When not empty, a request with an `Origin` header must carry one of these.
    pub allowed_origins: Vec<String>,
}

/// A refused origin is logged at most once per this period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(60);
/// Distinct refused origins remembered for that (bounded: any site can send any `Origin`).
const REFUSAL_LOG_ORIGINS: u64 = 1000;

pub const API_KEY_HEADER: &str = "x-api-key";
/// The path segment of `/collect/{app-key}` that carries the API key.
pub const APP_KEY_SEGMENT: &str = "app_key";

/// What is kept of an API key. Comparing digests keeps the comparison constant-time whatever the
/// length of what a client sends.
pub fn digest(key: &str) -> [u8; 32] {
    sha256(&SHA256, key.as_bytes()).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub struct Access {
    settings: AccessSettings,
    log: Logger,
    /// Origins refused lately, so each is logged once per `REFUSAL_LOG_PERIOD`.
    refused_lately: Cache<String, ()>,
}

#[derive(Deserialize)]
struct KeyParam {
    key: Option<String>,
}

impl Access {
    pub fn new(settings: AccessSettings, log: Logger) -> Self {
        let refused_lately =
            Cache::builder().max_capacity(REFUSAL_LOG_ORIGINS).time_to_live(REFUSAL_LOG_PERIOD).build();
        Self { settings, log, refused_lately }
    }

    pub fn check(&self, request: &HttpRequest) -> Result<(), IngestError> {
        self.check_origin(request)?;
        self.check_api_key(request)
    }

    /// Browsers always send `Origin` on a POST; a request without one is not a browser's and is
    /// left to the API key.
    fn check_origin(&self, request: &HttpRequest) -> Result<(), IngestError> {
        let allowed = &self.settings.allowed_origins;
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = String::from_utf8_lossy(origin.as_bytes());
        if allowed.is_empty()
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin))
            || same_origin(request, &origin)
        {
            return Ok(());
        }
        let origin: String = origin.chars().take(200).collect();
        if !self.refused_lately.contains_key(&origin) {
            self.refused_lately.insert(origin.clone(), ());
            warn!(self.log, "origin not allowed: add it to CLIENT_TELEMETRY_ALLOWED_ORIGINS if it is yours";
                "origin" => &origin, "status" => 403);
        }
        Err(IngestError::OriginNotAllowed(origin))
    }

    /// The `X-Api-Key` header; the app key in the path (`/collect/{app-key}`, as Faro's hosted
    /// collector has it); or the `key` query parameter for `sendBeacon`, which cannot set headers.
    fn check_api_key(&self, request: &HttpRequest) -> Result<(), IngestError> {
        let digests = &self.settings.api_key_digests;
        if digests.is_empty() {
            return Ok(());
        }
        let from_header = request.headers().get(API_KEY_HEADER).map(|v| v.as_bytes().to_vec());
        let from_query = || {
            web::Query::<KeyParam>::from_query(request.query_string())
                .ok()
                .and_then(|q| q.0.key)
                .map(String::into_bytes)
        };
        let from_path = || request.match_info().get(APP_KEY_SEGMENT).map(|key| key.as_bytes().to_vec());
        let Some(presented) = from_header.or_else(from_path).or_else(from_query) else {
            return Err(IngestError::MissingApiKey);
        };
        let presented = sha256(&SHA256, &presented);
        // Every key is compared, with no early exit, so timing says nothing about which matched.
        let matched = digests.iter().fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(presented.as_ref()));
        if bool::from(matched) { Ok(()) } else { Err(IngestError::InvalidApiKey) }
    }
}

/// A page served from the gateway's own host (the demo, or an app whose load balancer routes the
/// ingest path to the gateway) is not another site: the scheme is left out, since TLS often ends
/// at a proxy.
fn same_origin(request: &HttpRequest, origin: &str) -> bool {
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn access(keys: &[&str], origins: &[&str]) -> Access {
        let settings = AccessSettings {
            api_key_digests: keys.iter().map(|k| digest(k)).collect(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        };
        Access::new(settings, Logger::root(slog::Discard, slog::o!()))
    }

    const KEY: &str = "k-0123456789abcdef";

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let a = access(&[KEY, "k-rotated-0000000000"], &[]);
        assert!(a.check(&TestRequest::post().insert_header((API_KEY_HEADER, KEY)).to_http_request()).is_ok());
        assert!(a.check(&TestRequest::post().uri(&format!("/x?key={KEY}")).to_http_request()).is_ok());
        assert!(a.check(&TestRequest::post().uri("/x?key=k-rotated-0000000000").to_http_request()).is_ok());
        let wrong =
            a.check(&TestRequest::post().insert_header((API_KEY_HEADER, "k-0123456789abcdeX")).to_http_request());
        assert!(matches!(wrong, Err(IngestError::InvalidApiKey)));
        // The header wins: a right query key does not rescue a wrong header.
        let both = TestRequest::post().uri(&format!("/x?key={KEY}")).insert_header((API_KEY_HEADER, "nope"));
        assert!(matches!(a.check(&both.to_http_request()), Err(IngestError::InvalidApiKey)));
        assert!(matches!(a.check(&TestRequest::post().to_http_request()), Err(IngestError::MissingApiKey)));
    }

    #[test]
    fn no_keys_configured_means_no_key_needed() {
        assert!(access(&[], &[]).check(&TestRequest::post().to_http_request()).is_ok());
    }

    #[test]
    fn origins_outside_the_list_are_refused() {
        let a = access(&[], &["https://app.example.com"]);
        let with = |o: &str| a.check(&TestRequest::post().insert_header((header::ORIGIN, o)).to_http_request());
        assert!(with("https://app.example.com").is_ok());
        assert!(with("https://APP.example.com").is_ok());
        assert!(matches!(with("https://evil.example"), Err(IngestError::OriginNotAllowed(_))));
        assert!(matches!(with("null"), Err(IngestError::OriginNotAllowed(_))));
        assert!(a.check(&TestRequest::post().to_http_request()).is_ok());
    }

    #[test]
    fn a_page_of_the_gateways_own_host_is_not_another_site() {
        let a = access(&[], &["https://app.example.com"]);
        let request = |origin: &str, host: &str| {
            TestRequest::post().insert_header((header::ORIGIN, origin)).insert_header((header::HOST, host))
        };
        assert!(a.check(&request("http://127.0.0.1:8080", "127.0.0.1:8080").to_http_request()).is_ok());
        assert!(a.check(&request("https://telemetry.example.com", "telemetry.example.com").to_http_request()).is_ok());
        let other = a.check(&request("https://evil.example", "telemetry.example.com").to_http_request());
        assert!(matches!(other, Err(IngestError::OriginNotAllowed(_))));
        let other_port = a.check(&request("http://127.0.0.1:3000", "127.0.0.1:8080").to_http_request());
        assert!(matches!(other_port, Err(IngestError::OriginNotAllowed(_))));
    }
}
