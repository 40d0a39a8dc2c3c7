//! The local copy: every accepted event as one JSON log line, written before any forwarding.
//!
//! The seed's keys (`ts`, `scope`, `sessionId`, `message`, `timestamp`, `requestId`, `context`)
//! come first; the batch context and the exception follow under keys that are present only when
//! known: `app`, `release`, `environment`, `pageUrl`, `browser` {language, brands, platform,
//! mobile}, `sdk` {name, version}, `userAgent`, `clientAddress`, `exception` {type, message,
//! stacktrace}, and for the OTLP format `resource` (the sender's other resource attributes),
//! `traceId` and `spanId`.
//!
//! The line is written here straight into the batch's buffer, not through slog: per event, slog's
//! record, key-value walk and `erased-serde` cost more than the JSON itself. The bytes are the ones
//! slog-json wrote (users' log pipelines parse them): the tests compare both on varied events.

use serde::Serialize;

use crate::{
    event::{Browser, Event, Exception, Origin, Sdk},
    observability::Batch,
};

/// One line per event of a batch. The batch's fields (`app` … `clientAddress`, `resource`) and
/// `ts` are the same on every line: they are formatted (escaped) once per batch and copied into
/// each line as they are.
pub fn write_batch(lines: &Batch, origin: &Origin<'_>, events: &[Event<'_>], received_at: &str) {
    let origin = OriginLine::new(origin);
    let mut ts = Vec::with_capacity(received_at.len() + 2);
    json(&mut ts, received_at);
    let per_line = LINE_KEYS + ts.len() + origin.fields.len() + origin.resource.len();
    lines.reserve(events.iter().map(|event| per_line + text_len(event)).sum());
    for event in events {
        lines.write_line(|line| write(line, &origin, &ts, event));
    }
}

/// One line (without its newline), keys in slog-json's order: `msg`, `level`, `ts`, the event's
/// fields (`requestId` and `context` as `null` when absent), the batch's, the exception, the
/// resource, the trace context.
fn write(line: &mut Vec<u8>, origin: &OriginLine, ts: &[u8], event: &Event<'_>) {
    line.extend_from_slice(br#"{"msg":"client event","level":""#);
    line.extend_from_slice(event.level.as_str().as_bytes());
    line.extend_from_slice(br#"","ts":"#);
    line.extend_from_slice(ts);
    key(line, "scope");
    json(line, &*event.scope);
    key(line, "sessionId");
    json(line, &*event.session_id);
    key(line, "message");
    json(line, &*event.message);
    key(line, "timestamp");
    json(line, &*event.timestamp);
    key(line, "requestId");
    match &event.request_id {
        Some(id) => json(line, &**id),
        None => line.extend_from_slice(b"null"),
    }
    key(line, "context");
    // Its validated, compact text, copied as it is (nested JSON, not a string).
    line.extend_from_slice(event.context.as_ref().map_or("null", |raw| raw.get()).as_bytes());
    line.extend_from_slice(&origin.fields);
    if let Some(exception) = &event.exception {
        key(line, "exception");
        json(line, &ExceptionLine::from(exception));
    }
    line.extend_from_slice(&origin.resource);
    if let Some(detail) = event.detail.as_deref().filter(|d| !d.trace_id.is_empty()) {
        key(line, "traceId");
        hex(line, &detail.trace_id);
        key(line, "spanId");
        hex(line, &detail.span_id);
    }
    line.push(b'}');
}

/// About the bytes of a line's keys, quotes and punctuation, exception and trace context included.
const LINE_KEYS: usize = 240;

/// The bytes of an event's text on its line, before escaping.
fn text_len(event: &Event<'_>) -> usize {
    let exception = event.exception.as_ref().map_or(0, |e| {
        [&e.kind, &e.message, &e.stacktrace].iter().map(|text| text.as_ref().map_or(0, |t| t.len())).sum()
    });
    event.scope.len()
        + event.session_id.len()
        + event.message.len()
        + event.timestamp.len()
        + event.request_id.as_ref().map_or(0, |id| id.len())
        + event.context.as_ref().map_or(0, |raw| raw.get().len())
        + exception
}

/// `,"key":` (our keys need no escaping).
fn key(line: &mut Vec<u8>, key: &str) {
    line.extend_from_slice(b",\"");
    line.extend_from_slice(key.as_bytes());
    line.extend_from_slice(b"\":");
}

/// A value as JSON, escaped by serde_json as slog-json had it escaped.
fn json(line: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(line, value).expect("strings and plain structs of strings serialise");
}

/// Lower-case hex in quotes.
fn hex(line: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    line.push(b'"');
    for b in bytes {
        line.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    line.push(b'"');
}

/// The batch context's fields that are present, in their order on the line, as `,"key":value`
/// text; the sender's resource attributes (OTLP) go after the event's exception.
struct OriginLine {
    fields: Vec<u8>,
    resource: Vec<u8>,
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
        let mut fields = Vec::new();
        for (name, value) in strings {
            if let Some(value) = value {
                key(&mut fields, name);
                json(&mut fields, &**value);
            }
        }
        if *browser != Browser::default() {
            key(&mut fields, "browser");
            json(&mut fields, &BrowserLine::from(browser));
        }
        if *sdk != Sdk::default() {
            key(&mut fields, "sdk");
            json(&mut fields, &SdkLine { name: sdk.name.as_deref(), version: sdk.version.as_deref() });
        }
        if let Some(address) = client_address {
            key(&mut fields, "clientAddress");
            json(&mut fields, address);
        }
        let mut resource = Vec::new();
        if let Some(attributes) = attributes {
            key(&mut resource, "resource");
            resource.extend_from_slice(attributes.0.get().as_bytes());
        }
        Self { fields, resource }
    }
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

impl<'a> From<&'a Exception<'a>> for ExceptionLine<'a> {
    fn from(e: &'a Exception<'a>) -> Self {
        Self { kind: e.kind.as_deref(), message: e.message.as_deref(), stacktrace: e.stacktrace.as_deref() }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use prometheus::IntCounter;
    use serde_json::value::RawValue;

    use super::*;
    use crate::{
        event::{App, Attributes, Detail, Level},
        observability::{Logs, init_logs_to},
    };

    /// How event lines were written before this module wrote them itself (through slog and
    /// slog-json, as of commit 74fa760): the reference the new lines must equal byte for byte.
    mod slog_reference {
        use std::borrow::Cow;

        use serde::Serialize;
        use serde_json::value::RawValue;
        use slog::{KV, Logger, Record};

        use super::super::{BrowserLine, ExceptionLine, SdkLine};
        use crate::event::{Browser, Detail, Event, Exception, Level, Origin, Sdk};

        pub fn write_batch(log: &Logger, origin: &Origin<'_>, events: &[Event<'_>], received_at: &str) {
            let origin = OriginLine::new(origin);
            for event in events {
                write(log, &origin, event, received_at);
            }
        }

        fn write(log: &Logger, origin: &OriginLine, event: &Event<'_>, received_at: &str) {
            let known = Known { origin, exception: event.exception.as_ref(), detail: event.detail.as_deref() };
            macro_rules! write_line {
                ($macro:ident) => {
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

            fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
                Box::new(Context(self.0.as_deref().map(|raw| Cow::Owned(raw.to_owned()))))
            }
        }

        impl slog::Value for Context<'_> {
            fn serialize(&self, _: &Record, key: slog::Key, serializer: &mut dyn slog::Serializer) -> slog::Result {
                serializer.emit_serde(key, self)
            }
        }

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
                let mut fields: Vec<_> =
                    strings.into_iter().filter_map(|(k, v)| Some((k, raw(v.as_deref()?)))).collect();
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
            serde_json::value::to_raw_value(value).unwrap()
        }

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
        #[serde(transparent)]
        struct Nested<T>(T);

        impl<T: Serialize> slog::SerdeValue for Nested<T> {
            fn as_serde(&self) -> &dyn erased_serde::Serialize {
                &self.0
            }

            fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
                Box::new(Nested(serde_json::to_value(&self.0).unwrap_or_default()))
            }
        }

        impl<T: Serialize> slog::Value for Nested<T> {
            fn serialize(&self, _: &Record, key: slog::Key, serializer: &mut dyn slog::Serializer) -> slog::Result {
                serializer.emit_serde(key, self)
            }
        }
    }

    use crate::observability::Captured;

    struct Request {
        origin: Origin<'static>,
        events: Vec<Event<'static>>,
        received_at: String,
    }

    /// What the log holds after these requests, each logged as the handler does (one batch, shipped),
    /// by `log` (this module's writer or the slog reference).
    fn logged(requests: &[Request], log: impl Fn(&Logs, &Batch, &Request)) -> Vec<u8> {
        let out = Captured::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let (logs, writer) = init_logs_to(out.clone(), slog::Level::Info, 1 << 30, dropped.clone());
        for request in requests {
            let batch = logs.batch();
            log(&logs, &batch, request);
            batch.ship().expect("room in the channel");
        }
        writer.finish();
        assert_eq!(dropped.get(), 0);
        out.0.lock().unwrap().clone()
    }

    fn both_ways(requests: &[Request]) -> (String, String) {
        let ours = logged(requests, |_, batch, r| write_batch(batch, &r.origin, &r.events, &r.received_at));
        let reference = logged(requests, |logs, _, r| {
            slog_reference::write_batch(&logs.events, &r.origin, &r.events, &r.received_at)
        });
        (String::from_utf8(ours).unwrap(), String::from_utf8(reference).unwrap())
    }

    fn assert_same_lines(ours: &str, reference: &str) {
        for (n, (a, b)) in ours.lines().zip(reference.lines()).enumerate() {
            assert_eq!(a, b, "line {n}: ours, then slog-json's");
        }
        assert_eq!(ours.lines().count(), reference.lines().count());
        assert_eq!(ours, reference, "the same bytes, newlines included");
    }

    /// Texts that JSON escapes or log tools split on, and text that only looks like it.
    const TEXTS: &[&str] = &[
        "",
        "User action description",
        "quote \" backslash \\ slash / and a literal \\u2028",
        "line\nfeed\r\ttab \u{8} \u{c}",
        "\u{0}nul \u{1}\u{1f} del \u{7f}",
        "line\u{2028}separator\u{2029}paragraph\u{2028}",
        "\u{2028}",
        "en – dash, € sign, \u{2027}\u{202a} (E2 bytes that are not separators)",
        "emoji 😀 and 𝄞, ü ß 中文",
        "</script><b>&amp;</b>",
        "Uncaught TypeError: x is undefined\n    at placeOrder (https://shop.example/app.js:10:5)",
    ];

    /// Validated contexts (compact, as the decoders keep them).
    const CONTEXTS: &[&str] = &[
        r#"{}"#,
        r#"{"action":"button_click","userId":"user-123"}"#,
        r#"{"a":1,"b":[true,null,"x"],"c":{"d":1.5,"e":-2e-7}}"#,
        r#"{"s":"escaped \" \\ \n \u0000 \u2028 \ud83d\ude00"}"#,
        "{\"raw\":\"separators as sent \u{2028} \u{2029} and – \"}",
    ];

    /// A small deterministic generator (splitmix64): the same cases on every run.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            &from[(self.next() % from.len() as u64) as usize]
        }

        fn chance(&mut self) -> bool {
            self.next() % 2 == 0
        }

        fn text(&mut self) -> Cow<'static, str> {
            Cow::Owned(self.pick(TEXTS).to_string())
        }

        fn maybe_text(&mut self) -> Option<Cow<'static, str>> {
            self.chance().then(|| self.text())
        }

        fn raw(&mut self, from: &[&str]) -> Cow<'static, RawValue> {
            Cow::Owned(RawValue::from_string(self.pick(from).to_string()).unwrap())
        }

        fn origin(&mut self) -> Origin<'static> {
            let brands = (0..self.next() % 3).map(|_| self.pick(TEXTS).to_string()).collect();
            Origin {
                app: App { name: self.maybe_text(), version: self.maybe_text(), environment: self.maybe_text() },
                page_url: self.maybe_text(),
                browser: Browser {
                    language: self.maybe_text(),
                    brands,
                    platform: self.maybe_text(),
                    mobile: self.chance().then(|| self.chance()),
                },
                sdk: Sdk { name: self.maybe_text(), version: self.maybe_text() },
                user_agent: self.maybe_text(),
                client_address: self.chance().then(|| self.pick(&["203.0.113.7", "2001:db8::1"]).to_string()),
                attributes: self.chance().then(|| Attributes(self.raw(CONTEXTS))),
            }
        }

        fn event(&mut self) -> Event<'static> {
            let detail = match self.next() % 4 {
                0 => None,
                1 => Some(Detail::default()),
                2 => Some(Detail {
                    trace_id: (0..16).collect(),
                    span_id: vec![0xff, 0, 0xa5, 1, 2, 3, 4, 0x5a],
                    ..Default::default()
                }),
                _ => Some(Detail { trace_id: vec![0xab; 16], ..Default::default() }),
            };
            Event {
                level: *self.pick(&Level::ALL),
                scope: self.text(),
                session_id: self.text(),
                message: self.text(),
                timestamp: Cow::Borrowed(*self.pick(&["2025-01-15T10:30:45.123Z", "2025-01-15T10:30:45+02:00"])),
                time_unix_nano: 1_736_937_045_123_000_000,
                request_id: self.maybe_text(),
                context: self.chance().then(|| self.raw(CONTEXTS)),
                exception: self.chance().then(|| Exception {
                    kind: self.maybe_text(),
                    message: self.maybe_text(),
                    stacktrace: self.maybe_text(),
                }),
                detail: detail.map(Box::new),
            }
        }
    }

    #[test]
    fn event_lines_are_byte_for_byte_the_lines_slog_json_wrote() {
        let mut cases = Cases(18);
        let requests: Vec<Request> = (0..400)
            .map(|_| Request {
                origin: cases.origin(),
                events: (0..1 + cases.next() % 6).map(|_| cases.event()).collect(),
                received_at: crate::observability::rfc3339_now(),
            })
            .collect();
        let (ours, reference) = both_ways(&requests);
        assert_eq!(ours.lines().count(), requests.iter().map(|r| r.events.len()).sum::<usize>());
        // The cases cover what the format has to get right.
        for seen in [
            r#""level":"info""#,
            r#""level":"warn""#,
            r#""level":"error""#,
            r#""requestId":null"#,
            r#""context":null"#,
            r#""exception":{}"#,
            r#""exception":{"type":"#,
            r#""spanId":"""#,
            r#""traceId":"000102030405060708090a0b0c0d0e0f","spanId":"ff00a5010203045a""#,
            r#""resource":{"#,
            r#""browser":{"brands":["#,
            r#""mobile":false"#,
            r#""sdk":{"version":"#,
            r#""clientAddress":"2001:db8::1""#,
            r#"line\u2028separator\u2029paragraph\u2028"#,
            r#"separators as sent \u2028 \u2029 and –"#,
            r#"\u0000nul \u0001\u001f del "#,
            r#"line\nfeed\r\ttab \b \f"#,
            r#"quote \" backslash \\ slash / and a literal \\u2028"#,
        ] {
            assert!(ours.contains(seen), "no line has {seen}");
        }
        assert!(!ours.contains(['\u{2028}', '\u{2029}']));
        assert_same_lines(&ours, &reference);
    }

    /// Every field absent, and every field present: the line as users' pipelines read it.
    #[test]
    fn the_least_and_the_most_a_line_holds() {
        let bare = Event {
            level: Level::Info,
            scope: "s".into(),
            session_id: "id".into(),
            message: "hi".into(),
            timestamp: "2025-01-15T10:30:45.123Z".into(),
            time_unix_nano: 0,
            request_id: None,
            context: None,
            exception: None,
            detail: None,
        };
        let full = Event {
            level: Level::Error,
            request_id: Some("r-1".into()),
            context: Some(Cow::Owned(RawValue::from_string(r#"{"a":[1,"x"]}"#.into()).unwrap())),
            exception: Some(Exception { kind: Some("TypeError".into()), message: Some("x".into()), stacktrace: None }),
            detail: Some(Box::new(Detail { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() })),
            ..bare.clone()
        };
        let origin = Origin {
            app: App { name: Some("shop".into()), version: Some("1.4.2".into()), environment: Some("prod".into()) },
            page_url: Some("https://shop.example/".into()),
            browser: Browser {
                language: Some("de".into()),
                brands: vec!["Chromium 126".into()],
                platform: None,
                mobile: Some(true),
            },
            sdk: Sdk { name: Some("web".into()), version: None },
            user_agent: Some("UA".into()),
            client_address: Some("203.0.113.7".into()),
            attributes: Some(Attributes(Cow::Owned(RawValue::from_string(r#"{"k":"v"}"#.into()).unwrap()))),
        };
        let ts = "2026-11-30T12:00:00.000Z".to_string();
        let requests = [
            Request { origin: Origin::default(), events: vec![bare.clone()], received_at: ts.clone() },
            Request { origin, events: vec![full], received_at: ts },
        ];
        let (ours, reference) = both_ways(&requests);
        let expected = concat!(
            r#"{"msg":"client event","level":"info","ts":"2026-11-30T12:00:00.000Z","scope":"s","sessionId":"id","message":"hi","timestamp":"2025-01-15T10:30:45.123Z","requestId":null,"context":null}"#,
            "\n",
            r#"{"msg":"client event","level":"error","ts":"2026-11-30T12:00:00.000Z","scope":"s","sessionId":"id","message":"hi","timestamp":"2025-01-15T10:30:45.123Z","requestId":"r-1","context":{"a":[1,"x"]},"#,
            r#""app":"shop","release":"1.4.2","environment":"prod","pageUrl":"https://shop.example/","userAgent":"UA","browser":{"language":"de","brands":["Chromium 126"],"mobile":true},"sdk":{"name":"web"},"clientAddress":"203.0.113.7","#,
            r#""exception":{"type":"TypeError","message":"x"},"resource":{"k":"v"},"traceId":"01010101010101010101010101010101","spanId":"0202020202020202"}"#,
            "\n",
        );
        assert_eq!(ours, expected);
        assert_same_lines(&ours, &reference);
    }
}
