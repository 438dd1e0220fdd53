//! The desired state: the slim objects, the record map they imply (key → encoded value), and
//! the keys that differ from what etcd holds. A synchronous state machine, one `State` whose
//! methods live by job:
//!
//! - `objects.rs` — watch events in: `apply` an event and only the affected service or pod
//!   address is recomputed (a service is joined with its slices and handed to `translate`, and
//!   its old keys are diffed against the new ones);
//! - `ptr.rs` — PTR bookkeeping: which names each address's PTR value lists, the revisions of
//!   the reverse keys kube2sky holds, and the decision after a failed revision comparison;
//! - `batch.rs` — the pending keys and the next transaction for the writer (`take_batch`: all
//!   puts before any delete, within the operation and byte limits);
//! - `reconcile.rs` — the owned key ranges and the comparison of a page of what etcd holds in
//!   one of them with the desired map (`reconcile_chunk`).

mod batch;
mod objects;
mod ptr;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use msg::{encode_value, Zone};

use crate::slim::{Kind, ObjRef, SlimEndpoints, SlimPod, SlimService};
use crate::translate;

pub use reconcile::{owned_ranges, OwnedRange};

/// Largest key + value kube2sky writes in one operation (etcd's request limit is 1.5 MiB).
pub const MAX_OP_BYTES: usize = 1024 * 1024;

/// One etcd write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value` (an encoded record value).
    Put {
        /// Full etcd key.
        key: String,
        /// JSON value, as [`msg::encode_value`] writes it.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// Full etcd key.
        key: String,
    },
}

impl Op {
    /// The key written or removed.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Services held.
    pub services: usize,
    /// EndpointSlices (or v1 Endpoints) held.
    pub endpoints: usize,
    /// Pods held.
    pub pods: usize,
    /// Keys in the desired record set.
    pub records: usize,
    /// Keys waiting to be written.
    pub pending: usize,
    /// Keys whose desired value is larger than etcd accepts (their key is kept absent).
    pub too_large: usize,
    /// How many times a value was found too large (a counter).
    pub too_large_total: u64,
}

/// What a guarded reverse key held when a transaction's comparison failed: `None` when absent,
/// else its value and modification revision.
pub type Current = Option<(Vec<u8>, i64)>;

#[derive(Debug)]
struct Stored<T> {
    obj: T,
    generation: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct KindState {
    enabled: bool,
    generation: u64,
    listed: bool,
}

/// The desired record set and what is left to write.
#[derive(Debug)]
pub struct State {
    zone: Zone,
    ttl: u32,
    kinds: [KindState; 3],
    services: HashMap<ObjRef, Stored<SlimService>>,
    endpoints: HashMap<ObjRef, Stored<SlimEndpoints>>,
    /// Service → names of its slices (same namespace), sorted.
    by_service: HashMap<ObjRef, Vec<String>>,
    pods: HashMap<ObjRef, Stored<SlimPod>>,
    /// (namespace, address) → number of pods holding it.
    pod_ips: HashMap<(String, IpAddr), u32>,
    /// Service → the (address, name) pairs it put into PTR values, sorted; the names are
    /// shared with `ptr_names`.
    svc_ptrs: HashMap<ObjRef, Vec<(IpAddr, Arc<str>)>>,
    /// Address → the names its PTR value lists, sorted (usually one or two).
    ptr_names: HashMap<IpAddr, Vec<Arc<str>>>,
    /// Key → encoded value (no spare capacity at 10⁵–10⁶ records; keys shared with the
    /// pending sets).
    desired: BTreeMap<Arc<str>, Box<str>>,
    /// Keys to put (they have a desired value) and to delete (they do not).
    dirty_put: BTreeSet<Arc<str>>,
    dirty_del: BTreeSet<Arc<str>>,
    /// Reverse keys another writer holds: never written or deleted.
    foreign: HashSet<String>,
    /// Reverse keys kube2sky holds, with their modification revision as last read or written.
    /// Every write of a reverse key compares it (absent: 0), so a foreign value that appeared
    /// since is never overwritten or deleted.
    ptr_revs: HashMap<Arc<str>, i64>,
    /// Keys whose desired value exceeds `max_op_bytes`: etcd must not hold them (a stale
    /// value would be served otherwise).
    too_large: HashSet<Arc<str>>,
    too_large_total: u64,
    /// Largest key + value written in one operation (lowered when etcd refuses a request).
    max_op_bytes: usize,
    /// `P/arpa/in-addr/` and `P/arpa/ip6/`.
    reverse_prefixes: [String; 2],
}

impl State {
    /// `kinds` are the watched resources; the first sync waits for each one's initial list.
    pub fn new(zone: Zone, ttl: u32, kinds: &[Kind]) -> Self {
        let reverse_prefixes = zone.reverse_prefixes();
        let mut state = State {
            zone,
            ttl,
            kinds: [KindState::default(); 3],
            services: HashMap::new(),
            endpoints: HashMap::new(),
            by_service: HashMap::new(),
            pods: HashMap::new(),
            pod_ips: HashMap::new(),
            svc_ptrs: HashMap::new(),
            ptr_names: HashMap::new(),
            desired: BTreeMap::new(),
            dirty_put: BTreeSet::new(),
            dirty_del: BTreeSet::new(),
            foreign: HashSet::new(),
            ptr_revs: HashMap::new(),
            too_large: HashSet::new(),
            too_large_total: 0,
            max_op_bytes: MAX_OP_BYTES,
            reverse_prefixes,
        };
        for k in kinds {
            state.kinds[k.index()].enabled = true;
        }
        let (key, records) = translate::dns_version(&state.zone);
        state.set(key, Some(encode_value(&records)));
        state
    }

    /// The zone the records are written under.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Whether every watched kind has completed its initial list.
    pub fn initial_lists_done(&self) -> bool {
        self.kinds.iter().all(|k| !k.enabled || k.listed)
    }

    /// Keys waiting to be written.
    pub fn pending(&self) -> usize {
        self.dirty_put.len() + self.dirty_del.len()
    }

    /// Counts for the gauges (see [`crate::metrics::Metrics::observe`]).
    pub fn stats(&self) -> Stats {
        Stats {
            services: self.services.len(),
            endpoints: self.endpoints.len(),
            pods: self.pods.len(),
            records: self.desired.len(),
            pending: self.pending(),
            too_large: self.too_large.len(),
            too_large_total: self.too_large_total,
        }
    }

    /// The desired value of a key.
    pub fn desired(&self, key: &str) -> Option<&str> {
        self.desired.get(key).map(|v| &**v)
    }

    /// A copy of the whole desired map (tests and debugging).
    pub fn desired_snapshot(&self) -> BTreeMap<String, String> {
        self.desired
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
