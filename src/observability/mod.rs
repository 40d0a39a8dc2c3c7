//! What the service tells its operators: Prometheus metrics and JSON logs.

mod logging;
mod metrics;

pub use logging::{Logs, init_logs};
pub use metrics::Metrics;
