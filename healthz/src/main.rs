//! `healthz` binary: parse flags, bind the HTTP port, run until SIGINT/SIGTERM.
//! Exit codes: 2 bad flags (before binding), 1 runtime failure.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = healthz::Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("healthz: invalid flags: {e}");
        return ExitCode::from(2);
    }
    runtime::init_tracing(&["healthz", "runtime"]);
    let addr = (config.address, config.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot bind {}:{}: {e}", addr.0, addr.1);
            return ExitCode::from(1);
        }
    };
    let shutdown = runtime::shutdown_on_signal();
    match healthz::run(config, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("healthz failed: {e:#}");
            ExitCode::from(1)
        }
    }
}
