//! Typed errors. `Error::label` names each variant for the `kube2sky_etcd_errors_total` metric.

/// A flag that failed validation (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub reason: String,
}

/// Why starting or running kube2sky failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(String),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd request timed out")]
    EtcdTimeout,
    #[error("etcd transaction refused: this replica is no longer the leader")]
    NotLeader,
    #[error("healthz server: {0}")]
    Http(#[source] std::io::Error),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::KubeConfig(_) => "kube_config",
            Error::Kube(_) => "kube",
            Error::Etcd(_) => "etcd",
            Error::EtcdTimeout => "timeout",
            Error::NotLeader => "not_leader",
            Error::Http(_) => "http",
        }
    }
}
