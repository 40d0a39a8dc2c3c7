//! The local copy: every accepted event as one JSON log line, written before any forwarding.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use slog::{Logger, Record};

use crate::event::{Event, Level};

pub fn write(log: &Logger, event: &Event<'_>, received_at: &str) {
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
