//! Which upstreams a name is forwarded to, and how each upstream is doing.
//!
//! Routes map zones (stub domains, from `--stub-domain` and the config directory) to upstream
//! lists; the longest zone containing the name wins, the default route (`.`) takes the rest.
//! Each upstream address has one [`UpstreamState`] for the life of the process (shared by every
//! route naming it and kept across reloads): whether it is up (fail-fast: an upstream that
//! failed is skipped until a health probe gets an answer from it again) and whether our own
//! loop probe came back through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;

/// How the upstreams of a route are ordered for each question (CoreDNS `forward` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Policy {
    /// A random healthy upstream first.
    Random,
    /// Healthy upstreams in turn.
    RoundRobin,
    /// Healthy upstreams in the configured order.
    Sequential,
}

/// First pause before a failed upstream is probed again; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between health probes of a failed upstream.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One upstream address and what we know of it.
pub struct UpstreamState {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its CoreDNS metric handles, resolved on first use.
    pub metrics: std::sync::OnceLock<Arc<crate::metrics::coredns::UpstreamMetrics>>,
    down_since: Mutex<Option<Instant>>,
    /// A health prober is running for it.
    pub probing: AtomicBool,
    /// Our loop probe came back through it: never forwarded to.
    looped: AtomicBool,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamState")
            .field("addr", &self.addr)
            .field("up", &self.is_up())
            .field("looped", &self.is_looped())
            .finish()
    }
}

impl UpstreamState {
    fn new(addr: SocketAddr) -> Self {
        UpstreamState {
            addr,
            metrics: std::sync::OnceLock::new(),
            down_since: Mutex::new(None),
            probing: AtomicBool::new(false),
            looped: AtomicBool::new(false),
        }
    }

    /// Answering (not marked down by a failure).
    pub fn is_up(&self) -> bool {
        self.down_since.lock().map_or(true, |d| d.is_none())
    }

    /// It failed (timeout, network error). Returns true when it was up until now.
    pub fn failed(&self) -> bool {
        match self.down_since.lock() {
            Ok(mut d) if d.is_none() => {
                *d = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// It answered.
    pub fn succeeded(&self) {
        if let Ok(mut d) = self.down_since.lock() {
            *d = None;
        }
    }

    /// Whether forwarding to it loops back to us (it is then left out).
    pub fn is_looped(&self) -> bool {
        self.looped.load(Ordering::Relaxed)
    }

    /// Mark (or clear) a forwarding loop through it; returns the previous value.
    pub fn set_looped(&self, looped: bool) -> bool {
        self.looped.swap(looped, Ordering::Relaxed)
    }
}

/// A zone and its upstreams.
#[derive(Debug)]
pub struct Route {
    /// Lower-case, fully qualified (`.` for the default route).
    pub zone: Name,
    /// Its upstreams, in configuration order.
    pub upstreams: Vec<Arc<UpstreamState>>,
}

/// Every route, longest zone first.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
    next: AtomicUsize,
}

impl Routes {
    /// Routes for `stubs` (zone → addresses) and the default `upstreams`; states come from (and
    /// new ones go into) `states`.
    pub fn build(
        stubs: &[(Name, Vec<SocketAddr>)],
        upstreams: &[SocketAddr],
        states: &mut Vec<Arc<UpstreamState>>,
    ) -> Routes {
        let mut state = |addr: SocketAddr| {
            if let Some(s) = states.iter().find(|s| s.addr == addr) {
                return s.clone();
            }
            let s = Arc::new(UpstreamState::new(addr));
            states.push(s.clone());
            s
        };
        let mut routes: Vec<Route> = Vec::new();
        for (zone, addrs) in stubs {
            let zone = zone.to_lowercase();
            // A zone given twice: the later entry wins (flags first, then the config file).
            routes.retain(|r| r.zone != zone);
            routes.push(Route {
                zone,
                upstreams: addrs.iter().map(|a| state(*a)).collect(),
            });
        }
        routes.push(Route {
            zone: Name::root(),
            upstreams: upstreams.iter().map(|a| state(*a)).collect(),
        });
        routes.sort_by_key(|r| std::cmp::Reverse(r.zone.num_labels()));
        Routes {
            routes,
            next: AtomicUsize::new(0),
        }
    }

    /// The route of `name`: the longest zone containing it.
    pub fn route(&self, name: &Name) -> &Route {
        self.routes
            .iter()
            .find(|r| r.zone.zone_of(name))
            .unwrap_or_else(|| &self.routes[self.routes.len() - 1])
    }

    /// Every route.
    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// The upstreams of `route` to try, in order: those up (by `policy`), else — when none
    /// is up — all of them; never one with a loop.
    pub fn order(&self, route: &Route, policy: Policy) -> Vec<Arc<UpstreamState>> {
        let usable: Vec<&Arc<UpstreamState>> =
            route.upstreams.iter().filter(|u| !u.is_looped()).collect();
        let up: Vec<&Arc<UpstreamState>> = usable.iter().copied().filter(|u| u.is_up()).collect();
        let mut list: Vec<Arc<UpstreamState>> = if up.is_empty() { usable } else { up }
            .into_iter()
            .cloned()
            .collect();
        if list.len() > 1 {
            let start = match policy {
                Policy::Sequential => 0,
                Policy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % list.len(),
                Policy::Random => rand::random_range(0..list.len()),
            };
            list.rotate_left(start);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_zone_wins_and_the_default_takes_the_rest() {
        let mut states = Vec::new();
        let r = Routes::build(
            &[
                (n("acme.local."), vec![a("10.0.0.1:53")]),
                (n("dev.acme.local."), vec![a("10.0.0.2:53")]),
                (n("10.in-addr.arpa."), vec![a("10.0.0.3:53")]),
            ],
            &[a("8.8.8.8:53")],
            &mut states,
        );
        let first = |q: &str| r.route(&n(q)).upstreams[0].addr;
        assert_eq!(first("x.acme.local."), a("10.0.0.1:53"));
        assert_eq!(first("X.DEV.Acme.local."), a("10.0.0.2:53"));
        assert_eq!(first("4.3.2.10.in-addr.arpa."), a("10.0.0.3:53"));
        assert_eq!(first("example.com."), a("8.8.8.8:53"));
        assert_eq!(first("acme.localx."), a("8.8.8.8:53"));
        // States are shared by address across rebuilds.
        states[0].failed();
        let again = Routes::build(
            &[(n("acme.local."), vec![a("10.0.0.1:53")])],
            &[],
            &mut states,
        );
        assert!(!again.route(&n("a.acme.local.")).upstreams[0].is_up());
    }

    #[test]
    fn order_skips_down_and_looped_upstreams() {
        let mut states = Vec::new();
        let r = Routes::build(
            &[],
            &[a("10.0.0.1:53"), a("10.0.0.2:53"), a("10.0.0.3:53")],
            &mut states,
        );
        let route = r.route(&n("x."));
        route.upstreams[0].failed();
        route.upstreams[2].set_looped(true);
        for p in [Policy::Random, Policy::RoundRobin, Policy::Sequential] {
            let o = r.order(route, p);
            assert_eq!(o.len(), 1);
            assert_eq!(o[0].addr, a("10.0.0.2:53"));
        }
        // None up: every one without a loop, as a last resort.
        route.upstreams[1].failed();
        assert_eq!(r.order(route, Policy::Sequential).len(), 2);
        route.upstreams[1].succeeded();
        assert_eq!(r.order(route, Policy::Sequential)[0].addr, a("10.0.0.2:53"));
    }

    #[test]
    fn round_robin_turns() {
        let mut states = Vec::new();
        let r = Routes::build(&[], &[a("10.0.0.1:53"), a("10.0.0.2:53")], &mut states);
        let route = r.route(&n("x."));
        let firsts: Vec<SocketAddr> = (0..4)
            .map(|_| r.order(route, Policy::RoundRobin)[0].addr)
            .collect();
        assert_eq!(firsts[0], firsts[2]);
        assert_ne!(firsts[0], firsts[1]);
    }
}
