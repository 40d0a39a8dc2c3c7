//! Operations endpoints: liveness, readiness and metrics.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::server::AppState;

/// Readiness: true until shutdown begins, so load balancers stop sending before the listeners close.
#[derive(Clone, Default)]
pub struct Readiness {
    shutting_down: Arc<AtomicBool>,
}

impl Readiness {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
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
    let limiter = json!({ "backend": state.limiter.backend_name(), "degraded": state.limiter.degraded() });
    if state.readiness.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "shutting_down", "rateLimiter": limiter }));
    }
    HttpResponse::Ok().json(json!({ "status": "ready", "rateLimiter": limiter }))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}
