//! Rate limiting: a sliding-window limit per client IP (the default, or its network's override) and,
//! when the request names one, per session within that IP; plus optional batch de-duplication,
//! decided in the same call (on Redis, the same round trip).
//!
//! Limits count requests (the default) or, with `RATE_LIMIT_UNIT=record`, records: a request is
//! checked for 1 before its body is read, and once its records are known the rest of its weight is
//! charged in a second call (`Limiter::check_records`), which is also where a session the request
//! named only in its records meets its session limit.
//!
//! `RateLimiter` is what a backend implements; `Limiter` is what the request path calls: it adds what
//! does not depend on the backend (exempt clients, dry run, decision metrics) around whichever
//! backend the settings chose.

mod memory;
mod overrides;
pub mod redis;
mod seen;
mod settings;
pub mod window;

use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc, time::Duration, time::Instant};

use ipnet::IpNet;
pub use memory::MemoryLimiter;
pub use overrides::{InvalidOverride, LimitOverrides};
use prometheus::{Histogram, IntCounter};
pub use redis::RedisLimiter;
pub use settings::{Backend, RateLimitConfig, RateLimitSettings, RedisFailure, RedisMode, RedisSettings, Unit};

use crate::client_ip::IpBucket;

/// What one ingest request is checked against.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The client address (after trusted proxies): exemptions are matched against it.
    pub client: IpAddr,
    /// The sending page's session id, when it names one and session limits are on.
    pub session: Option<Box<str>>,
    /// The client's id for this batch, when it sends one and de-duplication is on.
    pub batch: Option<Box<str>>,
    /// The session proved itself (a solved challenge): it is limited on its own, at the IP's limit,
    /// instead of sharing its IP's quota.
    pub verified: bool,
}

/// The keys of one attempt. Session and batch keys live inside their IP's key space, so nobody can
/// spend another network's session quota or mark its batches seen, and (on Redis) every key of one
/// call shares a Cluster slot.
#[derive(Debug, Clone)]
pub struct Keys {
    pub ip: LimitKey,
    pub session: Option<LimitKey>,
    pub batch: Option<LimitKey>,
}

impl Attempt {
    pub fn keys(&self) -> Keys {
        let ip = IpBucket::of(self.client);
        if let (true, Some(id)) = (self.verified, &self.session) {
            let verified = LimitKey::Verified(ip, id.clone());
            return Keys { ip: verified, session: None, batch: self.batch.clone().map(|id| LimitKey::Batch(ip, id)) };
        }
        Keys {
            ip: LimitKey::Ip(ip),
            session: self.session.clone().map(|id| LimitKey::Session(ip, id)),
            batch: self.batch.clone().map(|id| LimitKey::Batch(ip, id)),
        }
    }
}

/// What one call counts in one key: a request weighing `weight`, of which an earlier call for the same
/// request already counted `counted`. A request never counts more than a key's whole limit, so a
/// batch of more records than a limit is admitted into an empty window rather than refused forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub weight: u32,
    pub counted: u32,
}

impl Charge {
    pub const ONE: Charge = Charge { weight: 1, counted: 0 };

    /// What this call counts in a key of `limit`.
    pub fn cost(self, limit: u32) -> u32 {
        self.weight.min(limit).saturating_sub(self.counted.min(limit))
    }
}

/// What one call counts in the IP's key and in the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charges {
    pub ip: Charge,
    pub session: Charge,
}

impl Charges {
    /// One request (the check before the body).
    pub const ONE: Charges = Charges { ip: Charge::ONE, session: Charge::ONE };
}

/// A key the limiter keeps state under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Ip(IpBucket),
    Session(IpBucket, Box<str>),
    /// A batch id already accepted (de-duplication).
    Batch(IpBucket, Box<str>),
    /// A session that solved a challenge: it takes the place of the IP's key, with the IP's limit.
    Verified(IpBucket, Box<str>),
}

impl LimitKey {
    /// The IP the key belongs to (the Redis hash tag).
    pub fn ip(&self) -> IpBucket {
        match self {
            LimitKey::Ip(ip) | LimitKey::Session(ip, _) | LimitKey::Batch(ip, _) | LimitKey::Verified(ip, _) => *ip,
        }
    }
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Ip(ip) => write!(f, "ip:{ip}"),
            LimitKey::Session(ip, id) => write!(f, "ip:{ip}:session:{id}"),
            LimitKey::Batch(ip, id) => write!(f, "ip:{ip}:batch:{id}"),
            LimitKey::Verified(ip, id) => write!(f, "ip:{ip}:verified:{id}"),
        }
    }
}

/// Where one limit stands for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// The key had room for this request (all of its cost).
    pub room: bool,
    pub limit: u32,
    /// Left after this request.
    pub remaining: u32,
    /// Until the oldest counted request leaves the window (a slot frees); when refused, until enough
    /// has left for the request to fit.
    pub reset_after: Duration,
}

/// One decision, with what the RateLimit headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The batch id was already accepted: nothing was counted, nothing is to be logged again.
    pub duplicate: bool,
    pub ip: Quota,
    /// Present when the request named a session and session limits are on.
    pub session: Option<Quota>,
}

impl Decision {
    /// Admits and counts nothing against any limit.
    pub fn unlimited(ip_limit: u32) -> Self {
        let ip = Quota { room: true, limit: ip_limit, remaining: ip_limit, reset_after: Duration::ZERO };
        Self { allowed: true, duplicate: false, ip, session: None }
    }

    /// Refused by the failure policy, with `retry_after`.
    pub fn refused(ip_limit: u32, retry_after: Duration) -> Self {
        let ip = Quota { room: false, limit: ip_limit, remaining: 0, reset_after: retry_after };
        Self { allowed: false, duplicate: false, ip, session: None }
    }

    /// From the quotas of one call: admitted only when each has room and the batch is new.
    pub fn of(ip: Quota, session: Option<Quota>, duplicate: bool) -> Self {
        let room = ip.room && session.is_none_or(|s| s.room);
        Self { allowed: room && !duplicate, duplicate, ip, session }
    }

    /// When a refused request may be retried: once every limit that refused it has a free slot.
    pub fn retry_after(&self) -> Duration {
        [Some(self.ip), self.session]
            .into_iter()
            .flatten()
            .filter(|q| !q.room)
            .map(|q| q.reset_after)
            .max()
            .unwrap_or_default()
    }

    /// Only the session's limit refused (the IP had room): a runaway tab, not a noisy network.
    fn session_only(&self) -> bool {
        self.ip.room && self.session.is_some_and(|s| !s.room)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A limiter backend. A backend never fails the request: it answers with a decision, whatever
/// happens to what it depends on (its own failure policy decides how).
pub trait RateLimiter: Send + Sync {
    /// Decides on every key at once: admitted when each has room for what `charges` counts in it
    /// (`Charge::cost` of its limit), and then counted in each. A refusal or a duplicate counts nothing.
    fn check<'a>(&'a self, keys: &'a Keys, charges: Charges) -> BoxFuture<'a, Decision>;
    /// Records an accepted batch id, so a retry of it within the de-duplication window is a duplicate.
    /// Called after the batch is logged: a failure here can only let a retry be logged twice.
    fn remember(&self, batch: LimitKey);
    /// Name used in metrics and `/readyz`.
    fn backend(&self) -> &'static str;
    /// True while decisions come from the failure policy instead of the backend itself.
    fn degraded(&self) -> bool {
        false
    }
    /// For `/readyz`: how the backend reaches its store (e.g. Redis mode, Cluster primaries answering).
    fn topology(&self) -> BoxFuture<'_, Option<serde_json::Value>> {
        Box::pin(async { None })
    }
}

/// The limiter the request path uses.
pub struct Limiter {
    backend: Arc<dyn RateLimiter>,
    limit: u32,
    unit: Unit,
    sessions: bool,
    dedup: bool,
    dry_run: bool,
    exempt: Vec<IpNet>,
    /// The backend's series, resolved once (a label lookup is a hash and a lock), by `Outcome`.
    decisions: [IntCounter; DECISIONS.len()],
    duplicates: IntCounter,
    duration: Histogram,
}

impl Limiter {
    pub fn new(
        backend: Arc<dyn RateLimiter>,
        settings: &RateLimitSettings,
        metrics: &crate::observability::Metrics,
    ) -> Self {
        let decisions = metrics.counter_vec(
            "client_telemetry_rate_limit_decisions_total",
            "Rate limit decisions by backend and outcome.",
            &["backend", "decision"],
        );
        let duration = metrics.histogram_vec(
            "client_telemetry_rate_limiter_duration_seconds",
            "Time to reach a rate limit decision.",
            &[0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
            &["backend"],
        );
        let duplicates = metrics.counter(
            "client_telemetry_duplicate_batches_total",
            "Batches answered as duplicates (their id was already accepted): not logged or forwarded again.",
        );
        // Every series exists from the start at 0, so rate() sees the first burst whole.
        let decisions = DECISIONS.map(|decision| decisions.with_label_values(&[backend.backend(), decision]));
        let duration = duration.with_label_values(&[backend.backend()]);
        Self {
            backend,
            limit: settings.max_requests,
            unit: settings.unit,
            sessions: settings.session_max_requests.is_some(),
            dedup: settings.dedup_window.is_some(),
            dry_run: settings.dry_run,
            exempt: settings.exempt.clone(),
            decisions,
            duplicates,
            duration,
        }
    }

    pub fn from_settings(
        settings: &RateLimitSettings,
        metrics: &crate::observability::Metrics,
        log: &slog::Logger,
    ) -> Self {
        let backend: Arc<dyn RateLimiter> = match settings.backend {
            Backend::Memory => Arc::new(MemoryLimiter::new(settings)),
            Backend::Redis => Arc::new(RedisLimiter::new(settings, metrics, log.clone())),
        };
        Self::new(backend, settings, metrics)
    }

    /// Decides for one attempt, before its body is read: one request, or its first record.
    /// Exempt clients skip every limit and de-duplication.
    pub async fn check(&self, attempt: &Attempt) -> Decision {
        self.decide(attempt, Charges::ONE).await
    }

    /// Once the attempt's `records` are decoded: charges the rest of their weight when limits count
    /// records, and the request to `session` (one its records name) when it named none before its
    /// body and sessions are limited. `None` when there is nothing more to charge (limits count
    /// requests and no session was learned, or a single record): no second call.
    pub async fn check_records(
        &self,
        attempt: &Attempt,
        records: usize,
        session: impl FnOnce() -> Option<Box<str>>,
    ) -> Option<Decision> {
        let weight = match self.unit {
            Unit::Request => 1,
            Unit::Record => u32::try_from(records).unwrap_or(u32::MAX),
        };
        let learned = match self.sessions && attempt.session.is_none() && !attempt.verified {
            true => session(),
            false => None,
        };
        if weight <= 1 && learned.is_none() {
            return None;
        }
        // The first call counted 1 in the IP's key, and in the session's when the request named one.
        let session_counted = u32::from(learned.is_none());
        let charges =
            Charges { ip: Charge { weight, counted: 1 }, session: Charge { weight, counted: session_counted } };
        let attempt = Attempt { session: attempt.session.clone().or(learned), batch: None, ..attempt.clone() };
        Some(self.decide(&attempt, charges).await)
    }

    async fn decide(&self, attempt: &Attempt, charges: Charges) -> Decision {
        if self.exempt.iter().any(|net| net.contains(&attempt.client)) {
            self.decisions[Outcome::Exempt as usize].inc();
            return Decision::unlimited(self.limit);
        }
        let started = Instant::now();
        let mut decision = self.backend.check(&attempt.keys(), charges).await;
        self.duration.observe(started.elapsed().as_secs_f64());
        if decision.duplicate {
            self.duplicates.inc();
            return decision;
        }
        let outcome = match (decision.allowed, self.dry_run) {
            (true, _) => Outcome::Allowed,
            (false, true) => {
                decision.allowed = true;
                Outcome::DryRunLimited
            }
            (false, false) if decision.session_only() => Outcome::SessionLimited,
            (false, false) => Outcome::Limited,
        };
        self.decisions[outcome as usize].inc();
        decision
    }

    /// After the attempt's batch was accepted: remember its id (never waits; see `RateLimiter::remember`).
    pub fn accepted(&self, attempt: &Attempt) {
        if let Some(batch) = attempt.keys().batch {
            self.backend.remember(batch);
        }
    }

    /// What the limits count: requests or records.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// Whether requests naming a session are limited per session too.
    pub fn limits_sessions(&self) -> bool {
        self.sessions
    }

    /// Whether batch ids are de-duplicated.
    pub fn deduplicates(&self) -> bool {
        self.dedup
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.backend()
    }

    pub fn degraded(&self) -> bool {
        self.backend.degraded()
    }

    pub async fn topology(&self) -> Option<serde_json::Value> {
        self.backend.topology().await
    }
}

/// The `decision` label of `client_telemetry_rate_limit_decisions_total`, indexed by `Outcome`.
const DECISIONS: [&str; 5] = ["allowed", "limited", "session_limited", "dry_run_limited", "exempt"];

#[derive(Clone, Copy)]
enum Outcome {
    Allowed,
    Limited,
    SessionLimited,
    DryRunLimited,
    Exempt,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observability::Metrics;

    /// A memory limiter of 2 requests per IP, changed by `change`.
    fn limiter(change: impl FnOnce(&mut RateLimitConfig)) -> (Limiter, Metrics) {
        let mut config = RateLimitConfig { rate_limit_max_requests: 2, ..RateLimitConfig::default() };
        change(&mut config);
        let settings = config.resolve().unwrap();
        let metrics = Metrics::new();
        let limiter = Limiter::from_settings(&settings, &metrics, &slog::Logger::root(slog::Discard, slog::o!()));
        (limiter, metrics)
    }

    fn decided(metrics: &Metrics, decision: &str) -> u64 {
        metrics.sample(&format!(
            r#"client_telemetry_rate_limit_decisions_total{{backend="memory",decision="{decision}"}}"#
        )) as u64
    }

    fn from(ip: &str, session: Option<&str>, batch: Option<&str>) -> Attempt {
        Attempt {
            client: ip.parse().unwrap(),
            session: session.map(Into::into),
            batch: batch.map(Into::into),
            verified: false,
        }
    }

    #[actix_web::test]
    async fn dry_run_admits_what_it_would_refuse_and_counts_it() {
        let (limiter, metrics) = limiter(|c| c.rate_limit_dry_run = true);
        let client = from("198.51.100.1", None, None);
        assert!(limiter.check(&client).await.allowed);
        assert!(limiter.check(&client).await.allowed);
        let would_refuse = limiter.check(&client).await;
        assert!(would_refuse.allowed);
        assert_eq!((would_refuse.ip.room, would_refuse.ip.remaining), (false, 0));
        assert_eq!((decided(&metrics, "allowed"), decided(&metrics, "dry_run_limited")), (2, 1));
        assert_eq!(decided(&metrics, "limited"), 0);
    }

    #[actix_web::test]
    async fn exempt_clients_are_never_limited_nor_counted_against_a_limit() {
        let (limiter, metrics) =
            limiter(|c| c.rate_limit_exempt_cidrs = vec!["10.0.0.0/8".into(), "2001:db8::5".into()]);
        for ip in ["10.1.2.3", "2001:db8::5"] {
            for _ in 0..3 {
                assert!(limiter.check(&from(ip, None, None)).await.allowed);
            }
        }
        assert_eq!(decided(&metrics, "exempt"), 6);
        // a neighbour in the same /64 as the exempt host is limited as usual
        let neighbour = from("2001:db8::6", None, None);
        assert!(limiter.check(&neighbour).await.allowed);
        assert!(limiter.check(&neighbour).await.allowed);
        assert!(!limiter.check(&neighbour).await.allowed);
        assert_eq!(decided(&metrics, "limited"), 1);
    }

    #[actix_web::test]
    async fn a_session_spends_at_most_its_own_limit_and_leaves_the_rest_of_its_ip_to_others() {
        let (limiter, metrics) = limiter(|c| {
            c.rate_limit_max_requests = 3;
            c.rate_limit_session_max_requests = 2;
        });
        let runaway = from("198.51.100.2", Some("tab-a"), None);
        assert!(limiter.check(&runaway).await.allowed);
        let last = limiter.check(&runaway).await;
        assert!(last.allowed);
        assert_eq!((last.ip.remaining, last.session.unwrap().remaining), (1, 0));
        let refused = limiter.check(&runaway).await;
        assert!(!refused.allowed && refused.ip.room && !refused.session.unwrap().room);
        assert_eq!(refused.ip.remaining, 1, "a refusal costs the IP nothing");
        assert_eq!(decided(&metrics, "session_limited"), 1);
        // another tab behind the same address still gets the IP's last slot, then the IP is spent
        assert!(limiter.check(&from("198.51.100.2", Some("tab-b"), None)).await.allowed);
        assert!(!limiter.check(&from("198.51.100.2", Some("tab-c"), None)).await.allowed);
        assert_eq!(decided(&metrics, "limited"), 1);
        // the same session id from another network is another session
        assert!(limiter.check(&from("203.0.113.9", Some("tab-a"), None)).await.allowed);
    }

    #[actix_web::test]
    async fn without_session_limits_a_session_id_changes_nothing() {
        let (limiter, _) = limiter(|_| {});
        let with = from("198.51.100.3", Some("tab-a"), None);
        assert_eq!(limiter.check(&with).await.session, None);
        assert!(limiter.check(&from("198.51.100.3", Some("tab-b"), None)).await.allowed);
        assert!(!limiter.check(&from("198.51.100.3", Some("tab-c"), None)).await.allowed, "the IP's limit of 2");
    }

    /// Admitted requests of `n` from `ip`.
    async fn admitted(limiter: &Limiter, ip: &str, n: usize) -> usize {
        let mut admitted = 0;
        for _ in 0..n {
            admitted += usize::from(limiter.check(&from(ip, None, None)).await.allowed);
        }
        admitted
    }

    #[actix_web::test]
    async fn a_listed_network_has_its_own_limit_per_client_and_others_keep_the_default() {
        let (limiter, metrics) = limiter(|c| {
            c.rate_limit_overrides =
                ["203.0.113.0/24=4", "203.0.113.128/25=3", "2001:db8::/48=5"].map(String::from).to_vec()
        });
        let first = limiter.check(&from("203.0.113.9", None, None)).await;
        assert_eq!((first.ip.limit, first.ip.remaining), (4, 3));
        assert_eq!(admitted(&limiter, "203.0.113.9", 5).await, 3, "4 in all");
        assert_eq!(admitted(&limiter, "203.0.113.10", 5).await, 4, "each address of the network has its own 4");
        assert_eq!(admitted(&limiter, "203.0.113.200", 5).await, 3, "the longest prefix wins");
        assert_eq!(admitted(&limiter, "2001:db8:0:1::1", 6).await, 5);
        assert_eq!(admitted(&limiter, "198.51.100.9", 5).await, 2, "not listed: the default");
        let refused = limiter.check(&from("203.0.113.9", None, None)).await;
        assert_eq!((refused.allowed, refused.ip.limit), (false, 4));
        assert_eq!(decided(&metrics, "limited"), 2 + 1 + 2 + 1 + 3 + 1);
    }

    #[actix_web::test]
    async fn within_an_override_the_session_limit_still_applies_and_exemptions_still_win() {
        let (limiter, metrics) = limiter(|c| {
            c.rate_limit_overrides = vec!["10.0.0.0/8=5".into()];
            c.rate_limit_session_max_requests = 2;
            c.rate_limit_exempt_cidrs = vec!["10.9.9.9".into()];
        });
        let tab = |id: &'static str| from("10.1.1.1", Some(id), None);
        assert!(limiter.check(&tab("a")).await.allowed);
        let last = limiter.check(&tab("a")).await;
        assert_eq!((last.ip.remaining, last.session.unwrap().remaining), (3, 0));
        let refused = limiter.check(&tab("a")).await;
        assert!(!refused.allowed && refused.ip.room, "the tab's 2, not the office's 5");
        assert!(limiter.check(&tab("b")).await.allowed);
        assert!(limiter.check(&tab("b")).await.allowed);
        assert!(limiter.check(&tab("c")).await.allowed);
        assert!(!limiter.check(&tab("d")).await.allowed, "the office's 5 are spent");
        assert_eq!((decided(&metrics, "session_limited"), decided(&metrics, "limited")), (1, 1));
        assert_eq!(admitted(&limiter, "10.9.9.9", 10).await, 10, "exempt inside an overridden network");
    }

    /// What the second call of a request of `records` decides, the session learned from its records
    /// being `learned`.
    async fn records(limiter: &Limiter, attempt: &Attempt, records: usize, learned: Option<&str>) -> Option<Decision> {
        limiter.check_records(attempt, records, || learned.map(Into::into)).await
    }

    #[test]
    fn a_charge_never_counts_more_than_the_whole_limit() {
        assert_eq!(Charge::ONE.cost(100), 1);
        assert_eq!(Charge { weight: 40, counted: 1 }.cost(100), 39);
        assert_eq!(Charge { weight: 500, counted: 1 }.cost(100), 99, "the request counts 100 in all");
        assert_eq!(Charge { weight: 1, counted: 1 }.cost(100), 0);
        assert_eq!(Charge { weight: 7, counted: 1 }.cost(1), 0, "the first call spent the limit of 1");
    }

    #[actix_web::test]
    async fn counting_records_a_batch_spends_one_before_its_body_and_the_rest_after() {
        let (limiter, metrics) = limiter(|c| {
            c.rate_limit_max_requests = 50;
            c.rate_limit_unit = "record".into();
        });
        let client = from("198.51.100.5", None, None);
        assert!(limiter.check(&client).await.allowed);
        let forty = records(&limiter, &client, 40, None).await.expect("a second call for 40 records");
        assert!(forty.allowed);
        assert_eq!(forty.ip.remaining, 10);
        assert!(limiter.check(&client).await.allowed, "the next request's first record fits");
        let twenty = records(&limiter, &client, 20, None).await.unwrap();
        assert!(!twenty.allowed, "its other 19 do not");
        assert_eq!(twenty.ip.remaining, 9, "the first record stays spent, the refused 19 are not");
        assert!(twenty.retry_after() > Duration::ZERO);
        assert!(records(&limiter, &client, 1, None).await.is_none(), "one record: no second call");
        assert_eq!((decided(&metrics, "allowed"), decided(&metrics, "limited")), (3, 1));
    }

    #[actix_web::test]
    async fn counting_requests_there_is_no_second_call_unless_the_records_name_the_only_session() {
        let (limiter, _) = limiter(|c| {
            c.rate_limit_max_requests = 3;
            c.rate_limit_session_max_requests = 1;
        });
        let named = from("198.51.100.6", Some("tab-a"), None);
        assert!(records(&limiter, &named, 500, Some("tab-b")).await.is_none(), "the session named first counts");
        let unnamed = from("198.51.100.6", None, None);
        assert!(records(&limiter, &unnamed, 500, None).await.is_none());
        assert!(limiter.check(&unnamed).await.allowed);
        let learned = records(&limiter, &unnamed, 500, Some("tab-c")).await.unwrap();
        assert!(learned.allowed);
        assert_eq!((learned.ip.remaining, learned.session.unwrap().remaining), (2, 0), "the IP counted once");
        assert!(limiter.check(&unnamed).await.allowed);
        let again = records(&limiter, &unnamed, 1, Some("tab-c")).await.unwrap();
        assert!(!again.allowed && again.ip.room, "the session's 1 is spent");
    }

    #[actix_web::test]
    async fn counting_records_a_learned_session_is_charged_every_record_and_dry_run_and_exemptions_hold() {
        let (limiter, metrics) = limiter(|c| {
            c.rate_limit_max_requests = 100;
            c.rate_limit_session_max_requests = 30;
            c.rate_limit_unit = "record".into();
            c.rate_limit_dry_run = true;
            c.rate_limit_exempt_cidrs = vec!["10.0.0.0/8".into()];
        });
        let client = from("198.51.100.7", None, None);
        assert!(limiter.check(&client).await.allowed);
        let first = records(&limiter, &client, 20, Some("tab-a")).await.unwrap();
        assert_eq!((first.ip.remaining, first.session.unwrap().remaining), (80, 10), "20 in each");
        assert!(limiter.check(&client).await.allowed);
        let over = records(&limiter, &client, 20, Some("tab-a")).await.unwrap();
        assert!(over.allowed, "dry run admits");
        assert!(!over.session.unwrap().room);
        assert_eq!(decided(&metrics, "dry_run_limited"), 1);
        let exempt = from("10.0.0.1", None, None);
        assert!(records(&limiter, &exempt, 1000, Some("tab-a")).await.unwrap().allowed);
        assert_eq!(decided(&metrics, "exempt"), 1);
    }

    #[test]
    fn the_unit_is_request_unless_set_to_record_and_anything_else_is_refused() {
        assert_eq!(RateLimitConfig::default().resolve().unwrap().unit, Unit::Request);
        let record = RateLimitConfig { rate_limit_unit: "Record".into(), ..RateLimitConfig::default() };
        assert_eq!(record.resolve().unwrap().unit, Unit::Record);
        let events = RateLimitConfig { rate_limit_unit: "events".into(), ..RateLimitConfig::default() };
        let error = events.resolve().unwrap_err();
        assert_eq!(error.setting, "CLIENT_TELEMETRY_RATE_LIMIT_UNIT");
        assert!(error.reason.contains("request, record"), "{error}");
    }

    #[test]
    fn a_bad_override_names_the_setting_and_the_entry() {
        let config = RateLimitConfig {
            rate_limit_overrides: vec!["203.0.113.0/24=500".into(), "198.51.100.0/24=0".into()],
            ..RateLimitConfig::default()
        };
        let error = config.resolve().unwrap_err();
        assert_eq!(error.setting, "CLIENT_TELEMETRY_RATE_LIMIT_OVERRIDES");
        assert_eq!(error.value, "198.51.100.0/24=0");
        assert!(error.reason.contains("at least 1"), "{error}");
    }

    #[actix_web::test]
    async fn a_batch_accepted_once_is_a_duplicate_after_and_costs_no_quota() {
        let (limiter, metrics) = limiter(|c| c.rate_limit_dedup_window_ms = 60_000);
        let first = from("198.51.100.4", None, Some("b-1"));
        assert!(limiter.check(&first).await.allowed);
        // not yet accepted (the first try may still fail): a retry is not a duplicate
        let retry = limiter.check(&first).await;
        assert!(retry.allowed && !retry.duplicate);
        limiter.accepted(&first);
        let duplicate = limiter.check(&first).await;
        assert!(duplicate.duplicate && !duplicate.allowed);
        assert_eq!(duplicate.ip.remaining, 0, "the IP spent 2, the duplicate nothing");
        assert_eq!(metrics.sample("client_telemetry_duplicate_batches_total"), 1.0);
        // the same id from another network is another batch
        assert!(!limiter.check(&from("203.0.113.4", None, Some("b-1"))).await.duplicate);
    }
}
