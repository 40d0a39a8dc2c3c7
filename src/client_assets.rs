//! The browser client, served by the gateway itself: `GET /client-telemetry.js` (so a plain
//! `<script>` tag works on any site) and a demo page at `GET /demo`. Both are the committed files of
//! `client/`, embedded at build time; CI fails if the committed script drifts from its source.
//! The challenge solver is served at `GET` of the ingest route itself (docs/security.md), so a client
//! finds it wherever the route is, whatever prefix a proxy adds.

use actix_web::{HttpResponse, http::header, web};

const SCRIPT: &str = include_str!("../client/dist/client-telemetry.min.js");
const SOLVER: &str = include_str!("../client/dist/client-telemetry-solver.min.js");
const DEMO: &str = include_str!("../client/demo/index.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/client-telemetry.js", web::get().to(script)).route("/demo", web::get().to(demo));
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(SCRIPT)
}

pub async fn solver() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(SOLVER)
}

async fn demo() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(DEMO)
}
