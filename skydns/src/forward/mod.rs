//! Forwarding of names outside the zone: the route of the name picks its upstreams (stub
//! domains, else the default list; `routes`), one exchange per attempt over the client's
//! transport (`exchange`), answers kept in a bounded cache (`cache`).
//!
//! What keeps it up when upstreams misbehave:
//! - identical questions in flight are coalesced: one lookup upstream, every asker gets its
//!   result (and a question that comes back to us while we are asking it — a loop — makes no
//!   new packet);
//! - fail-fast: an upstream that failed is skipped until a health probe gets an answer from
//!   it, so with one dead and one live upstream only the first questions wait for the dead one;
//! - stale answers (RFC 8767): when the upstreams fail, or have not answered within
//!   [`STALE_AFTER`], an expired entry within `--serve-stale` is served with TTL 30;
//! - prefetch: a popular entry is refreshed before it expires;
//! - loop detection: a random name only we would ask is sent through every upstream; one whose
//!   probe comes back to us is a loop and is never forwarded to (as CoreDNS's `loop`, without
//!   the crash).
//!
//! Counted twice, under the SkyDNS names (`skydns_forward_*`) and the CoreDNS ones
//! (`coredns_forward_*`, `coredns_proxy_*`, and `coredns_cache_*` for the cache, which plays
//! CoreDNS's `cache` in front of `forward`).

pub mod cache;
pub mod exchange;
pub mod routes;
pub mod stubs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::error::ForwardError;
use crate::metrics::coredns::UpstreamMetrics;
use crate::metrics::Metrics;
use cache::{Cache, CacheKey, CacheLimits, Lookup};
use routes::{Policy, Route, Routes, UpstreamState, MAX_BACKOFF, MIN_BACKOFF};
use stubs::FileConfig;

/// How long a client waits before a stale answer is served when one exists (RFC 8767 §5
/// suggests 1.8 s).
pub const STALE_AFTER: Duration = Duration::from_millis(1800);
/// How often the config directory is read for changes.
pub const CONFIG_POLL: Duration = Duration::from_secs(1);

/// The transport a client used (and we use upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// DNS over UDP.
    Udp,
    /// DNS over TCP (length-prefixed messages).
    Tcp,
}

/// An upstream answer to relay.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The upstream's response code.
    pub rcode: ResponseCode,
    /// Its answer section.
    pub answers: Vec<Record>,
    /// Its authority section (the SOA of a negative answer).
    pub authorities: Vec<Record>,
    /// Its additional section, without OPT.
    pub additionals: Vec<Record>,
    /// TC was set (the client should retry over TCP).
    pub truncated: bool,
    /// Served from the forwarding cache rather than asked now.
    pub from_cache: bool,
}

/// What the forwarder is built from (validated flags).
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// The default upstreams (`--nameservers` or resolv.conf).
    pub upstreams: Vec<SocketAddr>,
    /// `--stub-domain` flags.
    pub stub_domains: Vec<(Name, Vec<SocketAddr>)>,
    /// What `--config-dir` held at start.
    pub file_config: Option<FileConfig>,
    /// Per-upstream timeout (`--rtimeout`).
    pub timeout: Duration,
    /// Order of a zone's upstreams (`--forward-policy`).
    pub policy: Policy,
    /// The forwarding cache's bounds.
    pub cache: CacheLimits,
    /// The cluster zone: never forwarded.
    pub cluster_zone: Name,
}

type Flight = watch::Receiver<Option<Result<Upstream, ForwardError>>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    key: CacheKey,
    transport: Transport,
}

/// The forwarder (cheap to clone: one shared state).
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ForwardSettings,
    routes: ArcSwap<Routes>,
    /// Every upstream ever configured, by address (state kept across reloads).
    states: Mutex<Vec<Arc<UpstreamState>>>,
    /// Our own listen address, once bound.
    own: Mutex<Option<SocketAddr>>,
    cache: Cache,
    inflight: Mutex<HashMap<FlightKey, Flight>>,
    /// Loop probe names in flight → the upstream they were sent to.
    probes: Mutex<HashMap<Name, SocketAddr>>,
    metrics: Arc<Metrics>,
    /// Where background lookups run (also when started from a UDP thread).
    rt: Option<tokio::runtime::Handle>,
}

impl Forwarder {
    /// A forwarder with `settings`, counting into `metrics`; nothing is sent until asked.
    pub fn new(settings: ForwardSettings, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.coredns.cache.evictions.clone();
        let inner = Inner {
            cache: Cache::counting_evictions(settings.cache, Some(evictions)),
            routes: ArcSwap::from_pointee(Routes::default()),
            states: Mutex::new(Vec::new()),
            own: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            metrics,
            settings,
            rt: tokio::runtime::Handle::try_current().ok(),
        };
        let f = Forwarder {
            inner: Arc::new(inner),
        };
        let file = f.inner.settings.file_config.clone();
        f.build_routes(file.as_ref());
        f
    }

    fn build_routes(&self, file: Option<&FileConfig>) {
        let s = &self.inner.settings;
        let mut stubs = s.stub_domains.clone();
        let mut upstreams = s.upstreams.clone();
        if let Some(f) = file {
            stubs.extend(f.stub_domains.iter().cloned());
            if let Some(u) = &f.upstream_nameservers {
                upstreams = u.clone();
            }
        }
        let Ok(mut states) = self.inner.states.lock() else {
            return;
        };
        let routes = Routes::build(&stubs, &upstreams, &mut states);
        drop(states);
        self.inner.routes.store(Arc::new(routes));
        self.refuse_own();
    }

    /// Whether a question for `name` has anywhere to go.
    pub fn has_upstreams(&self, name: &Name) -> bool {
        !self.inner.routes.load().route(name).upstreams.is_empty()
    }

    /// Record our bound listen address: an upstream that is us is refused outright.
    pub fn set_own_address(&self, addr: SocketAddr) {
        if let Ok(mut own) = self.inner.own.lock() {
            *own = Some(addr);
        }
        self.refuse_own();
    }

    fn refuse_own(&self) {
        let Some(own) = self.inner.own.lock().ok().and_then(|o| *o) else {
            return;
        };
        for route in self.inner.routes.load().all() {
            for u in &route.upstreams {
                if stubs::is_own(u.addr, own) {
                    self.mark_loop(u, "it is our own listen address");
                }
            }
        }
    }

    fn mark_loop(&self, u: &UpstreamState, why: &str) {
        if !u.set_looped(true) {
            tracing::error!(upstream = %u.addr, "forwarding loop: {why}; not forwarding to it");
        }
        self.inner.metrics.set_forward_loop(u.addr, true);
    }

    /// Upstreams not forwarded to because of a loop.
    pub fn loops(&self) -> Vec<SocketAddr> {
        let Ok(states) = self.inner.states.lock() else {
            return Vec::new();
        };
        states
            .iter()
            .filter(|s| s.is_looped())
            .map(|s| s.addr)
            .collect()
    }

    /// Apply what the config directory holds now, and probe the upstreams for loops again.
    pub fn apply(&self, file: &FileConfig) {
        self.build_routes(Some(file));
        self.probe_loops();
    }

    /// Bytes the cache holds now.
    pub fn cache_bytes(&self) -> u64 {
        self.inner.cache.weight()
    }

    /// Entries the cache holds now; also publishes `coredns_cache_entries` by type (the
    /// server calls this once a second for its gauges).
    pub fn cache_len(&self) -> usize {
        let (success, denial) = self.inner.cache.len_by_type();
        let entries = &self.inner.metrics.coredns.cache.entries;
        entries[0].set(success as i64);
        entries[1].set(denial as i64);
        success + denial
    }

    /// The CoreDNS handles of upstream `u`.
    fn upstream_metrics<'a>(&self, u: &'a UpstreamState) -> &'a UpstreamMetrics {
        u.metrics
            .get_or_init(|| self.inner.metrics.coredns.upstream(u.addr))
    }

    /// Resolve `query` upstream (or from the cache). `permit` is the caller's share of the
    /// upstream budget: it stays with the lookup until the lookup is done.
    pub async fn resolve(
        &self,
        query: &Query,
        dnssec_ok: bool,
        transport: Transport,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Upstream, ForwardError> {
        let name = query.name();
        let lower = name.to_lowercase();
        if let Some(probed) = self.probe_returned(&lower) {
            return Err(ForwardError::Loop(probed));
        }
        let key = CacheKey {
            name: lower,
            rtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok,
        };
        let m = &self.inner.metrics;
        let stale = match self.inner.cache.get(&key, name) {
            Lookup::Fresh { answer, prefetch } => {
                m.cache_hits.inc();
                if prefetch {
                    m.cache_prefetches.inc();
                    m.coredns.cache.prefetch.inc();
                    let flight = FlightKey { key, transport };
                    drop(self.flight(flight, query, dnssec_ok, permit));
                }
                return Ok(answer);
            }
            Lookup::Stale(s) => Some(s),
            Lookup::Miss => None,
        };
        let routes = self.inner.routes.load();
        if routes.route(name).upstreams.is_empty() {
            return match stale {
                Some(s) => Ok(self.served_stale(s)),
                None => Err(ForwardError::NoUpstreams),
            };
        }
        drop(routes);
        let mut flight = self.flight(FlightKey { key, transport }, query, dnssec_ok, permit);
        let patience = if stale.is_some() {
            STALE_AFTER
        } else {
            // Every upstream of the route once, plus slack: the lookup's own bound.
            self.inner.settings.timeout * (MAX_ATTEMPTS as u32) + Duration::from_secs(1)
        };
        let result = tokio::time::timeout(patience, flight.wait_for(|r| r.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| v.clone()));
        match (result, stale) {
            (Some(Ok(up)), _) => Ok(up),
            (_, Some(s)) => Ok(self.served_stale(s)),
            (Some(Err(e)), None) => Err(e),
            (None, None) => Err(ForwardError::AllFailed("no answer in time".into())),
        }
    }

    /// A fresh cached answer to `query`, without waiting for anything (the query path calls
    /// this before it hands a question to a task). A popular entry near expiry is refreshed in
    /// the background.
    pub fn cached(&self, query: &Query, dnssec_ok: bool, transport: Transport) -> Option<Upstream> {
        let name = query.name();
        let key = CacheKey {
            name: name.to_lowercase(),
            rtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok,
        };
        // The CoreDNS cache counters count here, once per question (every forwarded question
        // is looked up here first; `resolve` looks again only for what missed).
        let m = &self.inner.metrics;
        m.coredns.cache.requests.inc();
        match self.inner.cache.get(&key, name) {
            Lookup::Fresh { answer, prefetch } => {
                m.cache_hits.inc();
                m.coredns.cache.hits[usize::from(cache::is_denial(&answer))].inc();
                if prefetch {
                    m.cache_prefetches.inc();
                    m.coredns.cache.prefetch.inc();
                    drop(self.flight(FlightKey { key, transport }, query, dnssec_ok, None));
                }
                Some(answer)
            }
            Lookup::Stale(_) | Lookup::Miss => {
                m.coredns.cache.misses.inc();
                None
            }
        }
    }

    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        match &self.inner.rt {
            Some(rt) => {
                rt.spawn(fut);
            }
            None => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(fut);
                }
            }
        }
    }

    fn served_stale(&self, s: Upstream) -> Upstream {
        self.inner.metrics.cache_served_stale.inc();
        self.inner.metrics.coredns.cache.served_stale.inc();
        s
    }

    /// Join the lookup of `key` in flight, or start it (on its own task, so it finishes and
    /// fills the cache even when the asker stops waiting).
    fn flight(
        &self,
        key: FlightKey,
        query: &Query,
        dnssec_ok: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Flight {
        let Ok(mut inflight) = self.inner.inflight.lock() else {
            let (_, rx) = watch::channel(Some(Err(ForwardError::AllFailed("poisoned".into()))));
            return rx;
        };
        if let Some(rx) = inflight.get(&key) {
            self.inner.metrics.forward_coalesced.inc();
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(key.clone(), rx.clone());
        drop(inflight);
        let this = self.clone();
        let query = query.clone();
        self.spawn(async move {
            let result = this.lookup(&query, dnssec_ok, key.transport).await;
            if let Ok(answer) = &result {
                this.inner.cache.put(key.key.clone(), answer);
            }
            if let Ok(mut inflight) = this.inner.inflight.lock() {
                inflight.remove(&key);
            }
            let _ = tx.send(Some(result));
            drop(permit);
        });
        rx
    }

    /// Ask the route's upstreams in policy order until one answers.
    async fn lookup(
        &self,
        query: &Query,
        dnssec_ok: bool,
        transport: Transport,
    ) -> Result<Upstream, ForwardError> {
        let routes = self.inner.routes.load_full();
        let route: &Route = routes.route(query.name());
        // Another server's loop probe passes even upstreams we found looping, so that it can
        // come back to its sender (coalescing stops it from circling).
        let order = if is_probe(query.name()) {
            route.upstreams.clone()
        } else {
            routes.order(route, self.inner.settings.policy)
        };
        if order.is_empty() {
            return Err(ForwardError::NoUsableUpstreams);
        }
        let m = &self.inner.metrics;
        if order.iter().all(|u| !u.is_up()) {
            // Every upstream failed its health: tried anyway (CoreDNS "healthcheck broken").
            m.coredns.forward_healthcheck_broken.inc();
        }
        let mut errors = Vec::new();
        for server in order.iter().take(MAX_ATTEMPTS) {
            m.forward_request(server.addr);
            let sent = std::time::Instant::now();
            match exchange::ask(
                server.addr,
                query,
                dnssec_ok,
                transport,
                self.inner.settings.timeout,
            )
            .await
            {
                Ok(answer) => {
                    self.upstream_metrics(server)
                        .reply(u16::from(answer.rcode), sent.elapsed().as_secs_f64());
                    server.succeeded();
                    if matches!(answer.rcode, ResponseCode::ServFail | ResponseCode::Refused) {
                        errors.push(format!("{}: {}", server.addr, answer.rcode));
                        continue;
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    m.forward_error(server.addr, e.label());
                    errors.push(format!("{}: {e}", server.addr));
                    if server.failed() {
                        tracing::warn!(upstream = %server.addr, error = %e, "upstream failed; skipping it until it answers a health probe");
                        self.start_health_probe(server.clone());
                    }
                }
            }
        }
        Err(ForwardError::AllFailed(errors.join("; ")))
    }

    /// Probe a failed upstream (`. NS`, as CoreDNS does) with growing pauses until it answers.
    fn start_health_probe(&self, server: Arc<UpstreamState>) {
        if server
            .probing
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let this = self.clone();
        self.spawn(async move {
            let mut pause = MIN_BACKOFF;
            let q = Query::query(Name::root(), RecordType::NS);
            loop {
                tokio::time::sleep(pause).await;
                let alive = exchange::ask(
                    server.addr,
                    &q,
                    false,
                    Transport::Udp,
                    this.inner.settings.timeout,
                )
                .await;
                if alive.is_ok() {
                    server.succeeded();
                    tracing::info!(upstream = %server.addr, "upstream answers again");
                    break;
                }
                this.inner.metrics.forward_healthcheck_failures.inc();
                this.upstream_metrics(&server).healthcheck_failed();
                pause = (pause * 2).min(MAX_BACKOFF);
                // Dropped from every route by a reload: stop probing it.
                let routes = this.inner.routes.load();
                if !routes
                    .all()
                    .iter()
                    .any(|r| r.upstreams.iter().any(|u| Arc::ptr_eq(u, &server)))
                {
                    break;
                }
            }
            server
                .probing
                .store(false, std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// If `name` is one of our loop probes, the upstream it went to loops back to us.
    fn probe_returned(&self, name: &Name) -> Option<SocketAddr> {
        let addr = self.inner.probes.lock().ok()?.get(name).copied()?;
        let routes = self.inner.routes.load();
        for route in routes.all() {
            if let Some(u) = route.upstreams.iter().find(|u| u.addr == addr) {
                self.mark_loop(u, "our loop probe came back through it");
                break;
            }
        }
        Some(addr)
    }

    /// Send a probe name only we would ask through every upstream of every route (loops
    /// marked earlier are cleared first: the configuration may have changed).
    pub fn probe_loops(&self) {
        let routes = self.inner.routes.load_full();
        let own = self.inner.own.lock().ok().and_then(|o| *o);
        for route in routes.all() {
            for u in &route.upstreams {
                if own.is_some_and(|own| stubs::is_own(u.addr, own)) {
                    continue;
                }
                // Exported as 0 for every upstream probed, so a loop alert has a series to
                // watch before any loop.
                u.set_looped(false);
                self.inner.metrics.set_forward_loop(u.addr, false);
                let zone = if route.zone.is_root() {
                    String::new()
                } else {
                    route.zone.to_ascii()
                };
                let Ok(name) = Name::from_ascii(format!(
                    "{:016x}{:016x}.{PROBE_LABEL}.{zone}",
                    rand::random::<u64>(),
                    rand::random::<u64>(),
                )) else {
                    continue;
                };
                if let Ok(mut probes) = self.inner.probes.lock() {
                    probes.insert(name.to_lowercase(), u.addr);
                }
                tracing::debug!(upstream = %u.addr, %name, "loop probe sent");
                let this = self.clone();
                let (addr, timeout) = (u.addr, self.inner.settings.timeout);
                self.spawn(async move {
                    let q = Query::query(name.clone(), RecordType::HINFO);
                    let _ = exchange::ask(addr, &q, false, Transport::Udp, timeout).await;
                    if let Ok(mut probes) = this.inner.probes.lock() {
                        probes.remove(&name.to_lowercase());
                    }
                });
            }
        }
    }
}

/// The second label of every loop probe name (`<random>.skydns-loop-probe.<zone>`).
pub const PROBE_LABEL: &str = "skydns-loop-probe";

/// Whether `name` is a loop probe (ours or another server's).
fn is_probe(name: &Name) -> bool {
    name.iter()
        .nth(1)
        .is_some_and(|l| l.eq_ignore_ascii_case(PROBE_LABEL.as_bytes()))
}

/// Most upstreams asked for one question.
pub const MAX_ATTEMPTS: usize = 3;

/// Read `dir` every [`CONFIG_POLL`] and apply it when it changed; a bad file keeps the last
/// good configuration, logs one line naming the file and the problem, and is counted.
pub async fn watch_config_dir(
    forwarder: Forwarder,
    dir: PathBuf,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut last: Option<Result<FileConfig, stubs::FileError>> =
        forwarder.inner.settings.file_config.clone().map(Ok);
    let own = forwarder.inner.own.lock().ok().and_then(|o| *o);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
        let dir2 = dir.clone();
        let Ok(read) = tokio::task::spawn_blocking(move || stubs::read_dir(&dir2)).await else {
            continue;
        };
        let read = read.and_then(|c| {
            let upstreams = c.upstream_nameservers.clone().unwrap_or_default();
            let own = own.unwrap_or_else(|| SocketAddr::from(([255, 255, 255, 255], 0)));
            stubs::check(
                &c.stub_domains,
                &upstreams,
                &forwarder.inner.settings.cluster_zone,
                own,
            )
            .map(|()| c)
            .map_err(|problem| stubs::FileError {
                file: dir.display().to_string(),
                problem,
            })
        });
        if last.as_ref() == Some(&read) {
            continue;
        }
        match &read {
            Ok(config) => {
                tracing::info!(dir = %dir.display(), zones = config.stub_domains.len(), "forwarding configuration reloaded");
                forwarder.apply(config);
            }
            Err(e) => {
                metrics.config_error();
                tracing::error!("{e}; keeping the last good forwarding configuration");
            }
        }
        last = Some(read);
    }
}
