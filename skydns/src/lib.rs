//! skydns: a SkyDNS-compatible DNS server. It answers the cluster zone from an in-memory index
//! that one etcd watch feeds (`feed`, `index`), composes answers per the record contract
//! (`answer`) and encodes them (`wire`), forwards everything else upstream with a cache
//! (`forward`), and owns its sockets (`udp`, `tcp`). `run` is what `main` and the tests call.

pub mod answer;
pub mod config;
pub mod error;
pub mod feed;
pub mod forward;
pub mod handler;
pub mod index;
pub mod metrics;
pub mod reply_cache;
pub mod tcp;
pub mod udp;
pub mod wire;

use std::sync::Arc;

use axum::routing::get;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use config::{Config, Settings};

/// The sockets skydns serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// Bind the addresses from `settings`.
    pub async fn bind(settings: &Settings) -> std::io::Result<Listeners> {
        Ok(Listeners {
            udp: UdpSocket::bind(settings.addr).await?,
            tcp: TcpListener::bind(settings.addr).await?,
            http: TcpListener::bind(settings.metrics_addr).await?,
        })
    }
}

/// Serve until `shutdown` is cancelled.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(metrics::Metrics::new());
    let index = Arc::new(index::Index::new());
    let params = answer::ZoneParams::new(
        settings.zone.clone(),
        settings.ttl,
        settings.min_ttl,
        &settings.hostmaster,
    );
    let forwarder = forward::Forwarder::new(
        settings.upstreams.clone(),
        settings.rtimeout,
        settings.rcache,
        settings.rcache_ttl,
    );
    let handler = Arc::new(handler::Handler {
        params,
        index: index.clone(),
        forwarder,
        metrics: metrics.clone(),
        recursion: settings.recursion,
        udp_size: settings.udp_size,
        reply_cache: reply_cache::ReplyCache::new(settings.answer_cache),
    });
    tracing::info!(
        dns = %listeners.udp.local_addr()?,
        http = %listeners.http.local_addr()?,
        domain = settings.zone.domain(),
        upstreams = ?settings.upstreams,
        "skydns serving"
    );

    let ready_index = index.clone();
    let router = runtime::http::metrics_router(metrics.registry.clone()).route(
        "/readiness",
        get(move || {
            let ready = ready_index.load().ready;
            async move {
                let r = runtime::Readiness::new();
                r.set(ready);
                r.response()
            }
        }),
    );

    let feed = tokio::spawn(feed::run_feed(
        settings.clone(),
        index,
        metrics,
        shutdown.clone(),
    ));
    let (udp_socket, threads) = (listeners.udp.into_std()?, settings.udp_thread_count());
    let (udp_handler, udp_stop, rt) = (
        handler.clone(),
        shutdown.clone(),
        tokio::runtime::Handle::current(),
    );
    let udp = tokio::task::spawn_blocking(move || {
        if let Err(e) = udp::serve_udp_threads(udp_socket, udp_handler, threads, rt, udp_stop) {
            tracing::error!(error = %e, "udp threads failed");
        }
    });
    let tcp = tokio::spawn(tcp::serve_tcp(
        listeners.tcp,
        handler,
        settings.tcp_max_conns,
        settings.tcp_idle_timeout,
        shutdown.clone(),
    ));
    let http = tokio::spawn(runtime::serve_http(
        listeners.http,
        router,
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    let _ = tokio::join!(feed, udp, tcp);
    let _ = http.await;
    tracing::info!("skydns stopped");
    Ok(())
}
