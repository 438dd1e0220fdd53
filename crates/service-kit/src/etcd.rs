//! etcd client connection options shared by kube2sky and skydns: endpoints, TLS client
//! certificates (PEM files) and username/password, with keep-alives so a dead server is noticed.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// How to reach etcd securely. Empty by default (plain HTTP, no auth).
#[derive(Debug, Clone, Default)]
pub struct EtcdSecurity {
    /// CA certificate (PEM) that signed the server's certificate.
    pub ca_cert: Option<String>,
    /// Client certificate (PEM).
    pub cert: Option<String>,
    /// Client key (PEM).
    pub key: Option<String>,
    /// Username and password for etcd's authentication.
    pub auth: Option<(String, String)>,
}

/// Why etcd security settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum EtcdSecurityError {
    /// A client certificate without its key, or a key without its certificate.
    #[error("give both the client certificate and its key, or neither")]
    HalfIdentity,
    /// A username without a password, or a password without a username.
    #[error("give both username and password, or neither")]
    HalfAuth,
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file: "CA certificate", "client certificate" or "client key".
        what: &'static str,
        /// The file's path.
        path: String,
        /// The read error.
        source: std::io::Error,
    },
}

/// Why connecting to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdConnectError {
    /// The TLS or auth settings are unusable.
    #[error("etcd TLS/auth: {0}")]
    Security(#[from] EtcdSecurityError),
    /// The etcd client failed (connecting, or authenticating with the username and password).
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
}

impl EtcdSecurity {
    /// Build from optional flags, checking pairs.
    pub fn new(
        ca_cert: Option<String>,
        cert: Option<String>,
        key: Option<String>,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<Self, EtcdSecurityError> {
        if cert.is_some() != key.is_some() {
            return Err(EtcdSecurityError::HalfIdentity);
        }
        let auth = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err(EtcdSecurityError::HalfAuth),
        };
        Ok(EtcdSecurity {
            ca_cert,
            cert,
            key,
            auth,
        })
    }

    /// Whether TLS is configured.
    pub fn tls(&self) -> bool {
        self.ca_cert.is_some() || self.cert.is_some()
    }

    /// Connect options with these settings, the given request timeout and keep-alives.
    pub fn connect_options(
        &self,
        request_timeout: Option<Duration>,
    ) -> Result<ConnectOptions, EtcdSecurityError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(t) = request_timeout {
            opts = opts.with_timeout(t);
        }
        if let Some((user, pass)) = &self.auth {
            opts = opts.with_user(user.clone(), pass.clone());
        }
        if self.tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_cert {
                tls = tls.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
                ));
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }

    /// Connect to `endpoints`.
    pub async fn connect(
        &self,
        endpoints: &[String],
        request_timeout: Option<Duration>,
    ) -> Result<Client, EtcdConnectError> {
        let opts = self.connect_options(request_timeout)?;
        Ok(Client::connect(endpoints, Some(opts)).await?)
    }
}

fn read(what: &'static str, path: &str) -> Result<Vec<u8>, EtcdSecurityError> {
    std::fs::read(path).map_err(|source| EtcdSecurityError::Read {
        what,
        path: path.to_string(),
        source,
    })
}
