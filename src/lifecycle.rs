//! The process's life: serving, then draining after SIGTERM/SIGINT.
//!
//! Draining: readiness turns 503, an optional delay lets load balancers notice, the listeners
//! close, in-flight requests finish within the grace period, then the servers stop.

use std::{
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::dev::ServerHandle;
use slog::{Logger, info};

use crate::setting;

setting::component! {
    /// Draining after SIGTERM/SIGINT.
    pub struct ShutdownConfig {
        /// after SIGTERM/SIGINT, time with readiness 503 before the listeners close (`0` allowed)
        shutdown_delay_ms: u64 = 0,
        /// time in-flight requests, then the OTLP queue, get to finish once the listeners close (`0` allowed)
        shutdown_grace_ms: u64 = 15_000,
    }
}

impl ShutdownConfig {
    pub fn resolve(&self) -> ShutdownSettings {
        ShutdownSettings {
            delay: Duration::from_millis(self.shutdown_delay_ms),
            grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }
}

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

/// When the shutdown settings say to wait, and for how long.
#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    /// Time between the signal (readiness already 503) and closing the listeners,
    /// for load balancers that only notice readiness.
    pub delay: Duration,
    /// Time in-flight requests get to finish once the listeners are closed.
    pub grace: Duration,
}

/// Drains `servers` once `signal` resolves; returns when the listeners began to close (the grace
/// period counts from there), once that is known.
pub fn drain_on(
    signal: impl Future<Output = &'static str> + 'static,
    lifecycle: Lifecycle,
    settings: ShutdownSettings,
    servers: Vec<ServerHandle>,
    log: Logger,
) -> Arc<OnceLock<Instant>> {
    let closing = Arc::new(OnceLock::new());
    let closing_at = closing.clone();
    actix_web::rt::spawn(async move {
        let signal = signal.await;
        lifecycle.begin_shutdown();
        info!(log, "shutting down"; "signal" => signal, "delay_ms" => settings.delay.as_millis() as u64);
        actix_web::rt::time::sleep(settings.delay).await;
        let closing = *closing_at.get_or_init(Instant::now);
        // No new connections; requests already in flight (even half-read) finish before the stop.
        for server in &servers {
            server.pause().await;
        }
        lifecycle.until_idle(closing + settings.grace).await;
        for server in servers {
            server.stop(true).await;
        }
    });
    closing
}

/// Installs the handlers at once, so a signal sent as soon as "listening" is printed is not lost
/// (before they are installed, SIGINT/SIGTERM kill the process), and resolves on the first one.
pub fn shutdown_signal() -> impl Future<Output = &'static str> {
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
