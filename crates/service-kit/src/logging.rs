//! Tracing initialisation: `RUST_LOG` if set, else `info` for our crates and `warn` elsewhere;
//! ANSI colours only when stdout is a terminal.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `crates` are the targets logged at `info` by default.
/// Safe to call twice (the second call does nothing).
pub fn init_tracing(crates: &[&str]) {
    let default = std::iter::once("warn".to_string())
        .chain(crates.iter().map(|c| format!("{c}=info")))
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(colour())
        .try_init();
}

/// Colour only on a terminal (not under `docker logs`, kubectl logs or a file), and never with
/// `NO_COLOR` set (<https://no-color.org>). The subscriber writes to stdout.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}
