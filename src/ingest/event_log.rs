//! The local copy: every accepted event as one JSON log line, written before any forwarding.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use slog::{Logger, Record};

use super::event::{Event, Level};

pub fn write(log: &Logger, event: &Event<'_>, received_at: &str) {
    // slog levels are compile-time constants, hence one arm per level.
    macro_rules! write_line {
        ($macro:ident) => {
            // slog-json writes pairs last to first: this reads ts, scope, …, context.
            slog::$macro!(log, "client event";
                "context" => Context(event.context.clone()),
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

/// The context, logged as nested JSON (not a string); shared, not copied, into the log thread.
#[derive(Clone)]
struct Context(Option<Arc<Map<String, Value>>>);

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(map) => map.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }
}

impl slog::SerdeValue for Context {
    fn as_serde(&self) -> &dyn erased_serde::Serialize {
        self
    }

    fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
        Box::new(self.clone())
    }
}

impl slog::Value for Context {
    fn serialize(&self, _: &Record, key: slog::Key, serializer: &mut dyn slog::Serializer) -> slog::Result {
        serializer.emit_serde(key, self)
    }
}
