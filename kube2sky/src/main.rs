//! The kube2sky binary: parse and validate flags (exit 2), bind the healthz port, run until
//! SIGINT/SIGTERM (exit 1 on failure).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match kube2sky::Config::parse().validate() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("kube2sky: {err}");
            return ExitCode::from(2);
        }
    };
    service_kit::init_tracing(&["kube2sky"]);
    let listener = match tokio::net::TcpListener::bind(settings.healthz_listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!(
                "kube2sky: cannot bind healthz port {}: {err}",
                settings.healthz_listen
            );
            return ExitCode::from(1);
        }
    };
    let shutdown = service_kit::shutdown_on_signal();
    match kube2sky::run(settings, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("kube2sky failed: {err:#}");
            ExitCode::from(1)
        }
    }
}
