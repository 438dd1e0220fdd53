//! Composes authoritative answers from an index snapshot, per records.md §4: A/AAAA, CNAME
//! chasing (loop-safe, at most 8 deep), SRV with weights and glue, TXT, MX, PTR, SOA and NS at
//! the apex, NODATA vs NXDOMAIN, empty non-terminals of the Kubernetes trees, SkyDNS directory
//! (union) semantics and `*`/`any` wildcards outside them. Pure: no I/O, no waiting.

use std::collections::HashSet;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use msg::layout::Tree;

use crate::index::{Entry, Host, Rec, Snapshot};

/// Longest CNAME chain followed inside the zone.
pub const MAX_CHASE: usize = 8;

/// Most keys one scan of the index visits while answering (a directory union, a wildcard, the
/// named ports below a service, NS at the apex). A query makes at most one scan per CNAME hop,
/// so the worst query a client can send visits at most `MAX_CHASE × MAX_SCAN_KEYS` keys; the
/// answer then holds what the first keys gave and [`AuthAnswer::scan_limited`] is set.
pub const MAX_SCAN_KEYS: usize = 1024;

/// Labels directly below the apex that only exact lookups reach (never wildcards or unions).
const KUBE_ROOTS: [&str; 2] = ["pod", "svc"];

/// What the answerer needs besides the snapshot.
#[derive(Debug, Clone)]
pub struct ZoneParams {
    pub zone: msg::Zone,
    pub apex: Name,
    pub default_ttl: u32,
    pub min_ttl: u32,
    pub hostmaster: Name,
    mname: Name,
}

impl ZoneParams {
    pub fn new(zone: msg::Zone, default_ttl: u32, min_ttl: u32, hostmaster: &str) -> Self {
        let apex = Name::from_ascii(zone.domain()).unwrap_or_else(|_| Name::root());
        let hostmaster = Name::from_ascii(hostmaster).unwrap_or_else(|_| apex.clone());
        let mname =
            Name::from_ascii(format!("ns.dns.{}", zone.domain())).unwrap_or_else(|_| apex.clone());
        ZoneParams {
            zone,
            apex,
            default_ttl,
            min_ttl,
            hostmaster,
            mname,
        }
    }

    /// The SOA record of the zone; serial = the etcd revision.
    pub fn soa(&self, revision: i64) -> Record {
        let soa = SOA::new(
            self.mname.clone(),
            self.hostmaster.clone(),
            (revision.max(0) as u64 & 0xffff_ffff) as u32,
            28800,
            7200,
            604800,
            self.min_ttl,
        );
        Record::from_rdata(self.apex.clone(), self.min_ttl, RData::SOA(soa))
    }
}

/// The result of looking a question up in the index.
#[derive(Debug)]
pub enum Outcome {
    /// We answer it (our zone, or a reverse name we hold).
    Auth(AuthAnswer),
    /// Not ours: forward upstream.
    Forward,
}

/// An authoritative answer.
#[derive(Debug, Default)]
pub struct AuthAnswer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// Put the zone's SOA in the authority section (negative answers).
    pub soa: bool,
    /// A CNAME target outside the zone whose records should be fetched upstream and appended.
    pub chase: Option<(Name, RecordType)>,
    /// Answered from the reverse trees.
    pub reverse: bool,
    /// A scan stopped at [`MAX_SCAN_KEYS`]: the answer holds only part of the union.
    pub scan_limited: bool,
}

/// Collect at most [`MAX_SCAN_KEYS`] items of a scan, noting in `limited` when more were left.
fn bounded<'a, I>(it: I, limited: &mut bool) -> Vec<(&'a Arc<str>, &'a Entry)>
where
    I: Iterator<Item = (&'a Arc<str>, &'a Entry)>,
{
    let mut out = Vec::new();
    for item in it {
        if out.len() == MAX_SCAN_KEYS {
            *limited = true;
            break;
        }
        out.push(item);
    }
    out
}

/// Every key below `base` except the keys `base/<label>` and everything below them, for each
/// of `excluded` (sorted). Walks only the ranges between the excluded subtrees.
fn below_except<'a>(
    snap: &'a Snapshot,
    base: &str,
    excluded: &[&str],
) -> impl Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a {
    // Allowed ranges, each [lo, hi): before the first excluded label, between the exact key
    // `base/x` and its subtree `base/x/` (names such as `x-y`), and after the subtree (`x0`,
    // as `0` follows `/`).
    let mut ranges: Vec<(String, Option<String>)> = Vec::with_capacity(2 * excluded.len() + 1);
    let mut lo = format!("{base}/");
    for label in excluded {
        ranges.push((lo, Some(format!("{base}/{label}"))));
        ranges.push((
            format!("{base}/{label}\0"),
            Some(format!("{base}/{label}/")),
        ));
        lo = format!("{base}/{label}0");
    }
    ranges.push((lo, Some(format!("{base}0"))));
    ranges
        .into_iter()
        .flat_map(move |(lo, hi)| snap.range(&lo, hi.as_deref()))
}

/// The path of a DNS name (`local/cluster/svc`), or `None` if a label cannot map to a key.
pub fn path_of_name(name: &Name) -> Option<String> {
    // Labels are written right to left into a buffer of the final size.
    let mut out = vec![0u8; name.len().saturating_sub(1)];
    let mut end = out.len();
    for label in name.iter() {
        if label.is_empty() || end < label.len() {
            return None;
        }
        let start = end - label.len();
        for (o, &b) in out[start..end].iter_mut().zip(label) {
            if b == b'/' || !b.is_ascii() {
                return None;
            }
            *o = b.to_ascii_lowercase();
        }
        if start > 0 {
            out[start - 1] = b'/';
            end = start - 1;
        } else {
            end = 0;
        }
    }
    if end != 0 {
        return None;
    }
    String::from_utf8(out).ok()
}

/// How a name exists in the index.
enum Found<'a> {
    /// Records (with the path each came from).
    Records(Vec<(&'a Arc<str>, &'a Rec)>),
    /// The name exists but holds nothing for any type (empty non-terminal).
    Empty,
    /// The name does not exist.
    Missing,
    /// Not in our zone or reverse trees.
    NotOurs,
}

fn is_wild(label: &str) -> bool {
    label == "*" || label == "any"
}

/// Answer `qname`/`qtype` from `snap`.
pub fn answer(snap: &Snapshot, params: &ZoneParams, qname: &Name, qtype: RecordType) -> Outcome {
    let Some(path) = path_of_name(qname) else {
        return if params.apex.zone_of(qname) {
            Outcome::Auth(nxdomain())
        } else {
            Outcome::Forward
        };
    };
    let tree = params.zone.classify(&path);
    if tree == Tree::Outside {
        return reverse_answer(snap, params, &path, qname, qtype);
    }
    let mut out = AuthAnswer::default();
    let mut visited = Vec::new();
    resolve(
        snap,
        params,
        &path,
        tree,
        qname,
        qtype,
        &mut out,
        &mut visited,
        0,
    );
    if out.answers.is_empty() && out.rcode == ResponseCode::NoError {
        out.soa = true;
    }
    dedup(&mut out.answers);
    dedup(&mut out.additionals);
    Outcome::Auth(out)
}

fn nxdomain() -> AuthAnswer {
    AuthAnswer {
        rcode: ResponseCode::NXDomain,
        soa: true,
        ..Default::default()
    }
}

fn reverse_answer(
    snap: &Snapshot,
    params: &ZoneParams,
    path: &str,
    qname: &Name,
    qtype: RecordType,
) -> Outcome {
    if qtype != RecordType::PTR || !path.starts_with("arpa/") {
        return Outcome::Forward;
    }
    let Some(entry) = snap.get(path) else {
        return Outcome::Forward;
    };
    let mut out = AuthAnswer {
        reverse: true,
        ..Default::default()
    };
    for rec in entry.iter() {
        if let Host::Name(target) = &rec.host {
            out.answers.push(Record::from_rdata(
                qname.clone(),
                ttl(params, rec),
                RData::PTR(PTR(target.clone())),
            ));
        }
    }
    dedup(&mut out.answers);
    if out.answers.is_empty() {
        return Outcome::Forward;
    }
    Outcome::Auth(out)
}

fn ttl(params: &ZoneParams, rec: &Rec) -> u32 {
    if rec.ttl == 0 {
        params.default_ttl
    } else {
        rec.ttl
    }
}

/// Find what the index holds for `path` (per records.md §4 steps 1–4). Scans are bounded by
/// [`MAX_SCAN_KEYS`] (`limited` set when one stops early).
fn find<'a>(
    snap: &'a Snapshot,
    params: &ZoneParams,
    path: &str,
    tree: Tree,
    qtype: RecordType,
    limited: &mut bool,
) -> Found<'a> {
    match tree {
        Tree::Outside => Found::NotOurs,
        Tree::Apex | Tree::KubeRoot | Tree::Kube => {
            if let Some((k, entry)) = snap.get_key_value(path) {
                Found::Records(entry.iter().map(|r| (k, r)).collect())
            } else if tree != Tree::Kube || snap.has_below(path) {
                Found::Empty
            } else {
                Found::Missing
            }
        }
        Tree::Generic => {
            if path.split('/').any(is_wild) {
                return find_wildcard(snap, params, path, qtype, limited);
            }
            if let Some((k, entry)) = snap.get_key_value(path) {
                return Found::Records(entry.iter().map(|r| (k, r)).collect());
            }
            if !snap.has_below(path) {
                return Found::Missing;
            }
            let mut records = Vec::new();
            for (k, entry) in bounded(snap.below(path), limited) {
                let rest = &k[path.len() + 1..];
                if qtype != RecordType::SRV && rest.split('/').any(|l| l.starts_with('_')) {
                    continue;
                }
                records.extend(entry.iter().map(|r| (k, r)));
            }
            if records.is_empty() {
                Found::Empty
            } else {
                Found::Records(records)
            }
        }
    }
}

/// Wildcard query (`*` or `any` labels match any single label): union of matching keys and
/// everything below them. Scans only below the longest wildcard-free leading path, and never
/// into the Kubernetes trees: a wildcard right below the apex matches neither `svc` nor `pod`.
fn find_wildcard<'a>(
    snap: &'a Snapshot,
    params: &ZoneParams,
    path: &str,
    qtype: RecordType,
    limited: &mut bool,
) -> Found<'a> {
    let pattern: Vec<&str> = path.split('/').collect();
    let fixed = pattern.iter().take_while(|l| !is_wild(l)).count();
    let base = pattern[..fixed].join("/");
    let candidates: Box<dyn Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a> =
        if base == params.zone.path() {
            Box::new(below_except(snap, &base, &KUBE_ROOTS))
        } else {
            Box::new(snap.below(&base))
        };
    let mut records = Vec::new();
    for (k, entry) in bounded(candidates, limited) {
        let labels: Vec<&str> = k.split('/').collect();
        if labels.len() < pattern.len() {
            continue;
        }
        let matches = pattern
            .iter()
            .zip(labels.iter())
            .all(|(p, l)| is_wild(p) || p == l);
        if !matches {
            continue;
        }
        // Below the fixed part, `_` labels are only reached by SRV queries or by naming them.
        let hidden = labels[fixed..]
            .iter()
            .enumerate()
            .any(|(i, l)| l.starts_with('_') && pattern.get(fixed + i) != Some(l));
        if qtype != RecordType::SRV && hidden {
            continue;
        }
        records.extend(entry.iter().map(|r| (k, r)));
    }
    if records.is_empty() {
        Found::Missing
    } else {
        Found::Records(records)
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve(
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
        kube_srv(snap, params, path, owner, out);
        return;
    }
    let records = match find(snap, params, path, tree, qtype, &mut out.scan_limited) {
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
    let Some(path) = path_of_name(target) else {
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

/// SRV/MX target of a record: its host name, or (IP host) a name synthesised from its key with
/// A/AAAA glue; `targetstrip` labels removed from synthesised names. Adds glue for in-zone
/// name targets when the index holds addresses for them.
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
                if let Some(path) = path_of_name(name) {
                    if let Some(entry) = snap.get(&path) {
                        for r in entry.iter() {
                            push_glue(params, name, r, out);
                        }
                    }
                }
            }
            Some(name.clone())
        }
        Host::V4(_) | Host::V6(_) => {
            let mut labels: Vec<&str> = key.split('/').collect();
            labels.reverse();
            let strip = (rec.targetstrip as usize).min(labels.len().saturating_sub(1));
            let name = Name::from_ascii(format!("{}.", labels[strip..].join("."))).ok()?;
            push_glue(params, &name, rec, out);
            Some(name)
        }
        Host::None => None,
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

fn push_srv(
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

/// SRV inside the Kubernetes trees: at `_port._proto.svc…` the stored records; at a service
/// name every `_proto/_port` key below it (one per named port); never a port-0 record. Only the
/// `_`-labelled keys right below `path` are visited (a range scan, bounded), never a service's
/// endpoints or a namespace's services.
fn kube_srv(snap: &Snapshot, params: &ZoneParams, path: &str, owner: &Name, out: &mut AuthAnswer) {
    let is_port_key = {
        let mut it = path.rsplit('/');
        matches!((it.next(), it.next()), (Some(a), Some(b)) if a.starts_with('_') && b.starts_with('_'))
    };
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
        // Keys `path/_…` lie in [`path/_`, `path/``) as '`' follows '_'.
        let (lo, hi) = (format!("{path}/_"), format!("{path}/`"));
        for (k, entry) in bounded(snap.range(&lo, Some(&hi)), &mut out.scan_limited) {
            let rest = &k[path.len() + 1..];
            let mut parts = rest.split('/');
            if let (Some(proto), Some(port), None) = (parts.next(), parts.next(), parts.next()) {
                if proto.starts_with('_') && port.starts_with('_') {
                    records.extend(entry.iter().map(|r| (k, r)));
                }
            }
        }
    }
    for (key, rec) in records {
        push_srv(snap, params, key, rec, owner, out, false);
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

/// NS at the apex from `P/dns/ns/*`.
fn ns_records(
    snap: &Snapshot,
    params: &ZoneParams,
    apex_path: &str,
    owner: &Name,
    out: &mut AuthAnswer,
) {
    let ns_path = format!("{apex_path}/dns/ns");
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

/// Remove repeated records (same owner, type and data), keeping the first.
fn dedup(records: &mut Vec<Record>) {
    if records.len() < 2 {
        return;
    }
    let keep: Vec<bool> = if records.len() <= 16 {
        (0..records.len())
            .map(|i| !(0..i).any(|j| same(&records[i], &records[j])))
            .collect()
    } else {
        let mut seen = HashSet::with_capacity(records.len());
        records
            .iter()
            .map(|r| seen.insert((r.name.to_lowercase(), &r.data)))
            .collect()
    };
    let mut it = keep.into_iter();
    records.retain(|_| it.next().unwrap_or(true));
}

fn same(a: &Record, b: &Record) -> bool {
    a.data == b.data && a.name.eq_ignore_root_case(&b.name)
}
