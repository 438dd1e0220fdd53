//! One query in, one reply out: parses the packet, applies protocol hygiene (FORMERR, NOTIMP,
//! BADVERS, EDNS echo, ANY refused), routes the question to the index or the forwarder, and
//! fits the reply to the client's UDP size (TC set when cut). Never panics on input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::answer::{answer, Outcome, ZoneParams};
use crate::answer_cache::{AnswerCache, ReplyMeta};
use crate::autopath::{Autopath, Plan};
use crate::forward::{Forwarder, Transport};
use crate::index::Index;
use crate::metrics::{Cause, Metrics, QueryObservation, System};
use crate::observe::{raw_qtype, Client, ErrorLog, QueryLog};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Everything needed to answer a query. Built with [`Handler::new`] and the `with_*` setters;
/// its parts are the server's own.
pub struct Handler {
    /// The zone's answering parameters.
    params: ZoneParams,
    /// The records, as fed from etcd.
    index: Arc<Index>,
    /// Answers names outside the zone from upstream.
    pub(crate) forwarder: Forwarder,
    /// The server's metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Whether names outside the zone are forwarded (else REFUSED); also the RA bit.
    recursion: bool,
    /// Largest UDP reply we send (and the EDNS payload we advertise).
    udp_size: u16,
    /// Encoded authoritative replies by packet (off when `None`).
    pub(crate) answer_cache: Option<AnswerCache>,
    /// Upstream lookups in flight at once, UDP and TCP together (`--max-concurrent`); a
    /// question that needs the upstream beyond it is answered REFUSED at once.
    upstream_budget: Arc<Semaphore>,
    /// Rotation, identity, NSID and logging.
    ops: Ops,
    /// `--autopath` (off when `None`).
    autopath: Option<Autopath>,
}

impl Handler {
    /// A handler answering `params`'s zone from `index` and forwarding with `forwarder`:
    /// recursion on, 1232-byte UDP replies, no answer cache, 1000 upstream lookups at once,
    /// default [`Ops`], no autopath.
    pub fn new(
        params: ZoneParams,
        index: Arc<Index>,
        forwarder: Forwarder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Handler {
            params,
            index,
            forwarder,
            metrics,
            recursion: true,
            udp_size: 1232,
            answer_cache: None,
            upstream_budget: Arc::new(Semaphore::new(1000)),
            ops: Ops::default(),
            autopath: None,
        }
    }

    /// Forward names outside the zone (`false`: `--no-rec`, they get REFUSED).
    pub fn with_recursion(mut self, on: bool) -> Self {
        self.recursion = on;
        self
    }

    /// Largest UDP reply sent and EDNS payload advertised (`--udp-size`).
    pub fn with_udp_size(mut self, bytes: u16) -> Self {
        self.udp_size = bytes;
        self
    }

    /// The answer cache (`--answer-cache`; `None` = off).
    pub fn with_answer_cache(mut self, cache: Option<AnswerCache>) -> Self {
        self.answer_cache = cache;
        self
    }

    /// Upstream lookups in flight at once (`--max-concurrent`).
    pub fn with_max_concurrent(mut self, lookups: usize) -> Self {
        self.upstream_budget = Arc::new(Semaphore::new(lookups));
        self
    }

    /// Rotation, identity, NSID and logging.
    pub fn with_ops(mut self, ops: Ops) -> Self {
        self.ops = ops;
        self
    }

    /// `--autopath`.
    pub fn with_autopath(mut self, autopath: Option<Autopath>) -> Self {
        self.autopath = autopath;
        self
    }
}

/// Day-2 settings of the reply path. `Default`: no rotation, identity `skydns`, no NSID.
pub struct Ops {
    /// Rotate multi-record A/AAAA answers (`--round-robin`).
    pub round_robin: bool,
    /// `--id`: answered to `hostname.bind`/`id.server` and in NSID.
    pub identity: String,
    /// Answer an empty NSID option (`--nsid`).
    pub nsid: bool,
    /// Replies rotated so far: the next rotation's offset.
    pub rotation: AtomicUsize,
    /// `--log-queries`: one line per query (off when `None`; costs nothing then).
    pub query_log: Option<QueryLog>,
    /// SERVFAIL causes, logged once per cause and rate-limited.
    pub errors: ErrorLog,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            round_robin: false,
            identity: "skydns".into(),
            nsid: false,
            rotation: AtomicUsize::new(0),
            query_log: None,
            errors: ErrorLog::default(),
        }
    }
}

/// `authors.bind`.
pub const AUTHORS: &str = "kube-dns-rs authors";

/// The outcome of the synchronous part of handling a packet.
pub enum Step {
    /// Reply ready to send.
    Reply(Vec<u8>),
    /// Nothing to send.
    Drop,
    /// Needs the upstream: finish with [`Handler::finish`] off the receive loop.
    Upstream(Box<Pending>),
}

/// A reply waiting for an upstream answer.
pub struct Pending {
    resp: Message,
    query: Query,
    dnssec_ok: bool,
    client: Client,
    /// The request as received when the query log wants it (empty otherwise).
    request: Vec<u8>,
    request_size: usize,
    max: usize,
    started: Instant,
    /// What the upstream answer is for.
    mode: Mode,
    /// This lookup's share of the upstream budget, returned when the reply is done.
    permit: OwnedSemaphorePermit,
}

enum Prepared {
    /// Done; the index generation when the reply may be cached.
    Ready(Message, System, Option<u64>),
    Forward(Message, Query),
    Chase(Message, Query),
    /// `--autopath`: the NXDOMAIN reply, sent unless one of these names (asked upstream in
    /// order) exists.
    Autopath(Message, Query, Vec<Name>),
}

/// What a pending upstream lookup is for.
enum Mode {
    /// Plain forwarding: relay the upstream's answer.
    Forward,
    /// A CNAME out of the zone: append the target's records.
    Chase,
    /// The rest of a pod's search path, asked in order.
    Autopath(Vec<Name>),
}

impl Handler {
    /// Answer one packet, waiting for the upstream if needed. `None`: send nothing.
    pub async fn handle(&self, packet: &[u8], client: Client) -> Option<Vec<u8>> {
        match self.handle_sync(packet, client) {
            Step::Reply(b) => Some(b),
            Step::Drop => None,
            Step::Upstream(p) => self.finish(*p).await,
        }
    }

    /// Everything that needs no upstream, without awaiting anything.
    pub fn handle_sync(&self, packet: &[u8], client: Client) -> Step {
        let started = Instant::now();
        let transport = client.transport;
        if packet.len() < 12 {
            self.metrics.malformed_queries.inc();
            return Step::Drop;
        }
        if packet[2] & 0x80 != 0 {
            // QR set: a response sent to us; never answer it (reflection loops).
            self.metrics.malformed_queries.inc();
            return Step::Drop;
        }
        if let Some(cache) = &self.answer_cache {
            if let Some((mut bytes, meta)) = cache.get(transport, packet, self.index.generation()) {
                self.metrics.answer_cache_hits.inc();
                self.rotate(&mut bytes);
                let asked = Asked {
                    client,
                    request: packet,
                    request_size: packet.len(),
                    qtype: raw_qtype(packet),
                    started,
                };
                self.observe(&asked, &bytes, meta.system, meta.rcode, meta.truncated);
                return Step::Reply(bytes);
            }
        }
        let req = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => {
                self.metrics.malformed_queries.inc();
                return Step::Reply(formerr(packet));
            }
        };
        let max = match transport {
            Transport::Tcp => 65535,
            Transport::Udp => match &req.edns {
                Some(e) => e.max_payload().clamp(512, self.udp_size.max(512)) as usize,
                None => 512,
            },
        };
        let dnssec_ok = req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let asked = Asked {
            client,
            request: packet,
            request_size: packet.len(),
            qtype: raw_qtype(packet),
            started,
        };
        let (resp, query, mode) = match self.prepare(&req, dnssec_ok, client) {
            Prepared::Ready(resp, system, cacheable) => {
                let mut step = self.send(resp, system, max, &asked);
                if let (Some(generation), Some(cache), Step::Reply(bytes)) =
                    (cacheable, &self.answer_cache, &step)
                {
                    let rcode = ResponseCode::from_low(bytes[3] & 0x0f);
                    if matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
                        let meta = ReplyMeta {
                            system,
                            rcode,
                            truncated: bytes[2] & 0x02 != 0,
                        };
                        cache.put(transport, packet, generation, bytes, meta);
                    }
                }
                if let Step::Reply(bytes) = &mut step {
                    self.rotate(bytes);
                }
                return step;
            }
            Prepared::Forward(resp, query) => (resp, query, Mode::Forward),
            Prepared::Chase(resp, query) => (resp, query, Mode::Chase),
            Prepared::Autopath(resp, query, names) => (resp, query, Mode::Autopath(names)),
        };
        let Ok(permit) = self.upstream_budget.clone().try_acquire_owned() else {
            // Over budget: a plain forward is refused, a chase answered with the alias alone,
            // an autopath walk with the NXDOMAIN the client asked for.
            self.metrics.upstream_overflow.inc();
            self.metrics.error(System::Recursive, Cause::Overflow);
            let mut resp = resp;
            let system = match mode {
                Mode::Chase | Mode::Autopath(_) => System::Auth,
                Mode::Forward => {
                    resp.metadata.response_code = ResponseCode::Refused;
                    System::Recursive
                }
            };
            return self.send(resp, system, max, &asked);
        };
        Step::Upstream(Box::new(Pending {
            permit,
            resp,
            query,
            dnssec_ok,
            client,
            request: if self.ops.query_log.is_some() {
                packet.to_vec()
            } else {
                Vec::new()
            },
            request_size: packet.len(),
            max,
            started,
            mode,
        }))
    }

    /// Complete a reply that needed the upstream.
    pub async fn finish(&self, p: Pending) -> Option<Vec<u8>> {
        let Pending {
            mut resp,
            query,
            dnssec_ok,
            client,
            request,
            request_size,
            max,
            started,
            mode,
            permit,
        } = p;
        let asked = Asked {
            client,
            request: &request,
            request_size,
            qtype: u16::from(query.query_type()),
            started,
        };
        if let Mode::Autopath(names) = mode {
            let resp = self
                .autopath_upstream(resp, &query, names, dnssec_ok, client, permit)
                .await;
            return match self.send(resp, System::Auth, max, &asked) {
                Step::Reply(mut b) => {
                    self.rotate(&mut b);
                    Some(b)
                }
                _ => None,
            };
        }
        let result = self
            .forwarder
            .resolve(&query, dnssec_ok, client.transport, Some(permit))
            .await;
        if matches!(mode, Mode::Chase) {
            // A CNAME out of the zone: append the target's records when the upstream has them.
            if let Ok(up) = result {
                resp.answers.extend(up.answers);
            }
            return match self.send(resp, System::Auth, max, &asked) {
                Step::Reply(mut b) => {
                    self.rotate(&mut b);
                    Some(b)
                }
                _ => None,
            };
        }
        let system = match result {
            Ok(up) => {
                let system = if up.from_cache {
                    System::Cache
                } else {
                    self.metrics.cache_misses.inc();
                    System::Recursive
                };
                relay(&mut resp, up);
                system
            }
            Err(e) => {
                self.ops.errors.servfail(e.label(), query.name(), &e);
                resp.metadata.response_code = ResponseCode::ServFail;
                System::Recursive
            }
        };
        match self.send(resp, system, max, &asked) {
            Step::Reply(mut b) => {
                self.rotate(&mut b);
                Some(b)
            }
            _ => None,
        }
    }

    /// Ask the rest of a pod's search path upstream, in order: the first name that is not
    /// NXDOMAIN is answered as a CNAME from the asked name plus its records; otherwise (all
    /// NXDOMAIN, a failure, the budget spent) the NXDOMAIN in `nx` is sent.
    async fn autopath_upstream(
        &self,
        mut nx: Message,
        asked: &Query,
        names: Vec<Name>,
        dnssec_ok: bool,
        client: Client,
        permit: OwnedSemaphorePermit,
    ) -> Message {
        let mut permit = Some(permit);
        for name in names {
            if !self.forwarder.has_upstreams(&name) {
                continue;
            }
            let permit = match permit.take() {
                Some(p) => p,
                None => match self.upstream_budget.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let query = Query::query(name.clone(), asked.query_type());
            let Ok(up) = self
                .forwarder
                .resolve(&query, dnssec_ok, client.transport, Some(permit))
                .await
            else {
                break;
            };
            if up.rcode == ResponseCode::NXDomain {
                continue;
            }
            if up.rcode != ResponseCode::NoError {
                break;
            }
            self.metrics.autopath_success.inc();
            let ttl = up
                .answers
                .first()
                .map(|r| r.ttl)
                .unwrap_or(self.params.default_ttl);
            nx.metadata.authoritative = false;
            nx.answers = vec![Record::from_rdata(
                asked.name().clone(),
                ttl,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(name)),
            )];
            nx.answers.extend(up.answers);
            nx.authorities = up.authorities;
            nx.additionals = up.additionals;
            nx.metadata.response_code = ResponseCode::NoError;
            return nx;
        }
        nx
    }

    /// `--round-robin`: rotate a multi-record A/AAAA answer in the encoded reply.
    fn rotate(&self, reply: &mut [u8]) {
        if self.ops.round_robin && crate::rotate::answer_count(reply) >= 2 {
            let by = self.ops.rotation.fetch_add(1, Ordering::Relaxed);
            crate::rotate::rotate(reply, by);
        }
    }

    /// A CHAOS-class question: the version, identity or authors as CH TXT, else SERVFAIL.
    fn chaos(&self, mut resp: Message, query: &Query) -> Prepared {
        let name = query.name().to_lowercase().to_ascii();
        let text = match name.trim_end_matches('.') {
            "version.bind" | "version.server" => Some(env!("CARGO_PKG_VERSION")),
            "hostname.bind" | "id.server" => Some(self.ops.identity.as_str()),
            "authors.bind" => Some(AUTHORS),
            _ => None,
        };
        match text {
            Some(text) if query.query_type() == RecordType::TXT => {
                let mut record = Record::from_rdata(
                    query.name().clone(),
                    0,
                    RData::TXT(TXT::new(vec![text.to_string()])),
                );
                record.dns_class = DNSClass::CH;
                resp.metadata.authoritative = true;
                resp.answers.push(record);
            }
            _ => resp.metadata.response_code = ResponseCode::ServFail,
        }
        Prepared::Ready(resp, System::Auth, None)
    }

    fn send(&self, mut resp: Message, system: System, max: usize, asked: &Asked<'_>) -> Step {
        let Some(bytes) = fit(&mut resp, max) else {
            return Step::Drop;
        };
        self.observe(
            asked,
            &bytes,
            system,
            resp.metadata.response_code,
            resp.metadata.truncation,
        );
        Step::Reply(bytes)
    }

    /// Count (SkyDNS and CoreDNS metrics) and log one reply.
    fn observe(
        &self,
        asked: &Asked<'_>,
        reply: &[u8],
        system: System,
        rcode: ResponseCode,
        truncated: bool,
    ) {
        let took = asked.started.elapsed();
        let seconds = took.as_secs_f64();
        let size = reply.len();
        if truncated {
            self.metrics.error(system, Cause::Truncated);
        }
        match rcode {
            ResponseCode::NXDomain => self.metrics.error(system, Cause::Nxdomain),
            ResponseCode::ServFail => self.metrics.error(system, Cause::Servfail),
            ResponseCode::Refused => self.metrics.error(system, Cause::Refused),
            _ => {}
        }
        self.metrics.observe(system, seconds, size);
        self.metrics.observe_query(&QueryObservation {
            transport: asked.client.transport,
            ipv6: asked.client.addr.is_ipv6(),
            qtype: asked.qtype,
            rcode,
            system,
            request_size: asked.request_size,
            reply_size: size,
            seconds,
        });
        if let Some(log) = &self.ops.query_log {
            log.log(asked.client, asked.request, reply, rcode, took);
        }
    }

    fn prepare(&self, req: &Message, dnssec_ok: bool, client: Client) -> Prepared {
        let transport = client.transport;
        let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.checking_disabled = req.metadata.checking_disabled;
        resp.metadata.recursion_available = self.recursion;
        resp.queries = req.queries.clone();
        if let Some(client) = &req.edns {
            let mut ours = Edns::new();
            ours.set_max_payload(self.udp_size);
            ours.set_dnssec_ok(dnssec_ok);
            if self.ops.nsid
                && matches!(client.option(EdnsCode::NSID), Some(EdnsOption::NSID(p)) if p.as_ref().is_empty())
            {
                if let Ok(id) = NSIDPayload::new(self.ops.identity.as_bytes()) {
                    ours.options_mut().insert(EdnsOption::NSID(id));
                }
            }
            resp.set_edns(ours);
            if client.version() > 0 {
                resp.metadata.response_code = ResponseCode::BADVERS;
                return Prepared::Ready(resp, System::Auth, None);
            }
        }
        if req.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            return Prepared::Ready(resp, System::Auth, None);
        }
        let [query] = req.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return Prepared::Ready(resp, System::Auth, None);
        };
        let qname = query.name();
        let qtype = query.query_type();
        let ours = self.params.apex.zone_of(qname);
        if query.query_class() == DNSClass::CH {
            return self.chaos(resp, query);
        }
        if query.query_class() != DNSClass::IN {
            resp.metadata.response_code = ResponseCode::Refused;
            return Prepared::Ready(resp, System::Auth, None);
        }
        if ours && matches!(qtype, RecordType::ANY | RecordType::AXFR | RecordType::IXFR) {
            resp.metadata.response_code = ResponseCode::Refused;
            return Prepared::Ready(resp, System::Auth, None);
        }
        let snap = self.index.snapshot();
        match answer(&snap, &self.params, qname, qtype) {
            Outcome::Auth(mut auth) => {
                // `--autopath`: an NXDOMAIN for `<base>.<ns>.svc.<zone>` from a pod of `<ns>`
                // walks the rest of its search path. Such replies depend on who asked, so
                // their NXDOMAIN is not cached by packet.
                let mut cacheable = true;
                let mut walk_upstream = None;
                if let Some(autopath) = &self.autopath {
                    let path = (auth.rcode == ResponseCode::NXDomain && snap.ready)
                        .then(|| Autopath::eligible(&self.params, qname))
                        .flatten();
                    if let Some(path) = path {
                        cacheable = false;
                        let asked = (qname, path.as_str());
                        match autopath.plan(&snap, &self.params, asked, qtype, client.addr.ip()) {
                            Some(Plan::Answered(found)) => {
                                self.metrics.autopath_success.inc();
                                auth = found;
                            }
                            Some(Plan::Upstream(names)) if self.recursion => {
                                walk_upstream = Some(names)
                            }
                            _ => {}
                        }
                    }
                }
                if auth.scan_limited {
                    self.metrics.scans_limited.inc();
                }
                let system = if auth.reverse {
                    System::Reverse
                } else {
                    System::Auth
                };
                if !snap.ready {
                    self.ops.errors.servfail(
                        "index_not_ready",
                        qname,
                        &"no etcd snapshot read yet",
                    );
                    resp.metadata.response_code = ResponseCode::ServFail;
                    return Prepared::Ready(resp, system, None);
                }
                resp.metadata.authoritative = true;
                resp.metadata.response_code = auth.rcode;
                resp.answers = auth.answers;
                resp.additionals = auth.additionals;
                if auth.soa {
                    resp.authorities.push(self.params.soa(snap.revision));
                }
                if let Some(names) = walk_upstream {
                    return Prepared::Autopath(resp, query.clone(), names);
                }
                match auth.chase {
                    Some((target, rtype))
                        if self.recursion && self.forwarder.has_upstreams(&target) =>
                    {
                        Prepared::Chase(resp, Query::query(target, rtype))
                    }
                    Some(_) => Prepared::Ready(resp, system, None),
                    None => Prepared::Ready(resp, system, cacheable.then_some(snap.generation)),
                }
            }
            Outcome::Forward => {
                if !self.recursion || !self.forwarder.has_upstreams(qname) {
                    resp.metadata.response_code = ResponseCode::Refused;
                    return Prepared::Ready(resp, System::Recursive, None);
                }
                // A cached forwarded answer is served here, on the receiving thread.
                if let Some(up) = self.forwarder.cached(query, dnssec_ok, transport) {
                    relay(&mut resp, up);
                    return Prepared::Ready(resp, System::Cache, None);
                }
                Prepared::Forward(resp, query.clone())
            }
        }
    }
}

/// The request side of a reply being observed.
struct Asked<'a> {
    client: Client,
    /// The request bytes (empty when a pending lookup kept none: the query log is off).
    request: &'a [u8],
    request_size: usize,
    /// The question's type (0 when unreadable).
    qtype: u16,
    started: Instant,
}

/// Put an upstream answer into our reply.
fn relay(resp: &mut Message, up: crate::forward::Upstream) {
    resp.metadata.response_code = up.rcode;
    resp.metadata.truncation = up.truncated;
    resp.answers = up.answers;
    resp.authorities = up.authorities;
    resp.additionals = up.additionals;
}

/// Encode `resp`, fitting it in `max` bytes: first without the additional section, then as a
/// truncated reply (question only, TC set). `None` if even that cannot be encoded.
pub fn fit(resp: &mut Message, max: usize) -> Option<Vec<u8>> {
    if let Some(bytes) = encode(resp) {
        if bytes.len() <= max {
            return Some(bytes);
        }
    }
    if !resp.additionals.is_empty() {
        resp.additionals.clear();
        if let Some(bytes) = encode(resp) {
            if bytes.len() <= max {
                return Some(bytes);
            }
        }
    }
    resp.answers.clear();
    resp.authorities.clear();
    resp.additionals.clear();
    resp.metadata.truncation = true;
    encode(resp).filter(|b| b.len() <= max.max(512))
}

/// Our fast encoder for what it covers, hickory-proto's for the rest.
fn encode(resp: &Message) -> Option<Vec<u8>> {
    crate::encoder::encode(resp).or_else(|| resp.to_vec().ok())
}

/// FORMERR for a packet whose header is readable but whose body is not: the id and opcode
/// copied, no sections.
fn formerr(packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0] = packet[0];
    out[1] = packet[1];
    // QR=1, opcode copied, RD copied.
    out[2] = 0x80 | (packet[2] & 0x78) | (packet[2] & 0x01);
    out[3] = ResponseCode::FormErr.low();
    out
}
