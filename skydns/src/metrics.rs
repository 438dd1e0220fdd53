//! Prometheus metrics with the SkyDNS names users know
//! (`skydns_skydns_dns_request_count_total{system}` …), plus index and etcd gauges.
//! Per-system handles are resolved once so the query path only touches atomics. The CoreDNS
//! names and labels beside them are in [`coredns`].

pub mod coredns;

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::index::Snapshot;

/// Which part of the server answered (SkyDNS's `system` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Answered from the index (the cluster zone).
    Auth = 0,
    /// A forwarded question answered from the forwarding cache.
    Cache = 1,
    /// A forwarded question answered by an upstream (or failed there).
    Recursive = 2,
    /// A PTR question answered from the reverse trees.
    Reverse = 3,
}

impl System {
    /// Every system, in label-slot order.
    pub const ALL: [System; 4] = [
        System::Auth,
        System::Cache,
        System::Recursive,
        System::Reverse,
    ];
    /// The `system` label value.
    pub fn label(self) -> &'static str {
        match self {
            System::Auth => "auth",
            System::Cache => "cache",
            System::Recursive => "recursive",
            System::Reverse => "reverse",
        }
    }
}

/// Error causes (SkyDNS's `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The name does not exist.
    Nxdomain,
    /// The answer could not be had (upstream failure, index not loaded).
    Servfail,
    /// Not ours to answer (forwarding off, ANY/AXFR, not class IN).
    Refused,
    /// The UDP reply was cut to fit (TC set).
    Truncated,
    /// The upstream budget (`--max-concurrent`) was spent.
    Overflow,
}

impl Cause {
    /// Every cause, in label-slot order.
    pub const ALL: [Cause; 5] = [
        Cause::Nxdomain,
        Cause::Servfail,
        Cause::Refused,
        Cause::Truncated,
        Cause::Overflow,
    ];
    fn label(self) -> &'static str {
        match self {
            Cause::Nxdomain => "nxdomain",
            Cause::Servfail => "servfail",
            Cause::Refused => "refused",
            Cause::Truncated => "truncated",
            Cause::Overflow => "overflow",
        }
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// Every metric skydns exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Arc<Mutex<Registry>>,
    requests: Vec<Counter>,
    durations: Vec<Histogram>,
    sizes: Vec<Histogram>,
    errors: Vec<Counter>,
    /// Forwarded questions not answered from the cache (`cache="response"`).
    pub cache_misses: Counter,
    /// etcd values skipped as unreadable.
    pub records_skipped: Counter,
    /// etcd connection or watch failures.
    pub etcd_errors: Counter,
    /// Packets dropped or answered FORMERR.
    pub malformed_queries: Counter,
    /// TCP connections closed at once because `--tcp-max-conns` were open.
    pub tcp_rejected: Counter,
    /// Answers whose index scan stopped at the per-query bound.
    pub scans_limited: Counter,
    /// Replies served from the answer (reply) cache.
    pub answer_cache_hits: Counter,
    /// Questions refused because the upstream budget (`--max-concurrent`) was spent.
    pub upstream_overflow: Counter,
    /// TCP connections closed because their replies were not being read.
    pub tcp_stalled: Counter,
    /// Query-log lines dropped because the writer fell behind.
    pub query_log_dropped: Counter,
    /// Questions answered by walking a pod's search path (`--autopath`).
    pub autopath_success: Counter,
    /// Forwarding cache hits.
    pub cache_hits: Counter,
    /// Stale forwarded answers served (RFC 8767).
    pub cache_served_stale: Counter,
    /// Prefetches of popular forwarded answers started.
    pub cache_prefetches: Counter,
    /// Entries held by the forwarding cache.
    pub forward_cache_entries: Gauge,
    /// Questions that joined an identical lookup already in flight.
    pub forward_coalesced: Counter,
    /// Health probes of failed upstreams that got no answer.
    pub forward_healthcheck_failures: Counter,
    forward_requests: Family<Vec<(&'static str, String)>, Counter>,
    forward_errors: Family<Vec<(&'static str, String)>, Counter>,
    forward_loops: Family<Vec<(&'static str, String)>, Gauge>,
    config_errors: Counter,
    /// Bytes held by the forwarding cache.
    pub forward_cache_bytes: Gauge,
    /// Bytes held by the answer cache.
    pub answer_cache_bytes: Gauge,
    keys: Gauge,
    revision: Gauge,
    /// The CoreDNS families (`coredns_*`).
    pub coredns: coredns::CoreDns,
}

impl Metrics {
    /// Metrics for a server whose CoreDNS `server` label is `dns://:53`.
    pub fn new() -> Self {
        Self::with_server(std::net::SocketAddr::from(([0, 0, 0, 0], 53)))
    }

    /// Metrics for the server listening on `addr` (its CoreDNS `server` label).
    pub fn with_server(addr: std::net::SocketAddr) -> Self {
        let mut registry = Registry::default();
        let request_family = Family::<Labels, Counter>::default();
        let duration_family = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 16))
        });
        let size_family = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(32.0, 2.0, 12))
        });
        let errors = Family::<Labels, Counter>::default();
        let cache_misses = Family::<Labels, Counter>::default();
        registry.register(
            "skydns_skydns_dns_request_count",
            "Counter of DNS requests made",
            request_family.clone(),
        );
        registry.register(
            "skydns_skydns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took to resolve",
            duration_family.clone(),
        );
        registry.register(
            "skydns_skydns_dns_response_size_bytes",
            "Size of the returned response in bytes",
            size_family.clone(),
        );
        registry.register(
            "skydns_skydns_dns_error_count",
            "Counter of DNS requests resulting in an error",
            errors.clone(),
        );
        registry.register(
            "skydns_skydns_dns_cachemiss_count",
            "Counter of DNS requests that result in a cache miss",
            cache_misses.clone(),
        );
        let records_skipped = Counter::default();
        registry.register(
            "skydns_records_skipped",
            "etcd values skipped because they could not be read",
            records_skipped.clone(),
        );
        let etcd_errors = Counter::default();
        registry.register(
            "skydns_etcd_errors",
            "etcd connection or watch failures",
            etcd_errors.clone(),
        );
        let malformed_queries = Counter::default();
        registry.register(
            "skydns_malformed_queries",
            "Queries dropped or answered FORMERR",
            malformed_queries.clone(),
        );
        let tcp_rejected = Counter::default();
        registry.register(
            "skydns_tcp_connections_rejected",
            "TCP connections closed because the connection limit was reached",
            tcp_rejected.clone(),
        );
        let scans_limited = Counter::default();
        registry.register(
            "skydns_scans_limited",
            "Answers whose index scan (union, wildcard) stopped at the per-query bound of keys",
            scans_limited.clone(),
        );
        let answer_cache_hits = Counter::default();
        registry.register(
            "skydns_answer_cache_hits",
            "Replies served from the answer cache",
            answer_cache_hits.clone(),
        );
        let upstream_overflow = Counter::default();
        registry.register(
            "skydns_upstream_overflow",
            "Questions answered REFUSED because --max-concurrent upstream lookups were in flight",
            upstream_overflow.clone(),
        );
        let tcp_stalled = Counter::default();
        registry.register(
            "skydns_tcp_connections_stalled",
            "TCP connections closed because the client did not read its replies",
            tcp_stalled.clone(),
        );
        let query_log_dropped = Counter::default();
        registry.register(
            "skydns_query_log_dropped",
            "Query-log lines dropped because stdout did not keep up (--log-queries)",
            query_log_dropped.clone(),
        );
        let autopath_success = Counter::default();
        registry.register(
            "skydns_autopath_success",
            "Questions answered by walking the asking pod's search path (--autopath)",
            autopath_success.clone(),
        );
        let cache_bytes = Family::<Labels, Gauge>::default();
        registry.register(
            "skydns_cache_bytes",
            "Bytes held by a cache (cache=forward|answer)",
            cache_bytes.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let cache_hits = counter(
            &mut registry,
            "skydns_forward_cache_hits",
            "Forwarded questions answered from the cache",
        );
        let cache_served_stale = counter(
            &mut registry,
            "skydns_forward_cache_served_stale",
            "Stale answers served because the upstreams failed or were slow (RFC 8767)",
        );
        let cache_prefetches = counter(
            &mut registry,
            "skydns_forward_cache_prefetches",
            "Popular cache entries refreshed before they expired",
        );
        let forward_cache_entries = Gauge::default();
        registry.register(
            "skydns_forward_cache_entries",
            "Entries in the forwarding cache",
            forward_cache_entries.clone(),
        );
        let forward_coalesced = counter(
            &mut registry,
            "skydns_forward_coalesced",
            "Questions that joined an identical upstream lookup already in flight",
        );
        let forward_healthcheck_failures = counter(
            &mut registry,
            "skydns_forward_healthcheck_failures",
            "Health probes of a failed upstream that got no answer",
        );
        let forward_requests = Family::<Vec<(&'static str, String)>, Counter>::default();
        registry.register(
            "skydns_forward_requests",
            "Questions sent to an upstream",
            forward_requests.clone(),
        );
        let forward_errors = Family::<Vec<(&'static str, String)>, Counter>::default();
        registry.register(
            "skydns_forward_errors",
            "Failed exchanges with an upstream (error = timeout, network, bad_reply)",
            forward_errors.clone(),
        );
        let forward_loops = Family::<Vec<(&'static str, String)>, Gauge>::default();
        registry.register(
            "skydns_forward_loop",
            "1 while an upstream is not used because forwarding to it loops back to us",
            forward_loops.clone(),
        );
        let config_errors = counter(
            &mut registry,
            "skydns_config_errors",
            "Forwarding configuration files rejected (the last good configuration stays)",
        );
        let forward_cache_bytes = cache_bytes
            .get_or_create(&vec![("cache", "forward")])
            .clone();
        let answer_cache_bytes = cache_bytes
            .get_or_create(&vec![("cache", "answer")])
            .clone();
        let keys = Gauge::default();
        registry.register(
            "skydns_records_held",
            "Names (etcd keys) held in the index",
            keys.clone(),
        );
        let revision = Gauge::default();
        registry.register(
            "skydns_etcd_revision",
            "etcd revision the index reflects",
            revision.clone(),
        );

        let per = |f: &Family<Labels, Counter>| {
            System::ALL
                .iter()
                .map(|s| f.get_or_create(&vec![("system", s.label())]).clone())
                .collect()
        };
        let per_h = |f: &Family<Labels, Histogram>| {
            System::ALL
                .iter()
                .map(|s| f.get_or_create(&vec![("system", s.label())]).clone())
                .collect()
        };
        let error_counters = System::ALL
            .iter()
            .flat_map(|s| {
                let errors = &errors;
                Cause::ALL.iter().map(move |c| {
                    errors
                        .get_or_create(&vec![("system", s.label()), ("cause", c.label())])
                        .clone()
                })
            })
            .collect();
        let cache_miss_counter = cache_misses
            .get_or_create(&vec![("cache", "response")])
            .clone();
        let coredns = coredns::CoreDns::new(
            &mut registry,
            coredns::server_label(addr),
            &upstream_overflow,
        );
        Metrics {
            coredns,
            requests: per(&request_family),
            durations: per_h(&duration_family),
            sizes: per_h(&size_family),
            errors: error_counters,
            cache_misses: cache_miss_counter,
            records_skipped,
            etcd_errors,
            malformed_queries,
            tcp_rejected,
            scans_limited,
            answer_cache_hits,
            upstream_overflow,
            tcp_stalled,
            query_log_dropped,
            autopath_success,
            forward_cache_bytes,
            answer_cache_bytes,
            cache_hits,
            cache_served_stale,
            cache_prefetches,
            forward_cache_entries,
            forward_coalesced,
            forward_healthcheck_failures,
            forward_requests,
            forward_errors,
            forward_loops,
            config_errors,
            keys,
            revision,
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// Count a question sent to `upstream`.
    pub fn forward_request(&self, upstream: std::net::SocketAddr) {
        self.forward_requests
            .get_or_create(&vec![("to", upstream.to_string())])
            .inc();
    }

    /// Count a failed exchange with `upstream`.
    pub fn forward_error(&self, upstream: std::net::SocketAddr, error: &'static str) {
        self.forward_errors
            .get_or_create(&vec![
                ("to", upstream.to_string()),
                ("error", error.to_string()),
            ])
            .inc();
    }

    /// Export whether forwarding to `upstream` loops.
    pub fn set_forward_loop(&self, upstream: std::net::SocketAddr, looped: bool) {
        self.forward_loops
            .get_or_create(&vec![("to", upstream.to_string())])
            .set(i64::from(looped));
    }

    /// Count a rejected configuration file.
    pub fn config_error(&self) {
        self.config_errors.inc();
    }

    /// Count one answered request.
    pub fn observe(&self, system: System, seconds: f64, size: usize) {
        let i = system as usize;
        self.requests[i].inc();
        self.durations[i].observe(seconds);
        self.sizes[i].observe(size as f64);
    }

    /// Count one error.
    pub fn error(&self, system: System, cause: Cause) {
        self.errors[system as usize * Cause::ALL.len() + cause as usize].inc();
    }

    /// Update the index gauges.
    pub fn observe_snapshot(&self, s: &Snapshot) {
        self.keys.set(s.len() as i64);
        self.revision.set(s.revision);
    }
}

/// One answered query, as the CoreDNS metric families see it (`coredns_dns_*`).
#[derive(Debug, Clone, Copy)]
pub struct QueryObservation {
    /// `proto`: how the client asked.
    pub transport: crate::forward::Transport,
    /// `family`: `true` when the client's address is IPv6 (CoreDNS `family="2"`).
    pub ipv6: bool,
    /// `type`: the question's type (CoreDNS counts a fixed set of types, the rest as `other`).
    pub qtype: u16,
    /// `rcode` of the reply.
    pub rcode: hickory_proto::op::ResponseCode,
    /// Which part of the server answered (CoreDNS `plugin` label).
    pub system: System,
    /// Bytes of the request as received.
    pub request_size: usize,
    /// Bytes of the reply as sent.
    pub reply_size: usize,
    /// Time from receiving the packet to the reply being ready.
    pub seconds: f64,
}

impl Metrics {
    /// Count one answered query in the CoreDNS families (`coredns_dns_requests_total`,
    /// `coredns_dns_responses_total`, durations and sizes).
    pub fn observe_query(&self, q: &QueryObservation) {
        self.coredns.observe(q);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
