//! Tracing initialisation: `RUST_LOG` if set, else `info` for our crates and `warn` elsewhere.

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
        .try_init();
}
