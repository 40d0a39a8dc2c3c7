//! Connection behaviour actix has no setting for.
//!
//! - A maximum connection age, with jitter. Long-lived keep-alive connections pin clients to the
//!   replicas they first reached, so replicas the autoscaler adds get no traffic. Each connection
//!   gets a deadline when it is accepted; the first answer after it carries `Connection: close`
//!   and the client reconnects, possibly elsewhere. The jitter keeps a fleet's connections from all
//!   reconnecting at once.
//! - No connection held by an unfinished chunked body. actix drains a chunked body the handler
//!   dropped, with no deadline, so an upload that never ends would hold its socket forever whatever
//!   the answer (actix-web issues #2357, #3182). A body still held when the answer is sent makes
//!   actix close instead, after `DISCONNECT_TIMEOUT`: so the body is held until then.

use std::{
    any::Any,
    cell::RefCell,
    io,
    net::ToSocketAddrs,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage,
    body::{BodySize, BoxBody, EitherBody, MessageBody},
    dev::{Extensions, Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::ConnectionType,
    middleware::Next,
    web::Bytes,
};
use futures_util::Stream;

use crate::setting::{self, at_least};

setting::component! {
    /// The listeners and their connections.
    pub struct TransportConfig {
        /// ingest listener, `host:port` (port 0: any free port)
        bind: String = "0.0.0.0:8080".into(),
        /// separate listener for `/healthz`, `/readyz` and `/metrics`; unset, they are served on the ingest listener
        admin_bind: Option<String> = None,
        /// HTTP worker threads; `0` = one per core
        workers: usize = 0,
        /// time to send the request headers (408 and close)
        header_read_timeout_ms: u64 = 5000,
        /// idle keep-alive; behind a load balancer set it above the balancer's idle timeout; `0` disables keep-alive
        keep_alive_ms: u64 = 5000,
        /// open connections per worker thread; more wait in the kernel's backlog
        max_connections_per_worker: usize = 10_000,
        /// a connection past this age (less up to 10 % jitter) is closed after its next answer; `0` = never
        max_connection_age_ms: u64 = 600_000,
    }
}

/// The listeners and their connection limits.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub bind: String,
    /// Separate listener for /healthz, /readyz and /metrics, so /metrics need not be public.
    pub admin_bind: Option<String>,
    /// HTTP worker threads; 0: one per core.
    pub workers: usize,
    /// Time a client has to send the request headers.
    pub header_read_timeout: Duration,
    pub keep_alive: Duration,
    pub max_connections_per_worker: usize,
    /// Connections older than this (minus up to 10 % jitter) are closed after their next answer.
    pub max_connection_age: Option<Duration>,
}

impl TransportConfig {
    pub fn resolve(&self) -> Result<TransportSettings, setting::Error> {
        let admin_bind = self.admin_bind.as_deref().filter(|a| !a.trim().is_empty());
        Ok(TransportSettings {
            bind: setting::socket_address("bind", &self.bind)?,
            admin_bind: admin_bind.map(|a| setting::socket_address("admin_bind", a)).transpose()?,
            workers: self.workers,
            header_read_timeout: Duration::from_millis(at_least(
                "header_read_timeout_ms",
                self.header_read_timeout_ms,
                1,
            )?),
            keep_alive: Duration::from_millis(self.keep_alive_ms),
            max_connections_per_worker: at_least("max_connections_per_worker", self.max_connections_per_worker, 1)?,
            max_connection_age: (self.max_connection_age_ms > 0)
                .then(|| Duration::from_millis(self.max_connection_age_ms)),
        })
    }
}

/// Time a closing connection gets to flush its last answer.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Up to this fraction of the maximum age is taken off at random.
const JITTER: f64 = 0.1;

#[derive(Clone, Copy)]
struct CloseAfter(Instant);

pub fn on_connect(max_age: Option<Duration>) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |_, extensions| {
        if let Some(age) = max_age {
            let age = age.mul_f64(1.0 - rand::random_range(0.0..=JITTER));
            extensions.insert(CloseAfter(Instant::now() + age));
        }
    }
}

pub async fn close_old_connections(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let expired = request.request().conn_data::<CloseAfter>().is_some_and(|c| Instant::now() >= c.0);
    let mut response = next.call(request).await?;
    if expired {
        response.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// The request body, shared between the handler (which reads it) and the answer (which keeps it
/// alive until it is sent).
struct SharedBody(Rc<RefCell<Payload>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// Keeps a chunked request body alive until its answer is sent, so that actix closes the
/// connection (after `DISCONNECT_TIMEOUT`) when the body has not ended, instead of draining it
/// forever. A body read to its end is already released by actix: keep-alive is unaffected.
/// `Content-Length` bodies need nothing: actix never drains those.
pub async fn close_on_unfinished_body(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, HoldingBody>>, Error> {
    if !request.chunked().unwrap_or(false) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    let body = Rc::new(RefCell::new(request.take_payload()));
    request.set_payload(Payload::Stream { payload: Box::pin(SharedBody(body.clone())) });
    let response = next.call(request).await?;
    Ok(response.map_body(|_, answer| EitherBody::right(HoldingBody { answer: BoxBody::new(answer), _body: body })))
}

/// An answer that keeps the request body alive until actix has sent it all: actix decides whether
/// to close when the answer's last byte is out, and drops the answer only after that.
pub struct HoldingBody {
    answer: BoxBody,
    _body: Rc<RefCell<Payload>>,
}

impl MessageBody for HoldingBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}

/// The ingest listener's socket: address reuse and a deep accept backlog, as actix sets them.
pub fn listener(bind: &str) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = bind
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{bind} names no address")))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Pending connections the kernel holds while every worker is at its connection cap.
const BACKLOG: i32 = 2048;
