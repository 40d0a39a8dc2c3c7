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
