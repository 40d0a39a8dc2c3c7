//! From body text to accepted events: the batch `{"app":…,"page":…,"browser":…,"sdk":…,"events":[…]}`
//! (every field but `events` optional) or the legacy single event, which has no batch context.
//!
//! A well-formed batch is parsed in one pass. Only when that fails is each element parsed on its
//! own, to say which events are wrong: one bad event does not cost the others.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{
    App, Event, Invalid, Limits, Origin, Sdk, WireBrowser, WireEvent, WireOrigin, WirePage, parse_event, validate,
    validate_origin,
};
use crate::ingest::response::IngestError;

pub struct Batch<'a> {
    /// What the client said of the batch; the handler adds what the request says.
    pub origin: Origin<'a>,
    pub events: Vec<Event<'a>>,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub index: usize,
    pub invalid: Invalid,
}

impl<'a> Batch<'a> {
    /// Every format's decoded records, in order: the accepted kept, the refused named by their index.
    /// A request whose records were all refused is an error; one with no records at all (an empty
    /// OTLP export; the other formats refuse it before) is not.
    pub fn split(
        origin: Origin<'a>,
        records: impl IntoIterator<Item = Result<Event<'a>, Invalid>>,
    ) -> Result<Self, IngestError> {
        let records = records.into_iter();
        let mut batch = Batch { origin, events: Vec::with_capacity(records.size_hint().0), rejected: Vec::new() };
        for (index, record) in records.enumerate() {
            match record {
                Ok(event) => batch.events.push(event),
                Err(invalid) => batch.rejected.push(Rejection { index, invalid }),
            }
        }
        if batch.events.is_empty() && !batch.rejected.is_empty() {
            return Err(IngestError::NoValidEvents(batch.rejected));
        }
        Ok(batch)
    }
}

/// The common case: every event has the right fields and types.
///
/// `WireOrigin`'s fields are repeated rather than `#[serde(flatten)]`ed: flattening makes serde
/// buffer every other field of the batch as an untyped tree before reading it again.
#[derive(Deserialize)]
struct WellFormedBatch<'a> {
    #[serde(borrow, default)]
    app: Option<App<'a>>,
    #[serde(borrow, default)]
    page: Option<WirePage<'a>>,
    #[serde(borrow, default)]
    browser: Option<WireBrowser<'a>>,
    #[serde(borrow, default)]
    sdk: Option<Sdk<'a>>,
    #[serde(borrow)]
    events: Vec<WireEvent<'a>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    events: Option<&'a RawValue>,
}

/// The body as received (after decompression): UTF-8 first, then the batch.
pub fn decode_body<'a>(body: &'a [u8], limits: &Limits) -> Result<Batch<'a>, IngestError> {
    let text = std::str::from_utf8(body).map_err(|_| IngestError::InvalidUtf8)?;
    decode(text, limits)
}

const NOT_AN_OBJECT: &str = "the body must be a JSON object: a batch {\"events\":[…]} or a single event";

pub fn decode<'a>(body: &'a str, limits: &Limits) -> Result<Batch<'a>, IngestError> {
    if !body.trim_start().starts_with('{') {
        // Malformed JSON, or valid JSON of the wrong shape: say which.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Err(e) => IngestError::from_json(e),
            Ok(_) => IngestError::BadShape(NOT_AN_OBJECT.into()),
        });
    }
    if let Ok(batch) = serde_json::from_str::<WellFormedBatch<'a>>(body) {
        let wire = WireOrigin { app: batch.app, page: batch.page, browser: batch.browser, sdk: batch.sdk };
        let origin = origin(wire, limits)?;
        return collect(origin, batch.events.into_iter().map(|wire| validate(wire, limits)), limits);
    }
    let envelope: Envelope<'a> = serde_json::from_str(body).map_err(IngestError::from_json)?;
    let Some(events) = envelope.events else {
        // Legacy: the body is one event.
        return match parse_event(body, limits) {
            Ok(event) => Ok(Batch { origin: Origin::default(), events: vec![event], rejected: Vec::new() }),
            Err(invalid) => Err(IngestError::NoValidEvents(vec![Rejection { index: 0, invalid }])),
        };
    };
    // The batch context is shared by every event: when it is wrong, the whole batch is.
    let wire: WireOrigin<'a> = serde_json::from_str(body).map_err(|e| IngestError::BadShape(e.to_string()))?;
    let origin = origin(wire, limits)?;
    if !events.get().starts_with('[') {
        return Err(IngestError::BadShape("`events` must be an array of events".into()));
    }
    let raw: Vec<&'a RawValue> = serde_json::from_str(events.get()).map_err(IngestError::from_json)?;
    collect(origin, raw.into_iter().map(|event| parse_event(event.get(), limits)), limits)
}

fn origin<'a>(wire: WireOrigin<'a>, limits: &Limits) -> Result<Origin<'a>, IngestError> {
    validate_origin(wire, &limits.origin).map_err(|invalid| IngestError::BadShape(invalid.message))
}

/// Checks the count before any event is validated, then splits the accepted from the refused.
fn collect<'a>(
    origin: Origin<'a>,
    events: impl ExactSizeIterator<Item = Result<Event<'a>, Invalid>>,
    limits: &Limits,
) -> Result<Batch<'a>, IngestError> {
    if events.len() == 0 {
        return Err(IngestError::BadShape("`events` is empty: send at least one event".into()));
    }
    if events.len() > limits.max_events_per_request {
        return Err(IngestError::TooManyEvents { count: events.len(), max: limits.max_events_per_request });
    }
    Batch::split(origin, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str =
        r#"{"level":"info","scope":"s","sessionId":"x","message":"m","timestamp":"2025-01-15T10:30:45.123Z"}"#;

    #[test]
    fn the_batch_head_is_read_in_any_order_unknown_fields_ignored_a_repeated_one_refused() {
        let body =
            format!(r#"{{"app":{{"name":"shop"}},"future":{{"x":[1]}},"events":[{EVENT}],"sdk":{{"version":"1"}}}}"#);
        let Ok(batch) = decode(&body, &Limits::default()) else { panic!("{body} is a valid batch") };
        assert_eq!(batch.origin.app.name.as_deref(), Some("shop"));
        assert_eq!(batch.origin.sdk.version.as_deref(), Some("1"));
        assert_eq!(batch.events.len(), 1);

        let body = format!(r#"{{"app":{{"name":"a"}},"app":{{"name":"b"}},"events":[{EVENT}]}}"#);
        let Err(IngestError::BadShape(message)) = decode(&body, &Limits::default()) else { panic!("{body}") };
        assert!(message.contains("duplicate field `app`"), "{message}");
    }
}
