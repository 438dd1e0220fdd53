//! Prometheus metrics of the probes: `healthz_probe_latency_seconds{probe}` (histogram),
//! `healthz_probe_errors_total{probe}`, `healthz_probe_failures_total{probe,error}` (the same
//! runs by kind of failure, `probe::Failure::label`), `healthz_probe_healthy{probe}` (1/0, last result), plus
//! the names the kube-dns sidecar used: `kubedns_probe_<probe>_latency_ms` and
//! `kubedns_probe_<probe>_errors_total`.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `probe` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The probe's name (`skydns`, `kube2sky`).
    pub probe: String,
}

/// The `probe` and `error` labels of `healthz_probe_failures_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The probe's name (`skydns`, `kube2sky`).
    pub probe: String,
    /// The failure kind: one of [`crate::probe::Failure::LABELS`].
    pub error: &'static str,
}

fn latency_seconds() -> Histogram {
    // 0.5 ms .. ~4 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

#[derive(Debug, Clone)]
struct Compat {
    latency_ms: Histogram,
    errors: Counter,
}

/// Handles to the probe metrics (cheap to clone).
#[derive(Debug, Clone)]
pub struct Metrics {
    latency: Family<ProbeLabels, Histogram, fn() -> Histogram>,
    errors: Family<ProbeLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    healthy: Family<ProbeLabels, Gauge>,
    compat: BTreeMap<String, Compat>,
}

impl Metrics {
    /// Register the metrics for `probes` in `registry`; every series exists from the start
    /// (errors at 0) so dashboards see the probe before its first failure.
    /// `failure_labels` are the values of the `error` label (`probe::Failure::LABELS`).
    pub fn register(
        registry: &mut Registry,
        probes: &[&str],
        failure_labels: &[&'static str],
    ) -> Self {
        let latency = Family::<ProbeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_seconds,
        );
        let errors = Family::<ProbeLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let healthy = Family::<ProbeLabels, Gauge>::default();
        registry.register(
            "healthz_probe_latency_seconds",
            "Duration of each probe run (failures and timeouts included)",
            latency.clone(),
        );
        registry.register(
            "healthz_probe_errors",
            "Probe runs that failed (error answer, refused, timeout, bad status)",
            errors.clone(),
        );
        registry.register(
            "healthz_probe_failures",
            "Probe runs that failed, by kind of failure",
            failures.clone(),
        );
        registry.register(
            "healthz_probe_healthy",
            "1 if the probe's last run succeeded, else 0",
            healthy.clone(),
        );
        let mut compat = BTreeMap::new();
        for probe in probes {
            let labels = ProbeLabels {
                probe: probe.to_string(),
            };
            let _ = latency.get_or_create(&labels);
            let _ = errors.get_or_create(&labels);
            for &error in failure_labels {
                let _ = failures.get_or_create(&FailureLabels {
                    probe: probe.to_string(),
                    error,
                });
            }
            let _ = healthy.get_or_create(&labels);
            let c = Compat {
                latency_ms: Histogram::new(exponential_buckets(0.5, 2.0, 14)),
                errors: Counter::default(),
            };
            registry.register(
                format!("kubedns_probe_{probe}_latency_ms"),
                format!("Latency of the {probe} probe in milliseconds (kube-dns sidecar name)"),
                c.latency_ms.clone(),
            );
            registry.register(
                format!("kubedns_probe_{probe}_errors"),
                format!("Errors of the {probe} probe (kube-dns sidecar name)"),
                c.errors.clone(),
            );
            compat.insert(probe.to_string(), c);
        }
        Self {
            latency,
            errors,
            failures,
            healthy,
            compat,
        }
    }

    /// Record one finished run: `failure` is the failure's label, `None` on success.
    pub fn observe(&self, probe: &str, latency: Duration, failure: Option<&'static str>) {
        let ok = failure.is_none();
        let labels = ProbeLabels {
            probe: probe.to_string(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
        self.healthy.get_or_create(&labels).set(i64::from(ok));
        if let Some(error) = failure {
            self.errors.get_or_create(&labels).inc();
            self.failures
                .get_or_create(&FailureLabels {
                    probe: probe.to_string(),
                    error,
                })
                .inc();
        }
        if let Some(c) = self.compat.get(probe) {
            c.latency_ms.observe(latency.as_secs_f64() * 1000.0);
            if !ok {
                c.errors.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_exist_from_start_and_move() {
        let mut reg = Registry::default();
        let m = Metrics::register(&mut reg, &["skydns"], &["timeout"]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("healthz_probe_errors_total{probe=\"skydns\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("kubedns_probe_skydns_errors_total 0"),
            "{text}"
        );
        m.observe("skydns", Duration::from_millis(2), Some("timeout"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("healthz_probe_errors_total{probe=\"skydns\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("healthz_probe_latency_seconds_count{probe=\"skydns\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("healthz_probe_healthy{probe=\"skydns\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("healthz_probe_failures_total{probe=\"skydns\",error=\"timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kubedns_probe_skydns_latency_ms_count 1"),
            "{text}"
        );
    }
}
