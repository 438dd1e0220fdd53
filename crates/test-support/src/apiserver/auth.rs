//! HTTPS and authentication for the test API server: a rustls server configuration (ring
//! provider, the one kube-rs uses here) that asks for client certificates signed by a given CA
//! without demanding them, and the per-request check that the real API server makes — a
//! verified client certificate or a known bearer token, else 401.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Serve HTTPS with this certificate; optionally accept client certificates signed by
/// `client_ca` (which then authenticate the request).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// CA whose client certificates are accepted (the API server's `--client-ca-file`).
    pub client_ca: Option<PathBuf>,
}

/// How a request authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (allowed only while the server demands none, and on `/healthz`,
    /// `/livez`, `/readyz`).
    Anonymous,
    /// A client certificate the TLS handshake verified against the client CA.
    ClientCert,
    /// `Authorization: Bearer <token>` with this token.
    Token(String),
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("anonymous"),
            Identity::ClientCert => f.write_str("x509"),
            Identity::Token(t) => write!(f, "token:{t}"),
        }
    }
}

/// The authenticator: which tokens are valid now (changed at run time to model rotation and
/// revocation) and whether credentials are required at all.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    /// Credentials required (a client CA or at least one token was configured).
    pub required: bool,
    tokens: Mutex<Vec<String>>,
    /// Requests refused with 401, as `"METHOD target"`.
    refused: Mutex<Vec<String>>,
    /// Identity of every request served, in order, as `"<identity> METHOD target"`.
    served: Mutex<Vec<String>>,
}

impl Auth {
    pub(crate) fn new(required: bool, tokens: Vec<String>) -> Auth {
        Auth {
            required,
            tokens: Mutex::new(tokens),
            ..Auth::default()
        }
    }

    pub(crate) fn set_tokens(&self, tokens: Vec<String>) {
        *self.tokens.lock().unwrap_or_else(PoisonError::into_inner) = tokens;
    }

    /// The identity of a request, or `None` (answer 401). `client_cert`: the connection
    /// presented a verified client certificate.
    pub(crate) fn authenticate(
        &self,
        client_cert: bool,
        authorization: Option<&str>,
        path: &str,
    ) -> Option<Identity> {
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let identity = if client_cert {
            Some(Identity::ClientCert)
        } else if let Some(t) = token {
            self.tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|known| known == t)
                .then(|| Identity::Token(t.to_string()))
        } else {
            None
        };
        match identity {
            Some(id) => Some(id),
            None if !self.required || matches!(path, "/healthz" | "/livez" | "/readyz") => {
                Some(Identity::Anonymous)
            }
            None => None,
        }
    }

    pub(crate) fn record(&self, identity: Option<&Identity>, line: &str) {
        let (list, entry) = match identity {
            Some(id) => (&self.served, format!("{id} {line}")),
            None => (&self.refused, line.to_string()),
        };
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() < 1_000_000 {
            list.push(entry);
        }
    }

    pub(crate) fn served(&self) -> Vec<String> {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// The rustls configuration for `tls` (HTTP/1.1 only, as the server speaks nothing else).
pub(crate) fn server_config(tls: &ServerTls) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("read the key {}", tls.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("client CA {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                // Token clients present no certificate; presented ones must verify.
                .allow_unauthenticated()
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("server certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
