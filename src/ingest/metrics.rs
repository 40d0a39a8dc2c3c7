//! The ingest route's metrics: requests by status, latency, and what became of their events.

use actix_web::http::StatusCode;
use prometheus::{Histogram, IntCounter, IntCounterVec};

use crate::{
    event::{Event, Level, Reason},
    observability::Metrics,
    scrub::{Kind, Redactions},
};

/// The statuses the ingest route answers with; their series exist from the start at 0.
const STATUSES: [u16; 10] = [200, 204, 400, 401, 403, 408, 413, 415, 429, 503];

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// Series are resolved once: counting is an atomic add, not a label lookup (a hash and a lock)
/// per request.
#[derive(Clone)]
pub struct IngestMetrics {
    requests: IntCounterVec,
    requests_by_status: [(u16, IntCounter); STATUSES.len()],
    pub request_duration: Histogram,
    pub batch_size: Histogram,
    events_by_level: [IntCounter; Level::ALL.len()],
    rejected_by_reason: [IntCounter; Reason::ALL.len()],
    redactions_by_kind: [IntCounter; Kind::ALL.len()],
}

impl IngestMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let requests =
            metrics.counter_vec("client_telemetry_requests_total", "Ingest requests by HTTP status.", &["status"]);
        let events = metrics.counter_vec("client_telemetry_events_total", "Accepted events by level.", &["level"]);
        let rejected = metrics.counter_vec(
            "client_telemetry_events_rejected_total",
            "Events refused by validation, by reason.",
            &["reason"],
        );
        let redactions = metrics.counter_vec(
            "client_telemetry_redactions_total",
            "PII and secrets redacted from accepted events, by kind.",
            &["kind"],
        );
        Self {
            requests_by_status: STATUSES.map(|status| (status, requests.with_label_values(&[&status.to_string()]))),
            requests,
            request_duration: metrics.histogram(
                "client_telemetry_request_duration_seconds",
                "Ingest request latency, first byte to response.",
                LATENCY_BUCKETS,
            ),
            batch_size: metrics.histogram("client_telemetry_batch_size", "Events per accepted request.", BATCH_BUCKETS),
            events_by_level: Level::ALL.map(|level| events.with_label_values(&[level.as_str()])),
            rejected_by_reason: Reason::ALL.map(|reason| rejected.with_label_values(&[reason.as_str()])),
            redactions_by_kind: Kind::ALL.map(|kind| redactions.with_label_values(&[kind.as_str()])),
        }
    }

    /// One ingest request answered with `status`.
    pub fn count_request(&self, status: StatusCode) {
        match self.requests_by_status.iter().find(|(known, _)| *known == status.as_u16()) {
            Some((_, counter)) => counter.inc(),
            None => self.requests.with_label_values(&[status.as_str()]).inc(),
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
                self.events_by_level[level as usize].inc_by(count);
            }
        }
    }

    /// Refused events, by reason.
    pub fn count_rejections(&self, reasons: impl Iterator<Item = Reason>) {
        reasons.for_each(|reason| self.rejected_by_reason[reason as usize].inc());
    }

    /// The scrubber's redactions of one event, by kind.
    pub fn count_redactions(&self, redactions: Redactions) {
        if redactions.total() == 0 {
            return;
        }
        for (kind, n) in redactions.iter() {
            self.redactions_by_kind[kind as usize].inc_by(u64::from(n));
        }
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
    fn every_known_series_starts_at_zero_and_counts() {
        let registry = Metrics::new();
        let metrics = IngestMetrics::new(&registry);
        let fresh = registry.render();
        for reason in Reason::ALL {
            let sample = format!(r#"client_telemetry_events_rejected_total{{reason="{}"}} 0"#, reason.as_str());
            assert!(fresh.contains(&sample), "{sample}");
        }
        assert!(fresh.contains(r#"client_telemetry_requests_total{status="415"} 0"#));
        metrics.count_request(StatusCode::NO_CONTENT);
        metrics.count_request(StatusCode::INTERNAL_SERVER_ERROR);
        metrics.count_rejections([Reason::InvalidTimestamp, Reason::InvalidTimestamp].into_iter());
        let text = registry.render();
        assert!(text.contains(r#"client_telemetry_requests_total{status="204"} 1"#));
        assert!(text.contains(r#"client_telemetry_requests_total{status="500"} 1"#));
        assert!(text.contains(r#"client_telemetry_events_rejected_total{reason="invalid_timestamp"} 2"#));
    }
}
