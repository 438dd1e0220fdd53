//! The in-memory record index the query path reads. An etcd watch (`feed`) writes it; readers
//! take a snapshot (an `Arc` to an immutable persistent map) and never wait on the writer or
//! on etcd. Exact lookups of a path and "is anything below this path" are hash lookups
//! (expected O(1)); range scans (unions, wildcards, SRV below a service) are O(log n + k) for
//! k keys visited, and bounded by the answerer; a writer's update is O(depth · log n).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Bound;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use imbl::OrdMap;

/// Largest TTL passed on (2³¹ − 1, RFC 2181 §8).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// What a record's `host` field holds, parsed once when the value is read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// No `host` (e.g. a TXT-only record).
    None,
    /// An IPv4 address (A).
    V4(Ipv4Addr),
    /// An IPv6 address (AAAA).
    V6(Ipv6Addr),
    /// A domain name, fully qualified (CNAME, or SRV/MX/PTR/NS target).
    Name(Name),
}

/// One record, ready to answer from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// The parsed `host`.
    pub host: Host,
    /// SRV port (0: none).
    pub port: u16,
    /// SRV priority / MX preference (0 already replaced by the default, 10).
    pub priority: u16,
    /// Raw SRV weight (0 counts as 100).
    pub weight: u16,
    /// TXT content (empty: no TXT record).
    pub text: String,
    /// Whether MX queries answer this record.
    pub mail: bool,
    /// 0 = the server's default TTL.
    pub ttl: u32,
    /// Labels to strip from the key-derived name of an IP host used as SRV/MX target.
    pub targetstrip: u32,
    /// SkyDNS `group` (empty: none).
    pub group: Box<str>,
}

impl Rec {
    /// Convert a parsed value; `None` when the host is neither an IP nor a valid name.
    pub fn from_record(r: &msg::Record) -> Option<Rec> {
        let host = if r.host.is_empty() {
            Host::None
        } else if let Ok(v4) = r.host.parse::<Ipv4Addr>() {
            Host::V4(v4)
        } else if let Ok(v6) = r.host.parse::<Ipv6Addr>() {
            Host::V6(v6)
        } else {
            if !valid_host_name(&r.host) {
                return None;
            }
            let fqdn = if r.host.ends_with('.') {
                r.host.clone()
            } else {
                format!("{}.", r.host)
            };
            Host::Name(Name::from_ascii(&fqdn).ok()?)
        };
        Some(Rec {
            host,
            port: r.port,
            priority: r.effective_priority(),
            weight: r.weight,
            text: r.text.clone(),
            mail: r.mail,
            // RFC 2181 §8: a TTL with the top bit set is treated as zero (here: the default).
            ttl: if r.ttl > MAX_TTL { 0 } else { r.ttl },
            targetstrip: r.targetstrip,
            group: r.group.as_str().into(),
        })
    }
}

/// Letters, digits, `-`, `_` in labels of 1–63 characters; an optional trailing dot.
fn valid_host_name(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The records of one key.
pub type Entry = Arc<[Rec]>;

/// Why a value could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The value is not a valid SkyDNS record value.
    #[error(transparent)]
    Record(#[from] msg::RecordError),
    /// A `host` is neither an IP address nor a valid domain name.
    #[error("host is neither an IP address nor a domain name")]
    BadHost,
}

/// Parse an etcd value into an index entry.
pub fn parse_entry(value: &[u8]) -> Result<Entry, ValueError> {
    let records = msg::parse_value(value)?;
    records
        .iter()
        .map(|r| Rec::from_record(r).ok_or(ValueError::BadHost))
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::from)
}

/// One immutable view of every record, keyed by path (`local/cluster/svc/default/x`).
///
/// Three persistent maps share the same entries: the ordered map serves range scans (directory
/// unions, wildcards, SRV below a service), the hash map exact lookups, and the interior counts
/// ("how many keys lie below this path") decide NODATA vs NXDOMAIN — so the query path's lookups
/// are hash lookups, and a writer's update is O(depth · log n) without copying the whole view.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    map: OrdMap<Arc<str>, Entry>,
    exact: imbl::HashMap<Arc<str>, Entry>,
    interior: imbl::HashMap<Arc<str>, u32>,
    /// etcd revision this view reflects (the SOA serial).
    pub revision: i64,
    /// Whether the first full read from etcd is in.
    pub ready: bool,
    /// Increases with every published snapshot (unlike the etcd revision, which restarts when
    /// etcd is rebuilt); caches of derived answers are keyed by it.
    pub generation: u64,
}

/// Every proper ancestor of a path (`a/b/c` → `a`, `a/b`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

impl Snapshot {
    /// Add or replace the records at `path`.
    pub fn insert(&mut self, path: Arc<str>, entry: Entry) {
        if self.exact.insert(path.clone(), entry.clone()).is_none() {
            for a in ancestors(&path) {
                *self.interior.entry(Arc::from(a)).or_insert(0) += 1;
            }
        }
        self.map.insert(path, entry);
    }

    /// Remove the records at `path`, if any.
    pub fn remove(&mut self, path: &str) {
        if self.exact.remove(path).is_some() {
            for a in ancestors(path) {
                let gone = match self.interior.get_mut(a) {
                    Some(n) => {
                        *n -= 1;
                        *n == 0
                    }
                    None => false,
                };
                if gone {
                    self.interior.remove(a);
                }
            }
        }
        self.map.remove(path);
    }

    /// The records stored exactly at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.exact.get(path)
    }

    /// The stored key and records at `path`.
    pub fn get_key_value(&self, path: &str) -> Option<(&Arc<str>, &Entry)> {
        self.exact.get_key_value(path)
    }

    /// Whether any key lies strictly below `path`.
    pub fn has_below(&self, path: &str) -> bool {
        if path.is_empty() {
            return !self.map.is_empty();
        }
        self.interior.contains_key(path)
    }

    /// Every key strictly below `path`, in order. Keys below `p` are exactly those in
    /// [`p/`, `p0`) because `0` follows `/` in ASCII.
    pub fn below<'a>(&'a self, path: &str) -> impl Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a {
        let (lo, hi) = msg::layout::below_range(path);
        let upper = match &hi {
            Some(h) => Bound::Excluded(h.as_str()),
            None => Bound::Unbounded,
        };
        self.map
            .range::<_, str>((Bound::Included(lo.as_str()), upper))
            .filter(move |(k, _)| k.len() > lo.len() || lo.is_empty())
    }

    /// Every key `k` with `lo <= k < hi` (`hi = None`: no upper end), in order.
    pub fn range<'a>(
        &'a self,
        lo: &str,
        hi: Option<&str>,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a {
        let upper = match hi {
            Some(h) => Bound::Excluded(h),
            None => Bound::Unbounded,
        };
        self.map.range::<_, str>((Bound::Included(lo), upper))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The shared index: one writer (the etcd feed), any number of readers.
#[derive(Debug, Default)]
pub struct Index {
    current: ArcSwap<Snapshot>,
    generation: std::sync::atomic::AtomicU64,
}

impl Index {
    /// An empty index (no snapshot loaded yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot. Cheap; never blocks.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publish a new snapshot (its generation is assigned here).
    pub fn store(&self, mut snapshot: Snapshot) {
        use std::sync::atomic::Ordering;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        snapshot.generation = generation;
        self.current.store(Arc::new(snapshot));
    }

    /// A borrowed view of the current snapshot for the query path: no reference-count traffic
    /// shared between threads.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The generation of the current snapshot.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(keys: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        for k in keys {
            let e = parse_entry(br#"{"host":"1.2.3.4"}"#).unwrap();
            s.insert(Arc::from(*k), e);
        }
        s
    }

    #[test]
    fn below_is_exact() {
        let s = snap(&["a/b", "a/b/c", "a/b/c/d", "a/b-x", "a/bc", "a/b0", "a/c"]);
        let below: Vec<&str> = s.below("a/b").map(|(k, _)| &**k).collect();
        assert_eq!(below, vec!["a/b/c", "a/b/c/d"]);
        assert!(s.has_below("a"));
        assert!(!s.has_below("a/c"));
        assert!(!s.has_below("a/b/c/d"));
        assert_eq!(s.below("").count(), 7);
    }

    #[test]
    fn interior_counts_follow_inserts_and_removes() {
        let mut s = snap(&["a/b/c", "a/b/d", "x"]);
        assert!(
            s.has_below("a") && s.has_below("a/b") && !s.has_below("a/b/c") && !s.has_below("x")
        );
        s.remove("a/b/c");
        assert!(s.has_below("a/b"));
        s.remove("a/b/d");
        assert!(!s.has_below("a/b") && !s.has_below("a"));
        // Replacing a value does not double-count.
        let e = parse_entry(br#"{"host":"1.2.3.4"}"#).unwrap();
        s.insert(Arc::from("p/q"), e.clone());
        s.insert(Arc::from("p/q"), e);
        s.remove("p/q");
        assert!(!s.has_below("p"));
        assert_eq!(s.get("x").map(|e| e.len()), Some(1));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn entries_parse_hosts() {
        let e = parse_entry(
            br#"[{"host":"10.0.0.1"},{"host":"fd00::1"},{"host":"www.example.com"},{"text":"x"}]"#,
        )
        .unwrap();
        assert!(matches!(e[0].host, Host::V4(_)));
        assert!(matches!(e[1].host, Host::V6(_)));
        assert!(matches!(&e[2].host, Host::Name(n) if n.to_ascii() == "www.example.com."));
        assert_eq!(e[3].host, Host::None);
        assert!(parse_entry(br#"{"host":"bad host name!"}"#).is_err());
        assert!(parse_entry(b"{").is_err());
    }
}
