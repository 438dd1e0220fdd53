//! The CoreDNS metric families (`coredns_dns_*`, `coredns_cache_*`, `coredns_forward_*`,
//! `coredns_proxy_*`, `coredns_build_info`, `coredns_panics_total`), with CoreDNS's label sets,
//! label values and bucket boundaries, so the community CoreDNS dashboards and the
//! kube-prometheus (coredns-mixin) alerts work unchanged.
//!
//! Label values are those of a Corefile `.:53` server block: `server` is `dns://:<port>` when
//! skydns listens on every address (`dns://<ip>:<port>` otherwise, as CoreDNS's `bind` gives),
//! `zone`/`zones` is `.`, `view` is empty.
//!
//! Cost: every label handle is resolved once, on first use, into a slot of a fixed array
//! (`OnceLock`), so a query touches only atomics and allocates nothing; series appear when they
//! are first used, as CoreDNS's do.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{QueryObservation, System};
use crate::forward::Transport;

/// Label set of every CoreDNS family here (names are static, values owned).
pub type Labels = Vec<(&'static str, String)>;

/// CoreDNS `plugin.TimeBuckets`: 0.25 ms doubling to 8 s (16 buckets).
fn time_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.00025, 2.0, 16)
}

/// CoreDNS's request and response size buckets (bytes).
const SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
];

/// The question types CoreDNS counts by name (`plugin/metrics/vars/monitor.go`); every other
/// type is `other`.
const TYPES: [(u16, &str); 19] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (43, "DS"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (50, "NSEC3"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (251, "IXFR"),
    (252, "AXFR"),
    (255, "ANY"),
];
const TYPE_SLOTS: usize = TYPES.len() + 1;

fn type_slot(qtype: u16) -> usize {
    TYPES
        .iter()
        .position(|(t, _)| *t == qtype)
        .unwrap_or(TYPES.len())
}

fn type_label(slot: usize) -> &'static str {
    TYPES.get(slot).map_or("other", |(_, name)| name)
}

/// miekg/dns `RcodeToString` (what CoreDNS prints), by value 0..=23; 16 is `BADSIG` there
/// (BADVERS shares the value).
const RCODES: [&str; 24] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "",
    "",
    "",
    "",
    "",
    "BADSIG",
    "BADKEY",
    "BADTIME",
    "BADMODE",
    "BADNAME",
    "BADALG",
    "BADTRUNC",
    "BADCOOKIE",
];

/// The name miekg/dns gives `rcode`, if it has one.
fn rcode_name(rcode: u16) -> Option<&'static str> {
    RCODES
        .get(usize::from(rcode))
        .copied()
        .filter(|s| !s.is_empty())
}

/// CoreDNS `plugin` label of `coredns_dns_responses_total`: the plugin that would have
/// written the reply in a CoreDNS serving SkyDNS records (`etcd`), with `cache` and `forward`.
fn plugin_label(system: System) -> &'static str {
    match system {
        System::Auth | System::Reverse => "etcd",
        System::Cache => "cache",
        System::Recursive => "forward",
    }
}

const PLUGINS: usize = System::ALL.len();

/// The `server` label for a listen address.
pub fn server_label(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("dns://:{}", addr.port())
    } else {
        format!("dns://{addr}")
    }
}

/// Process-wide panic counter, fed by a panic hook installed once (the previous hook still
/// runs, so panics are printed as before).
fn panics() -> Counter {
    static PANICS: OnceLock<Counter> = OnceLock::new();
    PANICS
        .get_or_init(|| {
            let counter = Counter::default();
            let seen = counter.clone();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                seen.inc();
                previous(info);
            }));
            counter
        })
        .clone()
}

/// Slots created on first use.
fn slots<T>(n: usize) -> Box<[OnceLock<T>]> {
    (0..n).map(|_| OnceLock::new()).collect()
}

/// Every CoreDNS family skydns exports.
pub struct CoreDns {
    server: String,
    requests: Family<Labels, Counter>,
    /// proto × family × type.
    request_slots: Box<[OnceLock<Counter>]>,
    responses: Family<Labels, Counter>,
    /// rcode (0..=23) × plugin.
    response_slots: Box<[OnceLock<Counter>]>,
    durations: Family<Labels, Histogram>,
    duration_slot: OnceLock<Histogram>,
    request_sizes: Family<Labels, Histogram>,
    response_sizes: Family<Labels, Histogram>,
    /// Per proto.
    request_size_slots: [OnceLock<Histogram>; 2],
    response_size_slots: [OnceLock<Histogram>; 2],
    /// `coredns_cache_*`: the forwarding cache (CoreDNS `cache` in front of `forward`).
    pub cache: CacheMetrics,
    forward_requests: Family<Labels, Counter>,
    forward_responses: Family<Labels, Counter>,
    forward_durations: Family<Labels, Histogram>,
    forward_healthcheck_failures: Family<Labels, Counter>,
    proxy_durations: Family<Labels, Histogram>,
    proxy_healthcheck_failures: Family<Labels, Counter>,
    /// `coredns_forward_healthcheck_broken_total`: questions sent while every upstream of
    /// their route was marked down.
    pub forward_healthcheck_broken: Counter,
}

/// `coredns_cache_*` handles (labels `server`, `zones`, `view`, and `type` where CoreDNS has it).
pub struct CacheMetrics {
    /// `coredns_cache_requests_total`: forwarded questions looked up in the cache.
    pub requests: Counter,
    /// `coredns_cache_hits_total`, `type` = success, denial.
    pub hits: [Counter; 2],
    /// `coredns_cache_misses_total`: lookups that found nothing fresh.
    pub misses: Counter,
    /// `coredns_cache_served_stale_total`.
    pub served_stale: Counter,
    /// `coredns_cache_prefetch_total`.
    pub prefetch: Counter,
    /// `type` = success, denial.
    pub evictions: [Counter; 2],
    /// `type` = success, denial.
    pub entries: [Gauge; 2],
}

/// CoreDNS cache entry types.
pub const CACHE_TYPES: [&str; 2] = ["success", "denial"];

/// One upstream's CoreDNS handles, resolved once per upstream address.
pub struct UpstreamMetrics {
    to: String,
    /// `coredns_forward_requests_total{to}`: replies received from it.
    pub requests: Counter,
    /// Failed health probes, under the `coredns_forward_*` and `coredns_proxy_*` names.
    pub healthcheck_failures: [Counter; 2],
    /// By rcode value (0..=23, then one slot for the rest, labelled by number).
    by_rcode: Box<[OnceLock<RcodeMetrics>]>,
    responses: Family<Labels, Counter>,
    durations: Family<Labels, Histogram>,
    proxy_durations: Family<Labels, Histogram>,
}

struct RcodeMetrics {
    responses: Counter,
    duration: Histogram,
    proxy_duration: Histogram,
}

impl UpstreamMetrics {
    /// Count a reply from this upstream with `rcode` that took `seconds` (CoreDNS counts
    /// requests, responses and durations when a reply arrives).
    pub fn reply(&self, rcode: u16, seconds: f64) {
        self.requests.inc();
        let slot = usize::from(rcode).min(RCODES.len());
        let label = || {
            rcode_name(rcode)
                .map(str::to_string)
                .unwrap_or_else(|| rcode.to_string())
        };
        let make = || {
            let rc = label();
            RcodeMetrics {
                responses: self
                    .responses
                    .get_or_create(&vec![("rcode", rc.clone()), ("to", self.to.clone())])
                    .clone(),
                duration: self
                    .durations
                    .get_or_create(&vec![("to", self.to.clone()), ("rcode", rc.clone())])
                    .clone(),
                proxy_duration: self
                    .proxy_durations
                    .get_or_create(&vec![
                        ("proxy_name", "forward".to_string()),
                        ("to", self.to.clone()),
                        ("rcode", rc),
                    ])
                    .clone(),
            }
        };
        if slot == RCODES.len() || rcode_name(rcode).is_none() {
            // Rare rcodes without a name: resolved each time.
            let m = make();
            m.responses.inc();
            m.duration.observe(seconds);
            m.proxy_duration.observe(seconds);
            return;
        }
        let m = self.by_rcode[slot].get_or_init(make);
        m.responses.inc();
        m.duration.observe(seconds);
        m.proxy_duration.observe(seconds);
    }

    /// Count a health probe that got no answer.
    pub fn healthcheck_failed(&self) {
        for c in &self.healthcheck_failures {
            c.inc();
        }
    }
}

impl CoreDns {
    /// Create the families and register them in `registry`; `upstream_overflow` is the
    /// counter the handler increments when `--max-concurrent` refuses a question (exported
    /// again as `coredns_forward_max_concurrent_rejects_total`).
    pub fn new(registry: &mut Registry, server: String, upstream_overflow: &Counter) -> Self {
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            requests.clone(),
        );
        let responses = Family::<Labels, Counter>::default();
        registry.register(
            "coredns_dns_responses",
            "Counter of response status codes.",
            responses.clone(),
        );
        let durations =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(time_buckets()));
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            durations.clone(),
        );
        let size = || Histogram::new(SIZE_BUCKETS);
        let request_sizes = Family::<Labels, Histogram>::new_with_constructor(size);
        registry.register(
            "coredns_dns_request_size_bytes",
            "Size of the request in bytes per zone and protocol.",
            request_sizes.clone(),
        );
        let response_sizes = Family::<Labels, Histogram>::new_with_constructor(size);
        registry.register(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            response_sizes.clone(),
        );

        let cache_labels = |with_type: Option<&'static str>| -> Labels {
            let mut l = vec![("server", server.clone())];
            if let Some(t) = with_type {
                l.push(("type", t.to_string()));
            }
            l.push(("zones", ".".to_string()));
            l.push(("view", String::new()));
            l
        };
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let cache_requests = family(
            registry,
            "coredns_cache_requests",
            "The count of cache requests.",
        );
        let cache_hits = family(registry, "coredns_cache_hits", "The count of cache hits.");
        let cache_misses = family(
            registry,
            "coredns_cache_misses",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
        );
        let cache_prefetch = family(
            registry,
            "coredns_cache_prefetch",
            "The number of times the cache has prefetched a cached item.",
        );
        let cache_stale = family(
            registry,
            "coredns_cache_served_stale",
            "The number of requests served from stale cache entries.",
        );
        let cache_evictions = family(
            registry,
            "coredns_cache_evictions",
            "The count of cache evictions.",
        );
        let cache_entries = Family::<Labels, Gauge>::default();
        registry.register(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            cache_entries.clone(),
        );
        let typed = |f: &Family<Labels, Counter>| {
            CACHE_TYPES.map(|t| f.get_or_create(&cache_labels(Some(t))).clone())
        };
        let cache = CacheMetrics {
            requests: cache_requests.get_or_create(&cache_labels(None)).clone(),
            hits: typed(&cache_hits),
            misses: cache_misses.get_or_create(&cache_labels(None)).clone(),
            served_stale: cache_stale.get_or_create(&cache_labels(None)).clone(),
            prefetch: cache_prefetch.get_or_create(&cache_labels(None)).clone(),
            evictions: typed(&cache_evictions),
            entries: CACHE_TYPES
                .map(|t| cache_entries.get_or_create(&cache_labels(Some(t))).clone()),
        };

        let forward_requests = family(
            registry,
            "coredns_forward_requests",
            "Counter of requests made per upstream.",
        );
        let forward_responses = family(
            registry,
            "coredns_forward_responses",
            "Counter of responses received per upstream.",
        );
        let forward_durations =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(time_buckets()));
        registry.register(
            "coredns_forward_request_duration_seconds",
            "Histogram of the time each request took.",
            forward_durations.clone(),
        );
        let forward_healthcheck_failures = family(
            registry,
            "coredns_forward_healthcheck_failures",
            "Counter of the number of failed healthchecks.",
        );
        let forward_healthcheck_broken = Counter::default();
        registry.register(
            "coredns_forward_healthcheck_broken",
            "Counter of the number of complete failures of the healthchecks.",
            forward_healthcheck_broken.clone(),
        );
        registry.register(
            "coredns_forward_max_concurrent_rejects",
            "Counter of the number of queries rejected because the concurrent queries were at maximum.",
            upstream_overflow.clone(),
        );
        let proxy_durations =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(time_buckets()));
        registry.register(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            proxy_durations.clone(),
        );
        let proxy_healthcheck_failures = family(
            registry,
            "coredns_proxy_healthcheck_failures",
            "Counter of the number of failed healthchecks.",
        );

        let build_info = Family::<Labels, Gauge>::default();
        registry.register(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            build_info.clone(),
        );
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                (
                    "revision",
                    option_env!("KUBE_DNS_RS_REVISION")
                        .unwrap_or("unknown")
                        .to_string(),
                ),
                ("goversion", "none (Rust)".to_string()),
            ])
            .set(1);
        registry.register(
            "coredns_panics",
            "A metrics that counts the number of panics.",
            panics(),
        );

        CoreDns {
            request_slots: slots(2 * 2 * TYPE_SLOTS),
            response_slots: slots(RCODES.len() * PLUGINS),
            duration_slot: OnceLock::new(),
            request_size_slots: [OnceLock::new(), OnceLock::new()],
            response_size_slots: [OnceLock::new(), OnceLock::new()],
            server,
            requests,
            responses,
            durations,
            request_sizes,
            response_sizes,
            cache,
            forward_requests,
            forward_responses,
            forward_durations,
            forward_healthcheck_failures,
            proxy_durations,
            proxy_healthcheck_failures,
            forward_healthcheck_broken,
        }
    }

    fn labels(&self) -> Labels {
        vec![
            ("server", self.server.clone()),
            ("zone", ".".to_string()),
            ("view", String::new()),
        ]
    }

    /// Count one answered query (`vars.Report` in CoreDNS).
    pub fn observe(&self, q: &QueryObservation) {
        let proto = match q.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        };
        let proto_label = || ["udp", "tcp"][proto].to_string();
        let family = usize::from(q.ipv6);
        let ty = type_slot(q.qtype);
        self.request_slots[(proto * 2 + family) * TYPE_SLOTS + ty]
            .get_or_init(|| {
                let mut l = self.labels();
                l.push(("proto", proto_label()));
                l.push(("family", ["1", "2"][family].to_string()));
                l.push(("type", type_label(ty).to_string()));
                self.requests.get_or_create(&l).clone()
            })
            .inc();
        self.duration_slot
            .get_or_init(|| self.durations.get_or_create(&self.labels()).clone())
            .observe(q.seconds);
        let sized = |f: &Family<Labels, Histogram>| {
            let mut l = self.labels();
            l.push(("proto", proto_label()));
            f.get_or_create(&l).clone()
        };
        self.request_size_slots[proto]
            .get_or_init(|| sized(&self.request_sizes))
            .observe(q.request_size as f64);
        self.response_size_slots[proto]
            .get_or_init(|| sized(&self.response_sizes))
            .observe(q.reply_size as f64);
        let rcode = u16::from(q.rcode);
        let plugin = q.system as usize;
        let response = |rc: String| {
            let mut l = self.labels();
            l.push(("rcode", rc));
            l.push(("plugin", plugin_label(q.system).to_string()));
            self.responses.get_or_create(&l).clone()
        };
        match rcode_name(rcode) {
            Some(name) => {
                self.response_slots[usize::from(rcode) * PLUGINS + plugin]
                    .get_or_init(|| response(name.to_string()))
                    .inc();
            }
            // Rare rcodes without a name: resolved each time.
            None => {
                response(format!("RCODE{rcode}")).inc();
            }
        }
    }

    /// The handles of upstream `to` (resolve once per upstream and keep them).
    pub fn upstream(&self, to: SocketAddr) -> Arc<UpstreamMetrics> {
        let to = to.to_string();
        Arc::new(UpstreamMetrics {
            requests: self
                .forward_requests
                .get_or_create(&vec![("to", to.clone())])
                .clone(),
            healthcheck_failures: [
                self.forward_healthcheck_failures
                    .get_or_create(&vec![("to", to.clone())])
                    .clone(),
                self.proxy_healthcheck_failures
                    .get_or_create(&vec![
                        ("proxy_name", "forward".to_string()),
                        ("to", to.clone()),
                    ])
                    .clone(),
            ],
            by_rcode: slots(RCODES.len()),
            responses: self.forward_responses.clone(),
            durations: self.forward_durations.clone(),
            proxy_durations: self.proxy_durations.clone(),
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_coredns_spellings() {
        assert_eq!(type_label(type_slot(28)), "AAAA");
        assert_eq!(type_label(type_slot(33)), "SRV");
        assert_eq!(type_label(type_slot(99)), "other");
        assert_eq!(type_label(type_slot(0)), "other");
        assert_eq!(rcode_name(3), Some("NXDOMAIN"));
        assert_eq!(rcode_name(16), Some("BADSIG"));
        assert_eq!(rcode_name(12), None);
        assert_eq!(server_label("0.0.0.0:53".parse().unwrap()), "dns://:53");
        assert_eq!(server_label("[::]:10053".parse().unwrap()), "dns://:10053");
        assert_eq!(
            server_label("127.0.0.1:1053".parse().unwrap()),
            "dns://127.0.0.1:1053"
        );
    }

    #[test]
    fn buckets_match_coredns() {
        let b: Vec<f64> = time_buckets().collect();
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], 0.00025);
        assert_eq!(b[15], 8.192);
    }
}
