//! The ingest routes: `POST /api/client-telemetry` (the native batch), `/v1/logs` (OTLP/HTTP logs)
//! and `/collect` (Grafana Faro), one request path for all three (`handler`), each format only
//! decoding its body (`formats`).

mod access;
mod attempt;
mod body;
mod event_log;
mod formats;
mod handler;
mod metrics;
mod origin;
pub mod response;
mod state;

pub use access::{API_KEY_HEADER, APP_KEY_SEGMENT, Access, AccessConfig, AccessSettings};
pub use attempt::{BATCH_HEADER, SESSION_HEADER};
pub use body::{BodyConfig, BodyLimits, announced_length, gunzip};
pub use formats::{Batch, Format, FormatsConfig, Rejection, faro, native::decode_body, otlp};
pub use handler::{ingest, ingest_faro, ingest_otlp};
pub use metrics::IngestMetrics;
pub use origin::{OriginConfig, OriginSettings};
pub use state::IngestState;

pub const PATH: &str = "/api/client-telemetry";
