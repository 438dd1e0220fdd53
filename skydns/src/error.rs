//! Typed errors of the skydns library.

/// A flag that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(flag: &'static str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            flag,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Why forwarding a question upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream nameservers configured")]
    NoUpstreams,
    #[error("every upstream of the route loops back to us")]
    NoUsableUpstreams,
    #[error("forwarding loop: our probe came back through {0}")]
    Loop(std::net::SocketAddr),
    #[error("all upstreams failed: {0}")]
    AllFailed(String),
}

impl ForwardError {
    /// Metric label and log cause.
    pub fn label(&self) -> &'static str {
        match self {
            ForwardError::NoUpstreams => "no_upstreams",
            ForwardError::NoUsableUpstreams => "no_usable_upstreams",
            ForwardError::Loop(_) => "loop",
            ForwardError::AllFailed(_) => "all_failed",
        }
    }
}
