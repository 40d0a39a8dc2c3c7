//! Start-up only: settings → metrics → logs → server; exit 2 on bad configuration.

use std::process::ExitCode;

use client_telemetry::{
    observability::{Metrics, init_logs},
    server,
    settings::Settings,
};

/// Requests allocate on workers and free on the log writer and exporter threads; mimalloc handles
/// that cross-thread traffic better than glibc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("client-telemetry: {error}");
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::new();
    let (logs, log_writer) = init_logs(settings.log_level, settings.log_queue_bytes, &metrics);
    let result = actix_web::rt::System::new().block_on(server::run(settings, metrics, logs.clone()));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            slog::crit!(logs.service, "cannot serve"; "error" => %error);
            ExitCode::FAILURE
        }
    };
    drop(logs);
    log_writer.finish(); // every queued line is written before exit
    code
}
