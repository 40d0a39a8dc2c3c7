//! Configuration: built-in defaults < optional file (`CLIENT_TELEMETRY_CONFIG`) < environment.
//!
//! Every setting has one flat name: `CLIENT_TELEMETRY_<NAME>` in the environment, `<name>` in the file.
//! Loading is two steps: `Raw` is what the sources say, `Settings` is that value checked and typed,
//! so every error names the setting and the bad value.

use std::{collections::HashMap, fmt, net::ToSocketAddrs, time::Duration};

use config::{Config, ConfigError, Environment, File};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

pub use crate::challenge::ChallengeSettings;
pub use crate::event::Limits;
use crate::forward::{ForwardSettings, RawForward};
pub use crate::ingest::AccessSettings;
pub use crate::ingest::BodyLimits;
pub use crate::lifecycle::ShutdownSettings;
pub use crate::scrub::ScrubSettings;
use crate::scrub::{self, Kind};

pub const ENV_PREFIX: &str = "CLIENT_TELEMETRY";
/// The OpenTelemetry ecosystem's own variables (forwarding), read without the prefix.
pub const OTEL_PREFIX: &str = "OTEL_";

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    /// Separate listener for /healthz, /readyz and /metrics, so /metrics need not be public.
    pub admin_bind: Option<String>,
    pub workers: usize,
    pub log_level: slog::Level,
    /// Log bytes that may wait for the writer; past it requests are refused with 503, not lost.
    pub log_queue_bytes: usize,
    /// How long a request waits for its log lines to be written before answering 503.
    pub log_write_timeout: Duration,
    pub rate_limit: RateLimitSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub cors_allowed_origins: Vec<String>,
    pub limits: Limits,
    pub body: BodyLimits,
    pub shutdown: ShutdownSettings,
    pub scrub: ScrubSettings,
    pub access: AccessSettings,
    pub transport: TransportSettings,
    /// OTLP forwarding; `None` (no endpoint set) means off.
    pub forward: Option<ForwardSettings>,
    /// The proof-of-work challenge for suspected abuse; `None` when off.
    pub challenge: Option<ChallengeSettings>,
    /// Settings that were given but no longer do anything, with what to do instead (logged at start).
    pub deprecated: Vec<(String, &'static str)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// What the Redis backend does while Redis is unreachable, slow or failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Limit with this replica's in-memory limiter.
    Local,
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub window: Duration,
    pub max_requests: u32,
    pub backend: Backend,
    /// Cap on clients the memory backend tracks at once (IP-spray protection).
    pub memory_max_keys: u64,
    /// Requests per window one session may make within its IP's limit; `None`: no session limit.
    pub session_max_requests: Option<u32>,
    /// How long an accepted batch id is remembered; `None`: no de-duplication. Kept with the limits
    /// because it is decided in the same limiter call.
    pub dedup_window: Option<Duration>,
    /// Decide and count, but admit everything (to roll out a new limit).
    pub dry_run: bool,
    /// Clients never limited.
    pub exempt: Vec<IpNet>,
    pub redis: RedisSettings,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    /// Multiplexed connections per worker thread; a worker's concurrent calls share them, pipelined.
    pub connections_per_worker: usize,
    /// Deadline of one limiter call, connecting included.
    pub timeout: Duration,
    pub failure: RedisFailure,
    /// Standalone, Cluster or Sentinel; `url` lists the seed nodes or the Sentinels for the last two.
    pub mode: RedisMode,
    /// The URLs of `url`, split at commas.
    pub nodes: Vec<String>,
    /// A private CA and a client certificate for `rediss://`.
    pub tls: crate::tls::TlsFiles,
}

/// How the gateway finds its Redis (docs/rate-limiting.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    Standalone,
    Cluster,
    /// Through Sentinel, to the primary of this master name.
    Sentinel {
        master: String,
    },
}

/// Connection-level limits of the ingest listener.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Time a client has to send the request headers.
    pub header_read_timeout: Duration,
    pub keep_alive: Duration,
    pub max_connections_per_worker: usize,
    /// Connections older than this (minus up to 10 % jitter) are closed after their next answer.
    pub max_connection_age: Option<Duration>,
}

/// One invalid setting: which, what it was, and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub setting: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}={:?}: {}", self.setting, self.value, self.reason)
    }
}

impl std::error::Error for SettingsError {}

#[derive(Debug, Deserialize)]
struct Raw {
    bind: String,
    admin_bind: Option<String>,
    workers: usize,
    log_level: String,
    log_queue_bytes: usize,
    log_write_timeout_ms: u64,
    rate_limit_window_ms: u64,
    rate_limit_max_requests: u32,
    rate_limit_backend: String,
    rate_limit_memory_max_keys: u64,
    rate_limit_dry_run: bool,
    #[serde(deserialize_with = "comma_list")]
    rate_limit_exempt_cidrs: Vec<String>,
    rate_limit_redis_failure: String,
    rate_limit_session_max_requests: u32,
    dedup_window_ms: u64,
    redis_url: String,
    redis_key_prefix: String,
    redis_connections_per_worker: usize,
    /// Deprecated: connections are per worker now (`redis_connections_per_worker`).
    redis_pool_size: Option<String>,
    redis_timeout_ms: u64,
    redis_mode: String,
    redis_sentinel_master: String,
    redis_ca_file: String,
    redis_client_cert_file: String,
    redis_client_key_file: String,
    #[serde(deserialize_with = "comma_list")]
    trusted_proxies: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    cors_allowed_origins: Vec<String>,
    max_body_bytes: usize,
    max_events_per_request: usize,
    max_message_bytes: usize,
    max_scope_bytes: usize,
    max_id_bytes: usize,
    max_context_bytes: usize,
    max_context_keys: usize,
    max_context_depth: usize,
    shutdown_delay_ms: u64,
    shutdown_grace_ms: u64,
    scrub_enabled: bool,
    #[serde(deserialize_with = "comma_list")]
    scrub_disabled_kinds: Vec<String>,
    #[serde(deserialize_with = "pattern_list")]
    scrub_custom_patterns: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    scrub_allow_keys: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    scrub_sensitive_keys: Vec<String>,
    accept_gzip: bool,
    max_gzip_ratio: usize,
    body_read_timeout_ms: u64,
    #[serde(deserialize_with = "comma_list")]
    api_keys: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    allowed_origins: Vec<String>,
    header_read_timeout_ms: u64,
    keep_alive_ms: u64,
    max_connections_per_worker: usize,
    max_connection_age_ms: u64,
    challenge_enabled: bool,
    #[serde(deserialize_with = "comma_list")]
    challenge_secrets: Vec<String>,
    challenge_threshold: u32,
    challenge_difficulty: u8,
    challenge_token_ttl_ms: u64,
    challenge_max_sessions_per_address: u32,
    #[serde(flatten)]
    forward: RawForward,
}

const DEFAULTS: &[(&str, &str)] = &[
    ("bind", "0.0.0.0:8080"),
    ("workers", "0"),
    ("log_level", "info"),
    ("log_queue_bytes", "16777216"),
    ("log_write_timeout_ms", "1000"),
    ("rate_limit_window_ms", "60000"),
    ("rate_limit_max_requests", "100"),
    ("rate_limit_backend", "memory"),
    ("rate_limit_memory_max_keys", "1000000"),
    ("rate_limit_dry_run", "false"),
    ("rate_limit_exempt_cidrs", ""),
    ("rate_limit_redis_failure", "local"),
    ("rate_limit_session_max_requests", "0"),
    ("dedup_window_ms", "0"),
    ("redis_url", "redis://127.0.0.1:6379"),
    ("redis_key_prefix", "client-telemetry:"),
    ("redis_connections_per_worker", "1"),
    ("redis_timeout_ms", "25"),
    ("redis_mode", "standalone"),
    ("redis_sentinel_master", ""),
    ("redis_ca_file", ""),
    ("redis_client_cert_file", ""),
    ("redis_client_key_file", ""),
    ("trusted_proxies", ""),
    ("cors_allowed_origins", ""),
    ("max_body_bytes", "262144"),
    ("max_events_per_request", "500"),
    ("max_message_bytes", "8192"),
    ("max_scope_bytes", "128"),
    ("max_id_bytes", "128"),
    ("max_context_bytes", "16384"),
    ("max_context_keys", "64"),
    ("max_context_depth", "5"),
    ("shutdown_delay_ms", "0"),
    ("shutdown_grace_ms", "15000"),
    ("scrub_enabled", "true"),
    ("scrub_disabled_kinds", ""),
    ("scrub_custom_patterns", ""),
    ("scrub_allow_keys", ""),
    (
        "scrub_sensitive_keys",
        "password,passwd,pwd,secret,token,authorization,apikey,email,cookie,credential,privatekey",
    ),
    ("accept_gzip", "true"),
    ("max_gzip_ratio", "100"),
    ("body_read_timeout_ms", "10000"),
    ("api_keys", ""),
    ("allowed_origins", ""),
    ("header_read_timeout_ms", "5000"),
    ("keep_alive_ms", "5000"),
    ("max_connections_per_worker", "10000"),
    ("max_connection_age_ms", "600000"),
    ("challenge_enabled", "false"),
    ("challenge_secrets", ""),
    ("challenge_threshold", "10"),
    ("challenge_difficulty", "12"),
    ("challenge_token_ttl_ms", "3600000"),
    ("challenge_max_sessions_per_address", "10"),
];

impl Settings {
    /// Reads the process environment (and the file it names).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables instead of the process environment (tests).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        let (otel, vars): (HashMap<String, String>, HashMap<String, String>) = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) || name.starts_with(OTEL_PREFIX))
            .partition(|(name, _)| name.starts_with(OTEL_PREFIX));
        let mut builder = Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value).expect("defaults are valid keys");
        }
        let config_var = format!("{ENV_PREFIX}_CONFIG");
        if let Some(path) = vars.get(&config_var) {
            if !std::path::Path::new(path).is_file() {
                return Err(invalid(&config_var, path, "no such file"));
            }
            builder = builder.add_source(File::with_name(path));
        }
        let env = Environment::with_prefix(ENV_PREFIX).source(Some(vars.into_iter().collect()));
        let otel_env = Environment::default().source(Some(otel.into_iter().collect()));
        let raw: Raw = builder
            .add_source(env)
            .add_source(otel_env)
            .build()
            .and_then(Config::try_deserialize)
            .map_err(from_config_error)?;
        raw.validate()
    }
}

impl Raw {
    fn validate(self) -> Result<Settings, SettingsError> {
        let challenge = self.challenge()?;
        let rate_limit = RateLimitSettings {
            window: Duration::from_millis(at_least("rate_limit_window_ms", self.rate_limit_window_ms, 1)?),
            max_requests: at_least("rate_limit_max_requests", self.rate_limit_max_requests, 1)?,
            backend: match self.rate_limit_backend.trim().to_ascii_lowercase().as_str() {
                "memory" => Backend::Memory,
                "redis" => Backend::Redis,
                _ => {
                    return Err(invalid_key(
                        "rate_limit_backend",
                        &self.rate_limit_backend,
                        "expected memory or redis",
                    ));
                }
            },
            memory_max_keys: at_least("rate_limit_memory_max_keys", self.rate_limit_memory_max_keys, 1)?,
            session_max_requests: match self.rate_limit_session_max_requests {
                0 => None,
                n if n > self.rate_limit_max_requests => {
                    let reason = format!(
                        "a session limit above the IP's ({}) could never apply: set at most that, or 0 for none",
                        self.rate_limit_max_requests
                    );
                    return Err(invalid_key("rate_limit_session_max_requests", &n.to_string(), &reason));
                }
                n => Some(n),
            },
            dedup_window: (self.dedup_window_ms > 0).then(|| Duration::from_millis(self.dedup_window_ms)),
            dry_run: self.rate_limit_dry_run,
            exempt: each("rate_limit_exempt_cidrs", &self.rate_limit_exempt_cidrs, cidr)?,
            redis: RedisSettings {
                mode: redis_mode(&self.redis_mode, &self.redis_sentinel_master)?,
                nodes: redis_nodes(&self.redis_mode, &self.redis_url)?,
                tls: redis_tls(&self.redis_ca_file, &self.redis_client_cert_file, &self.redis_client_key_file)?,
                url: self.redis_url,
                key_prefix: self.redis_key_prefix,
                connections_per_worker: at_least("redis_connections_per_worker", self.redis_connections_per_worker, 1)?,
                timeout: Duration::from_millis(at_least("redis_timeout_ms", self.redis_timeout_ms, 1)?),
                failure: match self.rate_limit_redis_failure.trim().to_ascii_lowercase().as_str() {
                    "local" => RedisFailure::Local,
                    "allow" => RedisFailure::Allow,
                    "deny" => RedisFailure::Deny,
                    _ => {
                        let value = &self.rate_limit_redis_failure;
                        return Err(invalid_key("rate_limit_redis_failure", value, "expected local, allow or deny"));
                    }
                },
            },
        };
        let body = BodyLimits {
            max_body_bytes: at_least("max_body_bytes", self.max_body_bytes, 64)?,
            accept_gzip: self.accept_gzip,
            max_gzip_ratio: at_least("max_gzip_ratio", self.max_gzip_ratio, 2)?,
            body_read_timeout: Duration::from_millis(at_least("body_read_timeout_ms", self.body_read_timeout_ms, 1)?),
        };
        let limits = Limits {
            max_events_per_request: at_least("max_events_per_request", self.max_events_per_request, 1)?,
            max_message_bytes: at_least("max_message_bytes", self.max_message_bytes, 1)?,
            max_scope_bytes: at_least("max_scope_bytes", self.max_scope_bytes, 1)?,
            max_id_bytes: at_least("max_id_bytes", self.max_id_bytes, 1)?,
            max_context_bytes: at_least("max_context_bytes", self.max_context_bytes, 2)?,
            max_context_keys: at_least("max_context_keys", self.max_context_keys, 1)?,
            max_context_depth: at_least("max_context_depth", self.max_context_depth, 1)?,
        };
        let scrub = ScrubSettings {
            enabled: self.scrub_enabled,
            disabled_kinds: self
                .scrub_disabled_kinds
                .iter()
                .map(|k| {
                    let names = Kind::ALL.map(Kind::as_str).join(", ");
                    Kind::parse(k)
                        .ok_or_else(|| invalid_key("scrub_disabled_kinds", k, &format!("expected one of {names}")))
                })
                .collect::<Result<_, _>>()?,
            custom_patterns: self.scrub_custom_patterns,
            allow_keys: self.scrub_allow_keys,
            sensitive_keys: self.scrub_sensitive_keys,
        };
        for pattern in &scrub.custom_patterns {
            scrub::check_pattern(pattern).map_err(|reason| invalid_key("scrub_custom_patterns", pattern, &reason))?;
        }
        let access = AccessSettings {
            api_key_digests: self
                .api_keys
                .iter()
                .map(|key| match key.len() {
                    16.. => Ok(crate::ingest::api_key_digest(key)),
                    _ => Err(invalid_key("api_keys", "(hidden)", "each key must be at least 16 characters")),
                })
                .collect::<Result<_, _>>()?,
            allowed_origins: each("allowed_origins", &self.allowed_origins, origin)?,
        };
        let transport = TransportSettings {
            header_read_timeout: Duration::from_millis(at_least(
                "header_read_timeout_ms",
                self.header_read_timeout_ms,
                1,
            )?),
            keep_alive: Duration::from_millis(self.keep_alive_ms),
            max_connections_per_worker: at_least("max_connections_per_worker", self.max_connections_per_worker, 1)?,
            max_connection_age: (self.max_connection_age_ms > 0)
                .then(|| Duration::from_millis(self.max_connection_age_ms)),
        };
        Ok(Settings {
            bind: socket_address("bind", self.bind)?,
            admin_bind: self
                .admin_bind
                .filter(|a| !a.trim().is_empty())
                .map(|a| socket_address("admin_bind", a))
                .transpose()?,
            workers: self.workers,
            log_level: log_level(&self.log_level)?,
            log_queue_bytes: at_least("log_queue_bytes", self.log_queue_bytes, 64 * 1024)?,
            log_write_timeout: Duration::from_millis(at_least("log_write_timeout_ms", self.log_write_timeout_ms, 1)?),
            rate_limit,
            trusted_proxies: each("trusted_proxies", &self.trusted_proxies, cidr)?,
            cors_allowed_origins: each("cors_allowed_origins", &self.cors_allowed_origins, origin)?,
            limits,
            body,
            shutdown: ShutdownSettings {
                delay: Duration::from_millis(self.shutdown_delay_ms),
                grace: Duration::from_millis(self.shutdown_grace_ms),
            },
            scrub,
            access,
            transport,
            forward: self.forward.resolve()?,
            challenge,
            deprecated: self
                .redis_pool_size
                .map(|_| {
                    let instead = "ignored: each worker thread shares (pipelines) CLIENT_TELEMETRY_REDIS_CONNECTIONS_PER_WORKER \
                                   connections (default 1) instead of checking one out of a pool per call";
                    (env_name("redis_pool_size"), instead)
                })
                .into_iter()
                .collect(),
        })
    }
}

impl Raw {
    fn challenge(&self) -> Result<Option<ChallengeSettings>, SettingsError> {
        if !self.challenge_enabled {
            return Ok(None);
        }
        if self.challenge_secrets.is_empty() {
            return Err(invalid_key(
                "challenge_secrets",
                "",
                "the challenge needs at least one secret (32+ characters)",
            ));
        }
        if self.challenge_secrets.iter().any(|s| s.len() < 32) {
            return Err(invalid_key("challenge_secrets", "(hidden)", "each secret must be at least 32 characters"));
        }
        if !(1..=32).contains(&self.challenge_difficulty) {
            let value = self.challenge_difficulty.to_string();
            return Err(invalid_key("challenge_difficulty", &value, "expected 1 to 32 (leading zero bits)"));
        }
        Ok(Some(ChallengeSettings {
            secrets: self.challenge_secrets.clone(),
            threshold: at_least("challenge_threshold", self.challenge_threshold, 1)?,
            difficulty: self.challenge_difficulty,
            token_ttl: Duration::from_millis(at_least("challenge_token_ttl_ms", self.challenge_token_ttl_ms, 1000)?),
            max_sessions_per_address: at_least(
                "challenge_max_sessions_per_address",
                self.challenge_max_sessions_per_address,
                1,
            )?,
        }))
    }
}

/// Every item of a list setting, parsed; the first bad one names the setting.
fn each<T>(
    key: &str,
    items: &[String],
    parse: fn(&str, &str) -> Result<T, SettingsError>,
) -> Result<Vec<T>, SettingsError> {
    items.iter().map(|item| parse(key, item)).collect()
}

/// The environment name of a setting key (`rate_limit_backend` -> `CLIENT_TELEMETRY_RATE_LIMIT_BACKEND`).
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.to_ascii_uppercase())
}

fn invalid(setting: &str, value: &str, reason: &str) -> SettingsError {
    SettingsError { setting: setting.to_string(), value: value.to_string(), reason: reason.to_string() }
}

fn invalid_key(key: &str, value: &str, reason: &str) -> SettingsError {
    invalid(&env_name(key), value, reason)
}

fn at_least<T: PartialOrd + fmt::Display + Copy>(key: &str, value: T, min: T) -> Result<T, SettingsError> {
    if value < min {
        return Err(invalid_key(key, &value.to_string(), &format!("must be at least {min}")));
    }
    Ok(value)
}

fn socket_address(key: &str, value: String) -> Result<String, SettingsError> {
    match value.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(value),
        _ => Err(invalid_key(key, &value, "expected host:port, e.g. 0.0.0.0:8080")),
    }
}

fn log_level(value: &str) -> Result<slog::Level, SettingsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(slog::Level::Trace),
        "debug" => Ok(slog::Level::Debug),
        "info" => Ok(slog::Level::Info),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "error" => Ok(slog::Level::Error),
        "critical" => Ok(slog::Level::Critical),
        _ => Err(invalid_key("log_level", value, "expected one of trace, debug, info, warn, error, critical")),
    }
}

/// `standalone`, `cluster` or `sentinel` (which needs the master name).
fn redis_mode(mode: &str, master: &str) -> Result<RedisMode, SettingsError> {
    match mode.trim().to_ascii_lowercase().as_str() {
        "standalone" => Ok(RedisMode::Standalone),
        "cluster" => Ok(RedisMode::Cluster),
        "sentinel" if master.trim().is_empty() => {
            Err(invalid_key("redis_sentinel_master", master, "required with CLIENT_TELEMETRY_REDIS_MODE=sentinel"))
        }
        "sentinel" => Ok(RedisMode::Sentinel { master: master.trim().to_string() }),
        _ => Err(invalid_key("redis_mode", mode, "expected standalone, cluster or sentinel")),
    }
}

/// One URL in standalone mode; in cluster and sentinel mode a comma-separated list (seed nodes or
/// Sentinels), all `redis://` or all `rediss://`.
fn redis_nodes(mode: &str, value: &str) -> Result<Vec<String>, SettingsError> {
    let standalone = mode.trim().eq_ignore_ascii_case("standalone");
    let nodes: Vec<String> = if standalone {
        vec![redis_url(value.to_string())?]
    } else {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| redis_url(s.to_string()))
            .collect::<Result<_, _>>()?
    };
    let tls = nodes.iter().filter(|url| url.starts_with("rediss:")).count();
    let shown = if value.contains('@') { "(hidden: it may hold a password)" } else { value };
    if nodes.is_empty() || (tls != 0 && tls != nodes.len()) {
        return Err(invalid_key("redis_url", shown, "expected one or more URLs, all redis:// or all rediss://"));
    }
    if mode.trim().eq_ignore_ascii_case("cluster") {
        // e.g. seed nodes with different passwords
        if let Err(error) = redis::cluster::ClusterClient::new(nodes.clone()) {
            return Err(invalid_key("redis_url", shown, &error.to_string()));
        }
    }
    Ok(nodes)
}

fn redis_tls(ca: &str, cert: &str, key: &str) -> Result<crate::tls::TlsFiles, SettingsError> {
    let names = ["redis_ca_file", "redis_client_cert_file", "redis_client_key_file"].map(env_name);
    let files =
        crate::tls::FileSettings { ca: (&names[0], ca), client_cert: (&names[1], cert), client_key: (&names[2], key) };
    crate::tls::TlsFiles::load(&files).map_err(|error| invalid(&error.setting, &error.path, &error.reason))
}

/// `redis://` or `rediss://` (TLS), with optional user, password and database index.
/// The password never appears in an error.
fn redis_url(value: String) -> Result<String, SettingsError> {
    let Some(mut url) = redis::parse_redis_url(&value).filter(|url| matches!(url.scheme(), "redis" | "rediss")) else {
        let reason = "expected redis://[user:password@]host:port[/db] or rediss://…";
        let shown = if value.contains('@') { "(hidden: it may hold a password)" } else { &value };
        return Err(invalid_key("redis_url", shown, reason));
    };
    if let Err(error) = redis::Client::open(url.as_str()) {
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        return Err(invalid_key("redis_url", url.as_str(), &error.to_string()));
    }
    Ok(value)
}

/// A CIDR, or a bare address meaning just that host.
pub fn parse_cidr(value: &str) -> Option<IpNet> {
    value.parse::<IpNet>().ok().or_else(|| value.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn cidr(key: &str, value: &str) -> Result<IpNet, SettingsError> {
    parse_cidr(value).ok_or_else(|| invalid_key(key, value, "expected a CIDR such as 10.0.0.0/8 or an IP address"))
}

/// Browsers send `Origin` as scheme://host[:port] with no path; anything else can never match.
fn origin(key: &str, value: &str) -> Result<String, SettingsError> {
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

fn from_config_error(error: ConfigError) -> SettingsError {
    match error {
        ConfigError::Type { unexpected, expected, key, .. } => SettingsError {
            setting: key.as_deref().map(env_name).unwrap_or_else(|| "configuration".into()),
            value: unexpected.to_string(),
            reason: format!("expected {expected}"),
        },
        ConfigError::At { error, key: Some(key), .. } => {
            let inner = from_config_error(*error);
            SettingsError { setting: env_name(&key), ..inner }
        }
        ConfigError::FileParse { uri, cause } => SettingsError {
            setting: format!("{ENV_PREFIX}_CONFIG"),
            value: uri.unwrap_or_default(),
            reason: cause.to_string(),
        },
        other => SettingsError { setting: "configuration".into(), value: String::new(), reason: other.to_string() },
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
fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items = match StringOrList::deserialize(deserializer)? {
        StringOrList::One(s) => s.split(',').map(str::to_string).collect(),
        StringOrList::Many(v) => v,
    };
    Ok(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

/// Regular expressions may contain commas: a file gives a list, the environment either one
/// pattern or a JSON array of them (`["ORD-[0-9]{6}", "ACME-[A-Z]{4}"]`).
fn pattern_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items = match StringOrList::deserialize(deserializer)? {
        StringOrList::One(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str(&s).map_err(|e| serde::de::Error::custom(format!("a JSON array of strings: {e}")))?
        }
        StringOrList::One(s) => vec![s],
        StringOrList::Many(v) => v,
    };
    Ok(items.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_need_nothing() {
        let s = load(&[]).unwrap();
        assert_eq!(s.bind, "0.0.0.0:8080");
        assert_eq!(s.rate_limit.window, Duration::from_secs(60));
        assert_eq!(s.rate_limit.max_requests, 100);
        assert_eq!(s.rate_limit.backend, Backend::Memory);
        assert_eq!(s.body.max_body_bytes, 262_144);
        assert!(s.trusted_proxies.is_empty());
        assert!(s.cors_allowed_origins.is_empty());
        assert!(s.admin_bind.is_none());
        assert!(!s.rate_limit.dry_run);
        assert!(s.rate_limit.exempt.is_empty());
        let redis = &s.rate_limit.redis;
        assert_eq!(redis.url, "redis://127.0.0.1:6379");
        assert_eq!(redis.key_prefix, "client-telemetry:");
        assert_eq!(redis.connections_per_worker, 1);
        assert!(s.deprecated.is_empty());
        assert_eq!(redis.timeout, Duration::from_millis(25));
        assert_eq!(redis.failure, RedisFailure::Local);
    }

    #[test]
    fn redis_modes_take_a_list_of_nodes_or_sentinels() {
        let s = load(&[]).unwrap();
        assert_eq!((&s.rate_limit.redis.mode, s.rate_limit.redis.nodes.len()), (&RedisMode::Standalone, 1));
        let s = load(&[
            ("CLIENT_TELEMETRY_REDIS_MODE", "cluster"),
            ("CLIENT_TELEMETRY_REDIS_URL", "redis://a:7000, redis://b:7001,redis://c:7002"),
        ])
        .unwrap();
        assert_eq!(s.rate_limit.redis.mode, RedisMode::Cluster);
        assert_eq!(s.rate_limit.redis.nodes, ["redis://a:7000", "redis://b:7001", "redis://c:7002"]);
        let s = load(&[
            ("CLIENT_TELEMETRY_REDIS_MODE", "Sentinel"),
            ("CLIENT_TELEMETRY_REDIS_URL", "redis://:pw@s1:26379,redis://s2:26379"),
            ("CLIENT_TELEMETRY_REDIS_SENTINEL_MASTER", "telemetry"),
        ])
        .unwrap();
        assert_eq!(s.rate_limit.redis.mode, RedisMode::Sentinel { master: "telemetry".into() });
        assert_eq!(s.rate_limit.redis.nodes.len(), 2);
        let refused = [
            (vec![("CLIENT_TELEMETRY_REDIS_MODE", "sharded")], "CLIENT_TELEMETRY_REDIS_MODE"),
            (vec![("CLIENT_TELEMETRY_REDIS_MODE", "sentinel")], "CLIENT_TELEMETRY_REDIS_SENTINEL_MASTER"),
            (
                vec![("CLIENT_TELEMETRY_REDIS_URL", "redis://a:1,redis://b:2")],
                "CLIENT_TELEMETRY_REDIS_URL", // standalone takes one URL
            ),
            (
                vec![
                    ("CLIENT_TELEMETRY_REDIS_MODE", "cluster"),
                    ("CLIENT_TELEMETRY_REDIS_URL", "redis://a:1,rediss://b:2"),
                ],
                "CLIENT_TELEMETRY_REDIS_URL",
            ),
        ];
        for (vars, setting) in refused {
            assert_eq!(load(&vars).unwrap_err().setting, setting, "{vars:?}");
        }
    }

    #[test]
    fn redis_backend_and_its_settings() {
        let s = load(&[
            ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
            ("CLIENT_TELEMETRY_REDIS_URL", "rediss://user:secret@redis.internal:6380/2"),
            ("CLIENT_TELEMETRY_REDIS_KEY_PREFIX", "ct:"),
            ("CLIENT_TELEMETRY_REDIS_CONNECTIONS_PER_WORKER", "4"),
            ("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "10"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", "deny"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_DRY_RUN", "true"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_EXEMPT_CIDRS", "10.0.0.0/8, 2001:db8::/32, 192.0.2.7"),
        ])
        .unwrap();
        let (rate_limit, redis) = (&s.rate_limit, &s.rate_limit.redis);
        assert_eq!(rate_limit.backend, Backend::Redis);
        assert_eq!(redis.url, "rediss://user:secret@redis.internal:6380/2");
        assert_eq!(redis.key_prefix, "ct:");
        assert_eq!(redis.connections_per_worker, 4);
        assert_eq!(redis.timeout, Duration::from_millis(10));
        assert_eq!(redis.failure, RedisFailure::Deny);
        assert!(rate_limit.dry_run);
        assert_eq!(rate_limit.exempt.len(), 3);
        for (value, failure) in [("local", RedisFailure::Local), ("ALLOW", RedisFailure::Allow)] {
            let s = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", value)]).unwrap();
            assert_eq!(s.rate_limit.redis.failure, failure);
        }
    }

    #[test]
    fn the_old_pool_size_still_starts_but_is_reported_as_ignored() {
        let s = load(&[("CLIENT_TELEMETRY_REDIS_POOL_SIZE", "16")]).unwrap();
        let [(name, instead)] = s.deprecated.as_slice() else { panic!("{:?}", s.deprecated) };
        assert_eq!(name, "CLIENT_TELEMETRY_REDIS_POOL_SIZE");
        assert!(instead.contains("CLIENT_TELEMETRY_REDIS_CONNECTIONS_PER_WORKER"), "{instead}");
        assert_eq!(s.rate_limit.redis.connections_per_worker, 1);
    }

    #[test]
    fn bad_redis_settings_name_the_variable_and_never_show_a_password() {
        for (name, value) in [
            ("CLIENT_TELEMETRY_REDIS_URL", "http://redis:6379"),
            ("CLIENT_TELEMETRY_REDIS_URL", "redis://redis:6379/not-a-db"),
            ("CLIENT_TELEMETRY_REDIS_CONNECTIONS_PER_WORKER", "0"),
            ("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "0"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", "retry"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_DRY_RUN", "maybe"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_EXEMPT_CIDRS", "10.0.0.0/40"),
        ] {
            let e = load(&[(name, value)]).unwrap_err();
            assert_eq!(e.setting, name, "{e}");
        }
        for url in ["redis://:hunter2@redis:6379/not-a-db", "http://:hunter2@redis:6379"] {
            let e = load(&[("CLIENT_TELEMETRY_REDIS_URL", url)]).unwrap_err();
            assert_eq!(e.setting, "CLIENT_TELEMETRY_REDIS_URL");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = load(&[
            ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "1000"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "5"),
            ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
            ("CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS", "https://a.example,http://localhost:3000"),
        ])
        .unwrap();
        assert_eq!(s.rate_limit.window, Duration::from_secs(1));
        assert_eq!(s.rate_limit.max_requests, 5);
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.cors_allowed_origins, vec!["https://a.example", "http://localhost:3000"]);
    }

    #[test]
    fn errors_name_the_variable_and_the_value() {
        let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "0")]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS");
        assert_eq!(e.value, "0");
        let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "soon")]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS");
        assert!(e.to_string().contains("soon"), "{e}");
        let e = load(&[("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/33")]).unwrap_err();
        assert_eq!((e.setting.as_str(), e.value.as_str()), ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/33"));
        let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "etcd")]).unwrap_err();
        assert_eq!((e.setting.as_str(), e.value.as_str()), ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "etcd"));
        let e = load(&[("CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS", "*")]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS");
    }

    #[test]
    fn session_limits_and_dedup_are_off_by_default_and_a_session_limit_cannot_exceed_the_ips() {
        let s = load(&[]).unwrap();
        assert_eq!((s.rate_limit.session_max_requests, s.rate_limit.dedup_window), (None, None));
        let s = load(&[
            ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "20"),
            ("CLIENT_TELEMETRY_DEDUP_WINDOW_MS", "600000"),
        ])
        .unwrap();
        assert_eq!(s.rate_limit.session_max_requests, Some(20));
        assert_eq!(s.rate_limit.dedup_window, Some(Duration::from_secs(600)));
        let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "101")]).unwrap_err();
        assert_eq!((e.setting.as_str(), e.value.as_str()), ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "101"));
        assert!(e.to_string().contains("above the IP's (100)"), "{e}");
    }

    #[test]
    fn hardening_settings_have_safe_defaults_and_named_errors() {
        let s = load(&[]).unwrap();
        assert!(s.scrub.enabled && s.body.accept_gzip);
        assert!(s.access.api_key_digests.is_empty() && s.access.allowed_origins.is_empty());
        assert_eq!(s.transport.header_read_timeout, Duration::from_secs(5));
        assert_eq!(s.body.body_read_timeout, Duration::from_secs(10));
        assert_eq!(s.transport.max_connection_age, Some(Duration::from_secs(600)));

        let s = load(&[
            ("CLIENT_TELEMETRY_SCRUB_DISABLED_KINDS", "ipv4, phone"),
            ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", r#"["ORD-[0-9]{6}", "ACME-[A-Z]{2,4}"]"#),
            ("CLIENT_TELEMETRY_API_KEYS", "0123456789abcdef,fedcba9876543210"),
            ("CLIENT_TELEMETRY_MAX_CONNECTION_AGE_MS", "0"),
        ])
        .unwrap();
        assert_eq!(s.scrub.disabled_kinds, vec![Kind::Ipv4, Kind::Phone]);
        assert_eq!(s.scrub.custom_patterns, vec!["ORD-[0-9]{6}", "ACME-[A-Z]{2,4}"]);
        assert_eq!(s.access.api_key_digests.len(), 2);
        assert_eq!(s.transport.max_connection_age, None);
        assert_eq!(
            load(&[("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", "ORD-[0-9]{6}")]).unwrap().scrub.custom_patterns.len(),
            1
        );

        for (name, value) in [
            ("CLIENT_TELEMETRY_SCRUB_DISABLED_KINDS", "ssn"),
            ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", "ORD-[0-9"),
            ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", "x*"),
            ("CLIENT_TELEMETRY_ALLOWED_ORIGINS", "https://a.example/path"),
            ("CLIENT_TELEMETRY_MAX_GZIP_RATIO", "1"),
            ("CLIENT_TELEMETRY_HEADER_READ_TIMEOUT_MS", "0"),
        ] {
            let e = load(&[(name, value)]).unwrap_err();
            assert_eq!((e.setting.as_str(), e.value.as_str()), (name, value), "{e}");
        }
        // A key too short to resist guessing is refused, and never echoed.
        let e = load(&[("CLIENT_TELEMETRY_API_KEYS", "short")]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_API_KEYS");
        assert!(!e.to_string().contains("short"), "{e}");
    }

    #[test]
    fn file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("ct-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.toml");
        std::fs::write(
            &file,
            "rate_limit_max_requests = 7\nrate_limit_window_ms = 2000\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = load(&[("CLIENT_TELEMETRY_CONFIG", path), ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "3000")]).unwrap();
        assert_eq!(s.rate_limit.max_requests, 7);
        assert_eq!(s.rate_limit.window, Duration::from_secs(3));
        assert_eq!(s.trusted_proxies.len(), 1);
        let e = load(&[("CLIENT_TELEMETRY_CONFIG", "/nonexistent/gateway.toml")]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_CONFIG");
    }
}
