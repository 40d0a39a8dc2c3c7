//! client-telemetry: the ingest gateway for browser telemetry.
//!
//! The request path is `ingest::handler`; each concern it uses lives in its own module.
//! Public: what the binary, the integration tests, the examples and the fuzz targets use.

mod challenge;
mod client_assets;
pub mod client_ip;
pub mod event;
mod forward;
mod health;
pub mod ingest;
mod lifecycle;
pub mod observability;
pub mod ratelimit;
mod redact;
pub mod scrub;
pub mod server;
mod setting;
pub mod settings;
mod tls;
mod transport;
