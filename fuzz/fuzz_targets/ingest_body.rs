//! The body path of the ingest route after the socket: gzip (when the bytes start with its magic
//! number), UTF-8, the batch or single-event decoder with its limits, then the scrubber.
#![no_main]

use std::{borrow::Cow, sync::OnceLock};

use client_telemetry::{
    ingest::{decode_body, gunzip},
    scrub::Scrubber,
    settings::Settings,
};
use libfuzzer_sys::fuzz_target;

fn setup() -> &'static (Settings, Scrubber) {
    static SETUP: OnceLock<(Settings, Scrubber)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let settings = Settings::from_vars(Vec::new()).expect("defaults are valid");
        let scrubber = Scrubber::new(&settings.scrub).expect("built-in patterns compile");
        (settings, scrubber)
    })
}

fuzz_target!(|data: &[u8]| {
    let (settings, scrubber) = setup();
    let limits = &settings.limits;
    let body = if data.starts_with(&[0x1f, 0x8b]) {
        match gunzip(data, limits) {
            Ok(inflated) => Cow::Owned(inflated),
            Err(_) => return,
        }
    } else {
        Cow::Borrowed(data)
    };
    assert!(body.len() <= limits.max_body_bytes.max(data.len()));
    let Ok(mut batch) = decode_body(&body, limits) else { return };
    assert!(!batch.events.is_empty());
    assert!(batch.events.len() + batch.rejected.len() <= limits.max_events_per_request);
    for event in &mut batch.events {
        assert!(event.message.len() <= limits.max_message_bytes);
        assert!(!event.message.contains('\0') && !event.scope.contains('\0'));
        scrubber.scrub_event(event);
    }
});
