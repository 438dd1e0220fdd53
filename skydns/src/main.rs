//! skydns entry point: parse flags, init tracing, bind, run until SIGINT/SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = skydns::Config::parse();
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skydns: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    service_kit::init_tracing(&["skydns"]);
    let listeners = match skydns::Listeners::bind(&settings).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skydns: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let shutdown = service_kit::shutdown_on_signal();
    match skydns::run(settings, listeners, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skydns: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
