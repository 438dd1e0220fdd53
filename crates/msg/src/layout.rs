//! The Kubernetes key layout inside a zone `Z` (path `P(Z)`, e.g. `/skydns/local/cluster`):
//! `P/svc/<ns>/<svc>[/<endpoint>|/_<proto>/_<port>]`, `P/pod/<ns>/<a-b-c-d>`, `P/dns-version`,
//! and the reverse trees `/skydns/arpa/in-addr/…` and `/skydns/arpa/ip6/…`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::key::{name_to_path, path_to_name, Prefix};
use crate::record::Record;

/// Where a path lies relative to a zone, as skydns needs to know to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Not in the zone.
    Outside,
    /// The zone apex itself.
    Apex,
    /// `svc.Z` or `pod.Z`: always exists.
    KubeRoot,
    /// Strictly below `svc.Z` or `pod.Z`.
    Kube,
    /// In the zone, outside the Kubernetes trees (generic SkyDNS records).
    Generic,
}

/// The labels right below the apex that hold the Kubernetes trees, sorted. Only exact lookups
/// reach them (never wildcards or directory unions).
pub const KUBE_ROOT_LABELS: [&str; 2] = ["pod", "svc"];

/// The first label of every reverse-tree path (`arpa/in-addr/…`, `arpa/ip6/…`).
pub const REVERSE_ROOT: &str = "arpa";

/// A cluster zone under a key prefix.
#[derive(Debug, Clone)]
pub struct Zone {
    prefix: Prefix,
    domain: String,
    path: String,
}

impl Zone {
    /// `domain` may be given with or without the trailing dot, in any case.
    pub fn new(prefix: Prefix, domain: &str) -> Self {
        let bare = domain.trim_end_matches('.').to_ascii_lowercase();
        Zone {
            prefix,
            domain: format!("{bare}."),
            path: name_to_path(&bare),
        }
    }

    /// The key prefix the zone lives under (`/skydns`).
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// The zone as a fully qualified name (`cluster.local.`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The zone's path (`local/cluster`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn key(&self, rest: &str) -> String {
        self.prefix.key_of_path(&format!("{}/{rest}", self.path))
    }

    /// `P/dns/ns`: the apex's NS records live at and below this path.
    pub fn ns_path(&self) -> String {
        format!("{}/dns/ns", self.path)
    }

    /// The path of a pod record (`local/cluster/pod/<ns>/<a-b-c-d>`).
    pub fn pod_path(&self, ns: &str, ip: IpAddr) -> String {
        format!("{}/pod/{}/{}", self.path, lc(ns), dashed_ip(ip))
    }

    /// `local.dns.Z.`: the name SkyDNS's `-local` answers.
    pub fn local_dns_name(&self) -> String {
        format!("local.dns.{}", self.domain)
    }

    /// A pod name's parts when `path` is `P/pod/<ns>/<dashed ip>`: the namespace and the
    /// address spelled in the name (kube-dns's "insecure" pod records).
    pub fn pod_name_address<'a>(&self, path: &'a str) -> Option<(&'a str, IpAddr)> {
        let rest = path
            .strip_prefix(self.path.as_str())?
            .strip_prefix("/pod/")?;
        let (ns, label) = rest.split_once('/')?;
        if ns.is_empty() || label.contains('/') {
            return None;
        }
        Some((ns, parse_dashed_ip(label)?))
    }

    /// Whether `path` lies strictly below `P/pod`.
    pub fn is_below_pod_root(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str())
            .and_then(|r| r.strip_prefix("/pod/"))
            .is_some_and(|r| !r.is_empty())
    }

    /// A name in a pod's first search domain, `<base>.<ns>.svc.Z`, split into the namespace
    /// and the base name's path (its labels reversed: `www.example.com` → `com/example/www`).
    /// `None` for any other shape (the base must have at least one label).
    pub fn split_first_search_domain<'a>(&self, path: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = path
            .strip_prefix(self.path.as_str())?
            .strip_prefix("/svc/")?;
        let (ns, base) = rest.split_once('/')?;
        (!ns.is_empty() && !base.is_empty()).then_some((ns, base))
    }

    /// The names a pod in any namespace searches after its own namespace's, for a base name
    /// given by its path: `<base>.svc.Z.` then `<base>.Z.`.
    pub fn later_search_names(&self, base_path: &str) -> [String; 2] {
        let base = path_to_name(base_path);
        [
            format!("{base}svc.{}", self.domain),
            format!("{base}{}", self.domain),
        ]
    }

    /// `P/svc/<ns>/<svc>`: ClusterIP(s), ready headless addresses or the ExternalName.
    pub fn service_key(&self, ns: &str, svc: &str) -> String {
        self.key(&format!("svc/{}/{}", lc(ns), lc(svc)))
    }

    /// `P/svc/<ns>/<svc>/<endpoint>`.
    pub fn endpoint_key(&self, ns: &str, svc: &str, endpoint: &str) -> String {
        self.key(&format!("svc/{}/{}/{}", lc(ns), lc(svc), lc(endpoint)))
    }

    /// `P/svc/<ns>/<svc>/_<proto>/_<port>`; `proto` is lower-cased (`_tcp`).
    pub fn srv_key(&self, ns: &str, svc: &str, proto: &str, port_name: &str) -> String {
        self.key(&format!(
            "svc/{}/{}/_{}/_{}",
            lc(ns),
            lc(svc),
            lc(proto),
            lc(port_name)
        ))
    }

    /// `P/pod/<ns>/<a-b-c-d>`.
    pub fn pod_key(&self, ns: &str, ip: IpAddr) -> String {
        self.key(&format!("pod/{}/{}", lc(ns), dashed_ip(ip)))
    }

    /// `P/dns-version`.
    pub fn dns_version_key(&self) -> String {
        self.key("dns-version")
    }

    /// The PTR key of an address (`/skydns/arpa/in-addr/10/0/0/1`, `/skydns/arpa/ip6/f/d/0/0/…`).
    pub fn ptr_key(&self, ip: IpAddr) -> String {
        self.prefix.key_of_path(&ptr_path(ip))
    }

    /// `<svc>.<ns>.svc.Z.`
    pub fn service_fqdn(&self, ns: &str, svc: &str) -> String {
        format!("{}.{}.svc.{}", lc(svc), lc(ns), self.domain)
    }

    /// `<endpoint>.<svc>.<ns>.svc.Z.`
    pub fn endpoint_fqdn(&self, ns: &str, svc: &str, endpoint: &str) -> String {
        format!(
            "{}.{}.{}.svc.{}",
            lc(endpoint),
            lc(svc),
            lc(ns),
            self.domain
        )
    }

    /// Key prefixes of the trees kube2sky owns in this zone (`P/svc/`, `P/pod/`), plus the exact
    /// key `P/dns-version`. PTR keys are owned by value, see [`Zone::owns_ptr_value`].
    pub fn owned_tree_prefixes(&self) -> [String; 2] {
        [self.key("svc/"), self.key("pod/")]
    }

    /// Key prefixes of the reverse trees (`/skydns/arpa/in-addr/`, `/skydns/arpa/ip6/`).
    pub fn reverse_prefixes(&self) -> [String; 2] {
        [
            self.prefix.key_of_path("arpa/in-addr/"),
            self.prefix.key_of_path("arpa/ip6/"),
        ]
    }

    /// Whether kube2sky owns `key` in a forward tree (`P/svc/…`, `P/pod/…`, `P/dns-version`).
    pub fn owns_forward_key(&self, key: &str) -> bool {
        key == self.dns_version_key()
            || self
                .owned_tree_prefixes()
                .iter()
                .any(|p| key.starts_with(p.as_str()))
    }

    /// Whether a reverse value is one kube2sky wrote: every record is a bare host naming
    /// something under `svc.Z.` or `pod.Z.`.
    pub fn owns_ptr_value(&self, records: &[Record]) -> bool {
        let svc = format!(".svc.{}", self.domain);
        let pod = format!(".pod.{}", self.domain);
        !records.is_empty()
            && records.iter().all(|r| {
                let h = r.host.to_ascii_lowercase();
                r.port == 0 && r.text.is_empty() && (h.ends_with(&svc) || h.ends_with(&pod))
            })
    }

    /// Where a path (relative to the prefix) lies relative to this zone.
    pub fn classify(&self, path: &str) -> Tree {
        if path == self.path {
            return Tree::Apex;
        }
        let Some(rest) = path
            .strip_prefix(self.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Tree::Outside;
        };
        let (first, below) = match rest.split_once('/') {
            Some((f, b)) => (f, Some(b)),
            None => (rest, None),
        };
        match (first, below) {
            ("svc" | "pod", None) => Tree::KubeRoot,
            ("svc" | "pod", Some(_)) => Tree::Kube,
            _ => Tree::Generic,
        }
    }
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Whether `path` lies in a reverse tree (`arpa/…`).
pub fn is_reverse_path(path: &str) -> bool {
    path.strip_prefix(REVERSE_ROOT)
        .is_some_and(|r| r.starts_with('/'))
}

/// Whether `path` ends in the `…/_<proto>/_<port>` shape of a named port (SRV) key.
pub fn is_port_path(path: &str) -> bool {
    let mut it = path.rsplit('/');
    matches!((it.next(), it.next()), (Some(a), Some(b)) if a.starts_with('_') && b.starts_with('_'))
}

/// The key range `[lo, hi)` holding exactly the paths `path/_…` (the `_<proto>` labels right
/// below a service, and what lies below them): `` ` `` follows `_` in ASCII.
pub fn underscore_range(path: &str) -> (String, String) {
    (format!("{path}/_"), format!("{path}/`"))
}

/// The key range `[lo, hi)` holding exactly the paths strictly below `path`: [`p/`, `p0`), as
/// `0` follows `/` in ASCII. `path` empty: everything (`hi` is `None`).
pub fn below_range(path: &str) -> (String, Option<String>) {
    if path.is_empty() {
        return (String::new(), None);
    }
    let lo = format!("{path}/");
    let hi = crate::key::prefix_end(&lo);
    (lo, Some(hi))
}

/// Whether `rest` (a path relative to a service) is `_<proto>/_<port>`.
pub fn is_port_suffix(rest: &str) -> bool {
    let mut parts = rest.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(proto), Some(port), None) if proto.starts_with('_') && port.starts_with('_')
    )
}

/// The ranges `[lo, hi)` (`hi` `None`: unbounded) that hold every path strictly below `base`
/// except `base/<label>` and everything below it, for each label of `excluded` (sorted):
/// before the first excluded label, between the exact `base/x` and its subtree `base/x/`
/// (names such as `x-y`), and after the subtree (`x0`, as `0` follows `/`).
pub fn ranges_below_except(base: &str, excluded: &[&str]) -> Vec<(String, Option<String>)> {
    let mut ranges = Vec::with_capacity(2 * excluded.len() + 1);
    let mut lo = format!("{base}/");
    for label in excluded {
        ranges.push((lo, Some(format!("{base}/{label}"))));
        ranges.push((
            format!("{base}/{label}\0"),
            Some(format!("{base}/{label}/")),
        ));
        lo = format!("{base}/{label}0");
    }
    ranges.push((lo, Some(format!("{base}0"))));
    ranges
}

/// The name SkyDNS gives a record whose host is an address, from its path: the path's labels
/// as a name, without its first `strip` labels (`targetstrip`; at least one label is kept).
pub fn synthesised_target(path: &str, strip: usize) -> String {
    let labels: Vec<&str> = path.rsplit('/').collect();
    let strip = strip.min(labels.len().saturating_sub(1));
    format!("{}.", labels[strip..].join("."))
}

/// The address a dashed label spells (the inverse of [`dashed_ip`]): `10-244-1-5`,
/// `fd00--1`, `0--1`.
pub fn parse_dashed_ip(label: &str) -> Option<IpAddr> {
    if label.len() > 45 {
        return None;
    }
    if label.bytes().filter(|&b| b == b'-').count() == 3 {
        if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
    }
    let v6 = label.replace('-', ":");
    v6.parse::<Ipv6Addr>()
        .or_else(|_| {
            // `0--1` and `fd00--0` carry a `0` added where the name would start or end with `-`.
            let trimmed = v6
                .strip_prefix("0::")
                .map(|r| format!("::{r}"))
                .unwrap_or(v6.clone());
            let trimmed = trimmed
                .strip_suffix("::0")
                .map(|r| format!("{r}::"))
                .unwrap_or(trimmed);
            trimmed.parse::<Ipv6Addr>()
        })
        .ok()
        .map(IpAddr::V6)
}

/// The path of an address's reverse name: IPv4 octets in order under `arpa/in-addr`, IPv6's
/// 32 nibbles in address order under `arpa/ip6`.
pub fn ptr_path(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("arpa/in-addr/{a}/{b}/{c}/{d}")
        }
        IpAddr::V6(v6) => {
            let mut out = String::from("arpa/ip6");
            for byte in v6.octets() {
                out.push_str(&format!("/{:x}/{:x}", byte >> 4, byte & 0xf));
            }
            out
        }
    }
}

/// The dashed form of an address used in endpoint and pod names: `10.244.1.5` → `10-244-1-5`;
/// IPv6 `fd00::1` → `fd00--1`, with a `0` added where the name would start or end with `-`.
pub fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace(':', "-");
            if s.starts_with('-') {
                s.insert(0, '0');
            }
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone::new(Prefix::default(), "Cluster.Local")
    }

    #[test]
    fn keys() {
        let z = zone();
        assert_eq!(z.domain(), "cluster.local.");
        assert_eq!(
            z.service_key("default", "mysql-service"),
            "/skydns/local/cluster/svc/default/mysql-service"
        );
        assert_eq!(
            z.endpoint_key("default", "nginx", "web-0"),
            "/skydns/local/cluster/svc/default/nginx/web-0"
        );
        assert_eq!(
            z.srv_key("default", "kubernetes", "TCP", "https"),
            "/skydns/local/cluster/svc/default/kubernetes/_tcp/_https"
        );
        assert_eq!(
            z.pod_key("ns", "10.244.1.5".parse().unwrap()),
            "/skydns/local/cluster/pod/ns/10-244-1-5"
        );
        assert_eq!(z.dns_version_key(), "/skydns/local/cluster/dns-version");
        assert_eq!(
            z.ptr_key("10.96.0.1".parse().unwrap()),
            "/skydns/arpa/in-addr/10/96/0/1"
        );
        let v6 = z.ptr_key("fd00::12".parse().unwrap());
        assert!(v6.starts_with("/skydns/arpa/ip6/f/d/0/0/0/0"));
        assert!(v6.ends_with("/0/0/1/2"));
        assert_eq!(v6.matches('/').count(), 3 + 32);
        assert_eq!(
            z.service_fqdn("default", "kubernetes"),
            "kubernetes.default.svc.cluster.local."
        );
    }

    #[test]
    fn ptr_key_matches_the_reverse_name_mapping() {
        // The ip6.arpa name's nibbles are reversed; the key reverses labels again.
        let z = zone();
        let ip: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut nibbles: Vec<String> = ip
            .octets()
            .iter()
            .flat_map(|b| [format!("{:x}", b >> 4), format!("{:x}", b & 0xf)])
            .collect();
        nibbles.reverse();
        let name = format!("{}.ip6.arpa.", nibbles.join("."));
        assert_eq!(
            crate::name_to_key(&Prefix::default(), &name),
            z.ptr_key(IpAddr::V6(ip))
        );
    }

    #[test]
    fn dashed() {
        assert_eq!(dashed_ip("10.244.1.5".parse().unwrap()), "10-244-1-5");
        assert_eq!(dashed_ip("fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(dashed_ip("::1".parse().unwrap()), "0--1");
        assert_eq!(dashed_ip("fd00::".parse().unwrap()), "fd00--0");
    }

    #[test]
    fn dashed_round_trip() {
        for ip in [
            "10.244.1.5",
            "fd00::1",
            "::1",
            "fd00::",
            "2001:db8::a:b",
            "0.0.0.0",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_dashed_ip(&dashed_ip(ip)), Some(ip), "{ip}");
        }
        for bad in [
            "10-244-1",
            "a-b-c-d",
            "10-244-1-500",
            "",
            "x--y",
            "1-2-3-4-5",
        ] {
            assert_eq!(parse_dashed_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn path_shapes() {
        let z = zone();
        assert_eq!(z.ns_path(), "local/cluster/dns/ns");
        assert_eq!(z.local_dns_name(), "local.dns.cluster.local.");
        assert_eq!(
            z.pod_path("NS", "10.1.2.3".parse().unwrap()),
            "local/cluster/pod/ns/10-1-2-3"
        );
        assert_eq!(
            z.pod_name_address("local/cluster/pod/ns/10-1-2-3"),
            Some(("ns", "10.1.2.3".parse().unwrap()))
        );
        assert_eq!(z.pod_name_address("local/cluster/pod/ns/x/10-1-2-3"), None);
        assert_eq!(z.pod_name_address("local/cluster/svc/ns/10-1-2-3"), None);
        assert!(z.is_below_pod_root("local/cluster/pod/ns"));
        assert!(!z.is_below_pod_root("local/cluster/pod"));
        assert_eq!(
            z.split_first_search_domain("local/cluster/svc/default/com/example/www"),
            Some(("default", "com/example/www"))
        );
        assert_eq!(
            z.split_first_search_domain("local/cluster/svc/default"),
            None
        );
        assert_eq!(
            z.later_search_names("com/example/www"),
            [
                "www.example.com.svc.cluster.local.".to_string(),
                "www.example.com.cluster.local.".to_string()
            ]
        );
        assert!(is_reverse_path("arpa/in-addr/10") && !is_reverse_path("arpax/1"));
        assert!(is_port_path("a/svc/ns/x/_tcp/_http") && !is_port_path("a/svc/ns/x/_tcp"));
        assert!(is_port_suffix("_tcp/_http") && !is_port_suffix("_tcp/_http/x"));
        assert!(!is_port_suffix("_tcp/http"));
        assert_eq!(
            synthesised_target("local/cluster/x/y", 0),
            "y.x.cluster.local."
        );
        assert_eq!(synthesised_target("local/cluster/x/y", 2), "cluster.local.");
        assert_eq!(synthesised_target("local/cluster", 9), "local.");
        assert_eq!(
            below_range("a/b"),
            ("a/b/".to_string(), Some("a/b0".to_string()))
        );
        assert_eq!(below_range(""), (String::new(), None));
        let (lo, hi) = underscore_range("a/b");
        assert!(lo.as_str() <= "a/b/_tcp/_x" && "a/b/_tcp/_x" < hi.as_str());
        assert!(!("a/b/web-0" >= lo.as_str() && "a/b/web-0" < hi.as_str()));
    }

    #[test]
    fn ranges_except_skip_exactly_the_subtrees() {
        let ranges = ranges_below_except("z", &KUBE_ROOT_LABELS);
        let inside = |k: &str| {
            ranges
                .iter()
                .any(|(lo, hi)| k >= lo.as_str() && hi.as_deref().is_none_or(|h| k < h))
        };
        for k in ["z/a", "z/pod-x", "z/pod0", "z/svcx", "z/svc-y/q", "z/zz"] {
            assert!(inside(k), "{k}");
        }
        for k in ["z/pod", "z/pod/ns", "z/svc", "z/svc/ns/x", "z", "y/a", "z0"] {
            assert!(!inside(k), "{k}");
        }
    }

    #[test]
    fn classification() {
        let z = zone();
        assert_eq!(z.classify("local/cluster"), Tree::Apex);
        assert_eq!(z.classify("local/cluster/svc"), Tree::KubeRoot);
        assert_eq!(z.classify("local/cluster/pod"), Tree::KubeRoot);
        assert_eq!(z.classify("local/cluster/svc/default"), Tree::Kube);
        assert_eq!(z.classify("local/cluster/dns-version"), Tree::Generic);
        assert_eq!(z.classify("local/cluster/svcx"), Tree::Generic);
        assert_eq!(z.classify("local/clusterx"), Tree::Outside);
        assert_eq!(z.classify("arpa/in-addr/10"), Tree::Outside);
    }

    #[test]
    fn ownership() {
        let z = zone();
        assert!(z.owns_forward_key("/skydns/local/cluster/svc/a/b"));
        assert!(z.owns_forward_key("/skydns/local/cluster/dns-version"));
        assert!(!z.owns_forward_key("/skydns/local/cluster/dns/ns/a"));
        assert!(!z.owns_forward_key("/skydns/local/cluster/svcx"));
        assert!(z.owns_ptr_value(&[Record::host("a.b.svc.cluster.local.")]));
        assert!(!z.owns_ptr_value(&[Record::host("a.example.com.")]));
        assert!(!z.owns_ptr_value(&[]));
    }
}
