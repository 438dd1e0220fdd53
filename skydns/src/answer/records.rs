//! The records of each type for a found path: addresses, CNAME chasing (inside the zone from
//! the index, loop-safe and at most [`MAX_CHASE`] deep; outside it marked for the upstream),
//! TXT, MX, PTR, SRV, NS at the apex, and the glue of SRV/MX/NS targets.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use msg::layout::Tree;

use super::lookup::{self, bounded, Found};
use super::{normalise_weights, path_of, srv, ttl, AuthAnswer, ZoneParams, MAX_CHASE};
use crate::index::{Entry, Host, Rec, Snapshot};

#[allow(clippy::too_many_arguments)]
pub(super) fn resolve(
    snap: &Snapshot,
    params: &ZoneParams,
    path: &str,
    tree: Tree,
    owner: &Name,
    qtype: RecordType,
    out: &mut AuthAnswer,
    visited: &mut Vec<String>,
    depth: usize,
) {
    // The apex answers SOA and NS itself.
    if tree == Tree::Apex && depth == 0 {
        match qtype {
            RecordType::SOA => {
                let mut soa = params.soa(snap.revision);
                soa.name = owner.clone();
                out.answers.push(soa);
                return;
            }
            RecordType::NS => {
                ns_records(snap, params, path, owner, out);
                return;
            }
            _ => {}
        }
    }
    // In the Kubernetes trees, SRV at a service name answers its named ports.
    if qtype == RecordType::SRV && tree == Tree::Kube {
        srv::kube_srv(snap, params, path, owner, out);
        return;
    }
    let records = match lookup::find(snap, params, path, tree, qtype, &mut out.scan_limited) {
        Found::Records(r) => r,
        Found::Empty | Found::NotOurs => return,
        Found::Missing => {
            out.rcode = ResponseCode::NXDomain;
            out.soa = true;
            return;
        }
    };
    match qtype {
        RecordType::A | RecordType::AAAA => address_records(
            snap, params, path, &records, owner, qtype, out, visited, depth,
        ),
        RecordType::CNAME => {
            if let Some((_, rec)) = first_alias(&records) {
                if let Host::Name(target) = &rec.host {
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl(params, rec),
                        RData::CNAME(CNAME(target.clone())),
                    ));
                }
            }
        }
        RecordType::SRV => {
            for (key, rec) in records {
                push_srv(snap, params, key, rec, owner, out, true);
            }
            normalise_weights(&mut out.answers);
        }
        RecordType::TXT => {
            for (_, rec) in records {
                if !rec.text.is_empty() {
                    let chunks: Vec<&[u8]> = rec.text.as_bytes().chunks(255).collect();
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl(params, rec),
                        RData::TXT(TXT::from_bytes(chunks)),
                    ));
                }
            }
        }
        RecordType::MX => {
            for (key, rec) in records {
                if rec.mail {
                    if let Some(target) = target_of(snap, params, key, rec, out) {
                        out.answers.push(Record::from_rdata(
                            owner.clone(),
                            ttl(params, rec),
                            RData::MX(MX::new(rec.priority, target)),
                        ));
                    }
                }
            }
        }
        RecordType::PTR => {
            for (_, rec) in records {
                if let Host::Name(target) = &rec.host {
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl(params, rec),
                        RData::PTR(PTR(target.clone())),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// The first record whose host is a name (a CNAME candidate), in key order.
fn first_alias<'a>(records: &[(&'a Arc<str>, &'a Rec)]) -> Option<(&'a Arc<str>, &'a Rec)> {
    records
        .iter()
        .copied()
        .find(|(_, r)| matches!(r.host, Host::Name(_)))
}

#[allow(clippy::too_many_arguments)]
fn address_records(
    snap: &Snapshot,
    params: &ZoneParams,
    path: &str,
    records: &[(&Arc<str>, &Rec)],
    owner: &Name,
    qtype: RecordType,
    out: &mut AuthAnswer,
    visited: &mut Vec<String>,
    depth: usize,
) {
    let mut any_ip = false;
    for (_, rec) in records {
        match (&rec.host, qtype) {
            (Host::V4(ip), RecordType::A) => {
                out.answers.push(Record::from_rdata(
                    owner.clone(),
                    ttl(params, rec),
                    RData::A(A(*ip)),
                ));
                any_ip = true;
            }
            (Host::V6(ip), RecordType::AAAA) => {
                out.answers.push(Record::from_rdata(
                    owner.clone(),
                    ttl(params, rec),
                    RData::AAAA(AAAA(*ip)),
                ));
                any_ip = true;
            }
            (Host::V4(_) | Host::V6(_), _) => any_ip = true,
            _ => {}
        }
    }
    if any_ip {
        return;
    }
    let Some((_, rec)) = first_alias(records) else {
        return;
    };
    let Host::Name(target) = &rec.host else {
        return;
    };
    out.answers.push(Record::from_rdata(
        owner.clone(),
        ttl(params, rec),
        RData::CNAME(CNAME(target.clone())),
    ));
    // The paths a chase has left, for loop detection (no allocation when nothing is chased).
    visited.push(path.to_string());
    chase(snap, params, target, qtype, out, visited, depth);
}

/// Follow a CNAME target: inside the zone from the index (loop-safe), outside it upstream.
fn chase(
    snap: &Snapshot,
    params: &ZoneParams,
    target: &Name,
    qtype: RecordType,
    out: &mut AuthAnswer,
    visited: &mut Vec<String>,
    depth: usize,
) {
    if !params.apex.zone_of(target) {
        out.chase = Some((target.clone(), qtype));
        return;
    }
    let Some(path) = path_of(target) else {
        out.rcode = ResponseCode::NXDomain;
        return;
    };
    if depth + 1 >= MAX_CHASE || visited.contains(&path) {
        // A loop or an over-long chain: stop with what we have.
        tracing::debug!(%target, "CNAME chain stopped (loop or too deep)");
        return;
    }
    let tree = params.zone.classify(&path);
    resolve(
        snap,
        params,
        &path,
        tree,
        target,
        qtype,
        out,
        visited,
        depth + 1,
    );
}

/// SRV/MX/NS target of a record: its host name, or (IP host) the name SkyDNS synthesises
/// from its key, with that address as glue (`targetstrip` labels removed). A name target in
/// the zone gets its A and AAAA records (following CNAMEs) in the additional section.
fn target_of(
    snap: &Snapshot,
    params: &ZoneParams,
    key: &str,
    rec: &Rec,
    out: &mut AuthAnswer,
) -> Option<Name> {
    match &rec.host {
        Host::Name(name) => {
            if params.apex.zone_of(name) {
                in_zone_glue(snap, params, name, out);
            }
            Some(name.clone())
        }
        Host::V4(_) | Host::V6(_) => {
            let synthesised = msg::layout::synthesised_target(key, rec.targetstrip as usize);
            let name = Name::from_ascii(synthesised).ok()?;
            push_glue(params, &name, rec, out);
            Some(name)
        }
        Host::None => None,
    }
}

/// The A and AAAA answers for an in-zone name, CNAMEs followed inside the zone, appended to
/// the additional section (SkyDNS's glue for SRV and MX targets).
fn in_zone_glue(snap: &Snapshot, params: &ZoneParams, name: &Name, out: &mut AuthAnswer) {
    let Some(path) = path_of(name) else {
        return;
    };
    let tree = params.zone.classify(&path);
    for qtype in [RecordType::A, RecordType::AAAA] {
        let mut glue = AuthAnswer::default();
        let mut visited = Vec::new();
        resolve(
            snap,
            params,
            &path,
            tree,
            name,
            qtype,
            &mut glue,
            &mut visited,
            0,
        );
        out.scan_limited |= glue.scan_limited;
        out.additionals.extend(glue.answers);
    }
}

fn push_glue(params: &ZoneParams, name: &Name, rec: &Rec, out: &mut AuthAnswer) {
    let data = match rec.host {
        Host::V4(ip) => RData::A(A(ip)),
        Host::V6(ip) => RData::AAAA(AAAA(ip)),
        _ => return,
    };
    out.additionals
        .push(Record::from_rdata(name.clone(), ttl(params, rec), data));
}

pub(super) fn push_srv(
    snap: &Snapshot,
    params: &ZoneParams,
    key: &str,
    rec: &Rec,
    owner: &Name,
    out: &mut AuthAnswer,
    allow_port_zero: bool,
) {
    if rec.port == 0 && !allow_port_zero {
        return;
    }
    if let Some(target) = target_of(snap, params, key, rec, out) {
        out.answers.push(Record::from_rdata(
            owner.clone(),
            ttl(params, rec),
            RData::SRV(SRV::new(rec.priority, rec.weight, rec.port, target)),
        ));
    }
}

/// NS at the apex from `P/dns/ns/*`.
fn ns_records(
    snap: &Snapshot,
    params: &ZoneParams,
    apex_path: &str,
    owner: &Name,
    out: &mut AuthAnswer,
) {
    let _ = apex_path;
    let ns_path = params.zone.ns_path();
    let entries: Vec<(&Arc<str>, &Entry)> = bounded(
        snap.get_key_value(ns_path.as_str())
            .into_iter()
            .chain(snap.below(&ns_path)),
        &mut out.scan_limited,
    );
    for (key, entry) in entries {
        for rec in entry.iter() {
            if let Some(target) = target_of(snap, params, key, rec, out) {
                out.answers.push(Record::from_rdata(
                    owner.clone(),
                    ttl(params, rec),
                    RData::NS(NS(target)),
                ));
            }
        }
    }
}
