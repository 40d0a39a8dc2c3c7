//! What the service tells its operators: Prometheus metrics and JSON logs.

mod logging;
mod metrics;

#[cfg(test)]
pub use logging::Captured;
pub use logging::{Batch, LogConfig, LogSettings, LogWriter, Logs, init_logs, init_logs_to, rfc3339_now};
pub use metrics::Metrics;
