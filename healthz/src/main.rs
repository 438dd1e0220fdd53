//! `healthz` binary: parse and validate flags (exit 2, before binding), bind the HTTP port, run
//! until SIGINT/SIGTERM (exit 1 on failure).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = match healthz::Config::parse().validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("healthz: invalid flags: {e}");
            return ExitCode::from(2);
        }
    };
    service_kit::init_tracing(&["healthz", "service_kit"]);
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot bind {}: {e}", settings.listen);
            return ExitCode::from(1);
        }
    };
    let shutdown = service_kit::shutdown_on_signal();
    match healthz::run(settings, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("healthz failed: {e:#}");
            ExitCode::from(1)
        }
    }
}
