//! Shared pieces of the benchmarks (see `docs/benchmarks.md` and `bench/run`):
//!
//! * [`Dataset`]: the synthetic cluster every part uses — namespaces of ClusterIP and headless
//!   services, each with the same number of ready endpoints — and
//! * [`Dataset::etcd_records`]: exactly the keys and values kube2sky writes for it
//!   (records.md §3), built with the `msg` crate,
//! * [`Dataset::knot_zones`]: the same records as zone files for Knot DNS,
//! * [`Dataset::queries`]: dnsperf query files for the three query mixes,
//! * small helpers: a deterministic PRNG, `/proc` readers, bulk etcd writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use msg::{encode_value, Prefix, Record, Zone};

/// The zone every benchmark serves.
pub const ZONE: &str = "cluster.local";
/// TTL kube2sky writes (and Knot's zone uses).
pub const TTL: u32 = 30;
/// Most operations etcd accepts in one transaction by default (`--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// The synthetic cluster, and the dataset flags of the bench binaries. By default 100 namespaces
/// × 100 services (90 ClusterIP, 10 headless) × 10 endpoints: 10,000 services and 100,000
/// endpoints.
#[derive(Debug, Clone, Copy, clap::Args)]
#[command(about = None, long_about = None, next_help_heading = "Dataset")]
pub struct Dataset {
    /// Namespaces (`ns-0`, `ns-1`, …).
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Services per namespace, the last `headless_per_ns` of them headless.
    #[arg(long, default_value_t = 100)]
    pub services_per_ns: usize,
    /// Headless services per namespace (at most --services-per-ns).
    #[arg(long, default_value_t = 10)]
    pub headless_per_ns: usize,
    /// Ready endpoints per service (one address each).
    #[arg(long, default_value_t = 10)]
    pub endpoints_per_service: usize,
}

/// One endpoint (one address).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The endpoint's address (from 10.128.0.0/9).
    pub ip: Ipv4Addr,
    /// Set for headless services (StatefulSet style `db-3-0`), none for ClusterIP ones.
    pub hostname: Option<String>,
}

impl Endpoint {
    /// The endpoint's DNS label: its hostname, else the dashed IP.
    pub fn label(&self) -> String {
        match &self.hostname {
            Some(h) => h.clone(),
            None => msg::dashed_ip(IpAddr::V4(self.ip)),
        }
    }
}

/// One service of the dataset.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's namespace (`ns-<i>`).
    pub ns: String,
    /// The service's name.
    pub name: String,
    /// None for headless services.
    pub cluster_ip: Option<Ipv4Addr>,
    /// The one named TCP port: `http`/80 for ClusterIP, `postgres`/5432 for headless.
    pub port_name: &'static str,
    /// The port's number (80 or 5432).
    pub port: u16,
    /// Its ready endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// Whether the service has no cluster IP.
    pub fn headless(&self) -> bool {
        self.cluster_ip.is_none()
    }
}

/// `10.96.0.0/12` for cluster IPs, `10.128.0.0/9` for endpoints (both fit any dataset we use).
fn nth_ip(base: [u8; 4], n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be_bytes(base).wrapping_add(1 + n as u32))
}

impl Dataset {
    /// Reject flag combinations that describe no cluster.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.headless_per_ns <= self.services_per_ns,
            "--headless-per-ns must not exceed --services-per-ns"
        );
        Ok(())
    }

    /// Services in the whole dataset.
    pub fn services_total(&self) -> usize {
        self.namespaces * self.services_per_ns
    }

    /// Endpoints in the whole dataset.
    pub fn endpoints_total(&self) -> usize {
        self.services_total() * self.endpoints_per_service
    }

    /// The name of the `i`th namespace: `ns-<i>`.
    pub fn namespace(i: usize) -> String {
        format!("ns-{i}")
    }

    /// Every service in a stable order.
    pub fn services(&self) -> Vec<Service> {
        let mut out = Vec::with_capacity(self.services_total());
        let clusterip_per_ns = self.services_per_ns - self.headless_per_ns;
        let mut cluster_ips = 0usize;
        let mut endpoint_ips = 0usize;
        for n in 0..self.namespaces {
            let ns = Self::namespace(n);
            for k in 0..self.services_per_ns {
                let headless = k >= clusterip_per_ns;
                let name = if headless {
                    format!("db-{}", k - clusterip_per_ns)
                } else {
                    format!("svc-{k}")
                };
                let endpoints = (0..self.endpoints_per_service)
                    .map(|i| {
                        let ip = nth_ip([10, 128, 0, 0], endpoint_ips);
                        endpoint_ips += 1;
                        Endpoint {
                            ip,
                            hostname: headless.then(|| format!("{name}-{i}")),
                        }
                    })
                    .collect();
                let cluster_ip = (!headless).then(|| {
                    cluster_ips += 1;
                    nth_ip([10, 96, 0, 0], cluster_ips - 1)
                });
                out.push(Service {
                    ns: ns.clone(),
                    name,
                    cluster_ip,
                    port_name: if headless { "postgres" } else { "http" },
                    port: if headless { 5432 } else { 80 },
                    endpoints,
                });
            }
        }
        out
    }

    /// The keys and values kube2sky writes for this dataset (records.md §3), sorted by key.
    pub fn etcd_records(&self, zone: &Zone) -> BTreeMap<String, String> {
        let mut kv = BTreeMap::new();
        let mut ptrs: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for s in self.services() {
            let fqdn = zone.service_fqdn(&s.ns, &s.name);
            let addrs: Vec<Record> = s
                .endpoints
                .iter()
                .map(|e| Record::service(e.ip.to_string(), 0, TTL))
                .collect();
            let srv_key = zone.srv_key(&s.ns, &s.name, "tcp", s.port_name);
            match s.cluster_ip {
                Some(ip) => {
                    let svc = [Record::service(ip.to_string(), 0, TTL)];
                    kv.insert(zone.service_key(&s.ns, &s.name), encode_value(&svc));
                    let srv = [Record::service(fqdn.clone(), s.port, TTL)];
                    kv.insert(srv_key, encode_value(&srv));
                    ptrs.entry(zone.ptr_key(IpAddr::V4(ip)))
                        .or_default()
                        .push(Record::host(fqdn.clone()));
                }
                None => {
                    kv.insert(zone.service_key(&s.ns, &s.name), encode_value(&addrs));
                    let srv: Vec<Record> = s
                        .endpoints
                        .iter()
                        .map(|e| {
                            Record::service(
                                zone.endpoint_fqdn(&s.ns, &s.name, &e.label()),
                                s.port,
                                TTL,
                            )
                        })
                        .collect();
                    kv.insert(srv_key, encode_value(&srv));
                }
            }
            for (e, rec) in s.endpoints.iter().zip(&addrs) {
                let label = e.label();
                kv.insert(
                    zone.endpoint_key(&s.ns, &s.name, &label),
                    encode_value(std::slice::from_ref(rec)),
                );
                ptrs.entry(zone.ptr_key(IpAddr::V4(e.ip)))
                    .or_default()
                    .push(Record::host(zone.endpoint_fqdn(&s.ns, &s.name, &label)));
            }
        }
        for (k, v) in ptrs {
            kv.insert(k, encode_value(&v));
        }
        kv.insert(
            zone.dns_version_key(),
            encode_value(&[Record {
                text: "1.1.0".into(),
                ..Default::default()
            }]),
        );
        kv
    }

    /// Extra records both servers carry that kube2sky does not write: an apex NS (Knot insists
    /// on one) and its address. For etcd: `(key, value)`.
    pub fn ns_record(zone: &Zone) -> (String, String) {
        (
            msg::name_to_key(zone.prefix(), &format!("ns1.ns.dns.{}", zone.domain())),
            encode_value(&[Record::host("127.0.0.1")]),
        )
    }

    /// Knot zone files for the same records: `(origin, text)` for `cluster.local.` and
    /// `10.in-addr.arpa.`. SRV weights are what skydns computes from the stored raw weights
    /// (records.md §1): 100 for one record, 10 each for ten.
    pub fn knot_zones(&self) -> Vec<(String, String)> {
        let origin = format!("{ZONE}.");
        let mut fwd = String::new();
        let _ = writeln!(fwd, "$ORIGIN {origin}\n$TTL {TTL}");
        let _ = writeln!(
            fwd,
            "@ {TTL} IN SOA ns.dns.{origin} hostmaster.{origin} 1 7200 1800 86400 {TTL}"
        );
        let _ = writeln!(fwd, "@ IN NS ns1.ns.dns.{origin}");
        let _ = writeln!(fwd, "ns1.ns.dns IN A 127.0.0.1");
        let _ = writeln!(fwd, "dns-version IN TXT \"1.1.0\"");
        let mut rev = String::new();
        let _ = writeln!(rev, "$ORIGIN 10.in-addr.arpa.\n$TTL {TTL}");
        let _ = writeln!(
            rev,
            "@ {TTL} IN SOA ns.dns.{origin} hostmaster.{origin} 1 7200 1800 86400 {TTL}"
        );
        let _ = writeln!(rev, "@ IN NS ns1.ns.dns.{origin}");
        let rev_name = |ip: Ipv4Addr| {
            let [_, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}")
        };
        for s in self.services() {
            let rel = format!("{}.{}.svc", s.name, s.ns);
            let fqdn = format!("{rel}.{origin}");
            let srv_owner = format!("_{}._tcp.{rel}", s.port_name);
            match s.cluster_ip {
                Some(ip) => {
                    let _ = writeln!(fwd, "{rel} IN A {ip}");
                    let _ = writeln!(fwd, "{srv_owner} IN SRV 10 100 {} {fqdn}", s.port);
                    let _ = writeln!(rev, "{} IN PTR {fqdn}", rev_name(ip));
                }
                None => {
                    let weight = 100 / s.endpoints.len().max(1);
                    for e in &s.endpoints {
                        let _ = writeln!(fwd, "{rel} IN A {}", e.ip);
                        let _ = writeln!(
                            fwd,
                            "{srv_owner} IN SRV 10 {weight} {} {}.{fqdn}",
                            s.port,
                            e.label()
                        );
                    }
                }
            }
            for e in &s.endpoints {
                let _ = writeln!(fwd, "{}.{rel} IN A {}", e.label(), e.ip);
                let _ = writeln!(rev, "{} IN PTR {}.{fqdn}", rev_name(e.ip), e.label());
            }
        }
        vec![(origin, fwd), ("10.in-addr.arpa.".to_string(), rev)]
    }

    /// A dnsperf query file (`name type` per line) of `n` queries for `mix`.
    pub fn queries(&self, mix: Mix, n: usize, seed: u64) -> String {
        let services = self.services();
        let clusterip: Vec<&Service> = services.iter().filter(|s| !s.headless()).collect();
        let headless: Vec<&Service> = services.iter().filter(|s| s.headless()).collect();
        let mut rng = Rng::new(seed ^ mix as u64);
        let z = ZONE;
        let mut out = String::with_capacity(n * 48);
        for _ in 0..n {
            let roll = rng.below(100);
            let line = match mix {
                // A on ClusterIP services 40%, A on endpoint names 30%, SRV on a ClusterIP
                // service's named port 20%, A on headless services (10 addresses) 10%.
                Mix::Hits => {
                    if roll < 40 {
                        let s = rng.pick(&clusterip);
                        format!("{}.{}.svc.{z} A", s.name, s.ns)
                    } else if roll < 70 {
                        let s = rng.pick(&services);
                        let e = rng.pick(&s.endpoints);
                        format!("{}.{}.{}.svc.{z} A", e.label(), s.name, s.ns)
                    } else if roll < 90 {
                        let s = rng.pick(&clusterip);
                        format!("_{}._tcp.{}.{}.svc.{z} SRV", s.port_name, s.name, s.ns)
                    } else {
                        let s = rng.pick(&headless);
                        format!("{}.{}.svc.{z} A", s.name, s.ns)
                    }
                }
                // What a pod's search path (`<ns>.svc.Z svc.Z Z`, ndots:5) produces before the
                // real name: external names under `<ns>.svc.Z` 40% and `svc.Z` 20%,
                // `svc.other-ns` under `<ns>.svc.Z` 25%, `svc.other-ns.svc` under `svc.Z` 15%;
                // A and AAAA alike. All NXDOMAIN.
                Mix::Misses => {
                    let qtype = if rng.below(2) == 0 { "A" } else { "AAAA" };
                    let ns = Self::namespace(rng.below(self.namespaces));
                    if roll < 40 {
                        format!("{}.{ns}.svc.{z} {qtype}", rng.pick(EXTERNAL))
                    } else if roll < 60 {
                        format!("{}.svc.{z} {qtype}", rng.pick(EXTERNAL))
                    } else if roll < 85 {
                        let s = rng.pick(&services);
                        format!("{}.{}.{ns}.svc.{z} {qtype}", s.name, s.ns)
                    } else {
                        let s = rng.pick(&services);
                        format!("{}.{}.svc.svc.{z} {qtype}", s.name, s.ns)
                    }
                }
                // AAAA on IPv4-only names: ClusterIP services 60%, endpoints 30%, headless 10%.
                Mix::Nodata => {
                    if roll < 60 {
                        let s = rng.pick(&clusterip);
                        format!("{}.{}.svc.{z} AAAA", s.name, s.ns)
                    } else if roll < 90 {
                        let s = rng.pick(&services);
                        let e = rng.pick(&s.endpoints);
                        format!("{}.{}.{}.svc.{z} AAAA", e.label(), s.name, s.ns)
                    } else {
                        let s = rng.pick(&headless);
                        format!("{}.{}.svc.{z} AAAA", s.name, s.ns)
                    }
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// External names pods commonly look up (each first tried under the search path).
pub const EXTERNAL: &[&str] = &[
    "www.google.com",
    "api.github.com",
    "registry-1.docker.io",
    "s3.amazonaws.com",
    "sts.amazonaws.com",
    "login.microsoftonline.com",
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "storage.googleapis.com",
    "oauth2.googleapis.com",
    "api.stripe.com",
    "hooks.slack.com",
    "sentry.io",
    "o123.ingest.sentry.io",
    "api.datadoghq.com",
    "http-intake.logs.datadoghq.com",
    "collector.newrelic.com",
    "kafka-0.kafka-headless",
    "redis",
    "postgres",
    "mysql.db",
    "elasticsearch.logging",
    "vault.example.com",
    "auth.example.org",
    "cdn.jsdelivr.net",
    "ocsp.digicert.com",
    "time.google.com",
    "metadata.google.internal",
    "169-254-169-254.nip.io",
];

/// The three query mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Names that exist: A on services and endpoints, SRV on named ports.
    Hits = 1,
    /// NXDOMAIN names a pod's search path produces before the real name.
    Misses = 2,
    /// Names that exist, asked for AAAA they lack (NODATA).
    Nodata = 3,
}

impl Mix {
    /// Every mix, in the order the bench runs them.
    pub const ALL: [Mix; 3] = [Mix::Hits, Mix::Misses, Mix::Nodata];

    /// The mix's name, as in the query file name `queries-<name>.txt`.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Hits => "hits",
            Mix::Misses => "misses",
            Mix::Nodata => "nodata",
        }
    }
}

/// xorshift64* — deterministic, dependency-free, good enough to shuffle queries.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A uniform-ish pick from `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The default zone handle (`/skydns` prefix, `cluster.local`).
pub fn zone() -> Zone {
    Zone::new(Prefix::default(), ZONE)
}

/// Write `kv` into etcd in transactions of at most [`MAX_TXN_OPS`] puts, `parallel` at a time.
/// Returns the number of transactions.
pub async fn put_all(
    client: &etcd_client::Client,
    kv: &[(String, String)],
    parallel: usize,
) -> anyhow::Result<usize> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let chunks: Vec<&[(String, String)]> = kv.chunks(MAX_TXN_OPS).collect();
    let n = chunks.len();
    stream::iter(chunks)
        .map(|chunk| {
            let mut kv_client = client.kv_client();
            async move {
                let ops: Vec<etcd_client::TxnOp> = chunk
                    .iter()
                    .map(|(k, v)| etcd_client::TxnOp::put(k.as_str(), v.as_str(), None))
                    .collect();
                kv_client
                    .txn(etcd_client::Txn::new().and_then(ops))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(n)
}

/// Fields of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`), if readable.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// utime + stime of a process in clock ticks, from `/proc/<pid>/stat`.
pub fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Percentile (0..=100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Dataset {
        Dataset {
            namespaces: 2,
            services_per_ns: 4,
            headless_per_ns: 1,
            endpoints_per_service: 3,
        }
    }

    #[test]
    fn records_follow_the_contract() {
        let z = zone();
        let kv = small().etcd_records(&z);
        assert_eq!(
            kv["/skydns/local/cluster/svc/ns-0/svc-0"],
            r#"{"host":"10.96.0.1","priority":10,"weight":10,"ttl":30}"#
        );
        assert_eq!(
            kv["/skydns/local/cluster/svc/ns-0/svc-0/_tcp/_http"],
            r#"{"host":"svc-0.ns-0.svc.cluster.local.","port":80,"priority":10,"weight":10,"ttl":30}"#
        );
        assert_eq!(
            kv["/skydns/local/cluster/svc/ns-0/svc-0/10-128-0-1"],
            r#"{"host":"10.128.0.1","priority":10,"weight":10,"ttl":30}"#
        );
        assert_eq!(
            kv["/skydns/arpa/in-addr/10/96/0/1"],
            r#"{"host":"svc-0.ns-0.svc.cluster.local."}"#
        );
        let headless = &kv["/skydns/local/cluster/svc/ns-0/db-0"];
        assert!(headless.starts_with('[') && headless.matches("host").count() == 3);
        assert!(kv.contains_key("/skydns/local/cluster/svc/ns-0/db-0/db-0-2"));
        assert!(kv["/skydns/local/cluster/svc/ns-0/db-0/_tcp/_postgres"]
            .contains(r#""host":"db-0-1.db-0.ns-0.svc.cluster.local.","port":5432"#));
        // svc + srv + ptr + 3 × (endpoint + ptr) per ClusterIP service, the same minus the
        // cluster IP's PTR per headless one, plus dns-version.
        assert_eq!(kv.len(), 2 * (3 * 9 + 8) + 1);
    }

    #[test]
    fn queries_and_zone() {
        let d = small();
        for mix in Mix::ALL {
            let q = d.queries(mix, 50, 7);
            assert_eq!(q.lines().count(), 50);
            assert!(q.lines().all(|l| l.contains(".cluster.local ")));
        }
        let zones = d.knot_zones();
        assert!(zones[0].1.contains("svc-0.ns-0.svc IN A 10.96.0.1"));
        assert!(zones[1]
            .1
            .contains("1.0.96 IN PTR svc-0.ns-0.svc.cluster.local."));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 99.0), 4.0);
    }
}
