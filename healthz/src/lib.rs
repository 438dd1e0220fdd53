//! healthz: the successor of exechealthz for the kube-dns pod. It probes skydns by resolving a
//! name over UDP and kube2sky through its `/readiness` endpoint, every `--period`, and serves
//! `/healthz` (200 `ok` only when every probe's last result is a success no older than
//! `--max-age`), `/healthz/{skydns,kube2sky}` and Prometheus `/metrics`.
//!
//! Modules: [`config`] flags, [`probe`] the probes and their loop, [`state`] latest results,
//! [`routes`] the HTTP handlers, [`metrics`] the Prometheus series.

pub mod config;
pub mod metrics;
pub mod probe;
pub mod routes;
pub mod state;

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use state::State;

use crate::metrics::Metrics;
use crate::probe::{run_probe, DnsProbe, HttpProbe, KUBE2SKY};

/// Run the probes and serve HTTP on `listener` until `shutdown` is cancelled.
///
/// The caller binds the listener (tests pass port 0). Returns after the server has drained and
/// the probe loops have stopped.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let probes = config.enabled_probes();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, &probes);
    let state = State::new(probes.iter().copied(), config.max_age);

    let stop = shutdown.child_token();
    let tasks = TaskTracker::new();
    let (period, timeout) = (config.period, config.timeout);
    if !config.no_skydns {
        let p = DnsProbe::new(&config.dns_addr, &config.probe_name()).map_err(|e| anyhow!(e))?;
        tasks.spawn(run_probe(
            p,
            state.clone(),
            metrics.clone(),
            period,
            timeout,
            stop.clone(),
        ));
    }
    if !config.no_kube2sky {
        let p = HttpProbe::new(KUBE2SKY, &config.kube2sky_url).map_err(|e| anyhow!(e))?;
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

    let app = routes::router(state).merge(runtime::http::metrics_router(Arc::new(Mutex::new(
        registry,
    ))));
    tracing::info!(
        addr = %listener.local_addr().context("listener address")?,
        probes = ?probes,
        period = ?period,
        timeout = ?timeout,
        max_age = ?config.max_age,
        "healthz serving"
    );
    let served = runtime::serve_http(listener, app, shutdown).await;
    stop.cancel();
    tasks.wait().await;
    served.context("serve HTTP")
}
