//! Operations endpoints: liveness, readiness and metrics.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{lifecycle::Lifecycle, observability::Metrics, ratelimit::Limiter};

/// What the operations endpoints read.
pub struct HealthState {
    pub limiter: Arc<Limiter>,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
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

async fn readyz(state: web::Data<HealthState>) -> HttpResponse {
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

async fn metrics(state: web::Data<HealthState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}
