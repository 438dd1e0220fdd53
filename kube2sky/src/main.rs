//! The kube2sky binary: parse and validate flags (exit 2), bind the healthz port, run until
//! SIGINT/SIGTERM (exit 1 on failure).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use kube2sky::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = Config::parse();
    if let Err(err) = config.validate() {
        eprintln!("kube2sky: {err}");
        return ExitCode::from(2);
    }
    runtime::init_tracing(&["kube2sky"]);
    let addr = SocketAddr::new(config.healthz_bind_address, config.healthz_port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("kube2sky: cannot bind healthz port {addr}: {err}");
            return ExitCode::from(1);
        }
    };
    let shutdown = runtime::shutdown_on_signal();
    match kube2sky::run(config, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("kube2sky failed: {err:#}");
            ExitCode::from(1)
        }
    }
}
