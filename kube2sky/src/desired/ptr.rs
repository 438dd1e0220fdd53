//! PTR bookkeeping: which names each address's PTR value lists (shared between services and
//! addresses), the modification revision of every reverse key kube2sky holds (each write of one
//! compares it), and what to do when such a comparison fails.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use msg::{encode_value, parse_value};

use super::{Current, Op, State};
use crate::slim::ObjRef;
use crate::translate;

impl State {
    pub(super) fn refresh_ptr(&mut self, ip: IpAddr) {
        let value = self.ptr_names.get(&ip).map(|names| {
            let (_, records) = translate::ptr_record(&self.zone, ip, names.iter().map(|n| &**n));
            encode_value(&records)
        });
        let key = self.zone.ptr_key(ip);
        self.set(key, value);
    }

    /// The modification revision a write of `key` must compare: `Some` for reverse keys (the
    /// revision kube2sky last saw, 0 when it believes the key absent), `None` for the trees
    /// kube2sky owns entirely.
    pub fn guard(&self, key: &str) -> Option<i64> {
        self.is_reverse(key)
            .then(|| self.ptr_revs.get(key).copied().unwrap_or(0))
    }

    pub(super) fn is_reverse(&self, key: &str) -> bool {
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

    pub(super) fn shared_key(&self, key: &str) -> Arc<str> {
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

    /// A service's (address, name) pairs are now `ptrs` (sorted): only the pairs that changed
    /// touch `ptr_names`, and only their addresses' PTR values are recomputed.
    pub(super) fn update_service_ptrs(&mut self, id: &ObjRef, ptrs: &[(IpAddr, String)]) {
        // PTR names: only the pairs that changed touch `ptr_names`.
        let old_ptrs = self.svc_ptrs.remove(id).unwrap_or_default();
        let unchanged = old_ptrs.len() == ptrs.len()
            && old_ptrs
                .iter()
                .zip(ptrs)
                .all(|((a, n), (b, m))| a == b && **n == **m);
        if unchanged {
            if !old_ptrs.is_empty() {
                self.svc_ptrs.insert(id.clone(), old_ptrs);
            }
            return;
        }
        let mut affected = BTreeSet::new();
        let mut new_ptrs = Vec::with_capacity(ptrs.len());
        for (ip, name) in ptrs {
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
            let still = ptrs
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
}
