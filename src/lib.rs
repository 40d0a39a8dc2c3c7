//! client-telemetry: the ingest gateway for browser telemetry.
//!
//! The request path is `ingest::handler`; each concern it uses lives in its own module.

pub mod challenge;
pub mod client_assets;
pub mod client_ip;
pub mod event;
pub mod forward;
pub mod health;
pub mod ingest;
pub mod lifecycle;
pub mod observability;
pub mod ratelimit;
pub mod redact;
pub mod scrub;
pub mod server;
pub mod setting;
pub mod settings;
pub mod tls;
pub mod transport;
