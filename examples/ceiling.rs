//! The benchmark's ceiling: a bare actix-web handler on the same route that reads the body and
//! answers 204. Whatever the gateway does costs the difference. It is also the benchmark's OTLP
//! sink: `POST /v1/logs` reads the body and answers 200 `{}` (an empty ExportLogsServiceResponse),
//! so the collector costs the machine as little as possible.
//!
//! `CEILING_BIND` (default 127.0.0.1:0) and `CEILING_WORKERS` (default: actix's); prints the
//! same `{"msg":"listening","addr":…}` line as the gateway.

use actix_web::{App, HttpResponse, HttpServer, web};

async fn ingest(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body);
    HttpResponse::NoContent().finish()
}

async fn otlp_logs(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body);
    HttpResponse::Ok().content_type("application/json").body("{}")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("CEILING_BIND").unwrap_or_else(|_| "127.0.0.1:0".into());
    let mut server = HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(8 << 20))
            .route("/api/client-telemetry", web::post().to(ingest))
            .route("/v1/logs", web::post().to(otlp_logs))
    });
    if let Some(workers) = std::env::var("CEILING_WORKERS").ok().and_then(|w| w.parse().ok()) {
        server = server.workers(workers);
    }
    let server = server.bind(bind)?;
    println!(r#"{{"msg":"listening","addr":"{}"}}"#, server.addrs()[0]);
    server.run().await
}
