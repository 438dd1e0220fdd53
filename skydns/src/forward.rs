//! Forwarding of names outside the zone to the upstream nameservers (same transport as the
//! client, per-attempt timeout, next server on failure) with a bounded answer cache that
//! honours record TTLs and caches negative answers per RFC 2308. SERVFAIL is never cached.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
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
}

/// Bounded TTL cache; when full the oldest insertion is evicted.
struct Cache {
    capacity: usize,
    max_ttl: u32,
    map: HashMap<CacheKey, CacheEntry>,
    order: VecDeque<CacheKey>,
}

impl Cache {
    fn get(&mut self, key: &CacheKey) -> Option<Upstream> {
        let now = Instant::now();
        let entry = self.map.get(key)?;
        if entry.expires <= now {
            self.map.remove(key);
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
        }
        answer.from_cache = true;
        Some(answer)
    }

    fn put(&mut self, key: CacheKey, answer: &Upstream) {
        if self.capacity == 0 || answer.truncated {
            return;
        }
        let Some(ttl) = cache_ttl(answer) else { return };
        let ttl = ttl.min(self.max_ttl);
        if ttl == 0 {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        let now = Instant::now();
        if self
            .map
            .insert(
                key.clone(),
                CacheEntry {
                    stored: now,
                    expires: now + Duration::from_secs(u64::from(ttl)),
                    answer: answer.clone(),
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
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
    cache: Mutex<Cache>,
}

impl Forwarder {
    pub fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        capacity: usize,
        max_ttl: u32,
    ) -> Self {
        Forwarder {
            upstreams,
            timeout,
            cache: Mutex::new(Cache {
                capacity,
                max_ttl,
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
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
        if let Some(hit) = self.cache.lock().ok().and_then(|mut c| c.get(&key)) {
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
                    if let Ok(mut c) = self.cache.lock() {
                        c.put(key, &answer);
                    }
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
        Ok(Upstream {
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
        })
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
