//! What the service tells its operators: Prometheus metrics and JSON logs.

mod logging;
mod metrics;

pub use logging::{LogWriter, Logs, append_to_batch, init_logs, init_logs_to};
pub use metrics::Metrics;
