//! The metrics registry, and the one way components add to it.
//!
//! Each component owns its metric families (`ingest::IngestMetrics`, `ratelimit::LimiterMetrics`,
//! the Redis backend's, `forward`'s) and creates them through these constructors, which register
//! them here. Labelled series whose values are known up front are created at 0 by their owner, so
//! a fresh deployment's dashboards show 0 rather than "No data", and `rate()` sees a first burst
//! whole.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self { registry: Registry::new() };
        let build_info = metrics.gauge_vec(
            "client_telemetry_build_info",
            "Always 1; labelled with the running version and its git commit.",
            &["version", "commit"],
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_COMMIT")]).set(1);
        #[cfg(target_os = "linux")]
        metrics.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        metrics
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        let counter = IntCounter::new(name, help).expect("valid metric");
        self.register(Box::new(counter.clone()));
        counter
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(Box::new(counter.clone()));
        counter
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let gauge = IntGauge::new(name, help).expect("valid metric");
        self.register(Box::new(gauge.clone()));
        gauge
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let gauge = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.register(Box::new(gauge.clone()));
        gauge
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid");
        self.register(Box::new(histogram.clone()));
        histogram
    }

    pub fn histogram_vec(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let histogram = HistogramVec::new(opts, labels).expect("valid metric");
        self.register(Box::new(histogram.clone()));
        histogram
    }

    fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry.register(collector).expect("metric names are unique");
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// The value of one sample, e.g. `client_telemetry_requests_total{status="204"}`; 0 if absent.
    #[cfg(test)]
    pub fn sample(&self, sample: &str) -> f64 {
        let text = self.render();
        let line = text.lines().find(|line| line.starts_with(sample) && line[sample.len()..].starts_with(' '));
        line.and_then(|line| line[sample.len()..].trim().parse().ok()).unwrap_or(0.0)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
