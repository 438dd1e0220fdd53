//! Process plumbing shared by the three programs: one cancellation token for shutdown
//! (`shutdown`), tracing with a sane default filter (`logging`), and a small HTTP surface for
//! `/metrics` and readiness (`http`).

pub mod http;
pub mod logging;
pub mod shutdown;

pub use http::{serve_http, Readiness};
pub use logging::init_tracing;
pub use shutdown::shutdown_on_signal;
pub use tokio_util::sync::CancellationToken;
