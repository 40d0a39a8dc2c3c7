//! Assembly: shared state, listeners, routes and graceful shutdown.

use std::{
    io,
    sync::{Arc, OnceLock},
    time::Instant,
};

use actix_cors::Cors;
use actix_web::{
    App, HttpServer,
    http::header,
    middleware::{Condition, from_fn},
    web::{self, Data},
};
use slog::{info, warn};

use crate::{
    access::{API_KEY_HEADER, Access},
    client_assets,
    client_ip::ClientIdentity,
    forward::{self, Forwarder},
    health::{self, Lifecycle},
    ingest::{
        self, Rejection,
        event::{Event, Level},
        response::RateLimitHeaders,
    },
    observability::{Logs, Metrics},
    ratelimit::Limiter,
    scrub::{Redactions, Scrubber},
    settings::{Limits, Settings},
    transport,
};

/// What every request handler shares.
pub struct AppState {
    pub identity: ClientIdentity,
    pub limiter: Limiter,
    pub limits: Limits,
    pub rate_limit_headers: RateLimitHeaders,
    pub metrics: Metrics,
    pub logs: Logs,
    pub lifecycle: Lifecycle,
    /// How long a request waits for its log lines to be written before answering 503.
    pub log_write_timeout: std::time::Duration,
    /// OTLP forwarding; `None` when off.
    pub forwarder: Option<Forwarder>,
    pub access: Access,
    /// None when scrubbing is turned off.
    pub scrubber: Option<Scrubber>,
}

impl AppState {
    pub fn new(settings: &Settings, metrics: Metrics, logs: Logs) -> Self {
        Self {
            identity: ClientIdentity::new(settings.trusted_proxies.clone()),
            limiter: Limiter::from_settings(&settings.rate_limit, &metrics, &logs.service),
            limits: settings.limits.clone(),
            rate_limit_headers: RateLimitHeaders::new(&settings.rate_limit),
            metrics,
            logs,
            lifecycle: Lifecycle::default(),
            log_write_timeout: settings.log_write_timeout,
            forwarder: None,
            access: Access::new(settings.access.clone()),
            scrubber: settings
                .scrub
                .enabled
                .then(|| Scrubber::new(&settings.scrub).expect("patterns were checked with the settings")),
        }
    }

    pub fn count_redactions(&self, redactions: Redactions) {
        if redactions.total() == 0 {
            return;
        }
        for (kind, n) in redactions.iter() {
            self.metrics.count_redactions(kind, u64::from(n));
        }
    }

    pub fn count_levels(&self, events: &[Event<'_>]) {
        let mut counts = [0u64; Level::ALL.len()];
        for event in events {
            counts[event.level as usize] += 1;
        }
        for (level, count) in Level::ALL.into_iter().zip(counts) {
            if count > 0 {
                self.metrics.count_events(level, count);
            }
        }
    }

    pub fn count_rejections(&self, rejected: &[Rejection]) {
        for r in rejected {
            self.metrics.count_rejection(r.invalid.reason);
        }
    }
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
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("ratelimit"),
            header::HeaderName::from_static("ratelimit-policy"),
        ])
        // sendBeacon always sends credentials; without this the browser discards the answer.
        .supports_credentials()
        .max_age(86_400)
}

/// Serves until SIGTERM/SIGINT, then drains: readiness 503, optional delay, listeners closed,
/// in-flight requests finished within the grace period, then the forwarder drained within what is
/// left of it.
pub async fn run(settings: Settings, metrics: Metrics, logs: Logs) -> io::Result<()> {
    let (forwarder, exporter) = forward::start(settings.forward.as_ref(), &metrics, &logs.service).unzip();
    let state = Data::new(AppState { forwarder, ..AppState::new(&settings, metrics, logs.clone()) });
    let health_on_ingest = settings.admin_bind.is_none();
    let origins = settings.cors_allowed_origins.clone();
    let limits = settings.transport.clone();
    // Our own drain waits for in-flight requests (the grace period); what actix then waits for is
    // only idle keep-alive connections, which need no more than a moment.
    const IDLE_CONNECTIONS_SECS: u64 = 1;

    let app_state = state.clone();
    let mut ingest_server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
            .wrap(from_fn(transport::close_old_connections))
            .wrap(from_fn(transport::close_on_unfinished_body))
            .route(ingest::PATH, web::post().to(ingest::ingest))
            .configure(client_assets::routes)
            .configure(|cfg| {
                if health_on_ingest {
                    health::routes(cfg)
                }
            })
    })
    .disable_signals()
    .shutdown_timeout(IDLE_CONNECTIONS_SECS)
    .client_request_timeout(limits.header_read_timeout)
    .client_disconnect_timeout(transport::DISCONNECT_TIMEOUT)
    .keep_alive(limits.keep_alive)
    .max_connections(limits.max_connections_per_worker)
    .on_connect(transport::on_connect(limits.max_connection_age));
    if settings.workers > 0 {
        ingest_server = ingest_server.workers(settings.workers);
    }
    let ingest_server = ingest_server.bind(&settings.bind)?;
    let addr = ingest_server.addrs().first().map(ToString::to_string);

    let admin_server = match &settings.admin_bind {
        Some(bind) => {
            let admin_state = state.clone();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(admin_state.clone())
                    .wrap(from_fn(transport::close_on_unfinished_body))
                    .configure(health::routes)
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(IDLE_CONNECTIONS_SECS)
            .bind(bind)?;
            Some(server)
        }
        None => None,
    };
    let admin_addr = admin_server.as_ref().and_then(|s| s.addrs().first().map(ToString::to_string));

    let signal = shutdown_signal();
    // On the unfiltered logger: tools wait for this line whatever the log level.
    info!(logs.events, "listening"; "addr" => addr, "admin_addr" => admin_addr,
        "rate_limit_backend" => state.limiter.backend_name(), "version" => env!("CARGO_PKG_VERSION"));
    for (setting, instead) in &settings.deprecated {
        warn!(logs.service, "deprecated setting"; "setting" => setting, "instead" => *instead);
    }

    let ingest_server = ingest_server.run();
    let admin_server = admin_server.map(|s| s.run());
    let handles: Vec<_> =
        std::iter::once(ingest_server.handle()).chain(admin_server.as_ref().map(|s| s.handle())).collect();
    let lifecycle = state.lifecycle.clone();
    let delay = settings.shutdown.delay;
    let grace = settings.shutdown.grace;
    let service_log = logs.service.clone();
    // When the listeners began to close: the grace period counts from here.
    let closing = Arc::new(OnceLock::new());
    let closing_at = closing.clone();
    actix_web::rt::spawn(async move {
        let signal = signal.await;
        lifecycle.begin_shutdown();
        info!(service_log, "shutting down"; "signal" => signal, "delay_ms" => delay.as_millis() as u64);
        actix_web::rt::time::sleep(delay).await;
        let closing = *closing_at.get_or_init(Instant::now);
        // No new connections; requests already in flight (even half-read) finish before the stop.
        for handle in &handles {
            handle.pause().await;
        }
        lifecycle.until_idle(closing + grace).await;
        for handle in handles {
            handle.stop(true).await;
        }
    });

    let admin_task = admin_server.map(actix_web::rt::spawn);
    ingest_server.await?;
    if let Some(task) = admin_task {
        task.await.map_err(io::Error::other)??;
    }
    if let Some(exporter) = exporter {
        let deadline = closing.get().copied().unwrap_or_else(Instant::now) + settings.shutdown.grace;
        // A worker stopped by the server's own timeout may still be finishing a request after the
        // server has returned: its events are logged, and must reach the queue before it closes.
        state.lifecycle.until_idle(deadline).await;
        exporter.drain(deadline).await;
    }
    info!(logs.service, "stopped");
    Ok(())
}

/// Installs the handlers at once, so a signal sent as soon as "listening" is printed is not lost
/// (before they are installed, SIGINT/SIGTERM kill the process), and resolves on the first one.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
