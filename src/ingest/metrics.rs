//! The ingest route's metrics: requests by status, latency, and what became of their events.
//!
//! The `app` label is bounded by the allow-list (`CLIENT_TELEMETRY_ALLOWED_APPS`, at most 100
//! names): an allow-listed name, or `""` (no allow-list, or a batch that names no app). Error
//! events are also counted by release for allow-listed apps, keeping the `MAX_RELEASES_PER_APP`
//! releases seen last: an older one's series is removed when a new one arrives.

use std::{collections::VecDeque, sync::Mutex};

use actix_web::http::StatusCode;
use prometheus::{Histogram, IntCounter, IntCounterVec};

use super::formats::Format;
use crate::{
    event::{Event, Level, Reason},
    observability::Metrics,
    scrub::{Kind, Redactions},
};

/// The statuses the ingest route answers with; their series exist from the start at 0.
const STATUSES: [u16; 11] = [200, 202, 204, 400, 401, 403, 408, 413, 415, 429, 503];

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// Releases of one app with their own `client_telemetry_app_errors_total` series.
pub const MAX_RELEASES_PER_APP: usize = 5;

/// One app's last releases with their series, oldest first.
type Releases = VecDeque<(String, IntCounter)>;

/// Which `app` label an event counts under: the index in `AppLabels::names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLabel(usize);

impl AppLabel {
    /// No allow-list, or a batch naming no app.
    pub const NONE: AppLabel = AppLabel(0);
}

/// Series are resolved once: counting is an atomic add, not a label lookup (a hash and a lock)
/// per request.
#[derive(Clone)]
pub struct IngestMetrics {
    requests: IntCounterVec,
    /// By route (`Format as usize`), then status.
    requests_by_status: [[(u16, IntCounter); STATUSES.len()]; Format::ALL.len()],
    pub request_duration: Histogram,
    pub batch_size: Histogram,
    /// Label values: `""`, then the allow-listed apps.
    apps: std::sync::Arc<[String]>,
    /// By app label, then level.
    events_by_level: std::sync::Arc<[[IntCounter; Level::ALL.len()]]>,
    app_errors: IntCounterVec,
    /// By app label: its last releases, oldest first.
    releases: std::sync::Arc<[Mutex<Releases>]>,
    rejected_by_reason: [IntCounter; Reason::ALL.len()],
    redactions_by_kind: [IntCounter; Kind::ALL.len()],
}

impl IngestMetrics {
    pub fn new(metrics: &Metrics, allowed_apps: &[String]) -> Self {
        let requests = metrics.counter_vec(
            "client_telemetry_requests_total",
            "Ingest requests by route (native, otlp, faro) and HTTP status.",
            &["route", "status"],
        );
        let events = metrics.counter_vec(
            "client_telemetry_events_total",
            "Accepted events by level and app.",
            &["level", "app"],
        );
        let app_errors = metrics.counter_vec(
            "client_telemetry_app_errors_total",
            "Accepted error events of allow-listed apps, by app and release (the last few releases of each).",
            &["app", "release"],
        );
        let apps: std::sync::Arc<[String]> =
            std::iter::once(String::new()).chain(allowed_apps.iter().cloned()).collect();
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
            requests_by_status: Format::ALL.map(|route| {
                STATUSES.map(|status| (status, requests.with_label_values(&[route.label(), &status.to_string()])))
            }),
            requests,
            request_duration: metrics.histogram(
                "client_telemetry_request_duration_seconds",
                "Ingest request latency, first byte to response.",
                LATENCY_BUCKETS,
            ),
            batch_size: metrics.histogram("client_telemetry_batch_size", "Events per accepted request.", BATCH_BUCKETS),
            events_by_level: apps
                .iter()
                .map(|app| Level::ALL.map(|level| events.with_label_values(&[level.as_str(), app])))
                .collect(),
            releases: apps.iter().map(|_| Mutex::new(VecDeque::new())).collect(),
            apps,
            app_errors,
            rejected_by_reason: Reason::ALL.map(|reason| rejected.with_label_values(&[reason.as_str()])),
            redactions_by_kind: Kind::ALL.map(|kind| redactions.with_label_values(&[kind.as_str()])),
        }
    }

    /// One request of the route of `format` answered with `status`.
    pub fn count_request(&self, format: Format, status: StatusCode) {
        let route = &self.requests_by_status[format as usize];
        match route.iter().find(|(known, _)| *known == status.as_u16()) {
            Some((_, counter)) => counter.inc(),
            None => self.requests.with_label_values(&[format.label(), status.as_str()]).inc(),
        }
    }

    /// The label of a batch naming `app`; `None` when an allow-list is set and `app` is not on it.
    pub fn app_label(&self, app: Option<&str>) -> Option<AppLabel> {
        match app {
            Some(name) if self.apps.len() > 1 => self.apps[1..].iter().position(|a| a == name).map(|i| AppLabel(i + 1)),
            _ => Some(AppLabel::NONE),
        }
    }

    /// Accepted events, by level and app; errors of an allow-listed app also by release.
    pub fn count_levels(&self, app: AppLabel, release: Option<&str>, events: &[Event<'_>]) {
        let mut counts = [0u64; Level::ALL.len()];
        for event in events {
            counts[event.level as usize] += 1;
        }
        for (level, count) in Level::ALL.into_iter().zip(counts) {
            if count > 0 {
                self.events_by_level[app.0][level as usize].inc_by(count);
            }
        }
        let errors = counts[Level::Error as usize];
        if errors > 0 && app != AppLabel::NONE {
            self.count_release_errors(app, release.unwrap_or(""), errors);
        }
    }

    fn count_release_errors(&self, app: AppLabel, release: &str, errors: u64) {
        let mut releases = self.releases[app.0].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = releases.iter().find(|(r, _)| r == release) {
            counter.inc_by(errors);
            return;
        }
        if releases.len() == MAX_RELEASES_PER_APP
            && let Some((oldest, _)) = releases.pop_front()
        {
            let _ = self.app_errors.remove_label_values(&[&self.apps[app.0], &oldest]);
        }
        let counter = self.app_errors.with_label_values(&[&self.apps[app.0], release]);
        counter.inc_by(errors);
        releases.push_back((release.to_string(), counter));
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
        let metrics = IngestMetrics::new(&registry, &[]);
        let fresh = registry.render();
        for reason in Reason::ALL {
            let sample = format!(r#"client_telemetry_events_rejected_total{{reason="{}"}} 0"#, reason.as_str());
            assert!(fresh.contains(&sample), "{sample}");
        }
        assert!(fresh.contains(r#"client_telemetry_requests_total{route="otlp",status="415"} 0"#));
        metrics.count_request(Format::Native, StatusCode::NO_CONTENT);
        metrics.count_request(Format::Faro, StatusCode::INTERNAL_SERVER_ERROR);
        metrics.count_rejections([Reason::InvalidTimestamp, Reason::InvalidTimestamp].into_iter());
        let text = registry.render();
        assert!(text.contains(r#"client_telemetry_requests_total{route="native",status="204"} 1"#));
        assert!(text.contains(r#"client_telemetry_requests_total{route="faro",status="500"} 1"#));
        assert!(text.contains(r#"client_telemetry_events_rejected_total{reason="invalid_timestamp"} 2"#));
    }

    fn errors(n: usize) -> Vec<Event<'static>> {
        let json = r#"{"level":"error","scope":"s","sessionId":"x","message":"m","timestamp":"2025-01-15T10:30:45Z"}"#;
        let limits = crate::event::Limits::default();
        (0..n).map(|_| crate::event::parse_event(json, &limits).unwrap()).collect()
    }

    #[test]
    fn the_app_label_takes_only_allow_listed_names_and_releases_are_bounded() {
        let registry = Metrics::new();
        let metrics = IngestMetrics::new(&registry, &["shop".to_string()]);
        assert!(registry.render().contains(r#"client_telemetry_events_total{app="shop",level="error"} 0"#));
        assert_eq!(metrics.app_label(Some("blog")), None, "not on the list");
        assert_eq!(metrics.app_label(None), Some(AppLabel::NONE));
        let shop = metrics.app_label(Some("shop")).unwrap();
        for release in 0..=MAX_RELEASES_PER_APP {
            metrics.count_levels(shop, Some(&format!("1.{release}")), &errors(2));
        }
        let text = registry.render();
        assert!(text.contains(r#"client_telemetry_events_total{app="shop",level="error"} 12"#), "{text}");
        assert!(!text.contains(r#"release="1.0""#), "the oldest release gave way: {text}");
        let last = format!(r#"client_telemetry_app_errors_total{{app="shop",release="1.{MAX_RELEASES_PER_APP}"}} 2"#);
        assert!(text.contains(&last), "{text}");
        assert_eq!(text.matches("client_telemetry_app_errors_total{").count(), MAX_RELEASES_PER_APP);

        let open = IngestMetrics::new(&Metrics::new(), &[]);
        assert_eq!(open.app_label(Some("anything")), Some(AppLabel::NONE), "no allow-list: one label value");
    }
}
