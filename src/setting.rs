//! What every component's settings share: the error that names a setting, the checks and list
//! formats they use, and `component!`, which declares one component's settings in one place.
//!
//! Near a leaf: it imports nothing of the crate but `redact` (itself a leaf), so every component can
//! use it and `settings` (which composes them) imports the components, never the other way round.

use std::{fmt, net::ToSocketAddrs};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

pub const ENV_PREFIX: &str = "CLIENT_TELEMETRY";

/// One invalid setting: which, what it was, and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub setting: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value.as_str() {
            // Unknown names: their values are not shown (they may be secrets).
            "" => write!(f, "invalid configuration: {}: {}", self.setting, self.reason),
            value => write!(f, "invalid configuration: {}={value:?}: {}", self.setting, self.reason),
        }
    }
}

impl std::error::Error for Error {}

/// An error naming the variable `setting` (a variable name, e.g. `OTEL_EXPORTER_OTLP_HEADERS`).
pub fn invalid(setting: &str, value: &str, reason: &str) -> Error {
    Error { setting: setting.to_string(), value: value.to_string(), reason: reason.to_string() }
}

/// An error naming the setting `key` by its variable.
pub fn invalid_key(key: &str, value: &str, reason: &str) -> Error {
    invalid(&env_name(key), value, reason)
}

/// The environment name of a setting key: `rate_limit_backend` -> `CLIENT_TELEMETRY_RATE_LIMIT_BACKEND`.
/// Keys starting with `otel_` are the OpenTelemetry variables (and the seed's) of that name,
/// read without our prefix: `otel_exporter_otlp_endpoint` -> `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn env_name(key: &str) -> String {
    if key.starts_with("otel_") {
        key.to_ascii_uppercase()
    } else {
        format!("{ENV_PREFIX}_{}", key.to_ascii_uppercase())
    }
}

/// One component's settings: declared by `component!`, read from the merged sources by `settings`.
pub trait Component: Serialize + DeserializeOwned + Default {
    /// Every setting key with its one-line meaning, in declaration order.
    const DOCS: &'static [(&'static str, &'static str)];

    /// The default the reference shows, when it is not the field's own: settings several variables
    /// can set default to unset, and the value applies after the precedence (see `forward`).
    fn shown_default(_key: &str) -> Option<String> {
        None
    }
}

/// Declares one component's settings: each field is a setting key (`CLIENT_TELEMETRY_<KEY>` in
/// the environment, `<key>` in the file) with one doc line (its meaning in the reference) and its
/// default. Adding a setting is adding one field here.
macro_rules! component {
    (
        $(#[doc = $struct_doc:literal])*
        pub struct $name:ident $(shows $shown:path)? {
            $(
                #[doc = $doc:literal]
                $(#[$attr:meta])*
                $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[doc = $struct_doc])*
        #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
        #[serde(default)]
        pub struct $name {
            $(#[doc = $doc] $(#[$attr])* pub $field: $ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl $crate::setting::Component for $name {
            const DOCS: &'static [(&'static str, &'static str)] = &[$((stringify!($field), $doc),)*];
            $(fn shown_default(key: &str) -> Option<String> { $shown(key) })?
        }
    };
}
pub(crate) use component;

pub fn at_least<T: PartialOrd + fmt::Display + Copy>(key: &str, value: T, min: T) -> Result<T, Error> {
    if value < min {
        return Err(invalid_key(key, &value.to_string(), &format!("must be at least {min}")));
    }
    Ok(value)
}

/// `host:port` that resolves.
pub fn socket_address(key: &str, value: &str) -> Result<String, Error> {
    match value.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(value.to_string()),
        _ => Err(invalid_key(key, value, "expected host:port, e.g. 0.0.0.0:8080")),
    }
}

/// A CIDR, or a bare address meaning just that host.
pub fn parse_cidr(value: &str) -> Option<IpNet> {
    value.parse::<IpNet>().ok().or_else(|| value.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

pub fn cidr(key: &str, value: &str) -> Result<IpNet, Error> {
    parse_cidr(value).ok_or_else(|| invalid_key(key, value, "expected a CIDR such as 10.0.0.0/8 or an IP address"))
}

/// Browsers send `Origin` as scheme://host[:port] with no path; anything else can never match.
pub fn origin(key: &str, value: &str) -> Result<String, Error> {
    let rest = value.strip_prefix("https://").or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains('/') => Ok(value.to_string()),
        _ => Err(invalid_key(
            key,
            value,
            "expected an origin such as https://app.example.com (scheme and host, no path, no wildcard)",
        )),
    }
}

/// Every item of a list setting, parsed; the first bad one names the setting.
pub fn each<T>(key: &str, items: &[String], parse: fn(&str, &str) -> Result<T, Error>) -> Result<Vec<T>, Error> {
    items.iter().map(|item| parse(key, item)).collect()
}

/// One of the named choices, case-insensitive.
pub fn choice<T: Copy>(key: &str, value: &str, choices: &[(&str, T)]) -> Result<T, Error> {
    let wanted = value.trim().to_ascii_lowercase();
    match choices.iter().find(|(name, _)| *name == wanted) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let names: Vec<_> = choices.iter().map(|(name, _)| *name).collect();
            Err(invalid_key(key, value, &format!("expected one of {}", names.join(", "))))
        }
    }
}

/// The environment gives a string; a file may give a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// A list given either as a comma-separated string (environment) or as a list (file).
pub fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items = match StringOrList::deserialize(deserializer)? {
        StringOrList::One(s) => s.split(',').map(str::to_string).collect(),
        StringOrList::Many(v) => v,
    };
    Ok(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

/// Regular expressions may contain commas: a file gives a list, the environment either one
/// pattern or a JSON array of them (`["ORD-[0-9]{6}", "ACME-[A-Z]{4}"]`).
pub fn pattern_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items = match StringOrList::deserialize(deserializer)? {
        StringOrList::One(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str(&s).map_err(|e| serde::de::Error::custom(format!("a JSON array of strings: {e}")))?
        }
        StringOrList::One(s) => vec![s],
        StringOrList::Many(v) => v,
    };
    Ok(items.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

pub const REDACTED: &str = "<redacted>";

/// Secrets (API keys) are shown as `<redacted>`, an unset list as empty.
pub fn redact_list<S: Serializer>(items: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    let shown: Vec<&str> = items.iter().map(|_| REDACTED).collect();
    shown.serialize(serializer)
}

/// A value that is a secret when set (OTLP headers): `<redacted>`.
pub fn redact_text<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    value.as_deref().map(|v| if v.trim().is_empty() { v } else { REDACTED }).serialize(serializer)
}

/// A URL with its credentials (userinfo, secret-looking query parameters) masked.
pub fn redact_url<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    crate::redact::redact_url(url).serialize(serializer)
}

/// The same, for an optional URL.
pub fn redact_optional_url<S: Serializer>(url: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    url.as_deref().map(crate::redact::redact_url).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_keys_are_read_without_our_prefix() {
        assert_eq!(env_name("rate_limit_backend"), "CLIENT_TELEMETRY_RATE_LIMIT_BACKEND");
        assert_eq!(env_name("otel_service_name"), "OTEL_SERVICE_NAME");
        assert_eq!(env_name("otlp_batch_size"), "CLIENT_TELEMETRY_OTLP_BATCH_SIZE");
    }
}
