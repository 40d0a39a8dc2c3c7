//! Connection limits actix has no setting for: a maximum connection age, with jitter.
//!
//! Long-lived keep-alive connections pin clients to the replicas they first reached, so replicas
//! the autoscaler adds get no traffic. Each connection gets a deadline when it is accepted; the
//! first answer after it carries `Connection: close` and the client reconnects, possibly elsewhere.
//! The jitter keeps a fleet's connections from all reconnecting at once.

use std::{
    any::Any,
    time::{Duration, Instant},
};

use actix_web::{
    Error,
    body::MessageBody,
    dev::{Extensions, ServiceRequest, ServiceResponse},
    http::ConnectionType,
    middleware::Next,
};

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
