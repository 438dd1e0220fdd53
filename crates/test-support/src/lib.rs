//! Test harness shared by the workspace's tests: real etcd processes on free loopback ports
//! (`etcd`), DNS query helpers over UDP and TCP (`dns`), and a Kubernetes test API server with
//! object builders (`apiserver`, `objects`).

pub mod apiserver;
pub mod dns;
pub mod etcd;
pub mod http;
pub mod objects;
pub mod tls;
pub mod upstream;

pub use apiserver::TestApiServer;
pub use etcd::EtcdProcess;

/// A free TCP port on 127.0.0.1 (bound and released; good enough for test processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Log test output once per process (RUST_LOG honoured).
pub fn init_test_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Poll `check` every 20 ms until it returns `Some`, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
