//! Every metric the service exports, registered once in one registry.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
}

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
            Opts::new("client_telemetry_build_info", "Always 1; labelled with the running version."),
            &["version"],
        )
        .unwrap();
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // The series alerts and dashboards read exist from the start at 0, so rate() sees a first
        // burst whole instead of starting from it.
        for status in ["200", "204", "400", "401", "403", "408", "413", "415", "429", "503"] {
            requests.with_label_values(&[status]);
        }
        for level in ["info", "warn", "error"] {
            events.with_label_values(&[level]);
        }
        for kind in crate::scrub::Kind::ALL {
            redactions.with_label_values(&[kind.as_str()]);
        }

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
        }
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
