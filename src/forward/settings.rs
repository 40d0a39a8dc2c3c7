//! Forwarding configuration: the seed's names, the OpenTelemetry exporter variables and the
//! gateway's own batching knobs, resolved with a documented precedence (docs/forwarding.md).
//!
//! The `otel_*` keys are read from the variables of that name without our prefix (see
//! `setting::env_name`). Several variables can set one value, so those are kept as text, unset by
//! default, and checked in `resolve` after the precedence: every error names the variable that set
//! the bad value, and the defaults (`DEFAULT_*`) apply when none of them is set.

use std::{fmt, time::Duration};

use actix_web::http::{
    Uri,
    header::{HeaderName, HeaderValue},
};
use percent_encoding::percent_decode_str;

use crate::{
    redact::redact_url,
    setting::{self, Error as SettingsError, at_least, invalid},
};

#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// The full OTLP/HTTP logs URL, e.g. `http://collector:4318/v1/logs`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub gzip: bool,
    pub headers: Headers,
    /// For one HTTP attempt, from sending to the whole answer read.
    pub timeout: Duration,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub max_in_flight: usize,
    pub retry_initial_backoff: Duration,
    /// How long one batch may be retried, from its first attempt.
    pub retry_max_elapsed: Duration,
    /// A private CA and a client certificate for an `https://` collector (empty: the web roots).
    pub tls: crate::tls::TlsFiles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Protobuf,
}

/// Extra request headers (API keys): `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(HeaderName, HeaderValue)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| format!("{name}: <redacted>"))).finish()
    }
}

pub const DEFAULT_SERVICE_NAME: &str = "client-telemetry";
const DEFAULT_TIMEOUT_MS: u64 = 5000;
// Sized from a replica's measured full rate (docs/benchmarks.md#forwarding-at-full-load), not the
// OpenTelemetry SDKs' defaults, which a replica at full rate fills within one scheduling hiccup of
// the exporter. The memory this bounds (the queue full, the collector down) is stated there too.
const DEFAULT_QUEUE_CAPACITY: usize = 32_768;
const DEFAULT_BATCH_SIZE: usize = 2_048;
const DEFAULT_BATCH_DELAY_MS: u64 = 1000;

setting::component! {
    /// OTLP forwarding; off unless an endpoint is set.
    pub struct ForwardConfig shows shown_default {
        /// full OTLP/HTTP logs URL (`http://localhost:4318/v1/logs`); forwarding is off unless this or another endpoint below is set; wins over them
        #[serde(serialize_with = "setting::redact_optional_url")]
        otel_collector_endpoint: Option<String> = None,
        /// full logs URL, when `OTEL_COLLECTOR_ENDPOINT` is unset
        #[serde(serialize_with = "setting::redact_optional_url")]
        otel_exporter_otlp_logs_endpoint: Option<String> = None,
        /// base URL, `/v1/logs` appended, when neither full URL is set
        #[serde(serialize_with = "setting::redact_optional_url")]
        otel_exporter_otlp_endpoint: Option<String> = None,
        /// `http/json` or `http/protobuf` (gRPC is not supported); wins over `OTEL_EXPORTER_OTLP_PROTOCOL`
        otel_exporter_otlp_logs_protocol: Option<String> = None,
        /// as above, for all signals
        otel_exporter_otlp_protocol: Option<String> = None,
        /// `gzip` or `none`; wins over `OTEL_EXPORTER_OTLP_COMPRESSION`
        otel_exporter_otlp_logs_compression: Option<String> = None,
        /// as above, for all signals
        otel_exporter_otlp_compression: Option<String> = None,
        /// extra request headers, `key=value,…`, values percent-decoded; replaces `OTEL_EXPORTER_OTLP_HEADERS` (no merging); values never logged
        #[serde(serialize_with = "setting::redact_text")]
        otel_exporter_otlp_logs_headers: Option<String> = None,
        /// as above, for all signals
        #[serde(serialize_with = "setting::redact_text")]
        otel_exporter_otlp_headers: Option<String> = None,
        /// timeout of one export attempt, in ms; wins over the two below
        otel_collector_timeout_ms: Option<String> = None,
        /// as above (ms); wins over `OTEL_EXPORTER_OTLP_TIMEOUT`
        otel_exporter_otlp_logs_timeout: Option<String> = None,
        /// as above (ms), for all signals
        otel_exporter_otlp_timeout: Option<String> = None,
        /// the `service.name` resource attribute; wins over `service.name` in `OTEL_RESOURCE_ATTRIBUTES`
        otel_service_name: Option<String> = None,
        /// resource attributes, `key=value,…`, values percent-decoded
        otel_resource_attributes: Option<String> = None,
        /// events waiting for an export; when full the newest are dropped and counted
        otlp_queue_capacity: Option<String> = None,
        /// the same, when `CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY` is unset
        otel_blrp_max_queue_size: Option<String> = None,
        /// events per export, at most the queue capacity
        otlp_batch_size: Option<String> = None,
        /// the same, when `CLIENT_TELEMETRY_OTLP_BATCH_SIZE` is unset
        otel_blrp_max_export_batch_size: Option<String> = None,
        /// an export leaves when its oldest event has waited this long (`0` allowed)
        otlp_batch_delay_ms: Option<String> = None,
        /// the same, when `CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS` is unset
        otel_blrp_schedule_delay: Option<String> = None,
        /// exports in flight at once
        otlp_max_in_flight: usize = 4,
        /// first retry backoff; it doubles up to 5 s, with jitter
        otlp_retry_initial_backoff_ms: u64 = 500,
        /// how long one batch may be retried from its first attempt (`0` allowed: no retries)
        otlp_retry_max_elapsed_ms: u64 = 30_000,
        /// PEM file of the CA(s) to trust for an `https://` endpoint instead of the bundled web roots; wins over `OTEL_EXPORTER_OTLP_CERTIFICATE`
        otel_exporter_otlp_logs_certificate: Option<String> = None,
        /// as above, for all signals
        otel_exporter_otlp_certificate: Option<String> = None,
        /// PEM client certificate chain for mutual TLS (with its key); wins over `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
        otel_exporter_otlp_logs_client_certificate: Option<String> = None,
        /// as above, for all signals
        otel_exporter_otlp_client_certificate: Option<String> = None,
        /// PEM private key of the client certificate; wins over `OTEL_EXPORTER_OTLP_CLIENT_KEY`
        otel_exporter_otlp_logs_client_key: Option<String> = None,
        /// as above, for all signals
        otel_exporter_otlp_client_key: Option<String> = None,
    }
}

/// What applies when none of the variables that can set a value is set (for the reference).
fn shown_default(key: &str) -> Option<String> {
    let value = match key {
        "otel_exporter_otlp_logs_protocol" | "otel_exporter_otlp_protocol" => "http/protobuf".into(),
        "otel_exporter_otlp_logs_compression" | "otel_exporter_otlp_compression" => "none".into(),
        "otel_collector_timeout_ms" | "otel_exporter_otlp_logs_timeout" | "otel_exporter_otlp_timeout" => {
            DEFAULT_TIMEOUT_MS.to_string()
        }
        "otel_service_name" => DEFAULT_SERVICE_NAME.to_string(),
        "otlp_queue_capacity" | "otel_blrp_max_queue_size" => DEFAULT_QUEUE_CAPACITY.to_string(),
        "otlp_batch_size" | "otel_blrp_max_export_batch_size" => DEFAULT_BATCH_SIZE.to_string(),
        "otlp_batch_delay_ms" | "otel_blrp_schedule_delay" => DEFAULT_BATCH_DELAY_MS.to_string(),
        _ => return None,
    };
    Some(value)
}

/// A set value: the variable that set it, and the value.
type Set<'a> = Option<(&'static str, &'a str)>;

/// The first of the variables, in precedence order, that is set to something other than blanks.
fn first<'a>(candidates: &[(&'static str, &'a Option<String>)]) -> Set<'a> {
    candidates
        .iter()
        .find_map(|(name, value)| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(|v| (*name, v)))
}

impl ForwardConfig {
    /// `None` when no endpoint is set: forwarding is off.
    pub fn resolve(&self) -> Result<Option<ForwardSettings>, SettingsError> {
        let Some(endpoint) = self.endpoint()? else { return Ok(None) };
        let protocol = match first(&[
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", &self.otel_exporter_otlp_logs_protocol),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", &self.otel_exporter_otlp_protocol),
        ]) {
            // The OTLP exporter specification's default.
            None | Some((_, "http/protobuf")) => Protocol::Protobuf,
            Some((_, "http/json")) => Protocol::Json,
            Some((name, value)) => {
                return Err(invalid(name, value, "expected http/json or http/protobuf (gRPC is not supported)"));
            }
        };
        let gzip = match first(&[
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", &self.otel_exporter_otlp_logs_compression),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", &self.otel_exporter_otlp_compression),
        ]) {
            None | Some((_, "none")) => false,
            Some((_, "gzip")) => true,
            Some((name, value)) => return Err(invalid(name, value, "expected gzip or none")),
        };
        let headers = match first(&[
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", &self.otel_exporter_otlp_logs_headers),
            ("OTEL_EXPORTER_OTLP_HEADERS", &self.otel_exporter_otlp_headers),
        ]) {
            Some((name, value)) => headers(name, value)?,
            None => Headers::default(),
        };
        let timeout = millis(
            first(&[
                ("OTEL_COLLECTOR_TIMEOUT_MS", &self.otel_collector_timeout_ms),
                ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", &self.otel_exporter_otlp_logs_timeout),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", &self.otel_exporter_otlp_timeout),
            ]),
            DEFAULT_TIMEOUT_MS,
            1,
        )?;
        let queue_capacity = number(
            first(&[
                ("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", &self.otlp_queue_capacity),
                ("OTEL_BLRP_MAX_QUEUE_SIZE", &self.otel_blrp_max_queue_size),
            ]),
            DEFAULT_QUEUE_CAPACITY,
            1,
        )?;
        let batch_size_set = first(&[
            ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", &self.otlp_batch_size),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", &self.otel_blrp_max_export_batch_size),
        ]);
        let batch_size = number(batch_size_set, DEFAULT_BATCH_SIZE, 1)?;
        if batch_size > queue_capacity {
            let default = DEFAULT_BATCH_SIZE.to_string();
            let (name, value) = batch_size_set.unwrap_or(("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", &default));
            return Err(invalid(name, value, &format!("must not exceed the queue capacity ({queue_capacity})")));
        }
        Ok(Some(ForwardSettings {
            endpoint,
            protocol,
            gzip,
            headers,
            timeout,
            resource: self.resource()?,
            tls: self.tls()?,
            queue_capacity,
            batch_size,
            batch_delay: millis(
                first(&[
                    ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", &self.otlp_batch_delay_ms),
                    ("OTEL_BLRP_SCHEDULE_DELAY", &self.otel_blrp_schedule_delay),
                ]),
                DEFAULT_BATCH_DELAY_MS,
                0,
            )?,
            max_in_flight: at_least("otlp_max_in_flight", self.otlp_max_in_flight, 1)?,
            retry_initial_backoff: Duration::from_millis(at_least(
                "otlp_retry_initial_backoff_ms",
                self.otlp_retry_initial_backoff_ms,
                1,
            )?),
            retry_max_elapsed: Duration::from_millis(self.otlp_retry_max_elapsed_ms),
        }))
    }

    /// The seed's full URL, the OTel logs URL, or the OTel base URL plus `/v1/logs`.
    fn endpoint(&self) -> Result<Option<String>, SettingsError> {
        let full = first(&[
            ("OTEL_COLLECTOR_ENDPOINT", &self.otel_collector_endpoint),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &self.otel_exporter_otlp_logs_endpoint),
        ]);
        let base = first(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &self.otel_exporter_otlp_endpoint)]);
        let (name, value, url) = match (full, base) {
            (Some((name, value)), _) => (name, value, value.to_string()),
            (None, Some((name, value))) => (name, value, format!("{}/v1/logs", value.trim_end_matches('/'))),
            (None, None) => return Ok(None),
        };
        match url.parse::<Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() => Ok(Some(url)),
            _ => Err(invalid(
                name,
                &redact_url(value),
                "expected an http:// or https:// URL, e.g. http://localhost:4318/v1/logs",
            )),
        }
    }

    /// `service.name` (OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES, else the default) first,
    /// then the other resource attributes.
    /// The exporter's TLS files: the signal-specific variable wins over the general one, each file
    /// separately, as the OpenTelemetry specification says.
    fn tls(&self) -> Result<crate::tls::TlsFiles, SettingsError> {
        let ca = first(&[
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &self.otel_exporter_otlp_logs_certificate),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &self.otel_exporter_otlp_certificate),
        ]);
        let cert = first(&[
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", &self.otel_exporter_otlp_logs_client_certificate),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &self.otel_exporter_otlp_client_certificate),
        ]);
        let key = first(&[
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", &self.otel_exporter_otlp_logs_client_key),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &self.otel_exporter_otlp_client_key),
        ]);
        let files = crate::tls::FileSettings {
            ca: ca.unwrap_or(("OTEL_EXPORTER_OTLP_CERTIFICATE", "")),
            client_cert: cert.unwrap_or(("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "")),
            client_key: key.unwrap_or(("OTEL_EXPORTER_OTLP_CLIENT_KEY", "")),
        };
        crate::tls::TlsFiles::load(&files).map_err(|error| invalid(&error.setting, &error.path, &error.reason))
    }

    fn resource(&self) -> Result<Vec<(String, String)>, SettingsError> {
        let mut attributes = match first(&[("OTEL_RESOURCE_ATTRIBUTES", &self.otel_resource_attributes)]) {
            Some((name, value)) => pairs(value).map_err(|reason| invalid(name, value, &reason))?,
            None => Vec::new(),
        };
        let from_attributes = attributes.iter().position(|(k, _)| k == "service.name").map(|i| attributes.remove(i).1);
        let service = first(&[("OTEL_SERVICE_NAME", &self.otel_service_name)]).map(|(_, v)| v.to_string());
        let service = service.or(from_attributes).unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
        attributes.insert(0, ("service.name".into(), service));
        Ok(attributes)
    }
}

/// `key=value` pairs separated by commas, values percent-decoded (the W3C Baggage format the OTel
/// variables use). The reason never repeats a value: header values are often secrets.
fn pairs(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("expected key=value pairs separated by commas; `{}` has no `=`", name_of(item)));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err("expected key=value pairs separated by commas; a key is empty".into());
        }
        let value = percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of `{key}` is not UTF-8 once percent-decoded"))?;
        out.push((key.to_string(), value.into_owned()));
    }
    Ok(out)
}

/// What can be shown of an item that may hold a secret: nothing past a few characters.
fn name_of(item: &str) -> String {
    let shown: String = item.chars().take(3).collect();
    format!("{shown}…")
}

fn headers(name: &str, list: &str) -> Result<Headers, SettingsError> {
    // The value in the error is redacted: these variables carry API keys.
    let redacted = |reason: String| invalid(name, "<redacted>", &reason);
    let mut headers = Vec::new();
    for (key, value) in pairs(list).map_err(redacted)? {
        let header = HeaderName::try_from(key.as_str()).map_err(|_| redacted(format!("`{key}` is not a header name")));
        let value = HeaderValue::try_from(value).map_err(|_| redacted(format!("the value of `{key}` is not valid")));
        headers.push((header?, value?));
    }
    Ok(Headers(headers))
}

fn number(set: Set<'_>, default: usize, min: usize) -> Result<usize, SettingsError> {
    let Some((name, value)) = set else { return Ok(default) };
    match value.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(invalid(name, value, &format!("expected a whole number, at least {min}"))),
    }
}

fn millis(set: Set<'_>, default: u64, min: u64) -> Result<Duration, SettingsError> {
    let Some((name, value)) = set else { return Ok(Duration::from_millis(default)) };
    match value.parse::<u64>() {
        Ok(n) if n >= min => Ok(Duration::from_millis(n)),
        _ => Err(invalid(name, value, &format!("expected milliseconds, at least {min}"))),
    }
}
