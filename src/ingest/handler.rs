//! The request path of every ingest format, top to bottom: access (origin, API key) → rate limit
//! per IP and session, and duplicate check → content type and encoding → size limit (of the
//! decompressed body) → decode (the only step that differs by format, see `formats`) →
//! validate → the records' weight (when limits count records) and the session they name (OTLP, which
//! names none before its body) → app allow-list → request context (User-Agent, client address) → scrub →
//! log (and wait until written) → forward (queue only) → remember the batch id → answer. A refused
//! request (400 for a bad id, 401, 403, 429) or a duplicate costs no quota; one that passed the
//! limiter has spent its quota even if its body is then refused, so malformed floods are limited too.

use std::{borrow::Cow, time::Instant};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{
        ConnectionType,
        header::{HeaderName, HeaderValue, USER_AGENT},
    },
    web,
};

use super::{IngestState, metrics::AppLabel};
use super::{
    attempt, body, event_log,
    formats::{Content, Format, otlp},
    response,
    response::{Challenged, IngestError},
};
use crate::{
    challenge::{self, Proof},
    client_ip::IpBucket,
    event::{Event, Origin},
};

/// `POST /api/client-telemetry`: the native batch.
pub async fn ingest(request: HttpRequest, payload: web::Payload, state: web::Data<IngestState>) -> HttpResponse {
    handle(Format::Native, request, payload, state).await
}

/// `POST /v1/logs`: OTLP/HTTP logs.
pub async fn ingest_otlp(request: HttpRequest, payload: web::Payload, state: web::Data<IngestState>) -> HttpResponse {
    handle(Format::Otlp, request, payload, state).await
}

/// `POST /collect` and `/collect/{app-key}`: the Faro web SDK.
pub async fn ingest_faro(request: HttpRequest, payload: web::Payload, state: web::Data<IngestState>) -> HttpResponse {
    handle(Format::Faro, request, payload, state).await
}

async fn handle(
    format: Format,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = state.lifecycle.enter();
    let mut response = limit_then_accept(format, &request, payload, &state).await;
    if state.lifecycle.is_shutting_down() {
        // Draining: the client should open its next connection to another replica.
        response.head_mut().set_connection_type(ConnectionType::Close);
    }
    state.metrics.count_request(format, response.status());
    state.metrics.request_duration.observe(started.elapsed().as_secs_f64());
    response
}

async fn limit_then_accept(
    format: Format,
    request: &HttpRequest,
    payload: web::Payload,
    state: &IngestState,
) -> HttpResponse {
    if let Err(error) = state.access.check(request) {
        return error_response(state, format, request, error);
    }
    let challenging = state.challenger.is_some();
    let max_id = state.limits.max_id_bytes;
    let (mut attempt, presented) =
        match attempt::attempt(request, format, &state.identity, &state.limiter, challenging, max_id) {
            Ok(attempt) => attempt,
            Err(error) => return error_response(state, format, request, error),
        };
    // Off, or nothing presented (the normal path): no proof to check.
    let proof = match (&state.challenger, &presented) {
        (Some(challenger), Some(presented)) => {
            let address = IpBucket::of(attempt.client);
            challenger.check(Some(presented), address, attempt.session.as_deref(), challenge::unix_now())
        }
        _ => Proof::None,
    };
    attempt.verified = proof.verified();
    let mut decision = state.limiter.check(&attempt).await;
    let mut response = if decision.duplicate {
        response::duplicate()
    } else if decision.allowed {
        let limited = Limited { attempt: &attempt, proof: &proof, decision: &mut decision };
        match accept(format, request, payload, state, limited).await {
            Ok(response) => {
                state.limiter.accepted(&attempt);
                response
            }
            Err(error) => error_response(state, format, request, error),
        }
    } else {
        let challenged = challenged(state, &attempt, &proof);
        error_response(state, format, request, IngestError::RateLimited(decision, challenged))
    };
    state.rate_limit_headers.apply(&mut response, &decision);
    // The client replaces its proof with this header's value after every answer.
    if let Some(token) = proof.token().and_then(|t| HeaderValue::from_str(t).ok()) {
        response.headers_mut().insert(HeaderName::from_static(challenge::TOKEN_HEADER), token);
    }
    response
}

/// The first limiter call's attempt and decision, for the call that weighs the records.
struct Limited<'r> {
    attempt: &'r crate::ratelimit::Attempt,
    proof: &'r Proof,
    /// Replaced by the second call's decision when there is one: the RateLimit headers say where
    /// the limits stand after the whole request.
    decision: &'r mut crate::ratelimit::Decision,
}

/// A refusal of an unverified request counts towards its address being suspected; once it is, the
/// refusal carries a challenge. A verified session that spent its own quota just waits.
fn challenged(state: &IngestState, attempt: &crate::ratelimit::Attempt, proof: &Proof) -> Challenged {
    let Some(challenger) = &state.challenger else { return Challenged::default() };
    let refused = match proof {
        Proof::Refused(refusal) => Some(*refusal),
        _ => None,
    };
    let challenge = match attempt.verified {
        true => None,
        false => challenger
            .refused(IpBucket::of(attempt.client), challenge::unix_now())
            .map(|value| (value, challenger.difficulty())),
    };
    Challenged { challenge, refused }
}

async fn accept(
    format: Format,
    request: &HttpRequest,
    payload: web::Payload,
    state: &IngestState,
    limited: Limited<'_>,
) -> Result<HttpResponse, IngestError> {
    let content = format.content(request)?;
    let encoding = body::content_encoding(request, &state.body_limits)?;
    let raw = body::read_limited(request, payload, &state.body_limits).await?;
    let body = match encoding {
        body::Encoding::Identity => Cow::Borrowed(&raw[..]),
        body::Encoding::Gzip => Cow::Owned(body::gunzip(&raw, &state.body_limits)?),
    };
    let batch = format.decode(&body, content, &state.limits);
    let mut batch = batch.inspect_err(|e| {
        if let IngestError::NoValidEvents(rejected) = e {
            state.metrics.count_rejections(rejected.iter().map(|r| r.invalid.reason));
        }
    })?;
    if batch.events.is_empty() {
        // An empty OTLP export: nothing to log, and a success, as the specification has it.
        return Ok(format.accepted(content, 0, &batch.rejected));
    }
    // Every record received weighs, refused ones too: they cost the gateway as much to decode.
    let records = batch.events.len() + batch.rejected.len();
    let learned = || attempt::session_in_records(format, &batch.events, state.limits.max_id_bytes);
    if let Some(decision) = state.limiter.check_records(limited.attempt, records, learned).await {
        *limited.decision = decision;
        if !decision.allowed {
            return Err(IngestError::RateLimited(decision, challenged(state, limited.attempt, limited.proof)));
        }
    }

    let app = batch.origin.app.name.as_deref();
    let Some(app_label) = state.metrics.app_label(app) else {
        return Err(IngestError::AppNotAllowed(app.unwrap_or_default().to_string()));
    };
    let origin = &mut batch.origin;
    origin.user_agent = request
        .headers()
        .get(USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .map(|ua| Cow::Owned(crate::event::truncate(ua, state.limits.origin.max_user_agent_bytes).to_string()));
    if state.record_client_address {
        origin.client_address = state.identity.client_ip(request).map(|ip| ip.to_string());
    }

    let received_at = crate::observability::rfc3339_now();
    if let Some(scrubber) = &state.scrubber {
        state.metrics.count_redactions(scrubber.scrub_origin(&mut batch.origin));
        for event in &mut batch.events {
            state.metrics.count_redactions(scrubber.scrub_event(event));
        }
    }
    let lines = state.logs.batch();
    event_log::write_batch(&lines, &batch.origin, &batch.events, &received_at);
    // An answer of 2xx promises the events are in the local log: wait (without blocking the
    // worker) until the writer has flushed them. If it cannot keep up, nothing is accepted: 503.
    // Past the deadline the lines may still be written later, so a retry can log them twice: under
    // a stuck log, at least once rather than never and rather than a request that hangs.
    let Ok(receipt) = lines.ship() else { return Err(IngestError::LogUnavailable) };
    // The lines are the writer's now, and it writes all it holds before the process exits: from
    // here the events are settled even if this request is cancelled while it waits.
    let settle =
        Settle { state, app_label, origin: &batch.origin, events: &batch.events, _in_flight: state.lifecycle.enter() };
    let written = actix_web::rt::time::timeout(state.log_write_timeout, receipt.written()).await.unwrap_or(false);
    if !written {
        std::mem::forget(settle);
        return Err(IngestError::LogUnavailable);
    }
    drop(settle);
    state.metrics.batch_size.observe(batch.events.len() as f64);
    state.metrics.count_rejections(batch.rejected.iter().map(|r| r.invalid.reason));
    Ok(format.accepted(content, batch.events.len(), &batch.rejected))
}

/// Counts logged events as accepted and queues them for forwarding (which never waits on the
/// collector), when dropped: after the write, or when the server's forced worker stop cancels the
/// request while it waits for the write. So accepted = exported + failed + dropped holds through
/// every shutdown. Forgotten when the write missed its deadline (the request is refused).
struct Settle<'s, 'e> {
    state: &'s IngestState,
    app_label: AppLabel,
    origin: &'s Origin<'e>,
    events: &'s [Event<'e>],
    /// Held until the events are queued (fields drop after `drop`): the shutdown drain waits for
    /// it, whatever order a cancelled request's other guards are dropped in.
    _in_flight: crate::lifecycle::InFlight,
}

impl Drop for Settle<'_, '_> {
    fn drop(&mut self) {
        self.state.metrics.count_levels(self.app_label, self.origin.app.version.as_deref(), self.events);
        if let Some(forwarder) = &self.state.forwarder {
            forwarder.enqueue(self.origin, self.events);
        }
    }
}

fn error_response(state: &IngestState, format: Format, request: &HttpRequest, error: IngestError) -> HttpResponse {
    error.log(&state.logs.service);
    let response = error.error_response();
    match format {
        // OTLP/HTTP answers a failure with a `google.rpc.Status` in the request's encoding.
        Format::Otlp => otlp::status_response(response, format.content(request).unwrap_or(Content::Json), &error),
        _ => response,
    }
}
