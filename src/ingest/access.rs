//! Who may send: an optional API key and an optional `Origin` allow-list.
//!
//! Checked before the rate limiter, so a refused request costs no quota, no limiter round trip and
//! no body read.

use actix_web::{HttpRequest, http::header, web};
use ring::digest::{SHA256, digest as sha256};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::response::IngestError;

/// Who may send: optional API keys and an optional `Origin` allow-list.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// SHA-256 of each accepted key (several, for rotation); the keys themselves are not kept.
    pub api_key_digests: Vec<[u8; 32]>,
    /// When not empty, a request with an `Origin` header must carry one of these.
    pub allowed_origins: Vec<String>,
}

pub const API_KEY_HEADER: &str = "x-api-key";

/// What is kept of an API key. Comparing digests keeps the comparison constant-time whatever the
/// length of what a client sends.
pub fn digest(key: &str) -> [u8; 32] {
    sha256(&SHA256, key.as_bytes()).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub struct Access {
    settings: AccessSettings,
}

#[derive(Deserialize)]
struct KeyParam {
    key: Option<String>,
}

impl Access {
    pub fn new(settings: AccessSettings) -> Self {
        Self { settings }
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
        if allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin)) {
            return Ok(());
        }
        Err(IngestError::OriginNotAllowed(origin.chars().take(200).collect()))
    }

    /// The `X-Api-Key` header, or the `key` query parameter for `sendBeacon`, which cannot set headers.
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
        let Some(presented) = from_header.or_else(from_query) else {
            return Err(IngestError::MissingApiKey);
        };
        let presented = sha256(&SHA256, &presented);
        // Every key is compared, with no early exit, so timing says nothing about which matched.
        let matched = digests.iter().fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(presented.as_ref()));
        if bool::from(matched) { Ok(()) } else { Err(IngestError::InvalidApiKey) }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn access(keys: &[&str], origins: &[&str]) -> Access {
        Access::new(AccessSettings {
            api_key_digests: keys.iter().map(|k| digest(k)).collect(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        })
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
}
