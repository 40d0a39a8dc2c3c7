//! The exporter task: batches from the queue, sent with retries, at most `max_in_flight` at once.
//!
//! Retries follow OTLP/HTTP: 429, 502, 503, 504 and answers that never came (connection refused or
//! reset, timeout) are retried after `Retry-After`, or else an exponential backoff with jitter, for at
//! most `retry_max_elapsed`; every other status is final. A 200 may still refuse some records
//! (`partialSuccess`): those are counted as failed, and the export is not retried.

use std::{fmt, sync::Arc, time::Duration};

use actix_web::http::{
    StatusCode,
    header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HttpDate, RETRY_AFTER},
};
use bytes::Bytes;
use futures_util::{StreamExt, stream::FuturesUnordered};
use prometheus::IntGauge;
use slog::{Logger, warn};
use tokio::{
    sync::Notify,
    task::JoinHandle,
    time::{Instant, sleep, sleep_until, timeout},
};

use super::{
    ForwardMetrics, LOG_PERIOD, LogEvery,
    otlp::{Encoder, Record, rejected_log_records},
    queue,
    settings::{ForwardSettings, Protocol},
};
use crate::redact::{hide, redact_url, url_secrets};

/// Backoff doubles up to this (or the initial backoff, if larger).
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A collector's answer is a small status message; more is not read.
const ANSWER_LIMIT: usize = 64 * 1024;

pub(super) fn spawn(
    settings: &ForwardSettings,
    encoder: Arc<Encoder>,
    queue: queue::Receiver,
    shutdown: Arc<Notify>,
    metrics: ForwardMetrics,
    log: Logger,
) -> JoinHandle<()> {
    let batcher = Batcher {
        queue,
        shutdown,
        draining: false,
        batch: Vec::with_capacity(settings.batch_size),
        flush_at: None,
        size: settings.batch_size,
        delay: settings.batch_delay,
        depth: metrics.queue_depth.clone(),
    };
    let sender = Sender::new(settings, encoder, metrics, log);
    actix_web::rt::spawn(run(batcher, sender, settings.max_in_flight))
}

/// Batches and exports until the queue is closed and empty, then finishes the exports in flight.
async fn run(mut batcher: Batcher, sender: Sender, max_in_flight: usize) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        if in_flight.len() >= max_in_flight {
            in_flight.next().await;
            continue;
        }
        tokio::select! {
            batch = batcher.next_batch() => match batch {
                Some(batch) => in_flight.push(sender.export(batch)),
                None => break,
            },
            // Drives the exports while waiting for a batch; disabled while there are none.
            Some(()) = in_flight.next() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

struct Batcher {
    queue: queue::Receiver,
    shutdown: Arc<Notify>,
    draining: bool,
    batch: Vec<Record>,
    /// When the oldest record in `batch` has waited long enough.
    flush_at: Option<Instant>,
    size: usize,
    delay: Duration,
    depth: IntGauge,
}

impl Batcher {
    /// The next batch: `size` records, or fewer once the oldest has waited `delay`, or fewer at
    /// shutdown when the queue is empty; `None` when shut down and nothing is left.
    /// Cancel-safe: records received before a cancellation stay in `self.batch`.
    async fn next_batch(&mut self) -> Option<Vec<Record>> {
        while self.batch.len() < self.size {
            let flush_at = self.flush_at;
            let room = self.size - self.batch.len();
            tokio::select! {
                biased;
                () = self.shutdown.notified(), if !self.draining => {
                    // From now on `recv_many` returns what is queued without waiting, then 0.
                    self.draining = true;
                    self.queue.close();
                }
                received = self.queue.recv_many(&mut self.batch, room) => {
                    if received == 0 {
                        break; // closed and empty
                    }
                    self.flush_at.get_or_insert_with(|| Instant::now() + self.delay);
                }
                () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => break,
            }
        }
        self.flush_at = None;
        self.depth.sub(self.batch.len() as i64);
        (!self.batch.is_empty()).then(|| std::mem::replace(&mut self.batch, Vec::with_capacity(self.size)))
    }
}

/// Sends batches: encoding, retries, metrics and failure logs, all here.
struct Sender {
    client: awc::Client,
    endpoint: String,
    /// The endpoint's credentials, hidden from failure lines (a proxy may echo the URL).
    endpoint_secrets: Vec<String>,
    encoder: Arc<Encoder>,
    protocol: Protocol,
    timeout: Duration,
    initial_backoff: Duration,
    retry_max_elapsed: Duration,
    metrics: ForwardMetrics,
    failures: LogEvery,
    log: Logger,
}

impl Sender {
    fn new(settings: &ForwardSettings, encoder: Arc<Encoder>, metrics: ForwardMetrics, log: Logger) -> Self {
        // Our own timeout covers reading the answer too.
        // Our rustls configuration: the web roots or a private CA, and a client certificate if set.
        let mut tls = Arc::unwrap_or_clone(settings.tls.rustls_config());
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut client = awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
            .disable_timeout()
            .add_default_header((CONTENT_TYPE, encoder.content_type()));
        if encoder.gzip() {
            client = client.add_default_header((CONTENT_ENCODING, "gzip"));
        }
        for header in &settings.headers.0 {
            client = client.add_default_header(header.clone());
        }
        Self {
            client: client.finish(),
            endpoint: settings.endpoint.clone(),
            endpoint_secrets: url_secrets(&settings.endpoint),
            encoder,
            protocol: settings.protocol,
            timeout: settings.timeout,
            initial_backoff: settings.retry_initial_backoff,
            retry_max_elapsed: settings.retry_max_elapsed,
            metrics,
            failures: LogEvery::new(LOG_PERIOD),
            log,
        }
    }

    /// One batch to its final outcome, counted.
    async fn export(&self, batch: Vec<Record>) {
        let count = batch.len() as u64;
        let body = self.encoder.encode(&batch);
        drop(batch);
        let started = Instant::now();
        let outcome = self.send(body).await;
        self.metrics.export_duration.observe(started.elapsed().as_secs_f64());
        let (exported, failed) = match &outcome {
            Ok(rejected) => (count - (*rejected).min(count), (*rejected).min(count)),
            Err(_) => (0, count),
        };
        match &outcome {
            Ok(_) => self.metrics.exports_success.inc(),
            Err(_) => self.metrics.exports_failure.inc(),
        }
        self.metrics.exported.inc_by(exported);
        self.metrics.failed.inc_by(failed);
        self.metrics.unsettled.fetch_sub(count as i64, std::sync::atomic::Ordering::SeqCst);
        if failed == 0 {
            return;
        }
        if let Some(suppressed) = self.failures.permit(failed) {
            let error = match &outcome {
                Ok(_) => "the collector refused some records (partial success)".to_string(),
                Err(error) => error.to_string(),
            };
            warn!(self.log, "otlp export failed"; "error" => %hide(&error, &self.endpoint_secrets), "failed_events" => failed,
                "endpoint" => %redact_url(&self.endpoint), "failed_events_since_last_line" => suppressed);
        }
    }

    /// Sends until delivered, refused for good, or out of retry time. `Ok` holds the records the
    /// collector refused in a partial success.
    async fn send(&self, body: Bytes) -> Result<u64, ExportError> {
        let give_up_at = Instant::now() + self.retry_max_elapsed;
        let mut backoff = self.initial_backoff;
        loop {
            let error = match self.attempt(body.clone()).await {
                Ok(rejected) => return Ok(rejected),
                Err(error) if !error.retryable() => return Err(error),
                Err(error) => error,
            };
            // Equal jitter: replicas that failed together do not retry together.
            let wait = error.retry_after().unwrap_or_else(|| backoff.mul_f64(rand::random_range(0.5..=1.0)));
            if Instant::now() + wait > give_up_at {
                return Err(error);
            }
            sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF.max(self.initial_backoff));
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<u64, ExportError> {
        let exchange = async {
            let mut response = self.client.post(&self.endpoint).send_body(body).await?;
            let status = response.status();
            let headers = response.headers().clone();
            // A lost answer body does not undo a delivery; it only hides the details.
            let answer = response.body().limit(ANSWER_LIMIT).await.unwrap_or_default();
            Ok::<_, awc::error::SendRequestError>((status, headers, answer))
        };
        let (status, headers, answer) = match timeout(self.timeout, exchange).await {
            Ok(Ok(exchange)) => exchange,
            Ok(Err(error)) => return Err(ExportError::NoAnswer(error.to_string())),
            Err(_) => return Err(ExportError::NoAnswer(format!("no answer within {:?}", self.timeout))),
        };
        if status.is_success() {
            let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            return Ok(rejected_log_records(&answer, content_type, self.protocol));
        }
        let message = String::from_utf8_lossy(&answer[..answer.len().min(512)]).into_owned();
        Err(ExportError::Status { status, retry_after: retry_after(&headers), message })
    }
}

enum ExportError {
    /// Connection refused or reset, timeout: retryable.
    NoAnswer(String),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        message: String,
    },
}

impl ExportError {
    fn retryable(&self) -> bool {
        match self {
            ExportError::NoAnswer(_) => true,
            ExportError::Status { status, .. } => matches!(status.as_u16(), 429 | 502 | 503 | 504),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::Status { retry_after, .. } => *retry_after,
            ExportError::NoAnswer(_) => None,
        }
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::NoAnswer(error) => write!(f, "no answer from the collector: {error}"),
            ExportError::Status { status, message, .. } => write!(f, "the collector answered {status}: {message}"),
        }
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date: HttpDate = value.parse().ok()?;
    Some(std::time::SystemTime::from(date).duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&HttpDate::from(later).to_string()).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date means now");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_the_otlp_retryable_statuses_are_retried() {
        let status = |code| ExportError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
            message: String::new(),
        };
        let retried: Vec<u16> = (400..600).filter(|&c| status(c).retryable()).collect();
        assert_eq!(retried, [429, 502, 503, 504]);
        assert!(ExportError::NoAnswer("connection refused".into()).retryable());
    }
}
