//! Typed errors of the skydns library.

/// A flag that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct ConfigError {
    /// The flag's name (`--ttl`).
    pub flag: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// An error for `flag` given `value`.
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
    /// The name's route has no upstream nameservers.
    #[error("no upstream nameservers configured")]
    NoUpstreams,
    /// Every upstream of the route is an address of ours.
    #[error("every upstream of the route loops back to us")]
    NoUsableUpstreams,
    /// Our loop-detection probe came back to us, through this upstream.
    #[error("forwarding loop: our probe came back through {0}")]
    Loop(std::net::SocketAddr),
    /// No upstream answered (why, for the log).
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
