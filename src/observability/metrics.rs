//! Every metric the service exports, registered once in one registry.

use std::sync::OnceLock;

use actix_web::http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::{
    event::{Event, Level, Reason},
    scrub::{Kind, Redactions},
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: Histogram,
    pub batch_size: Histogram,
    pub events: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub log_lines_dropped: IntCounter,
    pub rate_limit_decisions: IntCounterVec,
    pub duplicate_batches: IntCounter,
    pub rate_limiter_duration: HistogramVec,
    pub redactions: IntCounterVec,
    /// The request path's series, resolved once: counting is an atomic add, not a label lookup
    /// (a hash and a lock) per request.
    requests_by_status: [(u16, IntCounter); STATUSES.len()],
    events_by_level: [IntCounter; Level::ALL.len()],
    redactions_by_kind: [IntCounter; Kind::ALL.len()],
    /// Resolved at the first rejection for that reason: the series appears only then, as before.
    rejected_by_reason: [OnceLock<IntCounter>; Reason::ALL.len()],
}

/// The statuses the ingest route answers with; their series exist from the start at 0.
const STATUSES: [u16; 10] = [200, 204, 400, 401, 403, 408, 413, 415, 429, 503];

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c).expect("metric names are unique");

        let requests = IntCounterVec::new(
            Opts::new("client_telemetry_requests_total", "Ingest requests by HTTP status."),
            &["status"],
        )
        .unwrap();
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "client_telemetry_request_duration_seconds",
                "Ingest request latency, first byte to response.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .unwrap();
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("client_telemetry_batch_size", "Events per accepted request.")
                .buckets(BATCH_BUCKETS.to_vec()),
        )
        .unwrap();
        let events =
            IntCounterVec::new(Opts::new("client_telemetry_events_total", "Accepted events by level."), &["level"])
                .unwrap();
        let events_rejected = IntCounterVec::new(
            Opts::new("client_telemetry_events_rejected_total", "Events refused by validation, by reason."),
            &["reason"],
        )
        .unwrap();
        let duplicate_batches = IntCounter::new(
            "client_telemetry_duplicate_batches_total",
            "Batches answered as duplicates (their id was already accepted): not logged or forwarded again.",
        )
        .unwrap();
        let log_lines_dropped = IntCounter::new(
            "client_telemetry_log_lines_dropped_total",
            "Log lines dropped because the log writer fell behind.",
        )
        .unwrap();
        let rate_limit_decisions = IntCounterVec::new(
            Opts::new("client_telemetry_rate_limit_decisions_total", "Rate limit decisions by backend and outcome."),
            &["backend", "decision"],
        )
        .unwrap();
        let rate_limiter_duration = HistogramVec::new(
            HistogramOpts::new(
                "client_telemetry_rate_limiter_duration_seconds",
                "Time to reach a rate limit decision.",
            )
            .buckets(vec![0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]),
            &["backend"],
        )
        .unwrap();
        let redactions = IntCounterVec::new(
            Opts::new("client_telemetry_redactions_total", "PII and secrets redacted from accepted events, by kind."),
            &["kind"],
        )
        .unwrap();
        let build_info = IntGaugeVec::new(
            Opts::new("client_telemetry_build_info", "Always 1; labelled with the running version and its git commit."),
            &["version", "commit"],
        )
        .unwrap();
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("CLIENT_TELEMETRY_GIT_COMMIT")]).set(1);
        // The series alerts and dashboards read exist from the start at 0, so rate() sees a first
        // burst whole instead of starting from it.
        let requests_by_status = STATUSES.map(|status| (status, requests.with_label_values(&[&status.to_string()])));
        let events_by_level = Level::ALL.map(|level| events.with_label_values(&[level.as_str()]));
        let redactions_by_kind = Kind::ALL.map(|kind| redactions.with_label_values(&[kind.as_str()]));

        reg(Box::new(requests.clone()));
        reg(Box::new(request_duration.clone()));
        reg(Box::new(batch_size.clone()));
        reg(Box::new(events.clone()));
        reg(Box::new(events_rejected.clone()));
        reg(Box::new(log_lines_dropped.clone()));
        reg(Box::new(rate_limit_decisions.clone()));
        reg(Box::new(duplicate_batches.clone()));
        reg(Box::new(rate_limiter_duration.clone()));
        reg(Box::new(redactions.clone()));
        reg(Box::new(build_info));
        #[cfg(target_os = "linux")]
        reg(Box::new(prometheus::process_collector::ProcessCollector::for_self()));

        Self {
            registry,
            requests,
            request_duration,
            batch_size,
            events,
            events_rejected,
            log_lines_dropped,
            rate_limit_decisions,
            duplicate_batches,
            rate_limiter_duration,
            redactions,
            requests_by_status,
            events_by_level,
            redactions_by_kind,
            rejected_by_reason: Default::default(),
        }
    }

    /// One ingest request answered with `status`.
    pub fn count_request(&self, status: StatusCode) {
        match self.requests_by_status.iter().find(|(known, _)| *known == status.as_u16()) {
            Some((_, counter)) => counter.inc(),
            None => self.requests.with_label_values(&[status.as_str()]).inc(),
        }
    }

    /// `n` accepted events of `level`.
    pub fn count_events(&self, level: Level, n: u64) {
        self.events_by_level[level as usize].inc_by(n);
    }

    /// `n` redactions of `kind`.
    pub fn count_redactions(&self, kind: Kind, n: u64) {
        self.redactions_by_kind[kind as usize].inc_by(n);
    }

    /// The scrubber's redactions of one event, by kind.
    pub fn count_redactions_of(&self, redactions: Redactions) {
        if redactions.total() == 0 {
            return;
        }
        for (kind, n) in redactions.iter() {
            self.count_redactions(kind, u64::from(n));
        }
    }

    /// Accepted events, by level.
    pub fn count_levels(&self, events: &[Event<'_>]) {
        let mut counts = [0u64; Level::ALL.len()];
        for event in events {
            counts[event.level as usize] += 1;
        }
        for (level, count) in Level::ALL.into_iter().zip(counts) {
            if count > 0 {
                self.count_events(level, count);
            }
        }
    }

    /// Refused events, by reason.
    pub fn count_rejections(&self, reasons: impl Iterator<Item = Reason>) {
        reasons.for_each(|reason| self.count_rejection(reason));
    }

    /// One event refused for `reason`.
    pub fn count_rejection(&self, reason: Reason) {
        self.rejected_by_reason[reason as usize]
            .get_or_init(|| self.events_rejected.with_label_values(&[reason.as_str()]))
            .inc();
    }

    /// Registers a metric owned by another module (limiter backends, forwarder).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry.register(collector).expect("metric names are unique");
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let gauge = IntGauge::new(name, help).expect("valid metric name");
        self.register(Box::new(gauge.clone()));
        gauge
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle arrays are built in `ALL` order and indexed by discriminant: the two must agree.
    #[test]
    fn handles_are_indexed_by_discriminant() {
        assert!(Level::ALL.iter().enumerate().all(|(i, l)| *l as usize == i));
        assert!(Reason::ALL.iter().enumerate().all(|(i, r)| *r as usize == i));
        assert!(Kind::ALL.iter().enumerate().all(|(i, k)| *k as usize == i));
    }

    #[test]
    fn resolved_handles_count_the_labelled_series() {
        let metrics = Metrics::new();
        metrics.count_request(StatusCode::NO_CONTENT);
        metrics.count_request(StatusCode::INTERNAL_SERVER_ERROR);
        metrics.count_events(Level::Warn, 3);
        metrics.count_redactions(Kind::Ipv6, 2);
        metrics.count_rejection(Reason::InvalidTimestamp);
        metrics.count_rejection(Reason::InvalidTimestamp);
        assert_eq!(metrics.requests.with_label_values(&["204"]).get(), 1);
        assert_eq!(metrics.requests.with_label_values(&["500"]).get(), 1);
        assert_eq!(metrics.events.with_label_values(&["warn"]).get(), 3);
        assert_eq!(metrics.redactions.with_label_values(&["ipv6"]).get(), 2);
        assert_eq!(metrics.events_rejected.with_label_values(&["invalid_timestamp"]).get(), 2);
        let text = metrics.render();
        assert!(!text.contains(r#"reason="schema""#), "a reason's series appears at its first rejection");
        assert!(text.contains(r#"client_telemetry_requests_total{status="415"} 0"#));
    }
}
