//! Prometheus metrics (`/metrics` on the healthz port), all prefixed `kube2sky_`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::desired::Stats;

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];

/// Handles to every metric (cheap to clone).
#[derive(Clone, Default)]
pub struct Metrics {
    watch_events: Family<L2, Counter>,
    skipped_objects: Family<L1, Counter>,
    etcd_writes: Counter,
    etcd_ops: Family<L1, Counter>,
    etcd_errors: Family<L1, Counter>,
    reconciles: Counter,
    objects: Family<L1, Gauge>,
    records: Gauge,
    pending: Gauge,
    last_sync: Gauge<f64, AtomicU64>,
    leader: Gauge,
    too_large: Gauge,
    too_large_total: Counter,
    ptr_conflicts: Counter,
}

impl Metrics {
    /// Create the metrics and a registry exposing them.
    pub fn new() -> (Self, Arc<Mutex<Registry>>) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("kube2sky");
        r.register(
            "watch_events",
            "Kubernetes watch events by resource and type (init, init_apply, init_done, apply, delete, error)",
            m.watch_events.clone(),
        );
        r.register(
            "skipped_objects",
            "Objects skipped because of missing or odd fields, by resource",
            m.skipped_objects.clone(),
        );
        r.register(
            "etcd_writes",
            "etcd transactions committed",
            m.etcd_writes.clone(),
        );
        r.register(
            "etcd_operations",
            "Keys written (op=put) or deleted (op=delete) in etcd",
            m.etcd_ops.clone(),
        );
        r.register(
            "etcd_errors",
            "Failed etcd requests by error",
            m.etcd_errors.clone(),
        );
        r.register(
            "reconciles",
            "Full comparisons of the owned etcd trees with the desired records",
            m.reconciles.clone(),
        );
        r.register(
            "objects",
            "Objects held by kind (service, endpoints, pod)",
            m.objects.clone(),
        );
        r.register(
            "records",
            "DNS records (etcd keys) desired",
            m.records.clone(),
        );
        r.register(
            "pending_writes",
            "Keys that differ from etcd and wait to be written",
            m.pending.clone(),
        );
        r.register(
            "last_sync_timestamp_seconds",
            "Unix time etcd last held exactly the desired records",
            m.last_sync.clone(),
        );
        r.register(
            "leader",
            "1 while this replica is the writer, else 0",
            m.leader.clone(),
        );
        r.register(
            "records_too_large",
            "Records whose value is larger than etcd accepts; their key is kept absent",
            m.too_large.clone(),
        );
        r.register(
            "values_too_large",
            "Values found larger than etcd accepts (the name is removed until it fits)",
            m.too_large_total.clone(),
        );
        r.register(
            "ptr_conflicts",
            "Transactions whose reverse-key comparison failed (a key changed since read); decided again",
            m.ptr_conflicts.clone(),
        );
        // Show the error series at 0 before the first error.
        for label in ["etcd", "timeout", "not_leader"] {
            let _ = m.etcd_errors.get_or_create(&[("error", label)]);
        }
        let _ = m.etcd_ops.get_or_create(&[("op", "put")]);
        let _ = m.etcd_ops.get_or_create(&[("op", "delete")]);
        (m, Arc::new(Mutex::new(r)))
    }

    /// Count a watch event (`kube2sky_watch_events_total{resource,type}`).
    pub fn watch_event(&self, resource: &'static str, event: &'static str) {
        self.watch_events
            .get_or_create(&[("resource", resource), ("type", event)])
            .inc();
    }

    /// Count an object skipped as invalid (`kube2sky_skipped_objects_total{resource}`).
    pub fn skipped(&self, resource: &'static str) {
        self.skipped_objects
            .get_or_create(&[("resource", resource)])
            .inc();
    }

    /// Count a committed transaction and its puts and deletes.
    pub fn etcd_written(&self, puts: usize, deletes: usize) {
        self.etcd_writes.inc();
        self.etcd_ops
            .get_or_create(&[("op", "put")])
            .inc_by(puts as u64);
        self.etcd_ops
            .get_or_create(&[("op", "delete")])
            .inc_by(deletes as u64);
    }

    /// Count an etcd error by its [`crate::error::Error::label`].
    pub fn etcd_error(&self, label: &'static str) {
        self.etcd_errors.get_or_create(&[("error", label)]).inc();
    }

    /// Count a completed reconcile.
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    /// Set the object, record, pending and too-large gauges from the desired state's counts.
    pub fn observe(&self, stats: Stats) {
        self.objects
            .get_or_create(&[("kind", "service")])
            .set(gauge(stats.services));
        self.objects
            .get_or_create(&[("kind", "endpoints")])
            .set(gauge(stats.endpoints));
        self.objects
            .get_or_create(&[("kind", "pod")])
            .set(gauge(stats.pods));
        self.records.set(gauge(stats.records));
        self.pending.set(gauge(stats.pending));
        self.too_large.set(gauge(stats.too_large));
        let seen = self.too_large_total.get();
        if stats.too_large_total > seen {
            self.too_large_total.inc_by(stats.too_large_total - seen);
        }
    }

    /// Count a transaction whose reverse-key comparison failed.
    pub fn ptr_conflict(&self) {
        self.ptr_conflicts.inc();
    }

    /// Record now as the time etcd last held exactly the desired records.
    pub fn synced_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.last_sync.set(now);
    }

    /// Set `kube2sky_leader` (1 while this replica leads).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
