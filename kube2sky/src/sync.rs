//! The desired state: the slim objects, the record map they imply (key → encoded value), and
//! the keys that differ from what etcd holds. A synchronous state machine: `apply` an event and
//! only the affected service, pod address or PTR is recomputed; `take_batch` hands the writer
//! the next transaction (all puts before any delete); `reconcile_chunk` compares a page of what
//! etcd holds in an owned range with the desired map.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

use msg::{encode_value, parse_value, Zone};

use crate::slim::{Kind, ObjRef, SlimEndpoints, SlimEvent, SlimObject, SlimPod, SlimService};
use crate::translate::{self, ServiceRecords};

/// Largest key + value kube2sky writes in one operation (etcd's request limit is 1.5 MiB).
pub const MAX_OP_BYTES: usize = 1024 * 1024;

/// One etcd write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: String },
    Delete { key: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// A key range kube2sky owns: forward trees (every key is ours) or reverse trees (only keys
/// whose value `Zone::owns_ptr_value` accepts are ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRange {
    pub start: String,
    /// Exclusive end.
    pub end: String,
    pub reverse: bool,
}

/// The ranges to read on reconcile: `P/svc/`, `P/pod/`, `P/dns-version`, and the reverse trees.
pub fn owned_ranges(zone: &Zone) -> Vec<OwnedRange> {
    let mut out: Vec<OwnedRange> = zone
        .owned_tree_prefixes()
        .into_iter()
        .map(|p| OwnedRange {
            end: msg::prefix_end(&p),
            start: p,
            reverse: false,
        })
        .collect();
    let version = zone.dns_version_key();
    out.push(OwnedRange {
        end: format!("{version}\0"),
        start: version,
        reverse: false,
    });
    out.extend(zone.reverse_prefixes().into_iter().map(|p| OwnedRange {
        end: msg::prefix_end(&p),
        start: p,
        reverse: true,
    }));
    out
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub services: usize,
    pub endpoints: usize,
    pub pods: usize,
    pub records: usize,
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

    /// Apply one watch event; returns whether any key became dirty.
    pub fn apply(&mut self, event: SlimEvent) -> bool {
        let before = self.pending();
        match event {
            SlimEvent::Init(kind) => {
                let k = &mut self.kinds[kind.index()];
                k.generation += 1;
            }
            SlimEvent::InitDone(kind) => {
                self.prune(kind);
                self.kinds[kind.index()].listed = true;
            }
            SlimEvent::Apply(obj) => self.apply_object(obj),
            SlimEvent::Delete(kind, id) => self.delete_object(kind, &id),
        }
        self.pending() != before
    }

    fn apply_object(&mut self, obj: SlimObject) {
        let generation = self.kinds[obj.kind().index()].generation;
        match obj {
            SlimObject::Service(svc) => {
                let id = svc.id.clone();
                let old = self.services.insert(
                    id.clone(),
                    Stored {
                        obj: svc,
                        generation,
                    },
                );
                if old.is_none_or(|o| Some(&o.obj) != self.services.get(&id).map(|s| &s.obj)) {
                    self.recompute_service(&id);
                }
            }
            SlimObject::Endpoints(eps) => {
                let id = eps.id.clone();
                let service = eps.service_ref();
                let old = self.endpoints.insert(
                    id.clone(),
                    Stored {
                        obj: eps,
                        generation,
                    },
                );
                let unchanged = old
                    .as_ref()
                    .is_some_and(|o| Some(&o.obj) == self.endpoints.get(&id).map(|s| &s.obj));
                if unchanged {
                    return;
                }
                if let Some(old) = old {
                    let old_service = old.obj.service_ref();
                    if old_service != service {
                        self.unlink_slice(&old_service, &id.name);
                        self.recompute_service(&old_service);
                    }
                }
                let slices = self.by_service.entry(service.clone()).or_default();
                if let Err(pos) = slices.binary_search(&id.name) {
                    slices.insert(pos, id.name.clone());
                }
                self.recompute_service(&service);
            }
            SlimObject::Pod(pod) => {
                let id = pod.id.clone();
                let new_ips = pod.ips.clone();
                let old = self.pods.insert(
                    id.clone(),
                    Stored {
                        obj: pod,
                        generation,
                    },
                );
                let old_ips = old.map(|o| o.obj.ips).unwrap_or_default();
                if old_ips != new_ips {
                    self.pod_ips_changed(&id.namespace, &old_ips, &new_ips);
                }
            }
        }
    }

    fn delete_object(&mut self, kind: Kind, id: &ObjRef) {
        match kind {
            Kind::Service => {
                if self.services.remove(id).is_some() {
                    self.recompute_service(id);
                }
            }
            Kind::Endpoints => {
                if let Some(old) = self.endpoints.remove(id) {
                    let service = old.obj.service_ref();
                    self.unlink_slice(&service, &id.name);
                    self.recompute_service(&service);
                }
            }
            Kind::Pod => {
                if let Some(old) = self.pods.remove(id) {
                    self.pod_ips_changed(&id.namespace, &old.obj.ips, &[]);
                }
            }
        }
    }

    /// After a (re)list: objects not seen in it are gone.
    fn prune(&mut self, kind: Kind) {
        let generation = self.kinds[kind.index()].generation;
        let stale: Vec<ObjRef> = match kind {
            Kind::Service => stale_ids(&self.services, generation),
            Kind::Endpoints => stale_ids(&self.endpoints, generation),
            Kind::Pod => stale_ids(&self.pods, generation),
        };
        if !stale.is_empty() {
            tracing::info!(
                kind = kind.as_str(),
                count = stale.len(),
                "relist: removing objects that are gone"
            );
        }
        for id in stale {
            self.delete_object(kind, &id);
        }
    }

    fn unlink_slice(&mut self, service: &ObjRef, slice: &str) {
        if let Some(set) = self.by_service.get_mut(service) {
            if let Ok(pos) = set.binary_search_by(|n| n.as_str().cmp(slice)) {
                set.remove(pos);
            }
            if set.is_empty() {
                self.by_service.remove(service);
            }
        }
    }

    fn recompute_service(&mut self, id: &ObjRef) {
        let computed = match self.services.get(id) {
            Some(svc) => {
                let slices: Vec<&SlimEndpoints> = self
                    .by_service
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter_map(|name| {
                        self.endpoints
                            .get(&ObjRef::new(id.namespace.clone(), name.clone()))
                            .map(|s| &s.obj)
                    })
                    .collect();
                translate::service_records(&self.zone, self.ttl, &svc.obj, &slices)
            }
            None => ServiceRecords::default(),
        };

        // Forward keys: everything at or below the service key belongs to this service.
        let base = self.zone.service_key(&id.namespace, &id.name);
        let children = format!("{base}/");
        let mut old: Vec<String> = self
            .desired
            .range::<str, _>((Bound::Included(children.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&children))
            .map(|(k, _)| k.to_string())
            .collect();
        if self.desired.contains_key(base.as_str()) {
            old.push(base);
        }
        let new_keys: HashSet<&str> = computed.records.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = old
            .into_iter()
            .filter(|k| !new_keys.contains(k.as_str()))
            .collect();
        for (key, records) in computed.records {
            self.set(key, Some(encode_value(&records)));
        }
        for key in gone {
            self.set(key, None);
        }

        // PTR names: only the pairs that changed touch `ptr_names`.
        let old_ptrs = self.svc_ptrs.remove(id).unwrap_or_default();
        let unchanged = old_ptrs.len() == computed.ptrs.len()
            && old_ptrs
                .iter()
                .zip(&computed.ptrs)
                .all(|((a, n), (b, m))| a == b && **n == **m);
        if unchanged {
            if !old_ptrs.is_empty() {
                self.svc_ptrs.insert(id.clone(), old_ptrs);
            }
            return;
        }
        let mut affected = BTreeSet::new();
        let mut new_ptrs = Vec::with_capacity(computed.ptrs.len());
        for (ip, name) in &computed.ptrs {
            let kept = old_ptrs
                .binary_search_by(|(i, n)| (*i, &**n).cmp(&(*ip, name.as_str())))
                .ok()
                .and_then(|pos| old_ptrs.get(pos));
            match kept {
                Some(pair) => new_ptrs.push(pair.clone()),
                None => {
                    let shared: Arc<str> = Arc::from(name.as_str());
                    let names = self.ptr_names.entry(*ip).or_default();
                    if let Err(pos) = names.binary_search(&shared) {
                        names.insert(pos, shared.clone());
                    }
                    new_ptrs.push((*ip, shared));
                    affected.insert(*ip);
                }
            }
        }
        for (ip, name) in &old_ptrs {
            let still = computed
                .ptrs
                .binary_search_by(|(i, n)| (*i, n.as_str()).cmp(&(*ip, &**name)))
                .is_ok();
            if still {
                continue;
            }
            if let Some(names) = self.ptr_names.get_mut(ip) {
                if let Ok(pos) = names.binary_search(name) {
                    names.remove(pos);
                }
                if names.is_empty() {
                    self.ptr_names.remove(ip);
                }
            }
            affected.insert(*ip);
        }
        if !new_ptrs.is_empty() {
            self.svc_ptrs.insert(id.clone(), new_ptrs);
        }
        for ip in affected {
            self.refresh_ptr(ip);
        }
    }

    fn refresh_ptr(&mut self, ip: IpAddr) {
        let value = self.ptr_names.get(&ip).map(|names| {
            let (_, records) = translate::ptr_record(&self.zone, ip, names.iter().map(|n| &**n));
            encode_value(&records)
        });
        let key = self.zone.ptr_key(ip);
        self.set(key, value);
    }

    fn pod_ips_changed(&mut self, namespace: &str, old: &[IpAddr], new: &[IpAddr]) {
        let old: BTreeSet<IpAddr> = old.iter().copied().collect();
        let new: BTreeSet<IpAddr> = new.iter().copied().collect();
        for ip in old.difference(&new) {
            let slot = (namespace.to_string(), *ip);
            let left = match self.pod_ips.get_mut(&slot) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n
                }
                None => 0,
            };
            if left == 0 {
                self.pod_ips.remove(&slot);
                let key = self.zone.pod_key(namespace, *ip);
                self.set(key, None);
            }
        }
        for ip in new.difference(&old) {
            let n = self
                .pod_ips
                .entry((namespace.to_string(), *ip))
                .or_insert(0);
            *n += 1;
            if *n == 1 {
                let (key, records) = translate::pod_record(&self.zone, self.ttl, namespace, *ip);
                self.set(key, Some(encode_value(&records)));
            }
        }
    }

    /// Set or remove a desired value, marking the key dirty when it changes.
    fn set(&mut self, key: String, value: Option<String>) {
        match value {
            Some(v) => match self.desired.get_mut(key.as_str()) {
                Some(current) if **current == *v => {}
                Some(current) => {
                    *current = v.into_boxed_str();
                    self.too_large.remove(key.as_str());
                    self.mark(&key);
                }
                None => {
                    let key: Arc<str> = Arc::from(key);
                    self.desired.insert(key.clone(), v.into_boxed_str());
                    self.mark_shared(key);
                }
            },
            None => {
                if let Some((key, _)) = self.desired.remove_entry(key.as_str()) {
                    self.too_large.remove(&key);
                    self.mark_shared(key);
                }
            }
        }
    }

    /// Whether etcd should hold `key` (it has a desired value that fits).
    fn writable(&self, key: &str) -> bool {
        self.desired.contains_key(key) && !self.too_large.contains(key)
    }

    /// Queue a key for writing: a put if it has a desired value, else a delete.
    fn mark(&mut self, key: &str) {
        let shared = match self.desired.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        self.mark_shared(shared);
    }

    fn mark_shared(&mut self, key: Arc<str>) {
        if self.foreign.contains(&*key) {
            self.dirty_put.remove(&key);
            self.dirty_del.remove(&key);
        } else if self.writable(&key) {
            self.dirty_del.remove(&key);
            self.dirty_put.insert(key);
        } else {
            self.dirty_put.remove(&key);
            self.dirty_del.insert(key);
        }
    }

    /// The next transaction: up to `max_ops` puts (and `max_bytes`), or, once no put is left,
    /// up to `max_ops` deletes. Names that exist before and after are only ever overwritten.
    pub fn take_batch(&mut self, max_ops: usize, max_bytes: usize) -> Vec<Op> {
        let max_ops = max_ops.max(1);
        let mut ops = Vec::new();
        let mut bytes = 0usize;
        while ops.len() < max_ops {
            let Some(key) = self.dirty_put.pop_first() else {
                break;
            };
            let Some(value) = self.desired.get(&key) else {
                self.dirty_del.insert(key);
                continue;
            };
            let size = key.len() + value.len();
            if size > self.max_op_bytes {
                tracing::warn!(%key, bytes = size, "value too large for etcd; the name is removed until it fits");
                self.too_large_total += 1;
                self.too_large.insert(key.clone());
                self.dirty_del.insert(key);
                continue;
            }
            if self.too_large.contains(&key) {
                self.dirty_del.insert(key);
                continue;
            }
            if !ops.is_empty() && bytes + size > max_bytes {
                self.dirty_put.insert(key);
                break;
            }
            bytes += size;
            ops.push(Op::Put {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if !ops.is_empty() || !self.dirty_put.is_empty() {
            return ops;
        }
        while ops.len() < max_ops {
            let Some(key) = self.dirty_del.pop_first() else {
                break;
            };
            if self.writable(&key) {
                self.dirty_put.insert(key);
                continue;
            }
            if !ops.is_empty() && bytes + key.len() > max_bytes {
                self.dirty_del.insert(key);
                break;
            }
            bytes += key.len();
            ops.push(Op::Delete {
                key: key.to_string(),
            });
        }
        ops
    }

    /// The modification revision a write of `key` must compare: `Some` for reverse keys (the
    /// revision kube2sky last saw, 0 when it believes the key absent), `None` for the trees
    /// kube2sky owns entirely.
    pub fn guard(&self, key: &str) -> Option<i64> {
        self.is_reverse(key)
            .then(|| self.ptr_revs.get(key).copied().unwrap_or(0))
    }

    fn is_reverse(&self, key: &str) -> bool {
        self.reverse_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }

    /// A batch was committed at `revision`: remember the revisions of the reverse keys.
    pub fn committed(&mut self, ops: &[Op], revision: i64) {
        for op in ops {
            if !self.is_reverse(op.key()) {
                continue;
            }
            match op {
                Op::Put { key, .. } => {
                    let shared = self.shared_key(key);
                    self.ptr_revs.insert(shared, revision);
                }
                Op::Delete { key } => {
                    self.ptr_revs.remove(key.as_str());
                }
            }
        }
    }

    fn shared_key(&self, key: &str) -> Arc<str> {
        match self.desired.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        }
    }

    /// A batch's comparison of reverse keys failed: `current` is what each guarded key holds
    /// now (read in the same transaction). Decide again from that value: a foreign one is left
    /// alone from now on; for our own or an absent key the revision is updated. Every key of the
    /// batch is queued again as the desired state says. Returns the keys found foreign.
    pub fn conflicted(&mut self, ops: Vec<Op>, current: &[(String, Current)]) -> usize {
        let mut foreign = 0;
        for (key, now) in current {
            match now {
                None => {
                    self.ptr_revs.remove(key.as_str());
                }
                Some((value, rev)) => {
                    let owned =
                        parse_value(value).is_ok_and(|records| self.zone.owns_ptr_value(&records));
                    if owned {
                        let shared = self.shared_key(key);
                        self.ptr_revs.insert(shared, *rev);
                    } else {
                        tracing::warn!(%key, "reverse key taken by another writer; leaving it alone");
                        self.ptr_revs.remove(key.as_str());
                        self.foreign.insert(key.clone());
                        foreign += 1;
                    }
                }
            }
        }
        for op in ops {
            let key = op.key();
            let now = current.iter().find(|(k, _)| k == key).map(|(_, c)| c);
            // Nothing to do when etcd already holds what is desired.
            let done = match now {
                Some(None) => !self.writable(key),
                Some(Some((value, _))) => {
                    self.writable(key) && self.desired(key).map(str::as_bytes) == Some(value)
                }
                None => false,
            };
            if done {
                self.dirty_put.remove(key);
                self.dirty_del.remove(key);
            } else {
                self.mark(key);
            }
        }
        foreign
    }

    /// etcd refused a request holding only this put as too large: keep the key absent until
    /// its value changes, and try no value this large again.
    pub fn refused_as_too_large(&mut self, key: &str, size: usize) {
        tracing::warn!(%key, bytes = size, "etcd refused the value as too large; the name is removed until it fits");
        self.max_op_bytes = self.max_op_bytes.min(size.saturating_sub(1)).max(1);
        self.too_large_total += 1;
        let shared = self.shared_key(key);
        self.too_large.insert(shared);
        self.mark(key);
    }

    /// A batch that was not written: queue its keys again (as put or delete per the current
    /// desired state).
    pub fn requeue(&mut self, ops: Vec<Op>) {
        for op in ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            self.mark(&key);
        }
    }

    /// Start of a reconcile: forget which reverse keys were foreign and their revisions (the
    /// read fills both again).
    pub fn begin_reconcile(&mut self) {
        self.foreign.clear();
        self.ptr_revs.clear();
    }

    /// Compare what etcd holds in `[lo, hi)` of `range` (`kvs`, every key etcd has there) with
    /// the desired map, queueing every owned key that differs: stale keys for deletion, missing
    /// or different ones for a put. Keys others own are recorded and left alone. Returns the
    /// number of keys queued.
    pub fn reconcile_chunk(
        &mut self,
        range: &OwnedRange,
        lo: &str,
        hi: &str,
        kvs: &[(String, Vec<u8>, i64)],
    ) -> usize {
        let before = self.pending();
        let mut present: HashSet<&str> = HashSet::with_capacity(kvs.len());
        for (key, value, mod_revision) in kvs {
            present.insert(key.as_str());
            let owned = !range.reverse
                || parse_value(value).is_ok_and(|records| self.zone.owns_ptr_value(&records));
            if !owned {
                if self.desired.contains_key(key.as_str()) {
                    tracing::warn!(%key, "reverse key held by another writer; leaving it alone");
                }
                self.foreign.insert(key.clone());
                self.dirty_put.remove(key.as_str());
                self.dirty_del.remove(key.as_str());
                continue;
            }
            if range.reverse {
                let shared = self.shared_key(key);
                self.ptr_revs.insert(shared, *mod_revision);
            }
            let same = self.writable(key)
                && self
                    .desired
                    .get(key.as_str())
                    .is_some_and(|d| d.as_bytes() == value.as_slice());
            if !same {
                self.mark(key);
            }
        }
        let missing: Vec<Arc<str>> = self
            .desired
            .range::<str, _>((Bound::Included(lo), Bound::Excluded(hi)))
            .map(|(k, _)| k)
            .filter(|k| !present.contains(&***k) && !self.too_large.contains(&***k))
            .cloned()
            .collect();
        for key in missing {
            self.mark_shared(key);
        }
        self.pending().saturating_sub(before)
    }
}

fn stale_ids<T>(map: &HashMap<ObjRef, Stored<T>>, generation: u64) -> Vec<ObjRef> {
    map.iter()
        .filter(|(_, s)| s.generation < generation)
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
