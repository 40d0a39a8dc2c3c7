//! `POST /api/client-telemetry`: the ingest route.

mod access;
mod attempt;
mod body;
mod decode;
mod event_log;
mod handler;
mod metrics;
mod origin;
pub mod response;
mod state;

pub use access::{API_KEY_HEADER, Access, AccessConfig, AccessSettings};
pub use attempt::{BATCH_HEADER, SESSION_HEADER};
pub use body::{BodyConfig, BodyLimits, gunzip};
pub use decode::{Batch, Rejection, decode_body};
pub use handler::ingest;
pub use metrics::IngestMetrics;
pub use origin::{OriginConfig, OriginSettings};
pub use state::IngestState;

pub const PATH: &str = "/api/client-telemetry";
