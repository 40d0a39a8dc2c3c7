//! The body path of the ingest route after the socket (see `properties::ingest_body`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::ingest_body(data));
