//! Redis backend: one limit shared by every replica.
//!
//! A decision is one EVALSHA of `sliding_window.lua`: the arithmetic of `window.rs` on Redis' clock,
//! so the replicas' clocks do not matter. A client refused once is refused here until its
//! `Retry-After` without asking Redis, since nothing can free a slot sooner. Every call has a
//! deadline; when Redis fails the failure policy decides, and after repeated failures a circuit
//! breaker stops trying for a short, jittered while, so a dead Redis adds no latency at all.
//! The same logic runs on one Redis, a Redis Cluster or a Sentinel-managed primary (`connector.rs`).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::sync::Cache;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};
use redis::{RedisError, Script};
use slog::{Logger, info, warn};

mod cluster;
mod connections;
mod connector;
mod sentinel;

use connections::Connections;
use connector::{Connection, Connector};

use super::{
    BoxFuture, Charges, Decision, Keys, LimitKey, LimitOverrides, MemoryLimiter, Quota, RateLimitSettings, RateLimiter,
    RedisFailure, window::WindowParams,
};
use crate::observability::Metrics;

const SCRIPT: &str = include_str!("sliding_window.lua");
const BACKEND: &str = "redis";
/// Failures in a row that open the circuit.
const FAILURES_TO_OPEN: u32 = 3;
/// How long the circuit stays open, jittered by ±50% so replicas do not all retry at once.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// Per command of the `/readyz` cluster probe (a probe may be slower than a limiter call); the whole
/// probe is bounded to twice that, well inside a Kubernetes probe's default 1 s timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

pub struct RedisLimiter {
    connections: Arc<Connections>,
    script: Script,
    params: WindowParams,
    overrides: LimitOverrides,
    session: Option<WindowParams>,
    dedup_window: Option<Duration>,
    key_prefix: String,
    timeout: Duration,
    refused_until: Cache<LimitKey, Instant>,
    breaker: Breaker,
    fallback: Fallback,
    errors: IntCounterVec,
    degraded: IntGauge,
    /// Cluster primaries serving slots and answering, as of the last `/readyz`.
    primaries: IntGaugeVec,
    log: Logger,
}

enum Fallback {
    Local(Box<MemoryLimiter>),
    Allow,
    Deny,
}

/// The answer of one script call.
#[derive(Debug, Clone)]
pub struct ScriptReply {
    /// Redis' clock when it decided, in microseconds.
    pub now_us: u64,
    /// Every key had room and the batch was new: each key's cost was recorded in it.
    pub admitted: bool,
    /// The batch key existed.
    pub duplicate: bool,
    /// One per limited key, in call order.
    pub limits: Vec<Quota>,
}

/// Why a call did not produce a decision.
#[derive(Debug)]
pub enum CallError {
    Timeout,
    Redis(RedisError),
    Reply(String),
}

impl CallError {
    /// The `kind` label of `client_telemetry_rate_limiter_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Redis(e) if e.is_timeout() => "timeout",
            CallError::Redis(e) if e.is_io_error() || e.is_unrecoverable_error() => "connection",
            CallError::Redis(_) => "server",
            CallError::Reply(_) => "reply",
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("no answer within the deadline"),
            CallError::Redis(e) => write!(f, "{e}"),
            CallError::Reply(e) => write!(f, "unexpected script reply: {e}"),
        }
    }
}

impl RedisLimiter {
    /// Connects lazily: a Redis that is down at start-up is a degraded limiter, not a failed start.
    pub fn new(settings: &RateLimitSettings, metrics: &Metrics, log: Logger) -> Self {
        let redis = &settings.redis;
        let connector = Connector::new(redis).expect("the URLs and certificates were validated with the settings");
        info!(log, "rate limiter on redis"; "mode" => connector.mode(), "nodes" => redis.nodes.len());
        let connections = Arc::new(Connections::new(connector, redis.connections_per_worker));
        let params = WindowParams::new(settings.window, settings.max_requests);
        let errors = metrics.counter_vec(
            "client_telemetry_rate_limiter_errors_total",
            "Rate limiter backend errors, by kind.",
            &["backend", "kind"],
        );
        // Every series exists from the start at 0, so rate() sees the first burst whole.
        for kind in ["timeout", "connection", "server", "reply", "circuit_open"] {
            errors.with_label_values(&[BACKEND, kind]);
        }
        let degraded = metrics
            .gauge("client_telemetry_rate_limiter_degraded", "1 while the failure policy decides instead of Redis.");
        let primaries = metrics.gauge_vec(
            "client_telemetry_rate_limiter_redis_primaries",
            "Redis Cluster primaries serving slots, and how many answered, at the last /readyz.",
            &["state"],
        );
        Self {
            connections,
            script: Script::new(SCRIPT),
            params,
            overrides: settings.overrides.clone(),
            session: settings.session_max_requests.map(|limit| WindowParams::new(settings.window, limit)),
            dedup_window: settings.dedup_window,
            key_prefix: redis.key_prefix.clone(),
            timeout: redis.timeout,
            refused_until: Cache::builder()
                .max_capacity(settings.memory_max_keys)
                .time_to_live(settings.window + Duration::from_micros(params.granularity_us))
                .build(),
            breaker: Breaker::default(),
            fallback: match redis.failure {
                RedisFailure::Local => Fallback::Local(Box::new(MemoryLimiter::new(settings))),
                RedisFailure::Allow => Fallback::Allow,
                RedisFailure::Deny => Fallback::Deny,
            },
            errors,
            degraded,
            primaries,
            log,
        }
    }

    /// The Redis key of a limit key. The IP is the hash tag, so every key one call touches (per-IP,
    /// per-session, de-duplication) shares a Cluster slot. `v2`: the layout with a running count;
    /// during a rolling upgrade old and new replicas count apart rather than misread each other.
    pub fn redis_key(&self, key: &LimitKey) -> String {
        let (prefix, ip) = (&self.key_prefix, key.ip());
        match key {
            LimitKey::Ip(_) => format!("{prefix}rl:v2:{{ip:{ip}}}"),
            LimitKey::Session(_, id) => format!("{prefix}rl:v2:{{ip:{ip}}}:session:{id}"),
            LimitKey::Batch(_, id) => format!("{prefix}seen:{{ip:{ip}}}:{id}"),
            LimitKey::Verified(_, id) => format!("{prefix}rl:v2:{{ip:{ip}}}:verified:{id}"),
        }
    }

    pub fn params(&self) -> WindowParams {
        self.params
    }

    /// The window of the attempt's IP key: the default limit, or its network's override (the script
    /// takes the limit as an argument, so this costs no extra round trip).
    fn ip_params(&self, keys: &Keys) -> WindowParams {
        self.overrides.window_for(&keys.ip, self.params)
    }

    /// One request in each key: `acquire_costs` with a cost of 1 each.
    pub async fn acquire(
        &self,
        keys: &[(String, WindowParams)],
        batch: Option<&str>,
    ) -> Result<ScriptReply, CallError> {
        self.acquire_costs(keys, &vec![1; keys.len()], batch).await
    }

    /// One script call deciding every key at once: admitted only if each has room for its cost (in
    /// `costs`, by key) and `batch` (a batch key) does not exist, and then recorded in each. Keys
    /// must share a hash tag (on a Cluster a script runs on one node). One round trip, or two on a
    /// node that does not have the script yet (NOSCRIPT, then EVAL, which caches it there); never
    /// past the deadline.
    pub async fn acquire_costs(
        &self,
        keys: &[(String, WindowParams)],
        costs: &[u32],
        batch: Option<&str>,
    ) -> Result<ScriptReply, CallError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut lease = match tokio::time::timeout_at(deadline, self.connections.get()).await {
            Ok(lease) => lease.map_err(CallError::Redis)?,
            Err(_) => return Err(CallError::Timeout),
        };
        let call = self.evaluate(&mut lease.connection, keys, costs, batch);
        let reply: Vec<i64> = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                if self.connections.connector().replaces_after(Some(&error)) {
                    self.connections.discard(lease);
                }
                return Err(CallError::Redis(error));
            }
            Err(_) => {
                // Late or never: a connection to a stalled server or a half-open socket is not reused.
                if self.connections.connector().replaces_after(None) {
                    self.connections.discard(lease);
                }
                return Err(CallError::Timeout);
            }
        };
        parse_reply(&reply, keys).ok_or_else(|| CallError::Reply(format!("{reply:?}")))
    }

    /// EVALSHA; on NOSCRIPT, EVAL with the script's text on the same node (routed by the same keys),
    /// which also caches it there. Not `SCRIPT LOAD`: on a Cluster that goes to every node, and fails
    /// while one is down.
    async fn evaluate(
        &self,
        connection: &mut Connection,
        keys: &[(String, WindowParams)],
        costs: &[u32],
        batch: Option<&str>,
    ) -> Result<Vec<i64>, RedisError> {
        let call = |command: &str, script: &str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script).arg(keys.len() + usize::from(batch.is_some()));
            cmd.arg(keys.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>()).arg(batch);
            cmd.arg(u8::from(batch.is_some()));
            for ((_, params), cost) in keys.iter().zip(costs) {
                cmd.arg(params.window_us).arg(params.granularity_us).arg(params.limit).arg(cost);
            }
            cmd
        };
        match call("EVALSHA", self.script.get_hash()).query_async(connection).await {
            Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                call("EVAL", SCRIPT).query_async(connection).await
            }
            result => result,
        }
    }

    /// For `/readyz`: the mode and, on a Cluster, how many primaries serve slots and answer.
    pub async fn describe_topology(&self) -> serde_json::Value {
        let mode = self.connections.connector().mode();
        if mode != "cluster" {
            return serde_json::json!({ "mode": mode });
        }
        let probe = async {
            let lease = self.connections.get().await?;
            match lease.connection {
                Connection::Cluster(mut connection) => cluster::probe(&mut connection, PROBE_TIMEOUT).await,
                Connection::Single(_) => unreachable!("a cluster connector makes cluster connections"),
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT * 2, probe).await {
            Ok(Ok(primaries)) => {
                self.primaries.with_label_values(&["serving"]).set(primaries.serving as i64);
                self.primaries.with_label_values(&["answering"]).set(primaries.answering as i64);
                serde_json::json!({ "mode": mode, "primaries": primaries.serving, "primariesAnswering": primaries.answering })
            }
            Ok(Err(error)) => serde_json::json!({ "mode": mode, "error": error.to_string() }),
            Err(_) => serde_json::json!({ "mode": mode, "error": "no answer within the deadline" }),
        }
    }

    /// An IP refused earlier stays refused until its Retry-After: nothing can free a slot sooner.
    /// (Session refusals are asked again: a session is one well-behaved page that backs off.)
    fn refused_locally(&self, keys: &Keys) -> Option<Decision> {
        let left = self.refused_until.get(&keys.ip)?.checked_duration_since(Instant::now())?;
        Some(Decision::refused(self.ip_params(keys).limit, left))
    }

    fn fall_back(&self, keys: &Keys, charges: Charges) -> Decision {
        let limit = self.ip_params(keys).limit;
        match &self.fallback {
            Fallback::Local(memory) => memory.check_at(keys, charges, memory.now_us()),
            Fallback::Allow => Decision::unlimited(limit),
            Fallback::Deny => Decision::refused(limit, Duration::from_secs(1)),
        }
    }

    fn decide(&self, keys: &Keys, ip_cost: u32, reply: ScriptReply) -> Decision {
        let session = keys.session.as_ref().and(self.session).and(reply.limits.get(1).copied());
        let decision = Decision::of(reply.limits[0], session, reply.duplicate);
        // Only a refusal of one request means no request fits before `reset_after`: a refused batch
        // of records leaves room for smaller ones.
        if !decision.ip.room && ip_cost == 1 {
            self.refused_until.insert(keys.ip.clone(), Instant::now() + decision.ip.reset_after);
        }
        decision
    }

    fn succeeded(&self) {
        if self.breaker.success() {
            self.degraded.set(0);
            info!(self.log, "rate limiter recovered: deciding on redis again");
        }
    }

    fn failed(&self, error: &CallError) {
        self.errors.with_label_values(&[BACKEND, error.kind()]).inc();
        if self.breaker.failure() {
            self.degraded.set(1);
            warn!(self.log, "rate limiter degraded: redis failed, the failure policy decides";
                "kind" => error.kind(), "error" => %error);
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(&'a self, keys: &'a Keys, charges: Charges) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            if let Some(refused) = self.refused_locally(keys) {
                return refused;
            }
            if !self.breaker.try_call() {
                self.errors.with_label_values(&[BACKEND, "circuit_open"]).inc();
                return self.fall_back(keys, charges);
            }
            let ip_params = self.ip_params(keys);
            let mut limited = vec![(self.redis_key(&keys.ip), ip_params)];
            let mut costs = [charges.ip.cost(ip_params.limit), 0];
            if let (Some(params), Some(key)) = (self.session, &keys.session) {
                limited.push((self.redis_key(key), params));
                costs[1] = charges.session.cost(params.limit);
            }
            let batch = keys.batch.as_ref().filter(|_| self.dedup_window.is_some()).map(|key| self.redis_key(key));
            match self.acquire_costs(&limited, &costs[..limited.len()], batch.as_deref()).await {
                Ok(reply) => {
                    self.succeeded();
                    self.decide(keys, costs[0], reply)
                }
                Err(error) => {
                    self.failed(&error);
                    self.fall_back(keys, charges)
                }
            }
        })
    }

    /// Sets the batch key in the background: the answer never waits on it, and if it is lost a
    /// retry of the batch is logged twice rather than never.
    fn remember(&self, batch: LimitKey) {
        let Some(ttl) = self.dedup_window else { return };
        if let Fallback::Local(memory) = &self.fallback {
            // Kept locally too, for when Redis is down and the local limiter decides.
            memory.remember(batch.clone());
        }
        let (connections, key, timeout, errors) =
            (self.connections.clone(), self.redis_key(&batch), self.timeout, self.errors.clone());
        actix_web::rt::spawn(async move {
            let set = async {
                let mut lease = connections.get().await.map_err(CallError::Redis)?;
                let set = redis::cmd("SET").arg(&key).arg(1).arg("PX").arg(ttl.as_millis() as u64).to_owned();
                set.exec_async(&mut lease.connection).await.map_err(CallError::Redis)
            };
            let result = tokio::time::timeout(timeout, set).await.unwrap_or(Err(CallError::Timeout));
            if let Err(error) = result {
                errors.with_label_values(&[BACKEND, error.kind()]).inc();
            }
        });
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn degraded(&self) -> bool {
        self.breaker.is_degraded()
    }

    fn topology(&self) -> BoxFuture<'_, Option<serde_json::Value>> {
        Box::pin(async move { Some(self.describe_topology().await) })
    }
}

/// `{ now_us, admitted, duplicate, then per limited key: room, remaining, reset_us }`, as the script
/// returns it.
fn parse_reply(reply: &[i64], keys: &[(String, WindowParams)]) -> Option<ScriptReply> {
    let ([now_us, admitted, duplicate], per_key) = reply.split_first_chunk::<3>()?;
    if per_key.len() != 3 * keys.len() {
        return None;
    }
    let limits = per_key
        .chunks_exact(3)
        .zip(keys)
        .map(|(answer, (_, params))| Quota {
            room: answer[0] == 1,
            limit: params.limit,
            remaining: u32::try_from(answer[1]).unwrap_or(0),
            reset_after: Duration::from_micros(u64::try_from(answer[2]).unwrap_or(0)),
        })
        .collect();
    Some(ScriptReply {
        now_us: u64::try_from(*now_us).ok()?,
        admitted: *admitted == 1,
        duplicate: *duplicate == 1,
        limits,
    })
}

/// Closed while calls succeed. After `FAILURES_TO_OPEN` failures in a row it opens for a jittered
/// `OPEN_FOR`; then one call probes (the others keep falling back) until one succeeds.
#[derive(Default)]
struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this call may go to Redis.
    fn try_call(&self) -> bool {
        let mut state = self.lock();
        match state.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // This call is the probe: keep the circuit open for the others until it answers.
                state.open_until = Some(Instant::now() + jittered(OPEN_FOR));
                true
            }
        }
    }

    /// True when this success ends a degraded spell.
    fn success(&self) -> bool {
        let mut state = self.lock();
        let was_degraded = state.failures > 0;
        *state = BreakerState::default();
        was_degraded
    }

    /// True when this failure starts a degraded spell.
    fn failure(&self) -> bool {
        let mut state = self.lock();
        state.failures += 1;
        if state.failures >= FAILURES_TO_OPEN {
            state.open_until = Some(Instant::now() + jittered(OPEN_FOR));
        }
        state.failures == 1
    }

    fn is_degraded(&self) -> bool {
        self.lock().failures > 0
    }
}

fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_lets_one_probe_through_later() {
        let breaker = Breaker::default();
        assert!(breaker.try_call() && !breaker.is_degraded());
        assert!(breaker.failure(), "the first failure starts a degraded spell");
        assert!(!breaker.failure());
        assert!(breaker.try_call(), "still closed below the threshold");
        breaker.failure();
        assert!(!breaker.try_call(), "open");
        breaker.lock().open_until = Some(Instant::now());
        assert!(breaker.try_call(), "the probe");
        assert!(!breaker.try_call(), "only one probe at a time");
        assert!(breaker.success(), "the probe's success ends the spell");
        assert!(breaker.try_call() && !breaker.is_degraded());
    }

    #[test]
    fn the_open_time_is_jittered_around_the_base() {
        let samples: Vec<Duration> = (0..100).map(|_| jittered(OPEN_FOR)).collect();
        assert!(samples.iter().all(|d| *d >= OPEN_FOR / 2 && *d < OPEN_FOR * 3 / 2));
        assert!(samples.iter().any(|d| *d != samples[0]));
    }

    #[test]
    fn replies_are_read_per_key_and_malformed_ones_refused() {
        let p = WindowParams::new(Duration::from_secs(60), 10);
        let keys = [("a".to_string(), p), ("b".to_string(), p)];
        let reply = parse_reply(&[1_700_000_000_000_000, 0, 0, 1, 4, 30_000_000, 0, 0, 59_000_000], &keys).unwrap();
        assert_eq!(reply.now_us, 1_700_000_000_000_000);
        assert!(!reply.admitted && !reply.duplicate);
        assert!(reply.limits[0].room && !reply.limits[1].room);
        assert_eq!(reply.limits[0].remaining, 4);
        assert_eq!(reply.limits[1].reset_after, Duration::from_secs(59));
        assert!(parse_reply(&[1, 1, 0, 1, 1], &keys).is_none());
        assert!(parse_reply(&[], &keys).is_none());
    }
}
