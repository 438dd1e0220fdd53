//! `--autopath`: server-side search-path completion, as CoreDNS's `autopath` does, without a
//! pod watch in the DNS server. A pod with `ndots:5` asks `<base>.<ns>.svc.<zone>` first; when
//! that is NXDOMAIN and the client's source address is a pod kube2sky recorded in `<ns>`
//! (`<ns>.pod.<zone>` holds its dashed address), the rest of that pod's search path is walked
//! here — `<base>.svc.<zone>`, `<base>.<zone>`, then the node's search domains and `<base>.`
//! upstream — and the first name that is not NXDOMAIN is answered as a CNAME from the asked
//! name followed by its records. The pod's resolver then stops after one round trip.
//!
//! Only NXDOMAIN moves the walk on (NODATA is an answer, as in CoreDNS). When every name is
//! NXDOMAIN, or an upstream fails, the original NXDOMAIN is sent: the client walks its search
//! path itself, exactly as without autopath.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::answer::{self, AuthAnswer, Outcome, ZoneParams};
use crate::index::Snapshot;

/// Most search domains taken from the node's resolv.conf (glibc reads at most 6).
pub const MAX_NODE_SEARCH: usize = 6;

/// The node's search domains, walked after the cluster's own (outside the zone).
#[derive(Debug, Clone, Default)]
pub struct Autopath {
    node_search: Vec<Name>,
}

/// What the walk found without the upstream, or what is left for it.
pub enum Plan {
    /// A name in the zone answered: the reply for the asked name (CNAME first).
    Answered(AuthAnswer),
    /// Nothing in the zone; these names (in order) are asked upstream.
    Upstream(Vec<Name>),
}

impl Autopath {
    /// `node_search`: the `search` domains of the node's resolv.conf (fully qualified; names
    /// in the cluster zone are skipped, the pod's own search path covers them).
    pub fn new(node_search: &[String], params: &ZoneParams) -> Self {
        let node_search = node_search
            .iter()
            .filter_map(|d| Name::from_ascii(format!("{}.", d.trim_end_matches('.'))).ok())
            .filter(|d| !params.apex.zone_of(d) && !d.is_root())
            .take(MAX_NODE_SEARCH)
            .collect();
        Autopath { node_search }
    }

    /// The path of `qname` when it has the shape autopath acts on (`<base>.<ns>.svc.<zone>`),
    /// for [`Autopath::plan`]. Replies to such names may depend on who asked, so their
    /// NXDOMAIN is never cached by packet.
    pub fn eligible(params: &ZoneParams, qname: &Name) -> Option<String> {
        answer::path_of(qname).filter(|p| params.zone.split_first_search_domain(p).is_some())
    }

    /// Walk the search path for an NXDOMAIN `qname` (at `path`, from [`Autopath::eligible`])
    /// asked by `client`. `None`: autopath does not apply (the client is not a pod of that
    /// namespace, or nothing is left to ask).
    pub fn plan(
        &self,
        snap: &Snapshot,
        params: &ZoneParams,
        (qname, path): (&Name, &str),
        qtype: RecordType,
        client: IpAddr,
    ) -> Option<Plan> {
        let (ns, base) = params.zone.split_first_search_domain(path)?;
        snap.get(&params.zone.pod_path(ns, client))?;
        let base_name = msg::path_to_name(base);
        let mut later: Vec<Name> = params
            .zone
            .later_search_names(base)
            .iter()
            .filter_map(|n| Name::from_ascii(n).ok())
            .collect();
        later.extend(
            self.node_search
                .iter()
                .filter_map(|d| Name::from_ascii(format!("{base_name}{d}")).ok()),
        );
        if let Ok(bare) = Name::from_ascii(&base_name) {
            later.push(bare);
        }
        // Names in the zone are answered here, in order, up to the first one outside it.
        let mut rest = later.into_iter().peekable();
        while let Some(name) = rest.next_if(|n| params.apex.zone_of(n)) {
            if let Outcome::Auth(found) = answer::answer(snap, params, &name, qtype) {
                if found.rcode != ResponseCode::NXDomain {
                    return Some(Plan::Answered(alias(qname, &name, found, params)));
                }
            }
        }
        let rest: Vec<Name> = rest.collect();
        if rest.is_empty() {
            None
        } else {
            Some(Plan::Upstream(rest))
        }
    }
}

/// The reply for `asked` when `found` answered `target`: a CNAME from the asked name first
/// (CoreDNS autopath's reply shape), then what `target` had.
pub fn alias(
    asked: &Name,
    target: &Name,
    mut found: AuthAnswer,
    params: &ZoneParams,
) -> AuthAnswer {
    let ttl = found
        .answers
        .first()
        .map(|r| r.ttl)
        .unwrap_or(params.default_ttl);
    found.answers.insert(
        0,
        Record::from_rdata(asked.clone(), ttl, RData::CNAME(CNAME(target.clone()))),
    );
    found
}
