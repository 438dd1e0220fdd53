//! SRV in the Kubernetes trees (a service's named ports, never port 0) and SkyDNS's weight
//! normalisation of SRV answers.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, Record};

use super::lookup::bounded;
use super::{records, AuthAnswer, ZoneParams};
use crate::index::{Rec, Snapshot};

/// SRV inside the Kubernetes trees: at `_port._proto.svc…` the stored records; at a service
/// name every `_proto/_port` key below it (one per named port); never a port-0 record. Only the
/// `_`-labelled keys right below `path` are visited (a range scan, bounded), never a service's
/// endpoints or a namespace's services.
pub(super) fn kube_srv(
    snap: &Snapshot,
    params: &ZoneParams,
    path: &str,
    owner: &Name,
    out: &mut AuthAnswer,
) {
    let is_port_key = msg::layout::is_port_path(path);
    let found_any = snap.get(path).is_some() || snap.has_below(path);
    if !found_any {
        out.rcode = ResponseCode::NXDomain;
        out.soa = true;
        return;
    }
    let mut records: Vec<(&Arc<str>, &Rec)> = Vec::new();
    if is_port_key {
        if let Some((k, entry)) = snap.get_key_value(path) {
            records.extend(entry.iter().map(|r| (k, r)));
        }
    } else {
        let (lo, hi) = msg::layout::underscore_range(path);
        for (k, entry) in bounded(snap.range(&lo, Some(&hi)), &mut out.scan_limited) {
            if msg::layout::is_port_suffix(&k[path.len() + 1..]) {
                records.extend(entry.iter().map(|r| (k, r)));
            }
        }
    }
    for (key, rec) in records {
        records::push_srv(snap, params, key, rec, owner, out, false);
    }
    normalise_weights(&mut out.answers);
}
/// SkyDNS weights: per priority, weight = floor(100·w / Σw), 0 counted as 100, never below 1.
/// Sums are saturating 64-bit: no record count or weight can overflow them.
pub fn normalise_weights(answers: &mut [Record]) {
    let mut totals: std::collections::HashMap<u16, u64> = std::collections::HashMap::new();
    for r in answers.iter() {
        if let RData::SRV(srv) = &r.data {
            let total = totals.entry(srv.priority).or_default();
            *total = total.saturating_add(raw_weight(srv.weight));
        }
    }
    for r in answers.iter_mut() {
        if let RData::SRV(srv) = &r.data {
            let total = totals.get(&srv.priority).copied().unwrap_or(1).max(1);
            let w = (raw_weight(srv.weight).saturating_mul(100) / total).clamp(1, 65535) as u16;
            r.data = RData::SRV(SRV::new(srv.priority, w, srv.port, srv.target.clone()));
        }
    }
}

fn raw_weight(w: u16) -> u64 {
    if w == 0 {
        100
    } else {
        u64::from(w)
    }
}
