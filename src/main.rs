//! Start-up only: the command line, then settings → metrics → logs → server; exit 2 on bad
//! configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client_telemetry::{
    observability::{Metrics, init_logs},
    server,
    settings::{self, Settings},
};

/// Requests allocate on workers and free on the log writer and exporter threads; mimalloc handles
/// that cross-thread traffic better than glibc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BUILD_GIT_COMMIT"), ")");

/// Ingest gateway for browser telemetry. Configured by CLIENT_TELEMETRY_* and OTEL_* variables and
/// an optional file (CLIENT_TELEMETRY_CONFIG); see docs/configuration.md.
#[derive(Parser)]
#[command(name = "client-telemetry", version = VERSION)]
struct Cli {
    /// What to do; without one, serve.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Check the configuration and print the effective settings, secrets redacted; exit 2 if invalid.
    CheckConfig {
        /// Print the configuration reference (a Markdown table of every setting) instead.
        #[arg(long)]
        reference: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::CheckConfig { reference: true } => {
            print!("{}", settings::reference_table());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { reference: false } => match load() {
            Ok(settings) => {
                for (setting, instead) in &settings.deprecated {
                    eprintln!("client-telemetry: deprecated setting {setting}: {instead}");
                }
                for (name, value) in &settings.effective {
                    println!("{name}={value}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

fn load() -> Result<Settings, ExitCode> {
    Settings::from_env().map_err(|error| {
        eprintln!("client-telemetry: {error}");
        ExitCode::from(2)
    })
}

fn serve() -> ExitCode {
    let settings = match load() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let metrics = Metrics::new();
    let (logs, log_writer) = init_logs(settings.log.level, settings.log.queue_bytes, &metrics);
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
