//! Composes authoritative answers from an index snapshot: A/AAAA, CNAME chasing (loop-safe, at
//! most 8 deep), SRV with weights and glue, TXT, MX, PTR, SOA and NS at the apex, NODATA vs
//! NXDOMAIN, empty non-terminals of the Kubernetes trees, SkyDNS directory (union) semantics,
//! `group` filtering and `*`/`any` wildcards outside them, `--pods` modes and `--local`.
//! Pure: no I/O, no waiting. Names map to index paths only through `msg`.
//!
//! - [`lookup`]: what the index holds for a path (exact, union, wildcard, group).
//! - [`records`]: the records of each type, CNAME chasing, SRV/MX targets and their glue.
//! - [`srv`]: SRV in the Kubernetes trees and SkyDNS's weight normalisation.
//! - [`dedup`]: repeated records removed.

mod dedup;
mod lookup;
mod records;
mod srv;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use msg::layout::Tree;

use crate::config::PodsMode;
use crate::index::{Host, Rec, Snapshot};

pub use srv::normalise_weights;

/// Longest CNAME chain followed inside the zone.
pub const MAX_CHASE: usize = 8;

/// Most keys one scan of the index visits while answering (a directory union, a wildcard, the
/// named ports below a service, NS at the apex). A query makes at most one scan per CNAME hop,
/// so the worst query a client can send visits at most `MAX_CHASE × MAX_SCAN_KEYS` keys; the
/// answer then holds what the first keys gave and [`AuthAnswer::scan_limited`] is set.
pub const MAX_SCAN_KEYS: usize = 1024;

/// What the answerer needs besides the snapshot.
#[derive(Debug, Clone)]
pub struct ZoneParams {
    /// The zone and its key prefix.
    pub zone: msg::Zone,
    /// The zone apex as a DNS name.
    pub apex: Name,
    /// TTL of records that carry none (`--ttl`).
    pub default_ttl: u32,
    /// Negative-answer TTL and SOA minimum (`--min-ttl`).
    pub min_ttl: u32,
    /// The SOA's mailbox (RNAME); the apex if `hostmaster` does not parse.
    pub hostmaster: Name,
    mname: Name,
    /// `--pods`: how names below `pod.<zone>` are answered.
    pub pods: PodsMode,
    /// `--local`: the path of `local.dns.<zone>` and the path it answers from.
    local: Option<(String, String)>,
}

impl ZoneParams {
    /// Parameters for `zone`, with `--pods verified` and no `--local` (see the `with_*` methods);
    /// `hostmaster` is the SOA mailbox as a name (`hostmaster.cluster.local.`).
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
            pods: PodsMode::Verified,
            local: None,
        }
    }

    /// `--local`: answer `local.dns.<zone>` with the records of `name` (a name in the zone).
    pub fn with_local(mut self, name: Option<&str>) -> Self {
        self.local = name.map(|n| {
            (
                msg::name_to_path(&self.zone.local_dns_name()),
                msg::name_to_path(n),
            )
        });
        self
    }

    /// `--pods`.
    pub fn with_pods(mut self, pods: PodsMode) -> Self {
        self.pods = pods;
        self
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
    /// The response code.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The additional section (glue).
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

/// The index path of a DNS name (`local/cluster/svc`), or `None` if a label cannot map to a
/// key. The mapping is `msg`'s.
pub(crate) fn path_of(name: &Name) -> Option<String> {
    msg::labels_to_path(name.iter(), name.len())
}

/// Answer `qname`/`qtype` from `snap`.
pub fn answer(snap: &Snapshot, params: &ZoneParams, qname: &Name, qtype: RecordType) -> Outcome {
    let Some(mut path) = path_of(qname) else {
        return if params.apex.zone_of(qname) {
            Outcome::Auth(nxdomain())
        } else {
            Outcome::Forward
        };
    };
    let mut tree = params.zone.classify(&path);
    if tree == Tree::Outside {
        return reverse_answer(snap, params, &path, qname, qtype);
    }
    if let Some(out) = pod_answer(params, &path, qname, qtype) {
        return Outcome::Auth(out);
    }
    if let Some((local, target)) = &params.local {
        if path == *local {
            path.clone_from(target);
            tree = params.zone.classify(&path);
        }
    }
    let mut out = AuthAnswer::default();
    let mut visited = Vec::new();
    records::resolve(
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
    dedup::dedup(&mut out.answers);
    dedup::dedup(&mut out.additionals);
    Outcome::Auth(out)
}

/// `--pods disabled`: NXDOMAIN below `pod.<zone>`; `--pods insecure`: the address a pod name
/// spells (`10-0-0-5.<ns>.pod.<zone>`), whatever the index holds. `None`: answer from the index.
fn pod_answer(
    params: &ZoneParams,
    path: &str,
    qname: &Name,
    qtype: RecordType,
) -> Option<AuthAnswer> {
    match params.pods {
        PodsMode::Verified => None,
        PodsMode::Disabled => params.zone.is_below_pod_root(path).then(nxdomain),
        PodsMode::Insecure => {
            let (_, ip) = params.zone.pod_name_address(path)?;
            let data = match (ip, qtype) {
                (std::net::IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(v4))),
                (std::net::IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(v6))),
                _ => None,
            };
            let mut out = AuthAnswer::default();
            match data {
                Some(data) => {
                    out.answers
                        .push(Record::from_rdata(qname.clone(), params.default_ttl, data))
                }
                None => out.soa = true,
            }
            Some(out)
        }
    }
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
    if qtype != RecordType::PTR || !msg::layout::is_reverse_path(path) {
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
    dedup::dedup(&mut out.answers);
    if out.answers.is_empty() {
        return Outcome::Forward;
    }
    Outcome::Auth(out)
}

/// A record's TTL: its own, or the zone's default when it has none.
fn ttl(params: &ZoneParams, rec: &Rec) -> u32 {
    if rec.ttl == 0 {
        params.default_ttl
    } else {
        rec.ttl
    }
}
