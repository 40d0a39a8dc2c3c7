//! JSON log lines on stdout, formatted by slog-json and written by one writer thread.
//!
//! Two loggers share the writer: `service` for the gateway's own messages (filtered by the log
//! level) and `events` for lines that are part of the record and never filtered (accepted client
//! events, the start-up line).
//!
//! A line is formatted on the thread that logs it, into a per-thread buffer, and only bytes cross a
//! bounded channel to the writer, which writes through a buffer and flushes whenever the channel
//! runs empty. Within a `Logs::batch()` scope (one request's events) the lines travel together, one
//! channel message and one wake-up for the lot. (slog-async would copy every key and value into owned boxes first; at
//! hundreds of thousands of lines a second that cost more than the formatting.) Logging never
//! blocks a worker: when the channel is full the line is dropped and counted in
//! `client_telemetry_log_lines_dropped_total`.

use std::{
    cell::RefCell,
    io::{self, BufWriter, Write},
    rc::Rc,
    sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    thread::JoinHandle,
};

use prometheus::IntCounter;
use slog::{Drain, FnValue, Level, LevelFilter, Logger, OwnedKVList, PushFnValue, Record, o};
use slog_json::Json;

#[derive(Clone)]
pub struct Logs {
    pub service: Logger,
    pub events: Logger,
    sender: SyncSender<Line>,
    dropped: IntCounter,
}

impl Logs {
    /// Until the guard drops, lines logged on this thread are shipped to the writer together.
    /// Hold it only across code that does not await (an actix worker runs one task at a time).
    pub fn batch(&self) -> Batch {
        PENDING.with(|p| p.borrow_mut().batching += 1);
        Batch { lines: self.sender.clone(), dropped: self.dropped.clone() }
    }
}

/// See [`Logs::batch`].
pub struct Batch {
    lines: SyncSender<Line>,
    dropped: IntCounter,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let ready = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.batching -= 1;
            (p.batching == 0).then(|| p.take())
        });
        if let Some((bytes, lines)) = ready {
            ship(&self.lines, &self.dropped, bytes, lines);
        }
    }
}

/// Lines waiting for the writer at most (about 1 KB each: a few MB at worst).
const CHANNEL_LINES: usize = 8 * 1024;
const WRITE_BUFFER: usize = 256 * 1024;

/// Builds the loggers on stdout. Keep the writer until exit: `LogWriter::finish` writes what is queued.
pub fn init_logs(level: Level, dropped: IntCounter) -> (Logs, LogWriter) {
    init_logs_to(io::stdout(), level, dropped)
}

pub fn init_logs_to<W: Write + Send + 'static>(out: W, level: Level, dropped: IntCounter) -> (Logs, LogWriter) {
    let (lines, receiver) = sync_channel::<Line>(CHANNEL_LINES);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(receiver, BufWriter::with_capacity(WRITE_BUFFER, out)))
        .expect("spawn the log writer");
    let drain = std::sync::Arc::new(ChannelDrain { lines: lines.clone(), dropped: dropped.clone() });
    let service = Logger::root(
        LevelFilter::new(drain.clone(), level).ignore_res(),
        o!("ts" => FnValue(|_: &Record| crate::ingest::rfc3339_now())),
    );
    let events = Logger::root(drain, o!());
    (Logs { service, events, sender: lines.clone(), dropped }, LogWriter { lines, thread: Some(thread) })
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

enum Line {
    Bytes(Vec<u8>),
    Finish,
}

/// The writer thread's handle.
pub struct LogWriter {
    lines: SyncSender<Line>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Writes every line queued so far, then stops the writer.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.lines.send(Line::Finish);
            let _ = thread.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_lines(receiver: Receiver<Line>, mut out: impl Write) {
    while let Ok(line) = receiver.recv() {
        let mut next = Some(line);
        // Write all that is waiting, then flush once: one write call per burst, not per line.
        while let Some(line) = next {
            match line {
                Line::Bytes(bytes) => {
                    let _ = out.write_all(&bytes);
                }
                Line::Finish => {
                    let _ = out.flush();
                    return;
                }
            }
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

struct ChannelDrain {
    lines: SyncSender<Line>,
    dropped: IntCounter,
}

/// The per-thread formatter and the buffer it writes into.
struct Formatter {
    json: Json<SharedBuffer>,
    buffer: SharedBuffer,
}

#[derive(Clone, Default)]
struct SharedBuffer(Rc<RefCell<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Formatted lines not yet shipped (only while a batch is open).
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
    batching: usize,
}

impl Pending {
    fn take(&mut self) -> (Vec<u8>, u64) {
        (std::mem::take(&mut self.bytes), std::mem::take(&mut self.lines))
    }
}

thread_local! {
    static FORMATTER: Formatter = {
        let buffer = SharedBuffer::default();
        let json = Json::new(buffer.clone())
            .add_key_value(o!(
                "level" => FnValue(|r: &Record| level_name(r.level())),
                "msg" => PushFnValue(|r: &Record, s| s.emit(r.msg())),
            ))
            .build();
        Formatter { json, buffer }
    };
    static PENDING: RefCell<Pending> = RefCell::default();
}

/// Hands lines to the writer; when the channel is full, or the writer gone at exit, they are lost
/// and counted.
fn ship(sender: &SyncSender<Line>, dropped: &IntCounter, bytes: Vec<u8>, lines: u64) {
    if lines == 0 {
        return;
    }
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(Line::Bytes(bytes)) {
        dropped.inc_by(lines);
    }
}

impl Drain for ChannelDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let formatted = FORMATTER.with(|f| {
            f.buffer.0.borrow_mut().clear();
            let ok = f.json.log(record, values).is_ok();
            ok.then(|| {
                PENDING.with(|p| {
                    let mut p = p.borrow_mut();
                    p.bytes.extend_from_slice(&f.buffer.0.borrow());
                    p.lines += 1;
                    (p.batching == 0).then(|| p.take())
                })
            })
        });
        match formatted {
            Some(Some((bytes, lines))) => ship(&self.lines, &self.dropped, bytes, lines),
            Some(None) => {}            // shipped with its batch
            None => self.dropped.inc(), // unformattable: cannot happen with our values, but counted
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_with_lower_case_levels_and_the_service_level_filters_only_service_lines() {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), Level::Warning, dropped.clone());
        slog::info!(logs.service, "filtered out");
        slog::warn!(logs.service, "kept"; "n" => 1);
        slog::info!(logs.events, "client event"; "scope" => "s");
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            (lines[0]["msg"].as_str(), lines[0]["level"].as_str(), lines[0]["n"].as_i64()),
            (Some("kept"), Some("warn"), Some(1))
        );
        assert!(lines[0]["ts"].is_string());
        assert_eq!((lines[1]["msg"].as_str(), lines[1]["level"].as_str()), (Some("client event"), Some("info")));
        assert_eq!(dropped.get(), 0);
    }

    #[test]
    fn a_batch_ships_its_lines_together_when_it_closes() {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), Level::Info, dropped.clone());
        {
            let _batch = logs.batch();
            for i in 0..3 {
                slog::info!(logs.events, "client event"; "i" => i);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(out.0.lock().unwrap().is_empty(), "nothing leaves before the batch closes");
        }
        slog::info!(logs.events, "after");
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let msgs: Vec<String> =
            text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["i"].to_string()).collect();
        assert_eq!(msgs, ["0", "1", "2", "null"]);
        assert_eq!(dropped.get(), 0);
    }

    /// A writer stuck on its first write: logging goes on without blocking, and every line is
    /// either written or counted as dropped.
    #[test]
    fn a_stuck_writer_drops_and_counts_instead_of_blocking() {
        struct Gated(Arc<Mutex<()>>, Captured);
        impl Write for Gated {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                drop(self.0.lock().unwrap());
                self.1.write(bytes)
            }
            fn flush(&mut self) -> io::Result<()> {
                drop(self.0.lock().unwrap());
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let out = Captured::default();
        let held = gate.lock().unwrap();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(Gated(gate.clone(), out.clone()), Level::Info, dropped.clone());
        let total = 50_000u64;
        for i in 0..total {
            slog::info!(logs.events, "line"; "i" => i, "padding" => "x".repeat(64));
        }
        drop(held);
        writer.finish();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap().lines().count() as u64;
        assert!(dropped.get() > 0, "the channel and buffer cannot hold {total} lines");
        assert_eq!(written + dropped.get(), total, "written {written}, dropped {}", dropped.get());
    }
}
