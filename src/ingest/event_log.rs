//! The local copy: every accepted event as one JSON log line, written before any forwarding.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use slog::{Logger, Record};

use super::event::{Event, Level};

pub fn write(log: &Logger, event: &Event<'_>, received_at: &str) {
    // Inside a request's batch (always, from the handler): serialised straight into the batch.
    let line = Line {
        msg: "client event",
        level: event.level.as_str(),
        ts: received_at,
        scope: &event.scope,
        session_id: &event.session_id,
        message: &event.message,
        timestamp: &event.timestamp,
        request_id: event.request_id.as_deref(),
        context: event.context.as_deref(),
    };
    let written = crate::observability::append_to_batch(|buffer| {
        serde_json::to_writer(buffer, &line).expect("strings and validated JSON always serialise")
    });
    if written {
        return;
    }
    // slog levels are compile-time constants, hence one arm per level.
    macro_rules! write_line {
        ($macro:ident) => {
            // slog-json writes pairs last to first: this reads ts, scope, …, context.
            slog::$macro!(log, "client event";
                "context" => Context(event.context.as_deref().map(Cow::Borrowed)),
                "requestId" => event.request_id.as_deref(),
                "timestamp" => &*event.timestamp,
                "message" => &*event.message,
                "sessionId" => &*event.session_id,
                "scope" => &*event.scope,
                "ts" => received_at
            )
        };
    }
    match event.level {
        Level::Info => write_line!(info),
        Level::Warn => write_line!(warn),
        Level::Error => write_line!(error),
    }
}

/// The line, field for field as slog-json writes it below.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'e> {
    msg: &'static str,
    level: &'static str,
    ts: &'e str,
    scope: &'e str,
    session_id: &'e str,
    message: &'e str,
    timestamp: &'e str,
    request_id: Option<&'e str>,
    context: Option<&'e RawValue>,
}

/// The context, logged as nested JSON (not a string): its validated text, copied as it is.
struct Context<'a>(Option<Cow<'a, RawValue>>);

impl Serialize for Context<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }
}

impl slog::SerdeValue for Context<'_> {
    fn as_serde(&self) -> &dyn erased_serde::Serialize {
        self
    }

    /// Not used by our drain, which formats on the logging thread.
    fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
        Box::new(Context(self.0.as_deref().map(|raw| Cow::Owned(raw.to_owned()))))
    }
}

impl slog::Value for Context<'_> {
    fn serialize(&self, _: &Record, key: slog::Key, serializer: &mut dyn slog::Serializer) -> slog::Result {
        serializer.emit_serde(key, self)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{self, Write},
        sync::{Arc, Mutex},
    };

    use prometheus::IntCounter;

    use super::*;
    use crate::{observability::init_logs_to, settings::Settings};

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

    /// The direct path (in a batch) and slog's write the same bytes.
    #[test]
    fn a_line_in_a_batch_is_the_line_slog_writes() {
        let limits = Settings::from_vars(Vec::new()).unwrap().limits;
        let events = [
            r#"{"level":"warn","scope":"s \"q\"","sessionId":"s1","message":"h\u00e9 \n","timestamp":"2025-01-15T10:30:45.123Z","context":{"b": [1, 2.50, "x"],"a":{"\u0041":null}}}"#,
            r#"{"level":"error","scope":"s","sessionId":"s1","message":"m","timestamp":"2025-01-15T10:30:45Z","requestId":"r"}"#,
        ];
        for json in events {
            let event = crate::ingest::event::parse_event(json, &limits).unwrap();
            let out = Captured::default();
            let (logs, writer) =
                init_logs_to(out.clone(), slog::Level::Info, 1 << 20, IntCounter::new("d", "d").unwrap());
            write(&logs.events, &event, "2026-01-01T00:00:00.000Z");
            let batch = logs.batch();
            write(&logs.events, &event, "2026-01-01T00:00:00.000Z");
            drop(batch);
            writer.finish();
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text}");
            assert_eq!(lines[0], lines[1]);
            let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(line["msg"], "client event");
        }
    }
}
