//! What the probes aim at, parsed once at start-up: a DNS server `host:port` and kube2sky's
//! plain-`http://` readiness URL (an `http::Uri`).

use axum::http::Uri;

/// Why a `host:port` is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A `[` without its `]`.
    #[error("unclosed '[' in address")]
    UnclosedBracket,
    /// No `:port` after the host.
    #[error("missing :port (expected host:port)")]
    MissingPort,
    /// Nothing before the `:port`.
    #[error("empty host")]
    EmptyHost,
    /// An IPv6 address without brackets.
    #[error("IPv6 addresses must be written as [addr]:port")]
    BareIpv6,
    /// The port is not a number from 0 to 65535 (as given).
    #[error("invalid port {0:?}")]
    BadPort(String),
}

/// Why a kube2sky URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The scheme is not `http://`.
    #[error("only plain http:// URLs are supported")]
    NotHttp,
    /// The URL carries credentials (`user@…` or `user:password@…`).
    #[error("credentials in the URL are not supported")]
    Credentials,
    /// The URL has no host.
    #[error("missing host")]
    MissingHost,
    /// The `host:port` part is unusable.
    #[error("{0}")]
    Address(#[from] AddressError),
    /// `http::Uri` cannot parse it (its message).
    #[error("not a URL: {0}")]
    Invalid(String),
}

/// Split `host:port` (IPv6 as `[::1]:53`); the port is required.
pub fn split_host_port(s: &str) -> Result<(String, u16), AddressError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(AddressError::UnclosedBracket)?;
        let port = after.strip_prefix(':').ok_or(AddressError::MissingPort)?;
        (host, port)
    } else {
        s.rsplit_once(':').ok_or(AddressError::MissingPort)?
    };
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    if host.contains(':') && !s.starts_with('[') {
        return Err(AddressError::BareIpv6);
    }
    let port: u16 = port
        .parse()
        .map_err(|_| AddressError::BadPort(port.to_string()))?;
    Ok((host.to_string(), port))
}

/// A parsed `http://host[:port][/path]` URL (no TLS, no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// Path and query, starting with `/` (the request target).
    pub path: String,
}

impl HttpTarget {
    /// Parse and check `url`: `http://`, no credentials, a host, a numeric port.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if !url.starts_with("http://") {
            return Err(UrlError::NotHttp);
        }
        let uri: Uri = url
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| UrlError::Invalid(e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(UrlError::NotHttp);
        }
        let authority = uri.authority().ok_or(UrlError::MissingHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::Credentials);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        // What follows the host: nothing, or `:port` (`http::Uri` accepts a non-numeric one).
        let after_host = &authority.as_str()[authority.host().len()..];
        let port = match after_host.strip_prefix(':') {
            None => 80,
            Some(p) => p
                .parse()
                .map_err(|_| AddressError::BadPort(p.to_string()))?,
        };
        let path = match uri.query() {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_string(),
        };
        Ok(Self {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host:` header value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets() {
        let t = HttpTarget::parse("http://127.0.0.1:8081/readiness").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8081, "/readiness")
        );
        assert_eq!(t.host_header(), "127.0.0.1:8081");
        let t = HttpTarget::parse("http://kube2sky").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        assert_eq!(t.host_header(), "kube2sky");
        let t = HttpTarget::parse("http://[::1]:8081/r?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8081));
        assert_eq!(t.host_header(), "[::1]:8081");
        assert_eq!(t.path, "/r?x=1");
        assert!(HttpTarget::parse("http://u:p@host/").is_err());
        assert!(HttpTarget::parse("ftp://host/").is_err());
    }

    #[test]
    fn odd_urls_the_former_parser_also_rejected_or_read_alike() {
        assert!(HttpTarget::parse("https://x/readiness").is_err());
        assert!(HttpTarget::parse("http://:80/").is_err());
        assert!(HttpTarget::parse("http://host:x/").is_err());
        assert!(HttpTarget::parse("http://host/a b").is_err());
        let t = HttpTarget::parse("http://kube2sky?ready").unwrap();
        assert_eq!(t.path, "/?ready");
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            split_host_port("skydns:53").unwrap(),
            ("skydns".to_string(), 53)
        );
        assert_eq!(
            split_host_port("[::1]:1053").unwrap(),
            ("::1".to_string(), 1053)
        );
        assert!(split_host_port(":53").is_err());
        assert!(split_host_port("host:x").is_err());
    }
}
