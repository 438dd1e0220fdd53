//! skydns: a SkyDNS-compatible DNS server. It answers the cluster zone from an in-memory index
//! that one etcd watch feeds (`feed`, `index`), composes answers per the record contract
//! (`answer`) and encodes them (`encoder`), forwards everything else upstream with a cache
//! (`forward`), and owns its sockets (`udp`, `tcp`). `run` is what `main` and the tests call.

pub mod answer;
pub mod answer_cache;
pub mod autopath;
pub mod config;
pub mod encoder;
pub mod error;
pub mod feed;
pub mod forward;
pub mod handler;
pub mod index;
pub mod metrics;
pub mod observe;
pub mod rotate;
pub mod tcp;
pub mod udp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::get;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use config::{Config, Settings};

/// The sockets skydns serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// DNS over UDP (`--addr`).
    pub udp: UdpSocket,
    /// DNS over TCP (`--addr`).
    pub tcp: TcpListener,
    /// HTTP for /metrics and /readiness (`--metrics-addr`).
    pub http: TcpListener,
}

impl Listeners {
    /// Bind the addresses from `settings`; the error names the one that could not be bound.
    pub async fn bind(settings: &Settings) -> Result<Listeners, BindError> {
        let err = |what: &'static str, addr: std::net::SocketAddr| {
            move |source| BindError { what, addr, source }
        };
        Ok(Listeners {
            udp: UdpSocket::bind(settings.addr)
                .await
                .map_err(err("DNS (UDP) --addr", settings.addr))?,
            tcp: TcpListener::bind(settings.addr)
                .await
                .map_err(err("DNS (TCP) --addr", settings.addr))?,
            http: TcpListener::bind(settings.metrics_addr)
                .await
                .map_err(err("HTTP --metrics-addr", settings.metrics_addr))?,
        })
    }
}

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {what} {addr}: {source}")]
pub struct BindError {
    /// Which listener, with its flag (`DNS (UDP) --addr`).
    pub what: &'static str,
    /// The address.
    pub addr: std::net::SocketAddr,
    /// The bind error.
    #[source]
    pub source: std::io::Error,
}

/// Serve until `shutdown` is cancelled.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(metrics::Metrics::with_server(listeners.udp.local_addr()?));
    let index = Arc::new(index::Index::new());
    let params = answer::ZoneParams::new(
        settings.zone.clone(),
        settings.ttl,
        settings.min_ttl,
        &settings.hostmaster,
    )
    .with_pods(settings.pods)
    .with_local(settings.local.as_deref());
    let forwarder = forward::Forwarder::new(
        forward::ForwardSettings {
            upstreams: settings.upstreams.clone(),
            stub_domains: settings.stub_domains.clone(),
            file_config: settings.file_config.clone(),
            timeout: settings.rtimeout,
            policy: settings.forward_policy,
            cache: forward::cache::CacheLimits {
                entries: settings.rcache,
                bytes: settings.rcache_bytes,
                min_ttl: settings.rcache_min_ttl,
                max_ttl: settings.rcache_ttl,
                serve_stale: settings.serve_stale,
                prefetch_hits: settings.prefetch,
            },
            cluster_zone: params.apex.clone(),
        },
        metrics.clone(),
    );
    forwarder.set_own_address(listeners.udp.local_addr()?);
    if settings.recursion {
        forwarder.probe_loops();
    }
    let autopath = settings
        .autopath
        .then(|| autopath::Autopath::new(&settings.node_search, &params));
    let ops = handler::Ops {
        round_robin: settings.round_robin,
        identity: settings.id.clone(),
        nsid: settings.nsid,
        rotation: Default::default(),
        query_log: if settings.log_queries {
            Some(observe::QueryLog::start(
                Box::new(std::io::stdout()),
                metrics.query_log_dropped.clone(),
            )?)
        } else {
            None
        },
        errors: Default::default(),
    };
    let handler = Arc::new(
        handler::Handler::new(params, index.clone(), forwarder, metrics.clone())
            .with_recursion(settings.recursion)
            .with_udp_size(settings.udp_size)
            .with_answer_cache(answer_cache::AnswerCache::new(
                settings.answer_cache,
                settings.answer_cache_bytes,
            ))
            .with_max_concurrent(settings.max_concurrent)
            .with_ops(ops)
            .with_autopath(autopath),
    );
    tracing::info!(
        dns = %listeners.udp.local_addr()?,
        http = %listeners.http.local_addr()?,
        domain = settings.zone.domain(),
        upstreams = ?settings.upstreams,
        "skydns serving"
    );

    // `shutdown` asks to stop; `serve` is what the serving tasks stop on. Between the two lies
    // the lameduck: readiness says 503 at once while DNS keeps answering for `--lameduck`.
    let serve = CancellationToken::new();
    let draining = Arc::new(AtomicBool::new(false));
    let lameduck = tokio::spawn({
        let (shutdown, serve, draining) = (shutdown.clone(), serve.clone(), draining.clone());
        let period = settings.lameduck;
        async move {
            // Dropped with the runtime, the guard still stops the serving tasks.
            let _guard = serve.clone().drop_guard();
            tokio::select! {
                _ = serve.cancelled() => return,
                _ = shutdown.cancelled() => {}
            }
            draining.store(true, Ordering::Relaxed);
            if !period.is_zero() {
                tracing::info!(lameduck = ?period, "shutdown requested: not ready, still answering");
                tokio::select! {
                    _ = serve.cancelled() => {}
                    _ = tokio::time::sleep(period) => {}
                }
            }
            serve.cancel();
        }
    });

    // False once a serving task has failed: readiness then says so until the process exits.
    let healthy = Arc::new(AtomicBool::new(true));
    let ready_index = index.clone();
    let ready_healthy = healthy.clone();
    let ready_draining = draining.clone();
    let ready_forwarder = handler.forwarder.clone();
    let gauges = handler.clone();
    let registry = metrics.registry.clone();
    let router = service_kit::http::metrics_router(registry).route(
        "/readiness",
        get(move || {
            let ready = ready_index.load().ready
                && ready_healthy.load(Ordering::Relaxed)
                && !ready_draining.load(Ordering::Relaxed);
            let loops = ready_forwarder.loops();
            async move { readiness(ready, &loops) }
        }),
    );

    let feed = tokio::spawn(feed::run_feed(
        settings.clone(),
        index,
        metrics.clone(),
        serve.clone(),
    ));
    let (udp_socket, threads) = (listeners.udp.into_std()?, settings.udp_thread_count());
    let (udp_handler, udp_stop, rt) = (
        handler.clone(),
        serve.clone(),
        tokio::runtime::Handle::current(),
    );
    let udp = tokio::task::spawn_blocking(move || {
        udp::serve_udp_threads(udp_socket, udp_handler, threads, rt, udp_stop)
    });
    let handler_forwarder = handler.forwarder.clone();
    let tcp = tokio::spawn(tcp::serve_tcp(
        listeners.tcp,
        handler,
        settings.tcp_max_conns,
        settings.tcp_idle_timeout,
        serve.clone(),
    ));
    let http = tokio::spawn(service_kit::serve_http(
        listeners.http,
        router,
        serve.clone(),
    ));

    let cache_gauges = tokio::spawn(publish_cache_sizes(gauges, serve.clone()));
    let config_dir = match settings.config_dir.clone() {
        Some(dir) => tokio::spawn(forward::watch_config_dir(
            handler_forwarder,
            dir,
            metrics.clone(),
            serve.clone(),
        )),
        None => tokio::spawn(std::future::ready(())),
    };

    // Supervision: every serving task runs until shutdown; one that ends before it (a panic,
    // a dead socket) takes readiness down and ends `run` with an error, so the process exits
    // non-zero and Kubernetes restarts it rather than leaving it half-deaf.
    let (mut feed, mut udp, mut tcp, mut http) = (feed, udp, tcp, http);
    let failure = tokio::select! {
        // The stop itself first: a task that ends because `serve` was cancelled is no failure.
        biased;
        _ = serve.cancelled() => None,
        r = &mut feed => Some(format!("etcd feed task ended: {}", ended(r.map(Ok::<(), String>)))),
        r = &mut udp => Some(format!("udp threads ended: {}", ended(r.map(|r| r.map_err(|e| e.to_string()))))),
        r = &mut tcp => Some(format!("tcp acceptor ended: {}", ended(r.map(|r| r.map_err(|e| e.to_string()))))),
        r = &mut http => Some(format!("http server ended: {}", ended(r.map(|r| r.map_err(|e| e.to_string()))))),
    };
    // A task may have seen `serve` cancelled and returned in the same instant.
    let failure = failure.filter(|_| !serve.is_cancelled());
    if let Some(reason) = &failure {
        healthy.store(false, Ordering::Relaxed);
        tracing::error!(reason = %reason, "a serving task failed; stopping");
        // At once, no lameduck; the caller's token too, so whatever else it drives stops.
        serve.cancel();
        shutdown.cancel();
    }
    let rest = async {
        let _ = tokio::join!(
            async {
                if !feed.is_finished() {
                    let _ = feed.await;
                }
            },
            async {
                if !udp.is_finished() {
                    let _ = udp.await;
                }
            },
            async {
                if !tcp.is_finished() {
                    let _ = tcp.await;
                }
            },
            async {
                if !http.is_finished() {
                    let _ = http.await;
                }
            },
            cache_gauges,
            config_dir,
            lameduck,
        );
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), rest)
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop within 10 s");
    }
    match failure {
        None => {
            tracing::info!("skydns stopped");
            Ok(())
        }
        Some(reason) => Err(anyhow::anyhow!(reason)),
    }
}

/// `/readiness`: 200 once the index is loaded and every serving task runs, 503 otherwise; the
/// body names upstreams left out because forwarding to them loops back to us.
fn readiness(ready: bool, loops: &[std::net::SocketAddr]) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = if ready { "ok\n" } else { "not ready\n" }.to_string();
    for l in loops {
        body.push_str(&format!("forwarding loop through {l}: not forwarded to\n"));
    }
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// How a supervised task ended, for the error message.
fn ended<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "returned early".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) if e.is_panic() => "panicked".to_string(),
        Err(e) => e.to_string(),
    }
}

/// Publish the caches' sizes as gauges once a second.
async fn publish_cache_sizes(handler: Arc<handler::Handler>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = &handler.metrics;
        m.forward_cache_bytes
            .set(handler.forwarder.cache_bytes() as i64);
        m.forward_cache_entries
            .set(handler.forwarder.cache_len() as i64);
        m.answer_cache_bytes
            .set(handler.answer_cache.as_ref().map_or(0, |c| c.bytes()) as i64);
    }
}
