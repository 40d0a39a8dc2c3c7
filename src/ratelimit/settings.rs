//! The limiter's settings: the window and its limits, sessions, de-duplication and the Redis backend.

use std::time::Duration;

use ipnet::IpNet;

use crate::setting::{self, at_least};

setting::component! {
    /// The sliding-window limiter.
    pub struct RateLimitConfig {
        /// sliding window length
        rate_limit_window_ms: u64 = 60_000,
        /// requests per client IP per window (records, with `RATE_LIMIT_UNIT=record`)
        rate_limit_max_requests: u32 = 100,
        /// what the limits count: `request` (each request 1, decided before its body is read) or `record` (each request its records: a 500-record OTLP export weighs 500, a 1-event beacon 1)
        rate_limit_unit: String = "request".into(),
        /// `memory` (each replica limits alone) or `redis` (one limit for the fleet)
        rate_limit_backend: String = "memory".into(),
        /// clients the memory backend tracks at most
        rate_limit_memory_max_keys: u64 = 1_000_000,
        /// decide and count (`decision="dry_run_limited"`), but admit everything
        rate_limit_dry_run: bool = false,
        /// comma-separated CIDRs or addresses never limited (`decision="exempt"`)
        #[serde(deserialize_with = "setting::comma_list")]
        rate_limit_exempt_cidrs: Vec<String> = Vec::new(),
        /// networks with their own limit per client address, `CIDR=requests,…` (`203.0.113.0/24=500,198.51.100.7=1000`); the longest prefix wins; shown in `RateLimit-Policy`
        #[serde(deserialize_with = "setting::comma_list")]
        rate_limit_overrides: Vec<String> = Vec::new(),
        /// requests (or records) per window one session (`X-Session-Id`, `?session=`, `X-Faro-Session-Id`, or an OTLP export's first `session.id`) may make within its IP's limit, at most `RATE_LIMIT_MAX_REQUESTS`; `0` = no session limit
        rate_limit_session_max_requests: u32 = 0,
        /// how long an accepted batch id (`X-Batch-Id` or `?batch=`) makes a retry of that batch a duplicate; `0` = no de-duplication
        rate_limit_dedup_window_ms: u64 = 0,
        /// what decides while Redis fails: `local` (this replica's memory limiter), `allow` or `deny`
        rate_limit_redis_failure: String = "local".into(),
        /// `redis://` or `rediss://` (TLS), `[user:password@]host:port[/db]`; the password is never shown
        #[serde(serialize_with = "setting::redact_url")]
        rate_limit_redis_url: String = "redis://127.0.0.1:6379".into(),
        /// prefix of every Redis key
        rate_limit_redis_key_prefix: String = "client-telemetry:".into(),
        /// multiplexed Redis connections per worker thread; the calls a worker makes at once share them, pipelined
        rate_limit_redis_connections_per_worker: usize = 1,
        /// deadline of one limiter call, connecting included; past it the failure policy decides
        rate_limit_redis_timeout_ms: u64 = 25,
        /// `standalone`, `cluster` (Redis Cluster: `RATE_LIMIT_REDIS_URL` lists seed nodes, comma-separated) or `sentinel` (`RATE_LIMIT_REDIS_URL` lists the Sentinels; their URLs' user, password and db are the primary's)
        rate_limit_redis_mode: String = "standalone".into(),
        /// the master name the Sentinels monitor (required in `sentinel` mode)
        rate_limit_redis_sentinel_master: String = String::new(),
        /// PEM file of the CA(s) to trust for `rediss://` instead of the bundled web roots
        rate_limit_redis_ca_file: String = String::new(),
        /// PEM client certificate chain, for a Redis that requires client certificates; with `RATE_LIMIT_REDIS_CLIENT_KEY_FILE`
        rate_limit_redis_client_cert_file: String = String::new(),
        /// PEM private key of `RATE_LIMIT_REDIS_CLIENT_CERT_FILE`
        rate_limit_redis_client_key_file: String = String::new(),
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Each request 1, whatever it carries: decided before the body is read, in one call.
    Request,
    /// Each request its records: 1 before the body is read, the rest once the records are decoded.
    Record,
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
    /// Per client IP per window, in `unit`s.
    pub max_requests: u32,
    pub unit: Unit,
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
    /// Networks with their own per-client limit instead of `max_requests`.
    pub overrides: super::LimitOverrides,
    pub redis: RedisSettings,
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

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Standalone, Cluster or Sentinel; `url` lists the seed nodes or the Sentinels for the last two.
    pub mode: RedisMode,
    /// The URLs of `url`, split at commas.
    pub nodes: Vec<String>,
    /// A private CA and a client certificate for `rediss://`.
    pub tls: crate::tls::TlsFiles,
    pub key_prefix: String,
    /// Multiplexed connections per worker thread; a worker's concurrent calls share them, pipelined.
    pub connections_per_worker: usize,
    /// Deadline of one limiter call, connecting included.
    pub timeout: Duration,
    pub failure: RedisFailure,
}

impl RateLimitConfig {
    pub fn resolve(&self) -> Result<RateLimitSettings, setting::Error> {
        let max_requests = at_least("rate_limit_max_requests", self.rate_limit_max_requests, 1)?;
        let session_max_requests = match self.rate_limit_session_max_requests {
            0 => None,
            n if n > max_requests => {
                let reason = format!(
                    "a session limit above the IP's ({max_requests}) could never apply: set at most that, or 0 for none"
                );
                return Err(setting::invalid_key("rate_limit_session_max_requests", &n.to_string(), &reason));
            }
            n => Some(n),
        };
        let backends = [("memory", Backend::Memory), ("redis", Backend::Redis)];
        let units = [("request", Unit::Request), ("record", Unit::Record)];
        let failures = [("local", RedisFailure::Local), ("allow", RedisFailure::Allow), ("deny", RedisFailure::Deny)];
        let timeout = at_least("rate_limit_redis_timeout_ms", self.rate_limit_redis_timeout_ms, 1)?;
        Ok(RateLimitSettings {
            window: Duration::from_millis(at_least("rate_limit_window_ms", self.rate_limit_window_ms, 1)?),
            max_requests,
            unit: setting::choice("rate_limit_unit", &self.rate_limit_unit, &units)?,
            backend: setting::choice("rate_limit_backend", &self.rate_limit_backend, &backends)?,
            memory_max_keys: at_least("rate_limit_memory_max_keys", self.rate_limit_memory_max_keys, 1)?,
            session_max_requests,
            dedup_window: (self.rate_limit_dedup_window_ms > 0)
                .then(|| Duration::from_millis(self.rate_limit_dedup_window_ms)),
            dry_run: self.rate_limit_dry_run,
            exempt: setting::each("rate_limit_exempt_cidrs", &self.rate_limit_exempt_cidrs, setting::cidr)?,
            overrides: super::LimitOverrides::parse(&self.rate_limit_overrides)
                .map_err(|e| setting::invalid_key("rate_limit_overrides", &e.entry, &e.reason))?,
            redis: RedisSettings {
                mode: redis_mode(&self.rate_limit_redis_mode, &self.rate_limit_redis_sentinel_master)?,
                nodes: redis_nodes(&self.rate_limit_redis_mode, &self.rate_limit_redis_url)?,
                tls: redis_tls(
                    &self.rate_limit_redis_ca_file,
                    &self.rate_limit_redis_client_cert_file,
                    &self.rate_limit_redis_client_key_file,
                )?,
                url: self.rate_limit_redis_url.clone(),
                key_prefix: self.rate_limit_redis_key_prefix.clone(),
                connections_per_worker: at_least(
                    "rate_limit_redis_connections_per_worker",
                    self.rate_limit_redis_connections_per_worker,
                    1,
                )?,
                timeout: Duration::from_millis(timeout),
                failure: setting::choice("rate_limit_redis_failure", &self.rate_limit_redis_failure, &failures)?,
            },
        })
    }
}

/// `standalone`, `cluster` or `sentinel` (which needs the master name).
fn redis_mode(mode: &str, master: &str) -> Result<RedisMode, setting::Error> {
    match mode.trim().to_ascii_lowercase().as_str() {
        "standalone" => Ok(RedisMode::Standalone),
        "cluster" => Ok(RedisMode::Cluster),
        "sentinel" if master.trim().is_empty() => Err(setting::invalid_key(
            "rate_limit_redis_sentinel_master",
            master,
            "required with CLIENT_TELEMETRY_RATE_LIMIT_REDIS_MODE=sentinel",
        )),
        "sentinel" => Ok(RedisMode::Sentinel { master: master.trim().to_string() }),
        _ => Err(setting::invalid_key("rate_limit_redis_mode", mode, "expected standalone, cluster or sentinel")),
    }
}

/// One URL in standalone mode; in cluster and sentinel mode a comma-separated list (seed nodes or
/// Sentinels), all `redis://` or all `rediss://`.
fn redis_nodes(mode: &str, value: &str) -> Result<Vec<String>, setting::Error> {
    const KEY: &str = "rate_limit_redis_url";
    let nodes: Vec<String> = if mode.trim().eq_ignore_ascii_case("standalone") {
        vec![redis_url(value)?]
    } else {
        value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(redis_url).collect::<Result<_, _>>()?
    };
    let tls = nodes.iter().filter(|url| url.starts_with("rediss:")).count();
    let shown = crate::redact::redact_url(value);
    if nodes.is_empty() || (tls != 0 && tls != nodes.len()) {
        return Err(setting::invalid_key(KEY, &shown, "expected one or more URLs, all redis:// or all rediss://"));
    }
    if mode.trim().eq_ignore_ascii_case("cluster") {
        // e.g. seed nodes with different passwords
        if let Err(error) = redis::cluster::ClusterClient::new(nodes.clone()) {
            return Err(setting::invalid_key(KEY, &shown, &error.to_string()));
        }
    }
    Ok(nodes)
}

fn redis_tls(ca: &str, cert: &str, key: &str) -> Result<crate::tls::TlsFiles, setting::Error> {
    let names = ["rate_limit_redis_ca_file", "rate_limit_redis_client_cert_file", "rate_limit_redis_client_key_file"]
        .map(setting::env_name);
    let files =
        crate::tls::FileSettings { ca: (&names[0], ca), client_cert: (&names[1], cert), client_key: (&names[2], key) };
    crate::tls::TlsFiles::load(&files).map_err(|error| setting::invalid(&error.setting, &error.path, &error.reason))
}

/// `redis://` or `rediss://` (TLS), with optional user, password and database index.
/// The credentials never appear in an error (`redact_url`).
fn redis_url(value: &str) -> Result<String, setting::Error> {
    const KEY: &str = "rate_limit_redis_url";
    let shown = crate::redact::redact_url(value);
    let Some(url) = redis::parse_redis_url(value).filter(|url| matches!(url.scheme(), "redis" | "rediss")) else {
        let reason = "expected redis://[user:password@]host:port[/db] or rediss://…";
        return Err(setting::invalid_key(KEY, &shown, reason));
    };
    if let Err(error) = redis::Client::open(url.as_str()) {
        return Err(setting::invalid_key(KEY, &shown, &error.to_string()));
    }
    Ok(value.to_string())
}
