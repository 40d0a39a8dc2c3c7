//! Operations endpoints: liveness, readiness and metrics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::server::AppState;

/// Where the process is in its life: serving, or draining after a signal, with how many ingest
/// requests are still in flight.
#[derive(Clone, Default)]
pub struct Lifecycle {
    shutting_down: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

impl Lifecycle {
    /// Readiness turns 503, so load balancers stop sending before the listeners close.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Counts one request in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.in_flight.clone())
    }

    /// Waits until no request is in flight, or the deadline; true if none is left.
    pub async fn until_idle(&self, deadline: Instant) -> bool {
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Liveness: the process serves. Deliberately checks nothing else.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Degraded is reported, not failed: a Redis blip must not pull every replica out at once.
    let mut limiter = json!({ "backend": state.limiter.backend_name(), "degraded": state.limiter.degraded() });
    if let Some(topology) = state.limiter.topology().await {
        limiter["redis"] = topology;
    }
    if state.lifecycle.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "shutting_down", "rateLimiter": limiter }));
    }
    HttpResponse::Ok().json(json!({ "status": "ready", "rateLimiter": limiter }))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}
