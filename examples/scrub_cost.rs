//! Cost of PII scrubbing per event, on the benchmark's event shape.
//!
//! `cargo run --release --example scrub_cost` prints ns per event for a clean event (the common
//! case, checked to take the scrubber's clean path) and for one that carries PII of several kinds.

use std::{hint::black_box, time::Instant};

use client_telemetry::{
    event::{Event, parse_event},
    scrub::Scrubber,
    settings::Settings,
};
use serde_json::json;

fn event_json(message: &str, context: serde_json::Value) -> String {
    json!({
        "level": "info", "scope": "checkout-form", "sessionId": "550e8400-e29b-41d4-a716-446655440000",
        "message": message, "timestamp": "2025-01-15T10:30:45.123Z", "requestId": "request-xyz789",
        "context": context,
    })
    .to_string()
}

/// Nanoseconds per event, over fresh copies (scrubbing mutates), in batches small enough to stay
/// in cache as a just-parsed request does.
fn ns_per_event(scrubber: &Scrubber, event: &Event<'_>, rounds: usize) -> f64 {
    const BATCH: usize = 500;
    let mut elapsed = std::time::Duration::ZERO;
    let mut redactions = 0;
    for _ in 0..rounds / BATCH {
        let mut copies: Vec<Event<'_>> = (0..BATCH).map(|_| event.clone()).collect();
        let started = Instant::now();
        for copy in &mut copies {
            redactions += scrubber.scrub_event(black_box(copy)).total();
        }
        elapsed += started.elapsed();
        drop(black_box(copies)); // outside the measurement: freeing is not scrubbing
    }
    black_box(redactions);
    elapsed.as_nanos() as f64 / (rounds / BATCH * BATCH) as f64
}

fn main() {
    let settings = Settings::from_vars(Vec::new()).expect("defaults are valid");
    let scrubber = Scrubber::new(&settings.scrub).expect("built-in patterns compile");
    let clean = event_json(
        "event 7: user clicked the checkout button",
        json!({ "action": "button_click", "attempt": 2, "ratio": 0.5, "ok": true, "tags": ["a", "b"], "cart": { "items": 3 } }),
    );
    let with_pii = event_json(
        "payment for jane.doe@example.com failed: card 4111 1111 1111 1111 from 203.0.113.42",
        json!({ "password": "hunter2", "phone": "+49 151 23456789", "url": "https://x.example/cb?token=a1b2c3d4e5f6", "attempt": 2 }),
    );
    let rounds = 200_000;
    for (name, json) in [("clean", &clean), ("with_pii", &with_pii)] {
        let event = parse_event(json, &settings.limits).expect("valid event");
        // The clean event must measure the clean path, not a look-alike sent down the exact one.
        assert_eq!(scrubber.takes_clean_path(&event), name == "clean", "{name} event: wrong path");
        ns_per_event(&scrubber, &event, rounds / 10); // warm-up
        let ns = (0..5).map(|_| ns_per_event(&scrubber, &event, rounds)).fold(f64::INFINITY, f64::min);
        println!("scrub_ns_per_event{{event=\"{name}\"}} {ns:.0}");
    }
}
