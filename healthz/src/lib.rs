//! healthz: the successor of exechealthz for the kube-dns pod. It probes skydns by resolving a
//! name over UDP and kube2sky through its `/readiness` endpoint, every `--period`, and serves
//! `/healthz` (200 `ok` only when every probe's last result is a success no older than
//! `--max-age`), `/healthz/{skydns,kube2sky}` and Prometheus `/metrics`.
//!
//! Modules: [`config`] flags and their validation into [`Settings`], [`target`] the probe
//! targets (`host:port`, the `http::Uri` of kube2sky's readiness URL), [`probe`] the probes and
//! their loop, [`state`] latest results, [`routes`] the HTTP handlers, [`metrics`] the
//! Prometheus series. Imports go one way: `config` → `probe` → `target`, `probe` →
//! `metrics`, `state`.

pub mod config;
pub mod metrics;
pub mod probe;
pub mod routes;
pub mod state;
pub mod target;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, Settings};
pub use state::State;

use crate::metrics::Metrics;
use crate::probe::run_probe;

/// Run the probes and serve HTTP on `listener` until `shutdown` is cancelled.
///
/// The caller validates the flags (`Config::validate`) and binds the listener (tests pass
/// port 0). Returns after the server has drained and the probe loops have stopped.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let probes = settings.enabled_probes();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, &probes, &probe::Failure::LABELS);
    let state = State::new(probes.iter().copied(), settings.max_age);

    let stop = shutdown.child_token();
    let tasks = TaskTracker::new();
    let (period, timeout) = (settings.period, settings.timeout);
    if let Some(p) = settings.skydns {
        tasks.spawn(run_probe(
            p,
            state.clone(),
            metrics.clone(),
            period,
            timeout,
            stop.clone(),
        ));
    }
    if let Some(p) = settings.kube2sky {
        tasks.spawn(run_probe(
            p,
            state.clone(),
            metrics.clone(),
            period,
            timeout,
            stop.clone(),
        ));
    }
    tasks.close();

    let app = routes::router(state).merge(service_kit::http::metrics_router(Arc::new(Mutex::new(
        registry,
    ))));
    tracing::info!(
        addr = %listener.local_addr().context("listener address")?,
        probes = ?probes,
        period = ?period,
        timeout = ?timeout,
        max_age = ?settings.max_age,
        "healthz serving"
    );
    let served = service_kit::serve_http(listener, app, shutdown).await;
    stop.cancel();
    tasks.wait().await;
    served.context("serve HTTP")
}
