//! Process plumbing shared by the three programs: one cancellation token for shutdown
//! (`shutdown`), tracing with a sane default filter (`logging`), and a small HTTP surface for
//! `/metrics` and readiness (`http`), and etcd
//! connection security (TLS, auth) shared by kube2sky and skydns (`etcd`), the one duration
//! syntax of every flag (`duration`) and capped exponential backoff for retry loops (`backoff`).

pub mod backoff;
pub mod duration;
pub mod etcd;
pub mod http;
pub mod logging;
pub mod shutdown;

pub use etcd::EtcdSecurity;
pub use http::{serve_http, Readiness};
pub use logging::init_tracing;
pub use shutdown::shutdown_on_signal;
pub use tokio_util::sync::CancellationToken;
