//! The key ranges kube2sky owns and the comparison of what etcd holds in them with the desired
//! map (the start-up prune and every catch-up).

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;

use msg::{parse_value, Zone};

use super::State;

/// A key range kube2sky owns: forward trees (every key is ours) or reverse trees (only keys
/// whose value `Zone::owns_ptr_value` accepts are ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRange {
    /// First key of the range.
    pub start: String,
    /// Exclusive end.
    pub end: String,
    /// Whether this is a reverse tree (ownership decided per value).
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

impl State {
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
