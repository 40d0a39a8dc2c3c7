//! OTLP forwarding: accepted events to an OpenTelemetry Collector, without ever slowing ingest.
//!
//! A short pipeline:
//!
//! ```text
//! handler ─enqueue─▶ bounded queue ─▶ batch (by size or delay) ─▶ encode once ─▶ send, with retries
//! ```
//!
//! - `Forwarder::enqueue` (request path) takes room in the queue without waiting, encodes the events
//!   that fit as OTLP records and queues them as one message; when the queue is full the newest
//!   events are dropped and counted.
//! - One exporter task on the actix runtime batches records from many requests, frames them into a
//!   body, and keeps at most `max_in_flight` exports going; while they are all busy, the queue absorbs
//!   the wait.
//! - `exporter::Sender` holds the retry policy, the metrics of each outcome and the failure logs.
//! - `Exporter::drain` (shutdown): the queue closes, what it holds is exported until the deadline,
//!   and whatever is still unsent then is counted as dropped and logged once.
//!
//! Accounting: every event the handler offers ends in exactly one of
//! `client_telemetry_otlp_events_total{result="exported"|"failed"|"dropped"}`.

mod exporter;
pub mod otlp;
mod queue;
pub mod settings;

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use prometheus::{Histogram, IntCounter, IntGauge};
#[cfg(test)]
pub use settings::{DEFAULT_SERVICE_NAME, Protocol};
pub use settings::{ForwardConfig, ForwardSettings};
use slog::{Logger, info, warn};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{
    event::{Event, Origin},
    observability::Metrics,
    redact::redact_url,
};

/// One log line at most per this period for each kind of forwarding trouble.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Registers the forwarding metrics (always, so dashboards see zeros when it is off) and, when an
/// endpoint is configured, starts the exporter task on the current actix runtime.
pub fn start(settings: Option<&ForwardSettings>, metrics: &Metrics, log: &Logger) -> Option<(Forwarder, Exporter)> {
    let metrics = ForwardMetrics::new(metrics);
    let settings = settings?;
    let (queue, receiver) = queue::bounded(settings.queue_capacity);
    let encoder = Arc::new(otlp::Encoder::new(&settings.resource, settings.protocol, settings.gzip));
    let shutdown = Arc::new(Notify::new());
    let task = exporter::spawn(settings, encoder.clone(), receiver, shutdown.clone(), metrics.clone(), log.clone());
    info!(log, "otlp forwarding on"; "endpoint" => %redact_url(&settings.endpoint), "protocol" => ?settings.protocol,
        "gzip" => settings.gzip, "batch_size" => settings.batch_size, "queue_capacity" => settings.queue_capacity);
    let overflow = Arc::new(LogEvery::new(LOG_PERIOD));
    let forwarder = Forwarder { queue, encoder, metrics: metrics.clone(), overflow, log: log.clone() };
    Some((forwarder, Exporter { task, shutdown, metrics, log: log.clone() }))
}

/// The request path's end of the queue.
#[derive(Clone)]
pub struct Forwarder {
    queue: queue::Sender,
    encoder: Arc<otlp::Encoder>,
    metrics: ForwardMetrics,
    overflow: Arc<LogEvery>,
    log: Logger,
}

impl Forwarder {
    /// Queues the events for export and returns at once: never waits for room or for the collector.
    pub fn enqueue(&self, origin: &Origin<'_>, events: &[Event<'_>]) {
        let observed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        // Counted before the exporter can see them, so it never settles more than was offered.
        self.metrics.unsettled.fetch_add(events.len() as i64, Ordering::SeqCst);
        // Room first: an event that will be dropped is not encoded.
        let mut queued = self.queue.reserve(events.len());
        if queued > 0 {
            // Shows as queued until the exporter takes it, so the depth never goes below zero.
            self.metrics.queue_depth.add(queued as i64);
            if let Err(refused) = self.queue.send(self.encoder.records(origin, &events[..queued], observed)) {
                self.metrics.queue_depth.sub(refused as i64);
                queued -= refused;
            }
        }
        let dropped = (events.len() - queued) as u64;
        if dropped > 0 {
            self.metrics.unsettled.fetch_sub(dropped as i64, Ordering::SeqCst);
            self.metrics.dropped.inc_by(dropped);
            if let Some(suppressed) = self.overflow.permit(dropped) {
                warn!(self.log, "otlp queue full: newest events dropped";
                    "dropped" => dropped, "dropped_since_last_line" => suppressed,
                    "queue_capacity" => self.queue.capacity());
            }
        }
    }
}

/// The exporter task, kept to drain it at shutdown.
pub struct Exporter {
    task: JoinHandle<()>,
    shutdown: Arc<Notify>,
    metrics: ForwardMetrics,
    log: Logger,
}

impl Exporter {
    /// Closes the queue and exports what it holds until `deadline`; what is unsent by then is
    /// dropped, counted and logged once.
    pub async fn drain(mut self, deadline: Instant) {
        self.shutdown.notify_one();
        let deadline = tokio::time::Instant::from_std(deadline);
        if tokio::time::timeout_at(deadline, &mut self.task).await.is_err() {
            // Cancels the batching and every export in flight: none of them settles after this.
            self.task.abort();
        }
        let dropped = self.metrics.unsettled.swap(0, Ordering::SeqCst).max(0) as u64;
        self.metrics.queue_depth.set(0);
        if dropped == 0 {
            info!(self.log, "otlp forwarder drained");
            return;
        }
        self.metrics.dropped.inc_by(dropped);
        warn!(self.log, "otlp forwarder: shutdown deadline reached, unsent events dropped"; "dropped" => dropped);
    }
}

/// The forwarding metrics (names in docs/contract.md), and what is still unsettled.
#[derive(Clone)]
struct ForwardMetrics {
    exports_success: IntCounter,
    exports_failure: IntCounter,
    exported: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
    queue_depth: IntGauge,
    export_duration: Histogram,
    /// Events offered and not yet exported, failed or dropped: what a shutdown deadline drops.
    unsettled: Arc<AtomicI64>,
}

impl ForwardMetrics {
    fn new(metrics: &Metrics) -> Self {
        let exports = metrics.counter_vec(
            "client_telemetry_otlp_exports_total",
            "OTLP exports (batches) by final outcome.",
            &["result"],
        );
        let events = metrics.counter_vec(
            "client_telemetry_otlp_events_total",
            "Events offered to the OTLP forwarder, by outcome: exported, failed (refused by the collector \
             or retries exhausted) or dropped (queue full, or unsent at the shutdown deadline).",
            &["result"],
        );
        let export_duration = metrics.histogram(
            "client_telemetry_otlp_export_duration_seconds",
            "Time from an export's first attempt to its final outcome, retries included.",
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        );
        let queue_depth = metrics.gauge(
            "client_telemetry_otlp_queue_depth",
            "Events waiting for an export: in the OTLP queue or in the batch being formed.",
        );
        Self {
            exports_success: exports.with_label_values(&["success"]),
            exports_failure: exports.with_label_values(&["failure"]),
            exported: events.with_label_values(&["exported"]),
            failed: events.with_label_values(&["failed"]),
            dropped: events.with_label_values(&["dropped"]),
            queue_depth,
            export_duration,
            unsettled: Arc::new(AtomicI64::new(0)),
        }
    }
}

/// Rate limit for log lines: at most one per period, telling how many it stands for.
struct LogEvery {
    start: Instant,
    period_ms: u64,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogEvery {
    fn new(period: Duration) -> Self {
        let period_ms = period.as_millis() as u64;
        Self { start: Instant::now(), period_ms, next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(count suppressed since the last line)` when a line may be written now; otherwise the
    /// `weight` (events, exports) is added to the suppressed count.
    fn permit(&self, weight: u64) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self.next_ms.compare_exchange(next, now + self.period_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(weight, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_writes_one_line_per_period_and_counts_the_rest() {
        let every = LogEvery::new(Duration::from_millis(200));
        assert_eq!(every.permit(1), Some(0));
        assert_eq!(every.permit(5), None);
        assert_eq!(every.permit(2), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(every.permit(1), Some(7));
        assert_eq!(every.permit(1), None);
    }
}
