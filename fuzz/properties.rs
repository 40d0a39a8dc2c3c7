//! The properties the fuzz targets check, shared by the cargo-fuzz targets (nightly, libFuzzer) and
//! by `tests/fuzz_properties.rs` (stable, in CI: the seeds plus bounded mutations of them).

// Each fuzz target uses one of the two.
#![allow(dead_code)]

use std::{borrow::Cow, sync::OnceLock};

use client_telemetry::{
    ingest::{decode_body, gunzip},
    scrub::{Kind, Redactions, Scrubber},
    settings::Settings,
};

fn setup() -> &'static (Settings, Scrubber) {
    static SETUP: OnceLock<(Settings, Scrubber)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let settings = Settings::from_vars(Vec::new()).expect("defaults are valid");
        let scrubber = Scrubber::new(&settings.scrub).expect("built-in patterns compile");
        (settings, scrubber)
    })
}

/// The body path of the ingest route after the socket: gzip (when the bytes start with its magic
/// number), UTF-8, the batch or single-event decoder with its limits, then the scrubber. Never
/// panics, and what it accepts respects the limits.
pub fn ingest_body(data: &[u8]) {
    let (settings, scrubber) = setup();
    let (limits, body_limits) = (&settings.limits, &settings.body);
    let body = if data.starts_with(&[0x1f, 0x8b]) {
        match gunzip(data, body_limits) {
            Ok(inflated) => Cow::Owned(inflated),
            Err(_) => return,
        }
    } else {
        Cow::Borrowed(data)
    };
    assert!(body.len() <= body_limits.max_body_bytes.max(data.len()));
    let Ok(mut batch) = decode_body(&body, limits) else { return };
    assert!(!batch.events.is_empty());
    assert!(batch.events.len() + batch.rejected.len() <= limits.max_events_per_request);
    for event in &mut batch.events {
        assert!(event.message.len() <= limits.max_message_bytes);
        assert!(!event.message.contains('\0') && !event.scope.contains('\0'));
        scrubber.scrub_event(event);
    }
}

/// One of each shape the scrubber must catch, each alone on a line: no pattern crosses a line break,
/// so whatever text surrounds it, it is redacted.
const SECRET_LINES: &[&str] = &[
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "4111  1111  1111  1111",
    "4.111111111111111e15",
    "jürgen.müller@bücher.de",
    "jane.doe%40example.com",
    "Authorization: Token abcdef",
    "bearer abcdefghijklmnopqrstuvwx",
    "Cookie: sid=abc; theme=dark",
    "password=hunter2",
];

/// The scrubber on arbitrary text: never panics, copies only when it redacts, leaves a marker
/// for every redaction it counts, and redacts a known secret put on its own line in the text.
pub fn scrub_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let secret = SECRET_LINES[data.len() % SECRET_LINES.len()];
    let mut redactions = Redactions::default();
    let with_secret = format!("{text}\n{secret}\n{text}");
    let scrubbed = setup().1.scrub_text(&with_secret, &mut redactions);
    assert!(!scrubbed.contains(&format!("\n{secret}\n")), "{secret:?} survived in {with_secret:?}");

    let mut redactions = Redactions::default();
    let scrubbed = setup().1.scrub_text(text, &mut redactions);
    match &scrubbed {
        Cow::Borrowed(same) => assert_eq!((*same, redactions.total()), (text, 0)),
        Cow::Owned(out) => {
            assert!(redactions.total() > 0);
            let markers: usize = Kind::ALL.iter().map(|k| out.matches(k.marker()).count()).sum();
            assert!(markers >= redactions.total() as usize, "{text:?} -> {out:?}");
        }
    }
}
