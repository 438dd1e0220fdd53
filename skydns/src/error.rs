//! Typed errors of the skydns library.

/// A flag that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl ConfigError {
    pub fn new(flag: &'static str, value: &str, reason: &'static str) -> Self {
        ConfigError {
            flag,
            value: value.to_string(),
            reason,
        }
    }
}

/// Why forwarding a question upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream nameservers configured")]
    NoUpstreams,
    #[error("all upstreams failed: {0}")]
    AllFailed(String),
}
