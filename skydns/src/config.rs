//! Command-line flags (SkyDNS names, env fallbacks) and their validation into `Settings`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::error::ConfigError;

/// skydns: serves the cluster zone from etcd and forwards everything else upstream.
#[derive(Debug, Clone, Parser)]
#[command(name = "skydns", version, about)]
pub struct Config {
    /// Address to serve DNS on (UDP and TCP).
    #[arg(long, env = "SKYDNS_ADDR", default_value = "127.0.0.1:53")]
    pub addr: String,
    /// The zone we are authoritative for.
    #[arg(long, env = "SKYDNS_DOMAIN", default_value = "cluster.local.")]
    pub domain: String,
    /// etcd endpoints, comma separated.
    #[arg(long, env = "ETCD_MACHINES", default_value = "http://127.0.0.1:2379")]
    pub machines: String,
    /// etcd key prefix the records live under.
    #[arg(long, env = "SKYDNS_PATH_PREFIX", default_value = "skydns")]
    pub path_prefix: String,
    /// Upstream nameservers (ip or ip:port, comma separated); default: /etc/resolv.conf.
    #[arg(long, env = "SKYDNS_NAMESERVERS")]
    pub nameservers: Option<String>,
    /// Upstreams for one zone, `ZONE=ADDR[,ADDR…]` (repeatable; env: `;`-separated).
    #[arg(
        long = "stub-domain",
        env = "SKYDNS_STUB_DOMAINS",
        value_delimiter = ';'
    )]
    pub stub_domains: Vec<String>,
    /// Directory holding the kube-dns ConfigMap keys `stubDomains` and `upstreamNameservers`
    /// (JSON), read again every second; a change applies without a restart.
    #[arg(long, env = "SKYDNS_CONFIG_DIR")]
    pub config_dir: Option<std::path::PathBuf>,
    /// How the upstreams of a zone are ordered for each question.
    #[arg(
        long,
        env = "SKYDNS_FORWARD_POLICY",
        value_enum,
        default_value = "random"
    )]
    pub forward_policy: crate::forward::routes::Policy,
    /// Serve an expired forwarded answer (TTL 30) for this long past its expiry when the
    /// upstreams fail (RFC 8767; `0` = never).
    #[arg(long, env = "SKYDNS_SERVE_STALE", default_value = "1h")]
    pub serve_stale: String,
    /// Refresh a forwarded answer asked this many times before it expires (0 = never).
    #[arg(long, env = "SKYDNS_PREFETCH", default_value_t = 2)]
    pub prefetch: u32,
    /// Shortest time a forwarded answer is cached, seconds (never above --rcache-ttl).
    #[arg(long, env = "SKYDNS_RCACHE_MIN_TTL", default_value_t = 0)]
    pub rcache_min_ttl: u32,
    /// Do not forward names outside the domain (answer REFUSED).
    #[arg(long, env = "SKYDNS_NO_REC")]
    pub no_rec: bool,
    /// TTL for records that carry none.
    #[arg(long, env = "SKYDNS_TTL", default_value_t = 30)]
    pub ttl: u32,
    /// Negative-answer TTL and SOA minimum.
    #[arg(long, env = "SKYDNS_MIN_TTL", default_value_t = 30)]
    pub min_ttl: u32,
    /// Most entries in the forwarding cache (0 = off).
    #[arg(long, env = "SKYDNS_RCACHE", default_value_t = 10000)]
    pub rcache: usize,
    /// Most memory the forwarding cache holds, in MiB.
    #[arg(long, env = "SKYDNS_RCACHE_MB", default_value_t = 32)]
    pub rcache_mb: usize,
    /// Encoded authoritative replies kept for repeated questions (0 = off); entries are
    /// invalidated by any index change.
    #[arg(long, env = "SKYDNS_ANSWER_CACHE", default_value_t = 50000)]
    pub answer_cache: usize,
    /// Most memory the answer cache holds, in MiB.
    #[arg(long, env = "SKYDNS_ANSWER_CACHE_MB", default_value_t = 32)]
    pub answer_cache_mb: usize,
    /// Most upstream lookups in flight at once, UDP and TCP together; beyond it a question
    /// that needs the upstream is answered REFUSED (as CoreDNS's `max_concurrent`).
    #[arg(long, env = "SKYDNS_MAX_CONCURRENT", default_value_t = 1000)]
    pub max_concurrent: usize,
    /// Longest time a forwarded answer is cached, seconds.
    #[arg(long, env = "SKYDNS_RCACHE_TTL", default_value_t = 60)]
    pub rcache_ttl: u32,
    /// Timeout for one upstream attempt (e.g. 2s, 500ms).
    #[arg(long, env = "SKYDNS_RTIMEOUT", default_value = "2s")]
    pub rtimeout: String,
    /// Hostmaster mailbox in the SOA (default hostmaster@<domain>).
    #[arg(long, env = "SKYDNS_HOSTMASTER")]
    pub hostmaster: Option<String>,
    /// Address for /metrics and /readiness (HTTP).
    #[arg(long, env = "SKYDNS_METRICS_ADDR", default_value = "127.0.0.1:9153")]
    pub metrics_addr: String,
    /// Largest UDP answer we send (EDNS payload we advertise).
    #[arg(long, env = "SKYDNS_UDP_SIZE", default_value_t = 1232)]
    pub udp_size: u16,
    /// UDP receive threads (default: one per CPU).
    #[arg(long, env = "SKYDNS_UDP_THREADS")]
    pub udp_threads: Option<usize>,
    /// Most TCP connections served at once.
    #[arg(long, env = "SKYDNS_TCP_MAX_CONNS", default_value_t = 1000)]
    pub tcp_max_conns: usize,
    /// Close a TCP connection idle this long (e.g. 10s).
    #[arg(long, env = "SKYDNS_TCP_IDLE_TIMEOUT", default_value = "10s")]
    pub tcp_idle_timeout: String,
    /// Answer multi-record A/AAAA questions in a rotating order (SkyDNS `-round-robin`).
    #[arg(long, env = "SKYDNS_ROUND_ROBIN", default_value_t = true, action = clap::ArgAction::Set)]
    pub round_robin: bool,
    /// This replica's identity in `hostname.bind`/`id.server` (CHAOS TXT) and NSID (default:
    /// the hostname).
    #[arg(long, env = "SKYDNS_ID")]
    pub id: Option<String>,
    /// Answer an empty NSID option (RFC 5001) with `--id`.
    #[arg(long, env = "SKYDNS_NSID")]
    pub nsid: bool,
    /// On shutdown, keep answering DNS this long after `/readiness` turns 503 (`0` = none).
    #[arg(long, env = "SKYDNS_LAMEDUCK", default_value = "5s")]
    pub lameduck: String,
    /// Write one line per query to stdout, in CoreDNS `log`'s common format.
    #[arg(long, env = "SKYDNS_LOG_QUERIES")]
    pub log_queries: bool,
    /// Pod records (`a-b-c-d.<ns>.pod.<zone>`): `verified` answers what kube2sky wrote,
    /// `insecure` answers any such name from the address in it, `disabled` answers NXDOMAIN.
    #[arg(long, env = "SKYDNS_PODS", value_enum, default_value_t = PodsMode::Verified)]
    pub pods: PodsMode,
    /// Answer a pod's `<name>.<ns>.svc.<zone>` misses by walking the rest of its search path
    /// server-side (CoreDNS `autopath`); the pod is found by its source address.
    #[arg(long, env = "SKYDNS_AUTOPATH")]
    pub autopath: bool,
    /// A name in the zone whose records `local.dns.<zone>` answers (SkyDNS `-local`: give each
    /// replica its own, e.g. `r1.replicas.dns.cluster.local`).
    #[arg(long, env = "SKYDNS_LOCAL")]
    pub local: Option<String>,
    /// etcd client TLS key (PEM).
    #[arg(long = "tls-key", env = "ETCD_TLSKEY")]
    pub tls_key: Option<String>,
    /// etcd client TLS certificate (PEM).
    #[arg(long = "tls-pem", env = "ETCD_TLSPEM")]
    pub tls_pem: Option<String>,
    /// CA certificate for etcd (PEM).
    #[arg(long = "ca-cert", env = "ETCD_CACERT")]
    pub ca_cert: Option<String>,
    /// etcd username.
    #[arg(long, env = "ETCD_USERNAME")]
    pub username: Option<String>,
    /// etcd password.
    #[arg(long, env = "ETCD_PASSWORD")]
    pub password: Option<String>,
}

/// Validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DNS listen address, UDP and TCP (`--addr`).
    pub addr: SocketAddr,
    /// HTTP listen address for /metrics and /readiness (`--metrics-addr`).
    pub metrics_addr: SocketAddr,
    /// The zone (`--domain`) under the key prefix (`--path-prefix`).
    pub zone: msg::Zone,
    /// etcd endpoints, `http://` or `https://`, at least one (`--machines`).
    pub machines: Vec<String>,
    /// Default upstreams: `--nameservers`, else /etc/resolv.conf's (our own address left out).
    pub upstreams: Vec<SocketAddr>,
    /// Whether names outside the zone are forwarded (not `--no-rec`).
    pub recursion: bool,
    /// TTL of records that carry none, in seconds (`--ttl`).
    pub ttl: u32,
    /// Negative-answer TTL and SOA minimum, in seconds (`--min-ttl`).
    pub min_ttl: u32,
    /// Most entries in the forwarding cache; 0 turns it off (`--rcache`).
    pub rcache: usize,
    /// Bytes the forwarding cache may hold.
    pub rcache_bytes: usize,
    /// Longest a forwarded answer is cached, in seconds (`--rcache-ttl`).
    pub rcache_ttl: u32,
    /// Shortest a forwarded answer is cached, in seconds (`--rcache-min-ttl`, ≤ `rcache_ttl`).
    pub rcache_min_ttl: u32,
    /// `--stub-domain` flags.
    pub stub_domains: Vec<(hickory_proto::rr::Name, Vec<SocketAddr>)>,
    /// Directory of the kube-dns ConfigMap keys, re-read every second (`--config-dir`).
    pub config_dir: Option<std::path::PathBuf>,
    /// What `--config-dir` held at start.
    pub file_config: Option<crate::forward::stubs::FileConfig>,
    /// How a zone's upstreams are ordered per question (`--forward-policy`).
    pub forward_policy: crate::forward::routes::Policy,
    /// How long past expiry a forwarded answer may be served when upstreams fail (`--serve-stale`;
    /// zero: never).
    pub serve_stale: Duration,
    /// Refresh a forwarded answer asked this many times before expiry; 0: never (`--prefetch`).
    pub prefetch: u32,
    /// Most entries in the authoritative answer cache; 0 turns it off (`--answer-cache`).
    pub answer_cache: usize,
    /// Bytes the answer cache may hold.
    pub answer_cache_bytes: usize,
    /// Most upstream lookups in flight at once (`--max-concurrent`, 1..=1048576).
    pub max_concurrent: usize,
    /// Timeout of one upstream attempt (`--rtimeout`).
    pub rtimeout: Duration,
    /// SOA mailbox as a fully qualified name (`hostmaster.<domain>.` by default).
    pub hostmaster: String,
    /// Largest UDP reply, and the EDNS payload advertised (`--udp-size`, at least 512).
    pub udp_size: u16,
    /// `--udp-threads`, when given and above 0 (see [`Settings::udp_thread_count`]).
    pub udp_threads: Option<usize>,
    /// Most TCP connections served at once (`--tcp-max-conns`, at least 1).
    pub tcp_max_conns: usize,
    /// How long an idle TCP connection is kept (`--tcp-idle-timeout`).
    pub tcp_idle_timeout: Duration,
    /// etcd TLS files and credentials (pairs checked).
    pub etcd_security: service_kit::EtcdSecurity,
    /// Rotate multi-record A/AAAA answers (`--round-robin`).
    pub round_robin: bool,
    /// `--id`, else the hostname.
    pub id: String,
    /// Answer an empty NSID option with `id` (`--nsid`).
    pub nsid: bool,
    /// How long DNS is still answered after /readiness turns 503 on shutdown (`--lameduck`; zero:
    /// none).
    pub lameduck: Duration,
    /// Log one line per query to stdout (`--log-queries`).
    pub log_queries: bool,
    /// How names below `pod.<zone>` are answered (`--pods`).
    pub pods: PodsMode,
    /// Walk a pod's search path server-side on misses (`--autopath`).
    pub autopath: bool,
    /// The `search` domains of /etc/resolv.conf (the node's, under `dnsPolicy: Default`),
    /// walked by `--autopath` after the cluster's own.
    pub node_search: Vec<String>,
    /// `--local`: the name (in the zone) that `local.dns.<zone>` answers for.
    pub local: Option<String>,
}

/// `--pods`: how the pod tree is answered (CoreDNS's `pods` option names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PodsMode {
    /// Only the pod records kube2sky wrote.
    Verified,
    /// Any `a-b-c-d.<ns>.pod.<zone>` from the address in the name, as kube-dns did.
    Insecure,
    /// NXDOMAIN for every name below `pod.<zone>`.
    Disabled,
}

impl Settings {
    /// UDP receive threads: `--udp-threads`, else one per CPU.
    pub fn udp_thread_count(&self) -> usize {
        self.udp_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }
}

impl Config {
    /// Check every flag; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let addr = parse_addr("--addr", &self.addr)?;
        let metrics_addr = parse_addr("--metrics-addr", &self.metrics_addr)?;
        let domain = self.domain.trim().trim_end_matches('.');
        if domain.is_empty() || !valid_domain(domain) {
            return Err(ConfigError::new(
                "--domain",
                &self.domain,
                "not a domain name",
            ));
        }
        let prefix = msg::Prefix::parse(&self.path_prefix)
            .map_err(|e| ConfigError::new("--path-prefix", &self.path_prefix, e.to_string()))?;
        let machines: Vec<String> = split_list(&self.machines);
        if machines.is_empty() {
            return Err(ConfigError::new(
                "--machines",
                &self.machines,
                "no etcd endpoint",
            ));
        }
        for m in &machines {
            if !(m.starts_with("http://") || m.starts_with("https://")) {
                return Err(ConfigError::new(
                    "--machines",
                    m,
                    "expected http://host:port or https://host:port",
                ));
            }
        }
        let upstreams = match &self.nameservers {
            Some(list) => parse_nameservers(list)?,
            None if self.no_rec => Vec::new(),
            // From resolv.conf: an entry that is our own address would be a loop; leave it out.
            None => resolv_conf_nameservers("/etc/resolv.conf")
                .into_iter()
                .filter(|u| !crate::forward::stubs::is_own(*u, addr))
                .collect(),
        };
        let rtimeout = parse_duration("--rtimeout", &self.rtimeout)?;
        let tcp_idle_timeout = parse_duration("--tcp-idle-timeout", &self.tcp_idle_timeout)?;
        if self.udp_size < 512 {
            return Err(ConfigError::new(
                "--udp-size",
                &self.udp_size.to_string(),
                "must be at least 512",
            ));
        }
        if self.tcp_max_conns == 0 {
            return Err(ConfigError::new(
                "--tcp-max-conns",
                "0",
                "must be at least 1",
            ));
        }
        for (flag, v) in [
            ("--max-concurrent", self.max_concurrent),
            ("--rcache-mb", self.rcache_mb),
            ("--answer-cache-mb", self.answer_cache_mb),
        ] {
            if v == 0 || v > 1 << 20 {
                return Err(ConfigError::new(
                    flag,
                    &v.to_string(),
                    "must be between 1 and 1048576",
                ));
            }
        }
        let zone = msg::Zone::new(prefix, domain);
        let cluster = hickory_proto::rr::Name::from_ascii(zone.domain())
            .map_err(|_| ConfigError::new("--domain", &self.domain, "not a domain name"))?;
        let stub_domains = self
            .stub_domains
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                crate::forward::stubs::parse_stub_flag(s)
                    .map_err(|e| ConfigError::new("--stub-domain", s, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::forward::stubs::check(&stub_domains, &upstreams, &cluster, addr)
            .map_err(|e| ConfigError::new("--nameservers/--stub-domain", "", e))?;
        let file_config = match &self.config_dir {
            None => None,
            Some(dir) => {
                let shown = dir.display().to_string();
                let c = crate::forward::stubs::read_dir(dir)
                    .map_err(|e| ConfigError::new("--config-dir", &shown, e.to_string()))?;
                let upstreams = c.upstream_nameservers.clone().unwrap_or_default();
                crate::forward::stubs::check(&c.stub_domains, &upstreams, &cluster, addr)
                    .map_err(|e| ConfigError::new("--config-dir", &shown, e))?;
                Some(c)
            }
        };
        let serve_stale = parse_duration_or_zero("--serve-stale", &self.serve_stale)?;
        let local = match self.local.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                let fqdn = format!("{}.", name.trim_end_matches('.')).to_ascii_lowercase();
                let parsed = hickory_proto::rr::Name::from_ascii(&fqdn)
                    .map_err(|_| ConfigError::new("--local", name, "not a domain name"))?;
                if !cluster.zone_of(&parsed) {
                    return Err(ConfigError::new("--local", name, "not a name in --domain"));
                }
                Some(fqdn)
            }
        };
        let lameduck = parse_duration_or_zero("--lameduck", &self.lameduck)?;
        let id = match self.id.as_deref().map(str::trim) {
            Some("") => return Err(ConfigError::new("--id", "", "must not be empty")),
            Some(id) if id.len() > 255 => {
                return Err(ConfigError::new("--id", id, "at most 255 bytes"))
            }
            Some(id) => id.to_string(),
            None => hostname(),
        };
        let hostmaster = match &self.hostmaster {
            Some(h) => h.replace('@', ".").trim_end_matches('.').to_string() + ".",
            None => format!("hostmaster.{}", zone.domain()),
        };
        let etcd_security = service_kit::EtcdSecurity::new(
            self.ca_cert.clone(),
            self.tls_pem.clone(),
            self.tls_key.clone(),
            self.username.clone(),
            self.password.clone(),
        )
        .map_err(|e| match e {
            service_kit::etcd::EtcdSecurityError::HalfAuth => {
                ConfigError::new("--username/--password", "", "give both or neither")
            }
            _ => ConfigError::new("--tls-key/--tls-pem", "", "give both or neither"),
        })?;
        Ok(Settings {
            addr,
            metrics_addr,
            zone,
            machines,
            recursion: !self.no_rec,
            upstreams,
            ttl: self.ttl,
            min_ttl: self.min_ttl,
            rcache: self.rcache,
            rcache_bytes: self.rcache_mb << 20,
            rcache_ttl: self.rcache_ttl,
            rcache_min_ttl: self.rcache_min_ttl.min(self.rcache_ttl),
            stub_domains,
            config_dir: self.config_dir.clone(),
            file_config,
            forward_policy: self.forward_policy,
            serve_stale,
            prefetch: self.prefetch,
            answer_cache: self.answer_cache,
            answer_cache_bytes: self.answer_cache_mb << 20,
            max_concurrent: self.max_concurrent,
            rtimeout,
            hostmaster,
            udp_size: self.udp_size,
            udp_threads: self.udp_threads.filter(|&n| n > 0),
            tcp_max_conns: self.tcp_max_conns,
            tcp_idle_timeout,
            etcd_security,
            round_robin: self.round_robin,
            id,
            nsid: self.nsid,
            lameduck,
            log_queries: self.log_queries,
            pods: self.pods,
            autopath: self.autopath,
            node_search: if self.autopath {
                resolv_conf_search("/etc/resolv.conf")
            } else {
                Vec::new()
            },
            local,
        })
    }
}

/// The hostname: /proc/sys/kernel/hostname, else `$HOSTNAME`, else `skydns`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty() && h.len() <= 255)
        })
        .unwrap_or_else(|| "skydns".into())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_addr(flag: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::new(flag, value, "expected ip:port"))
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `ip`, `ip:port`, `[v6]:port` → socket address (port 53 by default).
pub fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    crate::forward::stubs::parse_address(s)
}

fn parse_nameservers(list: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    split_list(list)
        .iter()
        .map(|s| {
            parse_nameserver(s)
                .ok_or_else(|| ConfigError::new("--nameservers", s, "expected ip or ip:port"))
        })
        .collect()
}

/// The `nameserver` lines of a resolv.conf (none when it cannot be read).
pub fn resolv_conf_nameservers(path: &str) -> Vec<SocketAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| parse_nameserver(rest.trim()))
        .collect()
}

/// The domains of the last `search` (or `domain`) line of a resolv.conf, as the resolver
/// reads it (none when it cannot be read).
pub fn resolv_conf_search(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some("search" | "domain") = words.next() {
            search = words.map(|w| w.to_ascii_lowercase()).collect();
        }
    }
    search
}

/// A positive duration flag, in the one syntax of every flag (`service_kit::duration`).
fn parse_duration(flag: &'static str, v: &str) -> Result<Duration, ConfigError> {
    match service_kit::duration::parse(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(ConfigError::new(flag, v, "must be more than zero")),
        Err(e) => Err(ConfigError::new(flag, v, e.to_string())),
    }
}

/// A duration flag where `0` means "none".
fn parse_duration_or_zero(flag: &'static str, v: &str) -> Result<Duration, ConfigError> {
    service_kit::duration::parse(v).map_err(|e| ConfigError::new(flag, v, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut full = vec!["skydns", "--nameservers", "127.0.0.1:5353"];
        full.extend_from_slice(args);
        Config::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.addr.to_string(), "127.0.0.1:53");
        assert_eq!(s.zone.domain(), "cluster.local.");
        assert_eq!(s.machines, vec!["http://127.0.0.1:2379"]);
        assert_eq!(s.rtimeout, Duration::from_secs(2));
        assert_eq!(s.hostmaster, "hostmaster.cluster.local.");
        assert!(s.round_robin && !s.nsid);
        assert_eq!(s.lameduck, Duration::from_secs(5));
        assert_eq!(s.id, hostname());
        let s = parse(&["--round-robin=false", "--lameduck", "0", "--id", "r1"]).unwrap();
        assert!(!s.round_robin);
        assert_eq!(s.lameduck, Duration::ZERO);
        assert_eq!(s.id, "r1");
        assert!(parse(&["--lameduck", "soon"])
            .unwrap_err()
            .contains("--lameduck"));
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(parse(&["--addr", "nonsense"])
            .unwrap_err()
            .contains("--addr"));
        assert!(parse(&["--domain", "a..b"])
            .unwrap_err()
            .contains("--domain"));
        assert!(parse(&["--machines", "127.0.0.1:2379"])
            .unwrap_err()
            .contains("--machines"));
        assert!(parse(&["--rtimeout", "soon"])
            .unwrap_err()
            .contains("--rtimeout"));
        assert!(parse(&["--nameservers", "x.y"])
            .unwrap_err()
            .contains("--nameservers"));
        assert!(parse(&["--udp-size", "100"])
            .unwrap_err()
            .contains("--udp-size"));
        assert!(parse(&["--tls-key", "k"]).unwrap_err().contains("--tls"));
        assert!(parse(&["--max-concurrent", "0"])
            .unwrap_err()
            .contains("--max-concurrent"));
        assert!(parse(&["--rcache-mb", "0"])
            .unwrap_err()
            .contains("--rcache-mb"));
    }

    #[test]
    fn nameservers_and_durations() {
        assert_eq!(
            parse_nameserver("1.2.3.4"),
            Some("1.2.3.4:53".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(
            parse_duration("--x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("--x", "3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("--x", "0s").is_err());
        assert!(parse_duration("--x", "1d")
            .unwrap_err()
            .to_string()
            .contains("--x"));
        assert_eq!(parse_duration_or_zero("--x", "0").unwrap(), Duration::ZERO);
    }
}
