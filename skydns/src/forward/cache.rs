//! The forwarding cache: answers from upstream kept per their TTLs (negative answers per
//! RFC 2308: min(SOA TTL, SOA minimum)), floored and capped by flags, bounded in entries and in
//! bytes. Built on quick_cache (CLOCK-Pro, sharded), a well-kept crate whose weigher gives the
//! byte bound; each entry's expiry is checked on read.
//!
//! An expired entry is kept for the serve-stale window (RFC 8767) and handed out as `Stale`
//! only when the upstreams fail; past the window a read removes it, and unread entries age out
//! as the cache turns over, so nothing outlives the bound. Entries count their hits, so a
//! popular one can be refreshed before it expires (prefetch). Evictions are counted by type
//! (success, denial: CoreDNS's `coredns_cache_evictions_total`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::Upstream;

/// TTL of a stale answer (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;

/// What a cached answer is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The question's name, lower-cased.
    pub name: Name,
    /// The question's type.
    pub rtype: RecordType,
    /// The question's class.
    pub class: DNSClass,
    /// Whether the client set DO (DNSSEC records wanted): such answers are kept apart.
    pub dnssec_ok: bool,
}

struct CacheEntry {
    stored: Instant,
    expires: Instant,
    /// The TTL the entry was stored with (seconds).
    ttl: u32,
    answer: Upstream,
    /// What the entry weighs against the cache's bound (see [`EntryWeight`]).
    weight: u64,
    /// Fresh reads so far.
    hits: AtomicU32,
    /// A prefetch of this entry has been started.
    refreshing: AtomicBool,
}

/// Weighs an entry as `max(its bytes, capacity bytes / capacity entries)`: the sum of weights
/// staying under the byte capacity then bounds both the bytes held and the number of entries.
#[derive(Clone)]
struct EntryWeight;

impl quick_cache::Weighter<CacheKey, Arc<CacheEntry>> for EntryWeight {
    fn weight(&self, _key: &CacheKey, entry: &Arc<CacheEntry>) -> u64 {
        entry.weight
    }
}

/// Bytes an answer holds in memory: the record structs and their wire data.
fn answer_bytes(key: &CacheKey, answer: &Upstream) -> u64 {
    let records = answer
        .answers
        .iter()
        .chain(&answer.authorities)
        .chain(&answer.additionals);
    let data: usize = records
        .map(|r| std::mem::size_of::<Record>() + r.to_bytes().map_or(512, |b| b.len()))
        .sum();
    (std::mem::size_of::<CacheEntry>() + key.name.len() + data) as u64
}

/// Whether `answer` is a negative answer (NXDOMAIN or NODATA: CoreDNS's `denial`).
pub fn is_denial(answer: &Upstream) -> bool {
    answer.rcode == ResponseCode::NXDomain
        || (answer.rcode == ResponseCode::NoError && answer.answers.is_empty())
}

/// Counts the entries the cache evicts (or refuses for their size), by type.
#[derive(Clone, Default)]
struct Evictions(Option<[prometheus_client::metrics::counter::Counter; 2]>);

impl quick_cache::Lifecycle<CacheKey, Arc<CacheEntry>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: CacheKey, entry: Arc<CacheEntry>) {
        if let Some(counters) = &self.0 {
            counters[usize::from(is_denial(&entry.answer))].inc();
        }
    }
}

type Inner = quick_cache::sync::Cache<
    CacheKey,
    Arc<CacheEntry>,
    EntryWeight,
    quick_cache::DefaultHashBuilder,
    Evictions,
>;

/// The result of a cache read.
pub enum Lookup {
    /// A live entry; `prefetch` when it is popular and close to expiry (refresh it now).
    Fresh {
        /// The cached answer, TTLs counted down to now.
        answer: Upstream,
        /// Popular and in its last 10 % of TTL: refresh it upstream now.
        prefetch: bool,
    },
    /// Expired, but within the serve-stale window: usable when the upstreams fail.
    Stale(Upstream),
    /// Nothing usable is cached.
    Miss,
}

/// How the cache is sized and how long it keeps things.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Most entries held (`--rcache`; 0 = no cache).
    pub entries: usize,
    /// Most bytes held (`--rcache-mb`).
    pub bytes: usize,
    /// Shortest time an answer is kept, seconds (`--rcache-min-ttl`).
    pub min_ttl: u32,
    /// Longest time an answer is kept, seconds (`--rcache-ttl`).
    pub max_ttl: u32,
    /// How long past expiry an entry may still be served stale (zero: never).
    pub serve_stale: Duration,
    /// Fresh hits that make an entry popular enough to prefetch (0: never).
    pub prefetch_hits: u32,
}

/// The cache.
pub struct Cache {
    inner: Option<Inner>,
    limits: CacheLimits,
    /// `capacity bytes / capacity entries`: the least weight an entry is given.
    min_weight: u64,
}

impl Cache {
    /// A cache within `limits` (disabled when they allow no entry or no byte).
    pub fn new(limits: CacheLimits) -> Self {
        Self::counting_evictions(limits, None)
    }

    /// A cache that counts its evictions in `evictions` (success, denial).
    pub fn counting_evictions(
        limits: CacheLimits,
        evictions: Option<[prometheus_client::metrics::counter::Counter; 2]>,
    ) -> Self {
        let inner = (limits.entries > 0 && limits.bytes > 0).then(|| {
            Inner::with(
                limits.entries,
                limits.bytes as u64,
                EntryWeight,
                Default::default(),
                Evictions(evictions),
            )
        });
        Cache {
            inner,
            limits,
            min_weight: (limits.bytes / limits.entries.max(1)).max(1) as u64,
        }
    }

    /// Bytes (weight) held now.
    pub fn weight(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.weight())
    }

    /// Entries held now (live or stale).
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |c| c.len())
    }

    /// Entries held now (live or stale) by type: (success, denial). Walks the cache: call it
    /// for gauges, not per query.
    pub fn len_by_type(&self) -> (usize, usize) {
        let Some(cache) = self.inner.as_ref() else {
            return (0, 0);
        };
        let denial = cache.iter().filter(|(_, e)| is_denial(&e.answer)).count();
        let total = cache.len();
        (total.saturating_sub(denial), denial)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached answer for `key`, with TTLs counted down (stale ones at [`STALE_TTL`]) and
    /// owner names spelled as the asker spelled the question (never as the first asker did).
    pub fn get(&self, key: &CacheKey, asked: &Name) -> Lookup {
        let Some(cache) = self.inner.as_ref() else {
            return Lookup::Miss;
        };
        let Some(entry) = cache.get(key) else {
            return Lookup::Miss;
        };
        let now = Instant::now();
        if entry.expires <= now {
            if now.duration_since(entry.expires) >= self.limits.serve_stale {
                cache.remove(key);
                return Lookup::Miss;
            }
            return Lookup::Stale(respell(&entry.answer, asked, |_| STALE_TTL));
        }
        let elapsed = now.duration_since(entry.stored).as_secs() as u32;
        // Never promise more than the cache keeps the entry.
        let remaining = entry.expires.duration_since(now).as_secs().max(1) as u32;
        let answer = respell(&entry.answer, asked, |ttl| {
            ttl.saturating_sub(elapsed).min(remaining)
        });
        let hits = entry.hits.fetch_add(1, Ordering::Relaxed) + 1;
        let prefetch = self.limits.prefetch_hits > 0
            && hits >= self.limits.prefetch_hits
            && entry.expires.duration_since(now).as_millis() * 10 <= u128::from(entry.ttl) * 1000
            && !entry.refreshing.swap(true, Ordering::Relaxed);
        Lookup::Fresh { answer, prefetch }
    }

    /// Keep `answer` (when it may be cached at all).
    pub fn put(&self, key: CacheKey, answer: &Upstream) {
        let Some(cache) = &self.inner else { return };
        if answer.truncated {
            return;
        }
        let Some(ttl) = cache_ttl(answer) else { return };
        let ttl = ttl.max(self.limits.min_ttl).min(self.limits.max_ttl);
        if ttl == 0 {
            return;
        }
        let now = Instant::now();
        let weight = answer_bytes(&key, answer).max(self.min_weight);
        cache.insert(
            key,
            Arc::new(CacheEntry {
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
                ttl,
                answer: answer.clone(),
                weight,
                hits: AtomicU32::new(0),
                refreshing: AtomicBool::new(false),
            }),
        );
    }
}

/// A copy of `answer` for the asker: TTLs mapped, owner names equal to the question spelled
/// as asked.
fn respell(answer: &Upstream, asked: &Name, ttl: impl Fn(u32) -> u32) -> Upstream {
    let mut answer = answer.clone();
    for r in answer
        .answers
        .iter_mut()
        .chain(answer.authorities.iter_mut())
        .chain(answer.additionals.iter_mut())
    {
        r.ttl = ttl(r.ttl);
        if r.name.eq_ignore_root(asked) {
            r.name = asked.clone();
        }
    }
    answer.from_cache = true;
    answer
}

/// How long an answer may be cached: the smallest answer TTL for positive answers; for
/// NXDOMAIN/NODATA min(SOA TTL, SOA minimum) per RFC 2308; never for other rcodes.
fn cache_ttl(answer: &Upstream) -> Option<u32> {
    match answer.rcode {
        ResponseCode::NoError if !answer.answers.is_empty() => {
            answer.answers.iter().map(|r| r.ttl).min()
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            answer.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, TXT};

    fn limits(entries: usize, bytes: usize, max_ttl: u32) -> CacheLimits {
        CacheLimits {
            entries,
            bytes,
            min_ttl: 0,
            max_ttl,
            serve_stale: Duration::ZERO,
            prefetch_hits: 0,
        }
    }

    fn key(name: &Name) -> CacheKey {
        CacheKey {
            name: name.to_lowercase(),
            rtype: RecordType::A,
            class: DNSClass::IN,
            dnssec_ok: false,
        }
    }

    fn answer(name: &Name, ttl: u32, text_bytes: usize) -> Upstream {
        let mut answers = vec![Record::from_rdata(
            name.clone(),
            ttl,
            RData::A(A::new(10, 0, 0, 1)),
        )];
        if text_bytes > 0 {
            let chunks: Vec<Vec<u8>> = vec![vec![b'x'; 255]; text_bytes / 255];
            answers.push(Record::from_rdata(
                name.clone(),
                ttl,
                RData::TXT(TXT::from_bytes(
                    chunks.iter().map(|c| c.as_slice()).collect(),
                )),
            ));
        }
        Upstream {
            rcode: ResponseCode::NoError,
            answers,
            authorities: vec![],
            additionals: vec![],
            truncated: false,
            from_cache: false,
        }
    }

    fn fresh(l: Lookup) -> Option<(Upstream, bool)> {
        match l {
            Lookup::Fresh { answer, prefetch } => Some((answer, prefetch)),
            _ => None,
        }
    }

    #[test]
    fn evictions_and_entries_are_counted_by_type() {
        let evictions = [
            prometheus_client::metrics::counter::Counter::default(),
            prometheus_client::metrics::counter::Counter::default(),
        ];
        let cache = Cache::counting_evictions(limits(100, 1 << 20, 60), Some(evictions.clone()));
        let negative = |name: &Name| Upstream {
            answers: vec![],
            rcode: ResponseCode::NXDomain,
            authorities: vec![Record::from_rdata(
                Name::from_ascii("example.org.").unwrap(),
                60,
                RData::SOA(hickory_proto::rr::rdata::SOA::new(
                    name.clone(),
                    name.clone(),
                    1,
                    60,
                    60,
                    60,
                    60,
                )),
            )],
            ..answer(name, 60, 0)
        };
        for i in 0..10 {
            let name = Name::from_ascii(format!("n{i}.example.org.")).unwrap();
            cache.put(key(&name), &answer(&name, 60, 0));
            let name = Name::from_ascii(format!("x{i}.example.org.")).unwrap();
            cache.put(key(&name), &negative(&name));
        }
        assert_eq!(cache.len_by_type(), (10, 10));
        assert_eq!(evictions[0].get() + evictions[1].get(), 0);
        for i in 0..2_000 {
            let name = Name::from_ascii(format!("m{i}.example.org.")).unwrap();
            cache.put(key(&name), &answer(&name, 60, 0));
        }
        assert!(evictions[0].get() >= 1_000, "{}", evictions[0].get());
        let (success, denial) = cache.len_by_type();
        assert_eq!(success + denial, cache.len());
        assert!(evictions[1].get() + denial as u64 == 10);
    }

    #[test]
    fn bounded_in_bytes_and_entries_under_churn() {
        // 64 KiB or 1,000 entries, whichever is reached first.
        let cache = Cache::new(limits(1000, 64 * 1024, 60));
        for i in 0..20_000 {
            let name = Name::from_ascii(format!("n{i}.example.org.")).unwrap();
            cache.put(
                key(&name),
                &answer(&name, 60, if i % 2 == 0 { 4000 } else { 0 }),
            );
        }
        assert!(cache.weight() <= 64 * 1024, "{} bytes", cache.weight());
        assert!(cache.len() <= 1000, "{} entries", cache.len());
        assert!(cache.len() > 5, "still caching");
    }

    #[test]
    fn expired_entries_leave_and_never_pile_up() {
        let cache = Cache::new(limits(100_000, 1 << 20, 1));
        for round in 0..3 {
            for i in 0..2_000 {
                let name = Name::from_ascii(format!("r{round}-{i}.example.org.")).unwrap();
                cache.put(key(&name), &answer(&name, 1, 0));
            }
            std::thread::sleep(Duration::from_millis(1100));
            let name = Name::from_ascii(format!("r{round}-0.example.org.")).unwrap();
            assert!(matches!(cache.get(&key(&name), &name), Lookup::Miss));
        }
        assert!(cache.weight() <= 1 << 20);
    }

    #[test]
    fn a_hit_is_spelled_as_the_asker_spelled_it() {
        let cache = Cache::new(limits(100, 1 << 20, 60));
        let first = Name::from_ascii("WwW.Example.ORG.").unwrap();
        cache.put(key(&first), &answer(&first, 60, 0));
        let second = Name::from_ascii("www.example.org.").unwrap();
        let (hit, _) = fresh(cache.get(&key(&second), &second)).expect("same name, other case");
        assert_eq!(hit.answers[0].name.to_ascii(), "www.example.org.");
        assert!(hit.from_cache);
    }

    #[test]
    fn stale_within_the_window_then_gone() {
        let cache = Cache::new(CacheLimits {
            serve_stale: Duration::from_millis(1500),
            ..limits(100, 1 << 20, 1)
        });
        let name = Name::from_ascii("s.example.org.").unwrap();
        cache.put(key(&name), &answer(&name, 1, 0));
        std::thread::sleep(Duration::from_millis(1100));
        match cache.get(&key(&name), &name) {
            Lookup::Stale(a) => assert_eq!(a.answers[0].ttl, STALE_TTL),
            _ => panic!("stale expected"),
        }
        std::thread::sleep(Duration::from_millis(1600));
        assert!(matches!(cache.get(&key(&name), &name), Lookup::Miss));
    }

    #[test]
    fn ttl_floor_and_cap() {
        let cache = Cache::new(CacheLimits {
            min_ttl: 20,
            ..limits(100, 1 << 20, 40)
        });
        let low = Name::from_ascii("low.example.org.").unwrap();
        cache.put(key(&low), &answer(&low, 1, 0));
        let high = Name::from_ascii("high.example.org.").unwrap();
        cache.put(key(&high), &answer(&high, 3600, 0));
        std::thread::sleep(Duration::from_millis(1100));
        let (a, _) = fresh(cache.get(&key(&low), &low)).expect("kept past its own TTL");
        assert_eq!(a.answers[0].ttl, 0, "the record's own TTL counted down");
        let (a, _) = fresh(cache.get(&key(&high), &high)).unwrap();
        assert!(a.answers[0].ttl <= 40);
    }

    #[test]
    fn popular_entries_near_expiry_ask_for_one_prefetch() {
        let cache = Cache::new(CacheLimits {
            prefetch_hits: 2,
            ..limits(100, 1 << 20, 60)
        });
        let name = Name::from_ascii("hot.example.org.").unwrap();
        cache.put(key(&name), &answer(&name, 2, 0));
        assert!(
            !fresh(cache.get(&key(&name), &name)).unwrap().1,
            "one hit, fresh"
        );
        // Within the last 10% of its TTL: the next hit asks for a prefetch, once.
        std::thread::sleep(Duration::from_millis(1850));
        let mut asked = 0;
        for _ in 0..3 {
            if fresh(cache.get(&key(&name), &name)).is_some_and(|(_, p)| p) {
                asked += 1;
            }
        }
        assert_eq!(asked, 1, "exactly one prefetch per entry");
    }
}
