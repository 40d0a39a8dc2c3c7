//! JSON log lines on stdout through one asynchronous writer thread.
//!
//! Two loggers share the writer: `service` for the gateway's own messages (filtered by the log
//! level) and `events` for accepted client events (never filtered: every event is one line).
//! Logging never blocks a worker: when the writer falls behind, lines are dropped and counted in
//! `client_telemetry_log_lines_dropped_total`.

use std::io::Write;

use prometheus::IntCounter;
use slog::{Drain, FnValue, Level, LevelFilter, Logger, OwnedKVList, PushFnValue, Record, o};
use slog_async::{AsyncCore, AsyncGuard};

#[derive(Clone)]
pub struct Logs {
    pub service: Logger,
    pub events: Logger,
}

const CHANNEL_CAPACITY: usize = 64 * 1024;

/// Builds the loggers; keep the guard alive until exit, dropping it flushes what is queued.
pub fn init_logs(level: Level, dropped: IntCounter) -> (Logs, AsyncGuard) {
    init_logs_to(std::io::stdout(), level, dropped)
}

pub fn init_logs_to<W: Write + Send + 'static>(out: W, level: Level, dropped: IntCounter) -> (Logs, AsyncGuard) {
    let json = slog_json::Json::new(out)
        .add_key_value(o!(
            "level" => FnValue(|r: &Record| level_name(r.level())),
            "msg" => PushFnValue(|r: &Record, s| s.emit(r.msg())),
        ))
        .build()
        .ignore_res();
    let (core, guard) =
        AsyncCore::custom(json).chan_size(CHANNEL_CAPACITY).thread_name("log-writer".into()).build_with_guard();
    let drain = std::sync::Arc::new(CountDropped { core, dropped });
    let service = Logger::root(
        LevelFilter::new(drain.clone(), level).ignore_res(),
        o!("ts" => FnValue(|_: &Record| crate::ingest::rfc3339_now())),
    );
    let events = Logger::root(drain, o!());
    (Logs { service, events }, guard)
}

/// Lower-case level names; client events keep their own (`info`, `warn`, `error`).
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "fatal",
        Level::Error => "error",
        Level::Warning => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

struct CountDropped {
    core: AsyncCore,
    dropped: IntCounter,
}

impl Drain for CountDropped {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        // Channel full, or the writer already gone at exit: the line is lost, and counted.
        if self.core.log(record, values).is_err() {
            self.dropped.inc();
        }
        Ok(())
    }
}
