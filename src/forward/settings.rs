//! Forwarding configuration: the seed's names, the OpenTelemetry exporter variables and the
//! gateway's own batching knobs, resolved with a documented precedence (docs/forwarding.md).
//!
//! `RawForward` is flattened into the gateway's `Raw` settings, so each value can come from the
//! configuration file (key = variable name in lower case) or from the environment. Values are kept as
//! text here and checked in `resolve`, so every error names the variable that set the bad value.

use std::{fmt, time::Duration};

use actix_web::http::{
    Uri,
    header::{HeaderName, HeaderValue},
};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer};

use crate::settings::SettingsError;

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

/// The variables as the sources gave them; `None` or empty means unset.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawForward {
    #[serde(deserialize_with = "text")]
    otel_collector_endpoint: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_collector_timeout_ms: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_endpoint: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_endpoint: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_protocol: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_protocol: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_headers: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_headers: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_compression: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_compression: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_timeout: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_timeout: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_service_name: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_resource_attributes: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_blrp_max_queue_size: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_blrp_max_export_batch_size: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_blrp_schedule_delay: Option<String>,
    #[serde(deserialize_with = "text")]
    otlp_queue_capacity: Option<String>,
    #[serde(deserialize_with = "text")]
    otlp_batch_size: Option<String>,
    #[serde(deserialize_with = "text")]
    otlp_batch_delay_ms: Option<String>,
    #[serde(deserialize_with = "text")]
    otlp_max_in_flight: Option<String>,
    #[serde(deserialize_with = "text")]
    otlp_retry_initial_backoff_ms: Option<String>,
    #[serde(deserialize_with = "text")]
    otlp_retry_max_elapsed_ms: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_certificate: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_certificate: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_client_certificate: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_client_certificate: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_logs_client_key: Option<String>,
    #[serde(deserialize_with = "text")]
    otel_exporter_otlp_client_key: Option<String>,
}

/// A set value: the variable that set it, and the value.
type Set<'a> = Option<(&'static str, &'a str)>;

/// The first of the variables, in precedence order, that is set to something other than blanks.
fn first<'a>(candidates: &[(&'static str, &'a Option<String>)]) -> Set<'a> {
    candidates
        .iter()
        .find_map(|(name, value)| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(|v| (*name, v)))
}

impl RawForward {
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
            5000,
            1,
        )?;
        let queue_capacity = number(
            first(&[
                ("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", &self.otlp_queue_capacity),
                ("OTEL_BLRP_MAX_QUEUE_SIZE", &self.otel_blrp_max_queue_size),
            ]),
            2048,
            1,
        )?;
        let batch_size_set = first(&[
            ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", &self.otlp_batch_size),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", &self.otel_blrp_max_export_batch_size),
        ]);
        let batch_size = number(batch_size_set, 512, 1)?;
        if batch_size > queue_capacity {
            let (name, value) = batch_size_set.unwrap_or(("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "512"));
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
                1000,
                0,
            )?,
            max_in_flight: number(first(&[("CLIENT_TELEMETRY_OTLP_MAX_IN_FLIGHT", &self.otlp_max_in_flight)]), 4, 1)?,
            retry_initial_backoff: millis(
                first(&[("CLIENT_TELEMETRY_OTLP_RETRY_INITIAL_BACKOFF_MS", &self.otlp_retry_initial_backoff_ms)]),
                500,
                1,
            )?,
            retry_max_elapsed: millis(
                first(&[("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", &self.otlp_retry_max_elapsed_ms)]),
                30_000,
                0,
            )?,
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
            _ => Err(invalid(name, value, "expected an http:// or https:// URL, e.g. http://localhost:4318/v1/logs")),
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

fn invalid(setting: &str, value: &str, reason: &str) -> SettingsError {
    SettingsError { setting: setting.into(), value: value.into(), reason: reason.into() }
}

/// A scalar as text: a file may write `otlp_batch_size = 100` as well as `"100"`.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(|s| match s {
        Scalar::Text(s) => s,
        Scalar::Int(n) => n.to_string(),
        Scalar::Float(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn load(vars: &[(&str, &str)]) -> Result<Option<ForwardSettings>, SettingsError> {
        Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map(|s| s.forward)
    }

    fn endpoint(vars: &[(&str, &str)]) -> String {
        load(vars).unwrap().expect("forwarding on").endpoint
    }

    #[test]
    fn off_without_an_endpoint() {
        assert!(load(&[]).unwrap().is_none());
        assert!(load(&[("OTEL_SERVICE_NAME", "web"), ("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap().is_none());
    }

    #[test]
    fn endpoint_precedence_seed_then_logs_then_base() {
        let seed = ("OTEL_COLLECTOR_ENDPOINT", "http://seed:4318/v1/logs");
        let logs = ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4318/custom");
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://base:4318/");
        assert_eq!(endpoint(&[seed, logs, base]), "http://seed:4318/v1/logs");
        assert_eq!(endpoint(&[logs, base]), "http://logs:4318/custom");
        assert_eq!(endpoint(&[base]), "https://base:4318/v1/logs");
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp")]), "http://c:4318/otlp/v1/logs");
    }

    #[test]
    fn defaults_follow_the_seed_and_the_otel_batch_processor() {
        let s = load(&[("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs")]).unwrap().unwrap();
        assert_eq!(s.protocol, Protocol::Protobuf, "the OTLP exporter specification's default");
        assert!(!s.gzip);
        assert_eq!(s.timeout, Duration::from_millis(5000));
        assert_eq!((s.queue_capacity, s.batch_size, s.batch_delay), (2048, 512, Duration::from_secs(1)));
        assert_eq!(s.resource, vec![("service.name".to_string(), DEFAULT_SERVICE_NAME.to_string())]);
        assert!(s.headers.0.is_empty());
    }

    #[test]
    fn signal_specific_variables_win_over_general_ones() {
        let s = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "9000"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "7000"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-logs=2"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
            ("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", "300"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "50"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "20"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((s.protocol, s.gzip, s.timeout), (Protocol::Protobuf, true, Duration::from_secs(7)));
        assert_eq!(s.headers.0.len(), 1);
        assert_eq!(s.headers.0[0].0, "x-logs");
        assert_eq!((s.queue_capacity, s.batch_size, s.batch_delay), (300, 50, Duration::from_millis(20)));
        let s = load(&[
            ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
            ("OTEL_COLLECTOR_TIMEOUT_MS", "250"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "9000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(250));
    }

    #[test]
    fn headers_and_resource_attributes_are_percent_decoded() {
        let s = load(&[
            ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt%20x, x-tenant = acme"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=ignored,team=web%2Capp"),
            ("OTEL_SERVICE_NAME", "browser-gateway"),
        ])
        .unwrap()
        .unwrap();
        let headers: Vec<_> = s.headers.0.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(headers, [("api-key", "s3cr=t x"), ("x-tenant", "acme")]);
        let resource: Vec<_> = s.resource.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            resource,
            [("service.name", "browser-gateway"), ("deployment.environment", "prod"), ("team", "web,app")]
        );
        assert!(!format!("{s:?}").contains("s3cr"), "Debug must not show header values");
        let s = load(&[
            ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.resource[0].1, "from-attributes");
    }

    #[test]
    fn errors_name_the_variable_and_never_echo_a_header_value() {
        let err = |vars: &[(&str, &str)]| load(vars).unwrap_err();
        let e = err(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
        assert_eq!((e.setting.as_str(), e.value.as_str()), ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"));
        let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!((e.setting.as_str(), e.value.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
        let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_COLLECTOR_TIMEOUT_MS", "soon")]);
        assert_eq!(e.setting, "OTEL_COLLECTOR_TIMEOUT_MS");
        let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]);
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_COMPRESSION");
        let e =
            err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_HEADERS", "Bearer sk-123")]);
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_HEADERS");
        assert!(!e.to_string().contains("sk-123"), "{e}");
        let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_HEADERS", "a b=sk-123")]);
        assert!(!e.to_string().contains("sk-123"), "{e}");
        let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_RESOURCE_ATTRIBUTES", "team")]);
        assert_eq!(e.setting, "OTEL_RESOURCE_ATTRIBUTES");
        let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "4096")]);
        assert_eq!(e.setting, "CLIENT_TELEMETRY_OTLP_BATCH_SIZE");
        assert!(e.reason.contains("queue capacity"), "{e}");
    }

    #[test]
    fn the_configuration_file_can_set_them_too() {
        let dir = std::env::temp_dir().join(format!("ct-forward-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.toml");
        std::fs::write(&file, "otel_collector_endpoint = \"http://file:4318/v1/logs\"\notlp_batch_size = 64\n")
            .unwrap();
        let path = file.to_str().unwrap();
        let s = load(&[("CLIENT_TELEMETRY_CONFIG", path)]).unwrap().unwrap();
        assert_eq!((s.endpoint.as_str(), s.batch_size), ("http://file:4318/v1/logs", 64));
        let s = load(&[("CLIENT_TELEMETRY_CONFIG", path), ("OTEL_COLLECTOR_ENDPOINT", "http://env:4318/v1/logs")])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://env:4318/v1/logs");
    }
}
