//! kube2sky: watches Services, EndpointSlices (or legacy Endpoints) and Pods on the Kubernetes
//! API server and keeps the SkyDNS records of `docs/records.md` §3 in etcd.
//!
//! Data flow: `watch` (kube watchers of `k8s_objects` → slim events) → `desired::State` (stores
//! the objects; per event calls `translate` for the affected service and diffs against its
//! previous records; pending keys) → `writer::Writer` (reconcile, batched transactions,
//! retries), gated by `leader`.
//! `run` wires them together; the caller binds the healthz listener and owns shutdown.

pub mod config;
pub mod desired;
pub mod error;
pub mod k8s_objects;
pub mod leader;
pub mod lenient;
pub mod metrics;
pub mod slim;
pub mod translate;
pub mod watch;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use msg::{Prefix, Zone};
use service_kit::Readiness;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Settings};
pub use error::{ConfigError, Error};

use crate::desired::State;
use crate::metrics::Metrics;
use crate::slim::SlimEvent;

/// Events buffered between the watchers and the desired state.
const EVENT_QUEUE: usize = 1024;
/// How long tasks get to finish after shutdown (the leader resigns in this time).
const DRAIN: Duration = Duration::from_secs(3);

/// Run kube2sky until `shutdown` is cancelled. The caller validates the flags
/// (`Config::validate`) and binds `healthz`, which serves `/readiness`, `/healthz` and
/// `/metrics`. Fails only on start-up errors (no Kubernetes configuration) or if the healthz
/// server dies; etcd and API server outages are retried forever.
pub async fn run(
    config: Settings,
    healthz: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let zone = Zone::new(Prefix::new(&config.etcd_prefix), &config.domain);
    let (metrics, registry) = Metrics::new();
    let readiness = Readiness::new();
    let router = service_kit::http::metrics_router(registry)
        .route(
            "/readiness",
            get({
                let r = readiness.clone();
                move || std::future::ready(r.response())
            }),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")));

    let kube = kube_client(&config).await?;
    let security = config.etcd_security.clone();
    // Expired or invalidated tokens (etcd restarted) are refreshed with the credentials.
    let etcd_opts = security
        .connect_options(Some(config.etcd_mutation_timeout))
        .map_err(|e| anyhow::anyhow!("etcd TLS/auth: {e}"))?
        .with_auto_token_refresh(true);

    let watched = watch::Watched {
        legacy_endpoints: config.legacy_endpoints,
        pods: config.pod_records,
    };
    let state = Arc::new(Mutex::new(State::new(zone, config.ttl, &watched.kinds())));
    let work = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let stop = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), Error>> = JoinSet::new();

    let http_stop = stop.clone();
    tasks.spawn(async move {
        service_kit::serve_http(healthz, router, http_stop)
            .await
            .map_err(Error::Http)
    });
    let (m, s) = (metrics.clone(), stop.clone());
    tasks.spawn(async move {
        watch::watch_all(kube, watched, tx, m, s).await;
        Ok(())
    });
    tasks.spawn(apply_events(
        rx,
        state.clone(),
        work.clone(),
        metrics.clone(),
    ));

    let (leadership, _always) = if config.leader_elect {
        let (handle, election) = leader::elect(
            leader::Election {
                endpoints: config.etcd_server.clone(),
                security: security.clone(),
                name: config.election.name.clone(),
                id: config.election.id.clone(),
                ttl: config.election.ttl,
                request_timeout: config.etcd_mutation_timeout,
            },
            metrics.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            election.await;
            Ok(())
        });
        (handle, None)
    } else {
        metrics.set_leader(true);
        let (handle, sender) = leader::always();
        (handle, Some(sender))
    };
    let writer_cfg = writer::WriterConfig {
        max_ops: config.etcd_max_txn_ops,
        write_interval: config.write_interval,
        reconcile_interval: config.reconcile_interval,
        request_timeout: config.etcd_mutation_timeout,
        standby_ready: config.leader_elect,
    };
    let s = stop.clone();
    let endpoints = config.etcd_server.clone();
    tasks.spawn(async move {
        // With credentials the client authenticates while connecting, so connecting can fail
        // while etcd is down: retried with backoff like every other etcd request.
        let Some(conn) = writer::Connection::open(&endpoints, etcd_opts, &metrics, &s).await else {
            return Ok(());
        };
        let writer = writer::Writer::new(
            conn, state, work, leadership, metrics, readiness, writer_cfg,
        );
        writer.run(s).await;
        Ok(())
    });
    tracing::info!(domain = %config.domain, etcd = ?config.etcd_server, "kube2sky started");

    let mut outcome = Ok(());
    tokio::select! {
        _ = stop.cancelled() => {}
        Some(res) = tasks.join_next() => {
            // Every task runs until shutdown; one that ends early is a failure.
            let err = match res {
                Ok(Err(err)) => anyhow::Error::from(err),
                Ok(Ok(())) => anyhow::anyhow!("a kube2sky task ended unexpectedly"),
                Err(join) => anyhow::anyhow!("a kube2sky task panicked: {join}"),
            };
            if !stop.is_cancelled() {
                tracing::error!(error = %err, "shutting down");
                outcome = Err(err);
            }
        }
    }
    stop.cancel();
    let _ = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.shutdown().await;
    outcome
}

/// Apply watch events to the desired state and wake the writer.
async fn apply_events(
    mut rx: mpsc::Receiver<SlimEvent>,
    state: Arc<Mutex<State>>,
    work: Arc<Notify>,
    metrics: Metrics,
) -> Result<(), Error> {
    let mut buf = Vec::with_capacity(256);
    while rx.recv_many(&mut buf, 256).await > 0 {
        let stats = {
            let mut s = writer::lock(&state);
            for event in buf.drain(..) {
                s.apply(event);
            }
            s.stats()
        };
        metrics.observe(stats);
        work.notify_one();
    }
    Ok(())
}

/// The Kubernetes client: `--kube-master-url` (plain), `--kubecfg-file`, or in-cluster then
/// `$KUBECONFIG` / `~/.kube/config`.
async fn kube_client(config: &Settings) -> Result<kube::Client, Error> {
    let master = config.kube_master_url.clone();
    let opts = kube::config::KubeConfigOptions::default();
    let cfg = match (&config.kubecfg_file, master) {
        (Some(path), master) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::KubeConfig(format!("{}: {e}", path.display())))?;
            let mut cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::KubeConfig(format!("{}: {e}", path.display())))?;
            if let Some(url) = master {
                cfg.cluster_url = url;
            }
            cfg
        }
        (None, Some(url)) => kube::Config::new(url),
        (None, None) => match kube::Config::incluster() {
            Ok(cfg) => cfg,
            Err(in_cluster) => kube::Config::from_kubeconfig(&opts).await.map_err(|kc| {
                Error::KubeConfig(format!(
                    "no --kube-master-url or --kubecfg-file; in-cluster: {in_cluster}; kubeconfig: {kc}"
                ))
            })?,
        },
    };
    Ok(kube::Client::try_from(cfg)?)
}
