//! Kubernetes watchers (`kube::runtime::watcher`, default backoff) turned into slim events.
//! Knows nothing of etcd. Watch errors, 410 Gone and dropped streams are logged and counted;
//! the watcher relists by itself and the `Init` … `InitDone` events let the desired state
//! replace (not double) what it held.

use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::k8s_objects::{self, object_ref, PartialObject, Skip};
use crate::metrics::Metrics;
use crate::slim::{Kind, SlimEvent};

/// Which resources to watch.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// Watch v1 Endpoints instead of EndpointSlices.
    pub legacy_endpoints: bool,
    /// Watch pods (`--pod-records`).
    pub pods: bool,
}

impl Watched {
    /// The kinds watched: services and endpoints always, pods when enabled.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut k = vec![Kind::Service, Kind::Endpoints];
        if self.pods {
            k.push(Kind::Pod);
        }
        k
    }
}

/// Watch every configured resource until `stop`, sending slim events to `tx`.
pub async fn watch_all(
    client: Client,
    watched: Watched,
    tx: mpsc::Sender<SlimEvent>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let services = watch::<k8s_objects::Service>(
        Api::all(client.clone()),
        Kind::Service,
        "services",
        tx.clone(),
        metrics.clone(),
        stop.clone(),
    );
    let endpoints = async {
        if watched.legacy_endpoints {
            watch::<k8s_objects::Endpoints>(
                Api::all(client.clone()),
                Kind::Endpoints,
                "endpoints",
                tx.clone(),
                metrics.clone(),
                stop.clone(),
            )
            .await
        } else {
            watch::<k8s_objects::EndpointSlice>(
                Api::all(client.clone()),
                Kind::Endpoints,
                "endpointslices",
                tx.clone(),
                metrics.clone(),
                stop.clone(),
            )
            .await
        }
    };
    let pods = async {
        if watched.pods {
            watch::<k8s_objects::Pod>(
                Api::all(client.clone()),
                Kind::Pod,
                "pods",
                tx.clone(),
                metrics.clone(),
                stop.clone(),
            )
            .await
        }
    };
    tokio::join!(services, endpoints, pods);
}

/// Watch one resource.
async fn watch<K: PartialObject>(
    api: Api<K>,
    kind: Kind,
    resource: &'static str,
    tx: mpsc::Sender<SlimEvent>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => return,
            item = stream.next() => item,
        };
        let event = match item {
            Some(Ok(event)) => translate_event(event, kind, resource, &metrics),
            Some(Err(err)) => {
                metrics.watch_event(resource, "error");
                tracing::warn!(resource, error = %err, "watch error; the watcher recovers (relisting if needed)");
                continue;
            }
            None => {
                tracing::error!(resource, "watch stream ended");
                return;
            }
        };
        if let Some(event) = event {
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

fn translate_event<K: PartialObject>(
    event: watcher::Event<K>,
    kind: Kind,
    resource: &'static str,
    metrics: &Metrics,
) -> Option<SlimEvent> {
    match event {
        watcher::Event::Init => {
            metrics.watch_event(resource, "init");
            tracing::debug!(resource, "listing");
            Some(SlimEvent::Init(kind))
        }
        watcher::Event::InitDone => {
            metrics.watch_event(resource, "init_done");
            tracing::info!(resource, "initial list complete");
            Some(SlimEvent::InitDone(kind))
        }
        watcher::Event::InitApply(obj) => {
            metrics.watch_event(resource, "init_apply");
            applied(&obj, kind, resource, metrics)
        }
        watcher::Event::Apply(obj) => {
            metrics.watch_event(resource, "apply");
            applied(&obj, kind, resource, metrics)
        }
        watcher::Event::Delete(obj) => {
            metrics.watch_event(resource, "delete");
            object_ref(obj.meta()).map(|id| SlimEvent::Delete(kind, id))
        }
    }
}

/// An object that exists: its slim form, or a delete when it yields no records.
fn applied<K: PartialObject>(
    obj: &K,
    kind: Kind,
    resource: &'static str,
    metrics: &Metrics,
) -> Option<SlimEvent> {
    let converted = obj.convert();
    for w in &converted.warnings {
        tracing::warn!(resource, "{w}");
    }
    match converted.object {
        Ok(slim) => Some(SlimEvent::Apply(slim)),
        Err(skip) => {
            match skip {
                Skip::Ignore(reason) => tracing::debug!(resource, "{reason}"),
                Skip::Invalid(reason) => {
                    metrics.skipped(resource);
                    tracing::warn!(resource, "skipping object: {reason}");
                }
            }
            object_ref(obj.meta()).map(|id| SlimEvent::Delete(kind, id))
        }
    }
}
