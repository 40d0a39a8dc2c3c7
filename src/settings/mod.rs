//! Configuration: each component's defaults < optional file (`CLIENT_TELEMETRY_CONFIG`) < environment.
//!
//! Every setting has one flat key: `CLIENT_TELEMETRY_<KEY>` in the environment, `<key>` in the
//! file (`otel_*` keys: the OpenTelemetry variables of that name). Each component declares its
//! settings next to its code (`setting::component!`); this module only merges the sources, refuses
//! unknown names, maps old spellings, and reads each component from the merged result.

use std::collections::BTreeMap;

use config::{Config, ConfigError, File, Value};
use ipnet::IpNet;
use regex_automata::meta::Regex;
use serde::Serialize;

use crate::{
    challenge::{ChallengeConfig, ChallengeSettings},
    client_ip::ClientIpConfig,
    event::{Limits, LimitsConfig},
    forward::{ForwardConfig, ForwardSettings},
    ingest::{AccessConfig, AccessSettings, BodyConfig, BodyLimits, FormatsConfig, OriginConfig, OriginSettings},
    lifecycle::{ShutdownConfig, ShutdownSettings},
    observability::{LogConfig, LogSettings},
    ratelimit::{RateLimitConfig, RateLimitSettings},
    scrub::{ScrubConfig, ScrubSettings},
    setting::{Component, ENV_PREFIX, Error, env_name, invalid},
    transport::{TransportConfig, TransportSettings},
};

/// The variable naming the settings file.
pub const CONFIG_VAR: &str = "CLIENT_TELEMETRY_CONFIG";

/// Every component's settings, checked and typed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub transport: TransportSettings,
    pub log: LogSettings,
    pub rate_limit: RateLimitSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub access: AccessSettings,
    pub body: BodyLimits,
    pub limits: Limits,
    pub origin: OriginSettings,
    /// The OTLP logs route's path (its prefix is a setting).
    pub otlp_path: String,
    pub shutdown: ShutdownSettings,
    pub scrub: ScrubSettings,
    /// OTLP forwarding; `None` (no endpoint set) means off.
    pub forward: Option<ForwardSettings>,
    /// The proof-of-work challenge for suspected abuse; `None` when off.
    pub challenge: Option<ChallengeSettings>,
    /// Old spellings and retired settings that were given, with what to do instead (logged at start).
    pub deprecated: Vec<(String, String)>,
    /// Every setting's variable and effective value, secrets redacted (what `check-config` prints).
    pub effective: Vec<(String, String)>,
}

/// Old spellings, accepted (with a warning at start) for one release: old key, new key, and
/// whether both may be given (their lists are merged) rather than having to agree.
const RENAMED: &[(&str, &str, Both)] = &[
    ("dedup_window_ms", "rate_limit_dedup_window_ms", Both::MustAgree),
    ("redis_url", "rate_limit_redis_url", Both::MustAgree),
    ("redis_key_prefix", "rate_limit_redis_key_prefix", Both::MustAgree),
    ("redis_connections_per_worker", "rate_limit_redis_connections_per_worker", Both::MustAgree),
    ("redis_timeout_ms", "rate_limit_redis_timeout_ms", Both::MustAgree),
    // The CORS origins and the Origin allow-list are one concept now.
    ("cors_allowed_origins", "allowed_origins", Both::Merge),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Both {
    MustAgree,
    Merge,
}

/// Settings that no longer do anything: accepted, ignored, and reported at start.
const RETIRED: &[(&str, &str)] = &[(
    "redis_pool_size",
    "ignored: each worker thread shares (pipelines) CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CONNECTIONS_PER_WORKER \
     connections (default 1) instead of checking one out of a pool per call",
)];

/// The components' settings as the merged sources give them.
#[derive(Serialize)]
struct Raw {
    transport: TransportConfig,
    log: LogConfig,
    rate_limit: RateLimitConfig,
    client_ip: ClientIpConfig,
    access: AccessConfig,
    body: BodyConfig,
    limits: LimitsConfig,
    origin: OriginConfig,
    formats: FormatsConfig,
    shutdown: ShutdownConfig,
    scrub: ScrubConfig,
    forward: ForwardConfig,
    challenge: ChallengeConfig,
}

/// One row of the configuration reference.
#[derive(Clone)]
pub struct Entry {
    pub key: &'static str,
    /// The default as the reference shows it; `None`: unset.
    pub default: Option<String>,
    pub meaning: &'static str,
}

/// Every setting of every component, in order: what the reference lists and what is known.
pub fn catalogue() -> Vec<Entry> {
    [
        entries::<TransportConfig>(),
        entries::<LogConfig>(),
        entries::<RateLimitConfig>(),
        entries::<ClientIpConfig>(),
        entries::<AccessConfig>(),
        entries::<BodyConfig>(),
        entries::<LimitsConfig>(),
        entries::<OriginConfig>(),
        entries::<FormatsConfig>(),
        entries::<ShutdownConfig>(),
        entries::<ScrubConfig>(),
        entries::<ForwardConfig>(),
        entries::<ChallengeConfig>(),
    ]
    .concat()
}

fn entries<C: Component>() -> Vec<Entry> {
    let defaults = serde_json::to_value(C::default()).expect("settings serialise");
    C::DOCS
        .iter()
        .map(|(key, meaning)| Entry {
            key,
            default: C::shown_default(key).or_else(|| shown(&defaults[*key])),
            meaning: meaning.trim(),
        })
        .collect()
}

/// A value as a variable would hold it; `None` when unset or empty.
fn shown(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().filter_map(shown).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

impl Settings {
    /// Reads the process environment (and the file it names).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables instead of the process environment (tests).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, Error> {
        let catalogue = catalogue();
        let mut sources = Sources::new(&catalogue);
        let mut env = BTreeMap::new();
        let mut config_path = None;
        for (name, value) in vars {
            if name == CONFIG_VAR {
                config_path = Some(value).filter(|v| !v.trim().is_empty());
            } else {
                sources.variable(&mut env, name, value)?;
            }
        }
        let mut merged = match &config_path {
            Some(path) => sources.file(path)?,
            None => BTreeMap::new(),
        };
        merged.extend(env); // the environment wins over the file
        let mut builder = Config::builder();
        // Errors name what was set: an old spelling, if that is what was given.
        let mut set_by = BTreeMap::new();
        for (key, (value, name)) in merged {
            if name != key && name != env_name(&key) {
                set_by.insert(env_name(&key), name);
            }
            builder = builder.set_override(key, value).map_err(from_config_error)?;
        }
        let config = builder.build().map_err(from_config_error)?;
        let named = |error: Error| match set_by.get(&error.setting) {
            Some(given) => Error { setting: given.clone(), ..error },
            None => error,
        };
        Self::read(&config, &catalogue, config_path, sources.deprecated).map_err(named)
    }

    fn read(
        config: &Config,
        catalogue: &[Entry],
        config_path: Option<String>,
        deprecated: Vec<(String, String)>,
    ) -> Result<Self, Error> {
        fn component<C: Component>(config: &Config) -> Result<C, Error> {
            config.clone().try_deserialize::<C>().map_err(from_config_error)
        }
        let raw = Raw {
            transport: component(config)?,
            log: component(config)?,
            rate_limit: component(config)?,
            client_ip: component(config)?,
            access: component(config)?,
            body: component(config)?,
            limits: component(config)?,
            origin: component(config)?,
            formats: component(config)?,
            shutdown: component(config)?,
            scrub: component(config)?,
            forward: component(config)?,
            challenge: component(config)?,
        };
        let by_component = serde_json::to_value(&raw).expect("settings serialise");
        let values: serde_json::Map<String, serde_json::Value> = by_component
            .as_object()
            .into_iter()
            .flat_map(|c| c.values())
            .filter_map(|c| c.as_object())
            .flat_map(Clone::clone)
            .collect();
        let mut effective = vec![(CONFIG_VAR.to_string(), config_path.unwrap_or_default())];
        for entry in catalogue {
            effective.push((env_name(entry.key), values.get(entry.key).and_then(shown).unwrap_or_default()));
        }
        Ok(Settings {
            transport: raw.transport.resolve()?,
            log: raw.log.resolve()?,
            rate_limit: raw.rate_limit.resolve()?,
            trusted_proxies: raw.client_ip.resolve()?,
            access: raw.access.resolve()?,
            body: raw.body.resolve()?,
            limits: raw.limits.resolve()?,
            origin: raw.origin.resolve()?,
            otlp_path: raw.formats.resolve()?,
            shutdown: raw.shutdown.resolve(),
            scrub: raw.scrub.resolve()?,
            forward: raw.forward.resolve()?,
            challenge: raw.challenge.resolve()?,
            deprecated,
            effective,
        })
    }
}

/// Values under their current keys, with the name each was given as (a variable or a file key).
type Given = BTreeMap<String, (Value, String)>;

/// Reads the sources: refuses unknown names, maps old spellings, records what is deprecated.
struct Sources<'a> {
    catalogue: &'a [Entry],
    deprecated: Vec<(String, String)>,
    service_links: Regex,
}

impl<'a> Sources<'a> {
    fn new(catalogue: &'a [Entry]) -> Self {
        // What Kubernetes injects for a Service named client-telemetry(-…) unless
        // `enableServiceLinks: false` (after our prefix): never ours, never an error.
        let service_links = Regex::new(
            r"^([A-Z0-9_]+_)?(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$",
        )
        .expect("a valid pattern");
        Self { catalogue, deprecated: Vec::new(), service_links }
    }

    fn is_known(&self, key: &str) -> bool {
        self.catalogue.iter().any(|e| e.key == key)
    }

    fn is_old(key: &str) -> bool {
        RENAMED.iter().any(|(old, _, _)| *old == key) || RETIRED.iter().any(|(old, _)| *old == key)
    }

    fn variable(&mut self, env: &mut Given, name: String, value: String) -> Result<(), Error> {
        if name.starts_with("OTEL_") {
            // Other OpenTelemetry variables may be set for other programs: only ours are read.
            let key = name.to_ascii_lowercase();
            if self.is_known(&key) && !value.trim().is_empty() {
                set(env, key, Value::from(value), name)?;
            }
            return Ok(());
        }
        let Some(rest) = name.strip_prefix(ENV_PREFIX).and_then(|r| r.strip_prefix('_')) else { return Ok(()) };
        if self.service_links.is_match(rest) {
            return Ok(());
        }
        let key = rest.to_ascii_lowercase();
        // `otel_*` keys are read from the OpenTelemetry variables, not under our prefix.
        if !(self.is_known(&key) && !key.starts_with("otel_") || Self::is_old(&key)) {
            let reason = format!("unknown setting; did you mean {}?", env_name(self.closest(&key)));
            return Err(invalid(&name, "", &reason));
        }
        let Some(key) = self.current_key(&key, &name) else { return Ok(()) };
        if value.trim().is_empty() {
            return Ok(()); // an empty variable counts as unset
        }
        set(env, key, Value::from(value), name)
    }

    /// The settings file's keys, checked like variables.
    fn file(&mut self, path: &str) -> Result<Given, Error> {
        if !std::path::Path::new(path).is_file() {
            return Err(invalid(CONFIG_VAR, path, "no such file"));
        }
        let file = Config::builder().add_source(File::with_name(path)).build().map_err(from_config_error)?;
        let table: BTreeMap<String, Value> = file.try_deserialize().map_err(from_config_error)?;
        let mut given = Given::new();
        for (name, value) in table {
            let key = name.to_ascii_lowercase();
            if !self.is_known(&key) && !Self::is_old(&key) {
                let reason = format!("unknown key in {path}; did you mean {}?", self.closest(&key));
                return Err(invalid(&name, "", &reason));
            }
            if let Some(key) = self.current_key(&key, &name) {
                set(&mut given, key, value, name)?;
            }
        }
        Ok(given)
    }

    /// The key a known or old key stands for now (an old spelling is recorded); `None`: retired.
    fn current_key(&mut self, key: &str, given_as: &str) -> Option<String> {
        if let Some((_, instead)) = RETIRED.iter().find(|(old, _)| *old == key) {
            self.deprecated.push((given_as.to_string(), instead.to_string()));
            return None;
        }
        if let Some((_, new, _)) = RENAMED.iter().find(|(old, _, _)| *old == key) {
            let new_name = if given_as.starts_with(ENV_PREFIX) { env_name(new) } else { new.to_string() };
            self.deprecated.push((given_as.to_string(), format!("renamed: use {new_name}")));
            return Some(new.to_string());
        }
        Some(key.to_string())
    }

    /// The known key nearest to a mistyped one.
    fn closest(&self, key: &str) -> &'static str {
        let distance = |known: &str| strsim::levenshtein(key, known);
        self.catalogue.iter().map(|e| e.key).min_by_key(|known| distance(known)).expect("settings exist")
    }
}

/// Sets `key`, given as `name`, in one source: an old and a new spelling of one setting must agree,
/// or (the origins) are merged.
fn set(given: &mut Given, key: String, value: Value, name: String) -> Result<(), Error> {
    let Some((previous, previous_name)) = given.remove(&key) else {
        given.insert(key, (value, name));
        return Ok(());
    };
    if RENAMED.iter().any(|(_, new, both)| *new == key && *both == Both::Merge) {
        let merged = Value::from([list(previous), list(value)].concat());
        let name = if name.starts_with(ENV_PREFIX) { env_name(&key) } else { key.clone() };
        given.insert(key, (merged, name));
        return Ok(());
    }
    if previous.to_string() != value.to_string() {
        let new_name = if name.starts_with(ENV_PREFIX) { env_name(&key) } else { key.clone() };
        let reason = format!("{previous_name} is also set, to another value: set only {new_name}");
        return Err(invalid(&name, "", &reason));
    }
    given.insert(key, (value, name));
    Ok(())
}

/// A list setting's items, from either a comma-separated string or a list.
fn list(value: Value) -> Vec<String> {
    match value.clone().into_array() {
        Ok(items) => items.into_iter().filter_map(|v| v.into_string().ok()).collect(),
        Err(_) => value.into_string().unwrap_or_default().split(',').map(|s| s.trim().to_string()).collect(),
    }
}

fn from_config_error(error: ConfigError) -> Error {
    match error {
        ConfigError::Type { unexpected, expected, key, .. } => Error {
            setting: key.as_deref().map(env_name).unwrap_or_else(|| "configuration".into()),
            value: unexpected.to_string(),
            reason: format!("expected {expected}"),
        },
        ConfigError::At { error, key: Some(key), .. } => {
            let inner = from_config_error(*error);
            Error { setting: env_name(&key), ..inner }
        }
        ConfigError::FileParse { uri, cause } => {
            Error { setting: CONFIG_VAR.to_string(), value: uri.unwrap_or_default(), reason: cause.to_string() }
        }
        other => Error { setting: "configuration".into(), value: String::new(), reason: other.to_string() },
    }
}

/// The configuration reference as a Markdown table (docs/configuration.md embeds it).
pub fn reference_table() -> String {
    let mut out = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
    let mut row = |name: &str, default: Option<&str>, meaning: &str| {
        let default = default.map_or("none".to_string(), |d| format!("`{d}`"));
        out.push_str(&format!("| `{name}` | {default} | {meaning} |\n"));
    };
    row(CONFIG_VAR, None, "path of a TOML or YAML settings file");
    for entry in catalogue() {
        row(&env_name(entry.key), entry.default.as_deref(), entry.meaning);
    }
    for (old, new, both) in RENAMED {
        let merged = if *both == Both::Merge { " (both may be set: the lists are merged)" } else { "" };
        row(&env_name(old), None, &format!("deprecated spelling of `{}`{merged}", env_name(new)));
    }
    for (old, instead) in RETIRED {
        row(&env_name(old), None, &format!("deprecated: {instead}"));
    }
    out
}

#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod tests;
