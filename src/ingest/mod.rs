//! `POST /api/client-telemetry`: the ingest route.

mod access;
mod attempt;
mod body;
mod decode;
mod event_log;
mod handler;
pub mod response;
mod state;

pub use access::{API_KEY_HEADER, Access, AccessConfig, AccessSettings};
pub use attempt::{BATCH_HEADER, SESSION_HEADER};
pub use body::{BodyConfig, BodyLimits, gunzip};
pub use decode::{Batch, Rejection, decode_body};
pub use handler::ingest;
pub use state::IngestState;

use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

pub const PATH: &str = "/api/client-telemetry";

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Now, as RFC 3339 UTC with milliseconds (the format of every `ts` in the logs).
pub fn rfc3339_now() -> String {
    OffsetDateTime::now_utc().format(RFC3339_MILLIS).expect("a UTC time always formats")
}
