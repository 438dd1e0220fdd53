//! Typed errors. `Error::label` names each variant for the `kube2sky_etcd_errors_total` metric.

/// A flag that failed validation (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag}: {reason}")]
pub struct ConfigError {
    /// The flag's name (`--ttl`).
    pub flag: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// Why starting or running kube2sky failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable Kubernetes client configuration (kubeconfig, in-cluster or URL).
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(String),
    /// A Kubernetes API request failed.
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// An etcd request failed.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// An etcd request took longer than `--etcd-mutation-timeout`.
    #[error("etcd request timed out")]
    EtcdTimeout,
    /// A fenced transaction failed its leader check: the election key is gone.
    #[error("etcd transaction refused: this replica is no longer the leader")]
    NotLeader,
    /// The healthz/metrics HTTP server failed.
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
