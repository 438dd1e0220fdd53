//! Forwarding of names outside the zone to the upstream nameservers (same transport as the
//! client, per-attempt timeout, next server on failure) with an answer cache bounded in
//! entries and bytes (quick_cache) that honours record TTLs and caches negative answers per
//! RFC 2308. SERVFAIL is never cached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::error::ForwardError;

/// The transport a client used (and we use upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// An upstream answer to relay.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    pub truncated: bool,
    pub from_cache: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: Name,
    rtype: RecordType,
    class: DNSClass,
    dnssec_ok: bool,
}

struct CacheEntry {
    stored: Instant,
    expires: Instant,
    answer: Upstream,
    /// What the entry weighs against the cache's bound (see [`EntryWeight`]).
    weight: u64,
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

/// The forwarding cache: quick_cache (CLOCK-Pro, sharded) bounded by weight, with each entry's
/// expiry checked on read; an expired entry is removed when read and otherwise ages out as
/// the cache turns over, so nothing outlives the bound.
struct Cache {
    inner: Option<quick_cache::sync::Cache<CacheKey, Arc<CacheEntry>, EntryWeight>>,
    max_ttl: u32,
    /// `capacity bytes / capacity entries`: the least weight an entry is given.
    min_weight: u64,
}

impl Cache {
    fn new(capacity: usize, bytes: usize, max_ttl: u32) -> Self {
        let inner = (capacity > 0 && bytes > 0)
            .then(|| quick_cache::sync::Cache::with_weighter(capacity, bytes as u64, EntryWeight));
        Cache {
            inner,
            max_ttl,
            min_weight: (bytes / capacity.max(1)).max(1) as u64,
        }
    }

    /// Bytes (weight) held now.
    fn weight(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.weight())
    }

    /// The cached answer to `query`, with TTLs counted down and owner names spelled as the
    /// asker spelled the question (never as the first asker did).
    fn get(&self, key: &CacheKey, asked: &Name) -> Option<Upstream> {
        let cache = self.inner.as_ref()?;
        let entry = cache.get(key)?;
        let now = Instant::now();
        if entry.expires <= now {
            cache.remove(key);
            return None;
        }
        let elapsed = now.duration_since(entry.stored).as_secs() as u32;
        // Never promise more than the cache keeps the entry (--rcache-ttl).
        let remaining = entry.expires.duration_since(now).as_secs().max(1) as u32;
        let mut answer = entry.answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(elapsed).min(remaining);
            if r.name.eq_ignore_root(asked) {
                r.name = asked.clone();
            }
        }
        answer.from_cache = true;
        Some(answer)
    }

    fn put(&self, key: CacheKey, answer: &Upstream) {
        let Some(cache) = &self.inner else { return };
        if answer.truncated {
            return;
        }
        let Some(ttl) = cache_ttl(answer) else { return };
        let ttl = ttl.min(self.max_ttl);
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
                answer: answer.clone(),
                weight,
            }),
        );
    }
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
                hickory_proto::rr::RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        }
        _ => None,
    }
}

/// The forwarder: upstream list, timeout and cache.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    cache: Cache,
}

impl Forwarder {
    /// A forwarder whose cache holds at most `capacity` entries and `bytes` bytes.
    pub fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        capacity: usize,
        bytes: usize,
        max_ttl: u32,
    ) -> Self {
        Forwarder {
            upstreams,
            timeout,
            cache: Cache::new(capacity, bytes, max_ttl),
        }
    }

    /// Bytes the cache holds now (its weight; at most the configured bytes).
    pub fn cache_bytes(&self) -> u64 {
        self.cache.weight()
    }

    pub fn has_upstreams(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// Resolve `query` upstream (or from the cache).
    pub async fn resolve(
        &self,
        query: &Query,
        dnssec_ok: bool,
        transport: Transport,
    ) -> Result<Upstream, ForwardError> {
        let key = CacheKey {
            name: query.name().to_lowercase(),
            rtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok,
        };
        if let Some(hit) = self.cache.get(&key, query.name()) {
            return Ok(hit);
        }
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let mut errors = Vec::new();
        for server in &self.upstreams {
            match self.ask(*server, query, dnssec_ok, transport).await {
                Ok(answer)
                    if answer.rcode == ResponseCode::ServFail
                        || answer.rcode == ResponseCode::Refused =>
                {
                    errors.push(format!("{server}: {}", answer.rcode));
                }
                Ok(answer) => {
                    self.cache.put(key, &answer);
                    return Ok(answer);
                }
                Err(e) => errors.push(format!("{server}: {e}")),
            }
        }
        Err(ForwardError::AllFailed(errors.join("; ")))
    }

    async fn ask(
        &self,
        server: SocketAddr,
        query: &Query,
        dnssec_ok: bool,
        transport: Transport,
    ) -> Result<Upstream, String> {
        let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(dnssec_ok);
        msg.set_edns(edns);
        let bytes = msg.to_vec().map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(self.timeout, async {
            match transport {
                Transport::Udp => {
                    let reply = udp_exchange(server, &bytes, msg.metadata.id, query).await?;
                    if reply.metadata.truncation {
                        // Hand the truncated answer back: the client retries over TCP.
                        return Ok(reply);
                    }
                    Ok(reply)
                }
                Transport::Tcp => tcp_exchange(server, &bytes, msg.metadata.id).await,
            }
        })
        .await
        .map_err(|_| "timed out".to_string())??;
        let mut up = Upstream {
            rcode: reply.metadata.response_code,
            truncated: reply.metadata.truncation,
            answers: reply.answers,
            authorities: reply.authorities,
            additionals: reply
                .additionals
                .into_iter()
                .filter(|r| r.record_type() != RecordType::OPT)
                .collect(),
            from_cache: false,
        };
        // RFC 2181 §8: a TTL with the top bit set is treated as zero.
        for r in up
            .answers
            .iter_mut()
            .chain(up.authorities.iter_mut())
            .chain(up.additionals.iter_mut())
        {
            if r.ttl > crate::index::MAX_TTL {
                r.ttl = 0;
            }
        }
        Ok(up)
    }
}

async fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "bind")?
    } else {
        "[::]:0".parse().map_err(|_| "bind")?
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    sock.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Ignore anything that is not the answer to our question (spoofing, stale replies).
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let same_question = reply.queries.first().is_some_and(|q| {
            q.name().eq_ignore_root_case(query.name()) && q.query_type() == query.query_type()
        });
        if reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && same_question
        {
            return Ok(reply);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
    stream
        .write_all(&len.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    let n = stream.read_u16().await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; n as usize];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let reply = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if reply.metadata.id != id {
        return Err("mismatched id".into());
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::RData;

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

    #[test]
    fn bounded_in_bytes_and_entries_under_churn() {
        // 64 KiB or 1,000 entries, whichever is reached first.
        let cache = Cache::new(1000, 64 * 1024, 60);
        for i in 0..20_000 {
            let name = Name::from_ascii(format!("n{i}.example.org.")).unwrap();
            cache.put(
                key(&name),
                &answer(&name, 60, if i % 2 == 0 { 4000 } else { 0 }),
            );
        }
        assert!(cache.weight() <= 64 * 1024, "{} bytes", cache.weight());
        let inner = cache.inner.as_ref().unwrap();
        assert!(inner.len() <= 1000, "{} entries", inner.len());
        assert!(inner.len() > 5, "still caching");
    }

    #[test]
    fn expired_entries_leave_and_never_pile_up() {
        let cache = Cache::new(100_000, 1 << 20, 1);
        for round in 0..3 {
            for i in 0..2_000 {
                let name = Name::from_ascii(format!("r{round}-{i}.example.org.")).unwrap();
                cache.put(key(&name), &answer(&name, 1, 0));
            }
            std::thread::sleep(Duration::from_millis(1100));
            let name = Name::from_ascii(format!("r{round}-0.example.org.")).unwrap();
            assert!(cache.get(&key(&name), &name).is_none(), "expired");
        }
        assert!(cache.weight() <= 1 << 20);
    }

    #[test]
    fn a_hit_is_spelled_as_the_asker_spelled_it() {
        let cache = Cache::new(100, 1 << 20, 60);
        let first = Name::from_ascii("WwW.Example.ORG.").unwrap();
        cache.put(key(&first), &answer(&first, 60, 0));
        let second = Name::from_ascii("www.example.org.").unwrap();
        let hit = cache
            .get(&key(&second), &second)
            .expect("same name, other case");
        assert_eq!(hit.answers[0].name.to_ascii(), "www.example.org.");
        assert!(hit.from_cache);
    }
}
