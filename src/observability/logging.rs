//! JSON log lines on stdout, formatted on the logging thread and written by one writer thread.
//!
//! Two loggers share the writer: `service` for the gateway's own messages (filtered by the log
//! level) and `events` for lines that are part of the record and never filtered (the start-up
//! line). Accepted client events are part of the record too, but skip slog: `Batch::write_line`
//! takes a line its caller wrote (`ingest::event_log`), since slog's record and key-value walk cost
//! more per event than the JSON itself.
//!
//! A line is formatted on the thread that logs it, into a per-thread buffer, and only bytes cross a
//! bounded channel to the writer, which writes through a buffer and flushes whenever the channel
//! runs empty. Under load the writer lingers briefly after each wake-up, so one wake-up and one
//! write serve several requests (each wake-up is a context switch that also preempts a worker).
//! (slog-async would copy every key and value into owned boxes first; at hundreds of thousands of
//! lines a second that cost more than the formatting.) Within a `Logs::batch()` (one request's
//! events) the lines travel together, and the batch's `Receipt` resolves once the writer has
//! flushed them: the ingest route answers 204 only for events already in the log. Logging never
//! blocks a worker: when the channel is full the lines are dropped, counted in
//! `client_telemetry_log_lines_dropped_total`, and the batch says so.

use std::{
    cell::{Cell, RefCell},
    io::{self, BufWriter, Write},
    panic::AssertUnwindSafe,
    rc::Rc,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc::{Receiver, Sender, channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use prometheus::IntCounter;
use slog::{Drain, FnValue, Level, LevelFilter, Logger, OwnedKVList, PushFnValue, Record, o};
use slog_json::Json;
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};
use tokio::sync::watch;

use crate::setting::{self, at_least};

setting::component! {
    /// The gateway's own log and its writer.
    pub struct LogConfig {
        /// level of the gateway's own messages: `trace`, `debug`, `info`, `warn`, `error`, `critical` (client events are always written)
        log_level: String = "info".into(),
        /// log bytes that may wait for the log writer (at least 65536); past it requests get 503 and their lines are counted in `client_telemetry_log_lines_dropped_total`
        log_queue_bytes: usize = 16 * 1024 * 1024,
        /// how long a request waits for its log lines to be written before answering 503
        log_write_timeout_ms: u64 = 1000,
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: Level,
    /// Log bytes that may wait for the writer; past it requests are refused with 503, not lost.
    pub queue_bytes: usize,
    /// How long a request waits for its log lines to be written before answering 503.
    pub write_timeout: Duration,
}

impl LogConfig {
    pub fn resolve(&self) -> Result<LogSettings, setting::Error> {
        let levels = [
            ("trace", Level::Trace),
            ("debug", Level::Debug),
            ("info", Level::Info),
            ("warn", Level::Warning),
            ("warning", Level::Warning),
            ("error", Level::Error),
            ("critical", Level::Critical),
        ];
        Ok(LogSettings {
            level: setting::choice("log_level", &self.log_level, &levels)?,
            queue_bytes: at_least("log_queue_bytes", self.log_queue_bytes, 64 * 1024)?,
            write_timeout: Duration::from_millis(at_least("log_write_timeout_ms", self.log_write_timeout_ms, 1)?),
        })
    }
}

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Now, as RFC 3339 UTC with milliseconds (the format of every `ts` in the logs).
pub fn rfc3339_now() -> String {
    OffsetDateTime::now_utc().format(RFC3339_MILLIS).expect("a UTC time always formats")
}

#[derive(Clone)]
pub struct Logs {
    pub service: Logger,
    pub events: Logger,
    shipper: Arc<Shipper>,
}

impl Logs {
    /// Lines logged on this thread until `Batch::ship` travel to the writer together. Hold it only
    /// across code that does not await (an actix worker runs one task at a time).
    pub fn batch(&self) -> Batch {
        FORMATTER.with(|f| f.batching.set(f.batching.get() + 1));
        Batch { shipper: self.shipper.clone(), open: true }
    }
}

/// See [`Logs::batch`].
pub struct Batch {
    shipper: Arc<Shipper>,
    open: bool,
}

/// The lines were not accepted by the writer (its channel is full): they are counted as dropped.
#[derive(Debug)]
pub struct LinesDropped;

impl Batch {
    /// Hands the batch's lines to the writer; the receipt resolves once they are written.
    pub fn ship(mut self) -> Result<Receipt, LinesDropped> {
        let (bytes, lines) = self.close();
        self.shipper.ship(bytes, lines)
    }

    /// Makes room for `bytes` more bytes of lines at once: a buffer grown by doubling, line after
    /// line, copies itself several times a batch.
    pub fn reserve(&self, bytes: usize) {
        FORMATTER.with(|f| f.buffer.0.borrow_mut().reserve(bytes));
    }

    /// Appends one line to the batch: `write` puts the JSON object (without newline) at the end of
    /// the buffer it is given. For lines written without slog (client events); line separators are
    /// escaped as on every other line.
    pub fn write_line(&self, write: impl FnOnce(&mut Vec<u8>)) {
        FORMATTER.with(|f| {
            let mut buffer = f.buffer.0.borrow_mut();
            let start = buffer.len();
            write(&mut buffer);
            buffer.push(b'\n');
            escape_line_separators(&mut buffer, start);
            f.lines.set(f.lines.get() + 1);
        });
    }

    fn close(&mut self) -> (Vec<u8>, u64) {
        if !std::mem::take(&mut self.open) {
            return (Vec::new(), 0);
        }
        FORMATTER.with(|f| {
            f.batching.set(f.batching.get() - 1);
            if f.batching.get() == 0 { f.take() } else { (Vec::new(), 0) }
        })
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let (bytes, lines) = self.close();
        let _ = self.shipper.ship(bytes, lines);
    }
}

/// Resolves once the writer has flushed every line shipped up to it.
pub struct Receipt {
    ticket: u64,
    written: watch::Receiver<u64>,
}

impl Receipt {
    /// True once the lines are written; false if the writer stopped first.
    pub async fn written(mut self) -> bool {
        let ticket = self.ticket;
        self.written.wait_for(|&written| written >= ticket).await.is_ok()
    }
}

/// The senders' end of the channel. Tickets are taken under the lock in channel order, so "the
/// writer has flushed N lines" means every ticket up to N is on stdout.
struct Shipper {
    sender: Sender<Line>,
    /// Bytes handed to the writer and not yet written, at most `budget`.
    queued: Arc<AtomicUsize>,
    budget: usize,
    sent: Mutex<u64>,
    // Only cloned, never read through a shared reference: safe to use across a panic.
    written: AssertUnwindSafe<watch::Receiver<u64>>,
    dropped: IntCounter,
}

impl Shipper {
    fn ship(&self, bytes: Vec<u8>, lines: u64) -> Result<Receipt, LinesDropped> {
        let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines > 0 {
            let size = bytes.len();
            let fits = self.queued.load(Ordering::Acquire) + size <= self.budget;
            // The channel's other end lives as long as the process; a send can fail only at exit.
            if !fits || self.sender.send(Line::Bytes(bytes, lines)).is_err() {
                self.dropped.inc_by(lines);
                return Err(LinesDropped);
            }
            self.queued.fetch_add(size, Ordering::AcqRel);
            *sent += lines;
        }
        Ok(Receipt { ticket: *sent, written: self.written.0.clone() })
    }
}

const WRITE_BUFFER: usize = 256 * 1024;
/// Under load, how long the writer waits after a wake-up, before writing, for more lines to arrive.
const LINGER: Duration = Duration::from_micros(200);

/// Builds the loggers on stdout. Keep the writer until exit: `LogWriter::finish` writes what is queued.
/// `queue_bytes` bounds what may wait for the writer (memory, and how long a burst it absorbs).
pub fn init_logs(level: Level, queue_bytes: usize, metrics: &super::Metrics) -> (Logs, LogWriter) {
    let dropped = metrics
        .counter("client_telemetry_log_lines_dropped_total", "Log lines dropped because the log writer fell behind.");
    init_logs_to(io::stdout(), level, queue_bytes, dropped)
}

pub fn init_logs_to<W: Write + Send + 'static>(
    out: W,
    level: Level,
    queue_bytes: usize,
    dropped: IntCounter,
) -> (Logs, LogWriter) {
    let (lines, receiver) = channel::<Line>();
    let queued = Arc::new(AtomicUsize::new(0));
    let writer_queued = queued.clone();
    let (written_tx, written) = watch::channel(0);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(receiver, BufWriter::with_capacity(WRITE_BUFFER, out), written_tx, writer_queued))
        .expect("spawn the log writer");
    let shipper = Arc::new(Shipper {
        sender: lines.clone(),
        queued,
        budget: queue_bytes,
        sent: Mutex::new(0),
        written: AssertUnwindSafe(written),
        dropped,
    });
    let drain = Arc::new(ChannelDrain { shipper: shipper.clone() });
    let service = Logger::root(
        LevelFilter::new(drain.clone(), level).ignore_res(),
        o!("ts" => FnValue(|_: &Record| rfc3339_now())),
    );
    let events = Logger::root(drain, o!());
    (Logs { service, events, shipper }, LogWriter { lines, thread: Some(thread) })
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
    /// Formatted lines, and how many.
    Bytes(Vec<u8>, u64),
    Finish,
}

/// The writer thread's handle.
pub struct LogWriter {
    lines: Sender<Line>,
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

fn write_lines(receiver: Receiver<Line>, mut out: impl Write, written: watch::Sender<u64>, queued: Arc<AtomicUsize>) {
    let mut processed = 0;
    let mut last_write = Instant::now();
    while let Ok(line) = receiver.recv() {
        // Busy (woken again soon after the last write): let the lines of the requests running now
        // arrive too, so one wake-up and one write serve several requests, not one each. Asleep,
        // the writer is not woken by each send. Under light load lines are written at once.
        if last_write.elapsed() < LINGER {
            std::thread::sleep(LINGER);
        }
        let mut next = Some(line);
        // Write all that is waiting, then flush once: one write call per burst, not per line.
        while let Some(line) = next {
            match line {
                Line::Bytes(bytes, lines) => {
                    let _ = out.write_all(&bytes);
                    queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                    processed += lines;
                }
                Line::Finish => {
                    let _ = out.flush();
                    written.send_replace(processed);
                    return;
                }
            }
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
        written.send_replace(processed);
        last_write = Instant::now();
    }
    let _ = out.flush();
}

struct ChannelDrain {
    shipper: Arc<Shipper>,
}

/// The per-thread formatter, and the formatted lines it holds until they are shipped (at once,
/// or when the open batch closes).
struct Formatter {
    json: Json<SharedBuffer>,
    buffer: SharedBuffer,
    lines: Cell<u64>,
    batching: Cell<usize>,
}

impl Formatter {
    fn take(&self) -> (Vec<u8>, u64) {
        (std::mem::take(&mut *self.buffer.0.borrow_mut()), self.lines.take())
    }
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

thread_local! {
    static FORMATTER: Formatter = {
        let buffer = SharedBuffer::default();
        let json = Json::new(buffer.clone())
            .add_key_value(o!(
                "level" => FnValue(|r: &Record| level_name(r.level())),
                "msg" => PushFnValue(|r: &Record, s| s.emit(r.msg())),
            ))
            .build();
        Formatter { json, buffer, lines: Cell::new(0), batching: Cell::new(0) }
    };
}

impl Drain for ChannelDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let formatted = FORMATTER.with(|f| {
            let start = f.buffer.0.borrow().len();
            if f.json.log(record, values).is_err() {
                f.buffer.0.borrow_mut().truncate(start);
                return None;
            }
            escape_line_separators(&mut f.buffer.0.borrow_mut(), start);
            f.lines.set(f.lines.get() + 1);
            Some((f.batching.get() == 0).then(|| f.take()))
        });
        match formatted {
            // Outside a batch nobody waits for the receipt; a drop is counted all the same.
            Some(Some((bytes, lines))) => drop(self.shipper.ship(bytes, lines)),
            Some(None) => {}                    // shipped with its batch
            None => self.shipper.dropped.inc(), // unformattable: cannot happen with our values, but counted
        }
        Ok(())
    }
}

/// U+2028 and U+2029 may stand raw in JSON, but JavaScript and common log tools end a line at them:
/// escaped, a client's message cannot split its line. Past `from` (the line just formatted); in
/// JSON text they can only be inside a string, where `\u2028` reads the same.
fn escape_line_separators(buffer: &mut Vec<u8>, from: usize) {
    // Both are E2 80 A8/A9 in UTF-8; most lines have no E2 byte at all. (memchr: the search runs
    // over every byte of every line, and core's takes several times its instructions.)
    if memchr::memchr(0xE2, &buffer[from..]).is_none() {
        return;
    }
    let line = buffer.split_off(from);
    let mut rest = line.as_slice();
    while let Some(at) = memchr::memchr(0xE2, rest) {
        buffer.extend_from_slice(&rest[..at]);
        match rest[at..] {
            [0xE2, 0x80, 0xA8, ..] => buffer.extend_from_slice(b"\\u2028"),
            [0xE2, 0x80, 0xA9, ..] => buffer.extend_from_slice(b"\\u2029"),
            _ => {
                buffer.push(0xE2);
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 3..];
    }
    buffer.extend_from_slice(rest);
}

/// A log destination tests read back: everything written, shared between clones.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn lines_are_json_with_lower_case_levels_and_the_service_level_filters_only_service_lines() {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), Level::Warning, 1 << 20, dropped.clone());
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
    fn line_and_paragraph_separators_are_escaped_and_read_back_the_same() {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), Level::Info, 1 << 20, dropped);
        let message = "one\u{2028}two\u{2029}three – ok\u{2028}";
        slog::info!(logs.events, "client event"; "message" => message, "k\u{2029}" => "v");
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains(['\u{2028}', '\u{2029}']), "{text}");
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains(r"one\u2028two\u2029three – ok\u2028"), "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((line["message"].as_str(), line["k\u{2029}"].as_str()), (Some(message), Some("v")));
    }

    /// slog filters levels at compile time too (by default debug and trace in release builds, trace
    /// in debug builds): every level the setting accepts must reach the run-time filter.
    #[test]
    fn every_level_the_log_level_setting_accepts_is_written() {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), Level::Trace, 1 << 20, dropped);
        slog::trace!(logs.service, "t");
        slog::debug!(logs.service, "d");
        slog::info!(logs.service, "i");
        writer.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let levels: Vec<String> =
            text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["level"].to_string()).collect();
        assert_eq!(levels, [r#""trace""#, r#""debug""#, r#""info""#], "{text}");
    }

    fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    #[test]
    fn a_batch_ships_its_lines_together_and_its_receipt_resolves_once_they_are_written() {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), Level::Info, 1 << 20, dropped.clone());
        let batch = logs.batch();
        for i in 0..3 {
            slog::info!(logs.events, "client event"; "i" => i);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(out.0.lock().unwrap().is_empty(), "nothing leaves before the batch is shipped");
        let receipt = batch.ship().expect("room in the channel");
        assert!(futures_executor_block_on(receipt.written()));
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap().lines().count(),
            3,
            "written when the receipt resolves"
        );
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
        let (logs, writer) = init_logs_to(Gated(gate.clone(), out.clone()), Level::Info, 1 << 20, dropped.clone());
        let total = 50_000u64;
        for i in 0..total {
            slog::info!(logs.events, "line"; "i" => i, "padding" => "x".repeat(64));
        }
        drop(held);
        writer.finish();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap().lines().count() as u64;
        assert!(dropped.get() > 0, "a 1 MiB queue and the write buffer cannot hold {total} lines");
        assert_eq!(written + dropped.get(), total, "written {written}, dropped {}", dropped.get());
    }
}
