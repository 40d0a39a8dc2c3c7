//! What the ingest route reads: assembled once by the server, shared by every worker.

use std::{sync::Arc, time::Duration};

use super::{Access, BodyLimits, IngestMetrics, response::RateLimitHeaders};
use crate::{
    challenge::Challenger, client_ip::ClientIdentity, event::Limits, forward::Forwarder, lifecycle::Lifecycle,
    observability::Logs, ratelimit::Limiter, scrub::Scrubber,
};

pub struct IngestState {
    pub access: Access,
    pub identity: ClientIdentity,
    pub limiter: Arc<Limiter>,
    pub rate_limit_headers: RateLimitHeaders,
    /// The proof-of-work challenge for suspected abuse; `None` when off.
    pub challenger: Option<Challenger>,
    pub body_limits: BodyLimits,
    pub limits: Limits,
    /// Keep the client's address as `client.address`.
    pub record_client_address: bool,
    /// None when scrubbing is turned off.
    pub scrubber: Option<Scrubber>,
    pub logs: Logs,
    /// How long a request waits for its log lines to be written before answering 503.
    pub log_write_timeout: Duration,
    /// OTLP forwarding; `None` when off.
    pub forwarder: Option<Forwarder>,
    pub metrics: IngestMetrics,
    pub lifecycle: Lifecycle,
}
