//! The local copy: every accepted event as one JSON log line, written before any forwarding.
//!
//! The seed's keys (`ts`, `scope`, `sessionId`, `message`, `timestamp`, `requestId`, `context`)
//! come first; the batch context and the exception follow under keys that are present only when
//! known: `app`, `release`, `environment`, `pageUrl`, `browser` {language, brands, platform,
//! mobile}, `sdk` {name, version}, `userAgent`, `clientAddress`, `exception` {type, message,
//! stacktrace}, and for the OTLP format `resource` (the sender's other resource attributes),
//! `traceId` and `spanId`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use slog::{KV, Logger, Record};

use crate::event::{Browser, Detail, Event, Exception, Level, Origin, Sdk};

/// One line per event of a batch. The batch's fields (`app` … `clientAddress`) are the same on
/// every line: they are formatted (escaped) once per batch and copied into each line as they are.
pub fn write_batch(log: &Logger, origin: &Origin<'_>, events: &[Event<'_>], received_at: &str) {
    let origin = OriginLine::new(origin);
    for event in events {
        write(log, &origin, event, received_at);
    }
}

fn write(log: &Logger, origin: &OriginLine, event: &Event<'_>, received_at: &str) {
    let known = Known { origin, exception: event.exception.as_ref(), detail: event.detail.as_deref() };
    // slog levels are compile-time constants, hence one arm per level.
    macro_rules! write_line {
        ($macro:ident) => {
            // slog-json writes pairs last to first: this reads ts, scope, …, context, app, ….
            slog::$macro!(log, "client event";
                known,
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

/// The context, logged as nested JSON (not a string): its validated text, copied as it is. Also
/// the batch's fields, formatted once per batch.
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

/// The batch context's fields that are present, in their order on the line, each already JSON;
/// the sender's resource attributes (OTLP) go after the event's exception.
struct OriginLine {
    fields: Vec<(&'static str, Box<RawValue>)>,
    resource: Option<Box<RawValue>>,
}

impl OriginLine {
    fn new(origin: &Origin<'_>) -> Self {
        let Origin { app, page_url, browser, sdk, user_agent, client_address, attributes } = origin;
        let strings = [
            ("app", &app.name),
            ("release", &app.version),
            ("environment", &app.environment),
            ("pageUrl", page_url),
            ("userAgent", user_agent),
        ];
        let mut fields: Vec<_> = strings.into_iter().filter_map(|(k, v)| Some((k, raw(v.as_deref()?)))).collect();
        if *browser != Browser::default() {
            fields.push(("browser", raw(&BrowserLine::from(browser))));
        }
        if *sdk != Sdk::default() {
            fields.push(("sdk", raw(&SdkLine { name: sdk.name.as_deref(), version: sdk.version.as_deref() })));
        }
        if let Some(address) = client_address {
            fields.push(("clientAddress", raw(address)));
        }
        Self { fields, resource: attributes.as_ref().map(|a| (*a.0).to_owned()) }
    }
}

fn raw(value: &(impl Serialize + ?Sized)) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("strings and plain structs of strings serialise")
}

/// The batch context and the exception: only the fields that are present.
struct Known<'a> {
    origin: &'a OriginLine,
    exception: Option<&'a Exception<'a>>,
    detail: Option<&'a Detail>,
}

impl KV for Known<'_> {
    fn serialize(&self, _: &Record, serializer: &mut dyn slog::Serializer) -> slog::Result {
        for (key, value) in &self.origin.fields {
            serializer.emit_serde(key, &Context(Some(Cow::Borrowed(value))))?;
        }
        if let Some(exception) = self.exception {
            let line = ExceptionLine {
                kind: exception.kind.as_deref(),
                message: exception.message.as_deref(),
                stacktrace: exception.stacktrace.as_deref(),
            };
            serializer.emit_serde("exception", &Nested(line))?;
        }
        if let Some(resource) = &self.origin.resource {
            serializer.emit_serde("resource", &Context(Some(Cow::Borrowed(resource))))?;
        }
        if let Some(detail) = self.detail.filter(|d| !d.trace_id.is_empty()) {
            serializer.emit_str("traceId", &hex(&detail.trace_id))?;
            serializer.emit_str("spanId", &hex(&detail.span_id))?;
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct BrowserLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    brands: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mobile: Option<bool>,
}

impl<'a> From<&'a Browser<'a>> for BrowserLine<'a> {
    fn from(b: &'a Browser<'a>) -> Self {
        Self { language: b.language.as_deref(), brands: &b.brands, platform: b.platform.as_deref(), mobile: b.mobile }
    }
}

#[derive(Serialize)]
struct SdkLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
}

#[derive(Serialize)]
struct ExceptionLine<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stacktrace: Option<&'a str>,
}

/// A nested object of the line, as slog wants it.
#[derive(Serialize)]
#[serde(transparent)]
struct Nested<T>(T);

impl<T: Serialize> slog::SerdeValue for Nested<T> {
    fn as_serde(&self) -> &dyn erased_serde::Serialize {
        &self.0
    }

    /// Not used by our drain, which formats on the logging thread.
    fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
        let value = serde_json::to_value(&self.0).unwrap_or_default();
        Box::new(Nested(value))
    }
}

impl<T: Serialize> slog::Value for Nested<T> {
    fn serialize(&self, _: &Record, key: slog::Key, serializer: &mut dyn slog::Serializer) -> slog::Result {
        serializer.emit_serde(key, self)
    }
}
