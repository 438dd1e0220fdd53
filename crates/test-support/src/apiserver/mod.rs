//! A Kubernetes test API server for kube2sky's tests: serves `services`, `endpoints`, `pods`,
//! `namespaces` (core v1) and `endpointslices` (`discovery.k8s.io/v1`) over plain HTTP on
//! 127.0.0.1 with list (paging, selectors), get and watch (resume from a resourceVersion,
//! bookmarks, 410 Expired), create/replace/delete (POST, PUT, DELETE with a JSON body), plus the
//! discovery documents `kubectl` needs. Tests drive it with [`TestApiServer::apply`] /
//! [`TestApiServer::delete`] and fault injection ([`TestApiServer::expire_watches`],
//! [`TestApiServer::drop_watches`], [`TestApiServer::reset_history`]).
//!
//! [`TestApiServer::start_with`] serves HTTPS instead ([`ServerTls`]) and enforces
//! authentication as the real server does: every request but `/healthz`, `/livez` and
//! `/readyz` needs a client certificate signed by the client CA or a bearer token in
//! [`Options::tokens`] ([`TestApiServer::set_tokens`] rotates them), else 401 Unauthorized.
//! A client certificate that does not verify (wrong CA, expired) fails the TLS handshake.
//!
//! Behaviour worth knowing:
//! * A watch from resourceVersion "0" or without one starts with synthetic ADDED events for the
//!   current state (as the real server does); with `sendInitialEvents=true` those are followed by
//!   a BOOKMARK annotated `k8s.io/initial-events-end`.
//! * A watch from a resourceVersion older than the compaction point, or newer than the current
//!   one (a client that outlived a [`TestApiServer::start_on`] restart), gets HTTP 200 with one
//!   `ERROR` 410 Expired event and is closed, so kube-rs relists.
//! * Every [`TestApiServer::apply`] bumps the resourceVersion and emits an event, even when the
//!   object did not change.
//! * Watches that allowed bookmarks get one every 5 seconds as well as on
//!   [`TestApiServer::bookmark`].

mod auth;
mod http;
pub mod kubeconfig;
mod resources;
mod selector;
mod store;
mod util;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use auth::Auth;
pub use auth::{Identity, ServerTls};
use store::Store;

/// How [`TestApiServer::start_with`] serves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Address to bind; 127.0.0.1 on a free port when `None`.
    pub addr: Option<SocketAddr>,
    /// HTTPS (and client certificates) instead of plain HTTP.
    pub tls: Option<ServerTls>,
    /// Bearer tokens accepted. With tokens or a client CA, unauthenticated requests get 401.
    pub tokens: Vec<String>,
}

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often watches that allowed bookmarks get one without being asked.
const AUTO_BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// A running test API server. Dropping it stops serving (like [`TestApiServer::shutdown`], but
/// without waiting).
pub struct TestApiServer {
    store: Arc<Store>,
    auth: Arc<Auth>,
    port: u16,
    https: bool,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestApiServer {
    /// Serve on a free port of 127.0.0.1. The first change gets resourceVersion 2 (an empty
    /// list reports "1").
    pub async fn start() -> anyhow::Result<TestApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0 for the test API server")?;
        Self::serve(listener, 1, &Options::default())
    }

    /// Serve as `options` say: on its address, over HTTPS with [`ServerTls`], demanding
    /// credentials when a client CA or tokens are given.
    pub async fn start_with(options: Options) -> anyhow::Result<TestApiServer> {
        let addr = options
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr} for the test API server"))?;
        Self::serve(listener, 1, &options)
    }

    /// Serve on `port` of 127.0.0.1 (retrying for up to 5 s while the port is still taken, e.g.
    /// by a server on that port that is being dropped). The new server starts empty, with its
    /// resourceVersion counter above every resourceVersion handed out so far in this process, so
    /// clients of a previous server on this port get 410 Expired and relist.
    pub async fn start_on(port: u16) -> anyhow::Result<TestApiServer> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("bind 127.0.0.1:{port} for the test API server"))
                }
            }
        };
        Self::serve(
            listener,
            store::high_water().max(1).saturating_add(1),
            &Options::default(),
        )
    }

    fn serve(
        listener: TcpListener,
        initial_rv: u64,
        options: &Options,
    ) -> anyhow::Result<TestApiServer> {
        let port = listener
            .local_addr()
            .context("test API server address")?
            .port();
        let tls = match &options.tls {
            Some(tls) => Some(TlsAcceptor::from(auth::server_config(tls)?)),
            None => None,
        };
        let required = options.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
            || !options.tokens.is_empty();
        let auth = Arc::new(Auth::new(required, options.tokens.clone()));
        let store = Arc::new(Store::new(initial_rv));
        let cancel = CancellationToken::new();
        let https = tls.is_some();
        let task = tokio::spawn(accept_loop(
            listener,
            Shared {
                store: store.clone(),
                auth: auth.clone(),
                port,
            },
            tls,
            cancel.clone(),
        ));
        Ok(TestApiServer {
            store,
            auth,
            port,
            https,
            cancel,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Replace the accepted bearer tokens (rotation: give old and new, later only the new).
    pub fn set_tokens(&self, tokens: &[&str]) {
        self.auth
            .set_tokens(tokens.iter().map(|t| t.to_string()).collect());
    }

    /// Every request served, as `"<identity> METHOD target"` with identity `anonymous`,
    /// `x509` or `token:<token>` (see [`Identity`]).
    pub fn authenticated_requests(&self) -> Vec<String> {
        self.auth.served()
    }

    /// Requests refused with 401 Unauthorized, as `"METHOD target"`.
    pub fn unauthorized_requests(&self) -> Vec<String> {
        self.auth.refused()
    }

    /// The port the fake API server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Create or replace an object. apiVersion + kind + metadata.namespace + metadata.name
    /// identify it (a namespaced object without a namespace goes to "default"; the namespace of
    /// a cluster-scoped kind is dropped). Assigns metadata.uid (kept on replace; a uid given on
    /// create is kept), metadata.resourceVersion (global counter, string),
    /// metadata.creationTimestamp (kept on replace), metadata.generation (bumped when anything
    /// outside metadata and status changed); emits ADDED or MODIFIED to matching watches.
    /// Returns the stored object.
    ///
    /// # Panics
    /// When `obj` has no apiVersion, kind or metadata.name (a bug in the test).
    pub fn apply(&self, obj: serde_json::Value) -> serde_json::Value {
        self.store.apply(obj)
    }

    /// Delete; emits DELETED (the last state with a new resourceVersion). Returns whether it
    /// existed. `namespace` is ignored for cluster-scoped kinds.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        self.store.delete(api_version, kind, namespace, name)
    }

    /// Every open watch receives `{"type":"ERROR","object":{Status 410 Expired}}` (after the
    /// events already queued for it) and is closed; history is compacted so a watch resuming
    /// from any older resourceVersion gets 410 as well.
    pub fn expire_watches(&self) {
        self.store.expire_watches();
    }

    /// Abruptly close every open watch connection (no final event, no terminating chunk).
    pub fn drop_watches(&self) {
        self.store.drop_watches();
    }

    /// Send a BOOKMARK event (current resourceVersion) to every watch that asked
    /// `allowWatchBookmarks=true`.
    pub fn bookmark(&self) {
        self.store.bookmark();
    }

    /// Simulate an API server restored from backup: the next change gets resourceVersion
    /// `next_rv` (lists report `next_rv - 1`), all history is forgotten and every watch is
    /// expired as in [`TestApiServer::expire_watches`]. Stored objects are kept as they are.
    pub fn reset_history(&self, next_rv: u64) {
        self.store.reset_history(next_rv);
    }

    /// Request lines received, e.g. `"GET /api/v1/services?limit=500"`.
    pub fn requests(&self) -> Vec<String> {
        self.store.requests()
    }

    /// Number of currently open watch streams.
    pub fn open_watches(&self) -> usize {
        self.store.open_watches()
    }

    /// Stop serving, close all connections and release the port.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What every connection task needs.
#[derive(Clone)]
struct Shared {
    store: Arc<Store>,
    auth: Arc<Auth>,
    port: u16,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Shared,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    let mut bookmarks = tokio::time::interval_at(
        tokio::time::Instant::now() + AUTO_BOOKMARK_INTERVAL,
        AUTO_BOOKMARK_INTERVAL,
    );
    bookmarks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = bookmarks.tick() => shared.store.bookmark(),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        let Some(tls) = tls else {
                            serve_connection(stream, false, shared).await;
                            return;
                        };
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let client_cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .is_some_and(|c| !c.is_empty());
                                serve_connection(stream, client_cert, shared).await;
                            }
                            Ok(Err(e)) => {
                                tracing::info!("test API server: TLS handshake with {peer}: {e}");
                            }
                            Err(_) => tracing::info!("test API server: TLS handshake with {peer} timed out"),
                        }
                    });
                }
                Err(e) => {
                    tracing::debug!("test API server accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    shared.store.drop_watches();
    connections.shutdown().await;
}

/// Serve HTTP/1.1 on one connection; `client_cert`: it presented a verified certificate.
async fn serve_connection<I>(io: I, client_cert: bool, shared: Shared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            let line = format!(
                "{} {}",
                req.method(),
                req.uri()
                    .path_and_query()
                    .map_or_else(|| req.uri().path(), |p| p.as_str())
            );
            let authorization = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let identity = shared
                .auth
                .authenticate(client_cert, authorization, req.uri().path());
            shared.auth.record(identity.as_ref(), &line);
            if identity.is_none() {
                return Ok::<_, Infallible>(http::unauthorized());
            }
            Ok::<_, Infallible>(http::handle(shared.store, shared.port, req).await)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}
