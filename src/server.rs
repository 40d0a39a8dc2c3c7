//! Assembly: shared state, listeners and routes; then serving until the drain is done.

use std::{any::Any, io, sync::Arc, time::Instant};

use actix_cors::Cors;
use actix_http::{HttpService, Request};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::{
    App, HttpServer,
    dev::{AppConfig, Server},
    http::StatusCode,
    http::header,
    middleware::{Condition, from_fn},
    web::{self, Data},
};
use slog::{info, warn};

use crate::{
    challenge::{self, Challenger},
    client_assets,
    client_ip::ClientIdentity,
    forward,
    health::{self, HealthState},
    ingest::{
        self, API_KEY_HEADER, Access, IngestMetrics, IngestState,
        response::{IngestError, RateLimitHeaders},
    },
    lifecycle::{self, Lifecycle},
    observability::{Logs, Metrics},
    ratelimit::Limiter,
    scrub::Scrubber,
    settings::Settings,
    transport,
};

/// Our own drain waits for in-flight requests (the grace period); what actix then waits for is
/// only idle keep-alive connections, which need no more than a moment.
const IDLE_CONNECTIONS_SECS: u64 = 1;

/// How long, after the servers have stopped, requests of workers stopped by force get to settle.
const SETTLE_AFTER_STOP: std::time::Duration = std::time::Duration::from_millis(500);

/// Serves until SIGTERM/SIGINT, then drains (see `lifecycle`), then drains the forwarder within
/// what is left of the grace period.
pub async fn run(settings: Settings, metrics: Metrics, logs: Logs) -> io::Result<()> {
    let (forwarder, exporter) = forward::start(settings.forward.as_ref(), &metrics, &logs.service).unzip();
    let lifecycle = Lifecycle::default();
    let limiter = Arc::new(Limiter::from_settings(&settings.rate_limit, &metrics, &logs.service));
    let ingest_state = Data::new(IngestState {
        access: Access::new(settings.access.clone(), logs.service.clone()),
        identity: ClientIdentity::new(settings.trusted_proxies.clone()),
        limiter: limiter.clone(),
        rate_limit_headers: RateLimitHeaders::new(&settings.rate_limit),
        challenger: settings.challenge.as_ref().map(|c| Challenger::new(c, settings.rate_limit.window, &metrics)),
        body_limits: settings.body.clone(),
        limits: settings.limits.clone(),
        record_client_address: settings.origin.record_client_address,
        scrubber: settings
            .scrub
            .enabled
            .then(|| Scrubber::new(&settings.scrub).expect("patterns were checked with the settings")),
        logs: logs.clone(),
        log_write_timeout: settings.log.write_timeout,
        forwarder,
        metrics: IngestMetrics::new(&metrics, &settings.origin.allowed_apps),
        lifecycle: lifecycle.clone(),
    });
    let health_state = Data::new(HealthState { limiter: limiter.clone(), metrics, lifecycle: lifecycle.clone() });

    // Before "listening" is printed: a signal sent as soon as it is must not kill the process.
    let signal = lifecycle::shutdown_signal();
    let (ingest_server, addr) = ingest_server(&settings, ingest_state, health_state.clone())?;
    let admin_server = match &settings.transport.admin_bind {
        Some(bind) => Some(admin_server(bind, health_state)?),
        None => None,
    };
    let admin_addr = admin_server.as_ref().map(|(_, addr)| addr.clone());
    // On the unfiltered logger: tools wait for this line whatever the log level.
    info!(logs.events, "listening"; "addr" => addr, "admin_addr" => admin_addr,
        "rate_limit_backend" => limiter.backend_name(), "version" => env!("CARGO_PKG_VERSION"),
        "commit" => env!("BUILD_GIT_COMMIT"), "client_script" => client_assets::hashed_path());
    for (setting, instead) in &settings.deprecated {
        warn!(logs.service, "deprecated setting"; "setting" => setting, "instead" => instead);
    }

    let admin_server = admin_server.map(|(server, _)| server);
    let handles = std::iter::once(ingest_server.handle()).chain(admin_server.as_ref().map(Server::handle)).collect();
    let closing =
        lifecycle::drain_on(signal, lifecycle.clone(), settings.shutdown.clone(), handles, logs.service.clone());
    let admin_task = admin_server.map(actix_web::rt::spawn);
    ingest_server.await?;
    if let Some(task) = admin_task {
        task.await.map_err(io::Error::other)??;
    }
    if let Some(exporter) = exporter {
        let deadline = closing.get().copied().unwrap_or_else(Instant::now) + settings.shutdown.grace;
        // A worker stopped by the server's own timeout may still be finishing a request after the
        // server has returned, or dropping it (its `Settle` then queues the events it logged): both
        // must reach the queue before it closes, even past the deadline (a moment, not a request).
        lifecycle.until_idle(deadline.max(Instant::now() + SETTLE_AFTER_STOP)).await;
        exporter.drain(deadline).await;
    }
    info!(logs.service, "stopped");
    Ok(())
}

/// The public listener: ingest, the served client and, without an admin listener, health.
/// Returns the running server and the address it listens on.
///
/// Built from actix's parts rather than `HttpServer`, for one hook `HttpServer` does not expose:
/// the `Expect: 100-continue` answer, so a body announced over the limit gets 413 at once instead
/// of `100 Continue` first.
fn ingest_server(
    settings: &Settings,
    ingest_state: Data<IngestState>,
    health_state: Data<HealthState>,
) -> io::Result<(Server, String)> {
    let health_on_ingest = settings.transport.admin_bind.is_none();
    // The origins allowed to send are the ones given CORS headers.
    let origins = settings.access.allowed_origins.clone();
    let transport = settings.transport.clone();
    let listener = transport::listener(&transport.bind)?;
    let addr = listener.local_addr()?;
    let max_body_bytes = settings.body.max_body_bytes;
    let metrics = ingest_state.metrics.clone();
    let on_connect = Arc::new(transport::on_connect(transport.max_connection_age));
    let otlp_path = settings.otlp_path.clone();
    let app = move || {
        App::new()
            .app_data(ingest_state.clone())
            .app_data(health_state.clone())
            .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
            .wrap(from_fn(transport::close_old_connections))
            .wrap(from_fn(transport::close_on_unfinished_body))
            .route(ingest::PATH, web::post().to(ingest::ingest))
            .route(ingest::PATH, web::get().to(client_assets::solver))
            .route(&otlp_path, web::post().to(ingest::ingest_otlp))
            .route(ingest::faro::PATH, web::post().to(ingest::ingest_faro))
            .route(ingest::faro::PATH_WITH_KEY, web::post().to(ingest::ingest_faro))
            .configure(client_assets::routes)
            .configure(|cfg| {
                if health_on_ingest {
                    health::routes(cfg)
                }
            })
    };
    let mut server = Server::build()
        .disable_signals()
        .shutdown_timeout(IDLE_CONNECTIONS_SECS)
        .max_concurrent_connections(transport.max_connections_per_worker);
    if transport.workers > 0 {
        server = server.workers(transport.workers);
    }
    let route_otlp_path = settings.otlp_path.clone();
    let server = server.listen("ingest", listener, move || {
        let on_connect = on_connect.clone();
        let metrics = metrics.clone();
        let otlp_path = route_otlp_path.clone();
        HttpService::build()
            .keep_alive(transport.keep_alive)
            .client_request_timeout(transport.header_read_timeout)
            .client_disconnect_timeout(transport::DISCONNECT_TIMEOUT)
            .local_addr(addr)
            .on_connect_ext(move |io: &_, extensions: &mut _| on_connect(io as &dyn Any, extensions))
            .expect(fn_service(move |request: Request| {
                let refused = ingest::announced_length(request.head().headers()).is_some_and(|n| n > max_body_bytes);
                let format = ingest_format(request.path(), &otlp_path);
                let metrics = metrics.clone();
                async move {
                    match refused {
                        false => Ok(request),
                        true => {
                            if let Some(format) = format {
                                metrics.count_request(format, StatusCode::PAYLOAD_TOO_LARGE);
                            }
                            Err(actix_web::Error::from(IngestError::PayloadTooLarge { limit: max_body_bytes }))
                        }
                    }
                }
            }))
            .finish(map_config(app().into_factory().map_err(|error: actix_web::Error| error.error_response()), |_| {
                AppConfig::default()
            }))
            .tcp()
    })?;
    Ok((server.run(), addr.to_string()))
}

/// Which ingest route a path is, if any (for counting what is refused before routing).
fn ingest_format(path: &str, otlp_path: &str) -> Option<ingest::Format> {
    match path {
        ingest::PATH => Some(ingest::Format::Native),
        _ if path == otlp_path => Some(ingest::Format::Otlp),
        _ if path == ingest::faro::PATH || path.starts_with("/collect/") => Some(ingest::Format::Faro),
        _ => None,
    }
}

/// The optional admin listener: health and metrics only, so /metrics need not be public.
fn admin_server(bind: &str, health_state: Data<HealthState>) -> io::Result<(Server, String)> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(health_state.clone())
            .wrap(from_fn(transport::close_on_unfinished_body))
            .configure(health::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(IDLE_CONNECTIONS_SECS)
    .bind(bind)?;
    let addr = server.addrs().first().map(ToString::to_string).unwrap_or_default();
    Ok((server.run(), addr))
}

fn cors(origins: &[String]) -> Cors {
    let cors = origins.iter().fold(Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods(["POST", "GET"])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::HeaderName::from_static(API_KEY_HEADER),
            header::HeaderName::from_static(ingest::SESSION_HEADER),
            header::HeaderName::from_static(ingest::BATCH_HEADER),
            header::HeaderName::from_static(challenge::PROOF_HEADER),
            header::HeaderName::from_static(ingest::faro::SESSION_HEADER),
            header::HeaderName::from_static(ingest::faro::IDEMPOTENCY_HEADER),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("ratelimit"),
            header::HeaderName::from_static("ratelimit-policy"),
            header::HeaderName::from_static(challenge::CHALLENGE_HEADER),
            header::HeaderName::from_static(challenge::TOKEN_HEADER),
        ])
        // sendBeacon always sends credentials; without this the browser discards the answer.
        .supports_credentials()
        .max_age(86_400)
}
