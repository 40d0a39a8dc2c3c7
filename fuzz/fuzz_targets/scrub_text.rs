//! The scrubber on arbitrary text (see `properties::scrub_text`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::scrub_text(data));
