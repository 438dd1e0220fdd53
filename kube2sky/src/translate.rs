//! Pure functions from slim objects to SkyDNS records (`docs/records.md` §3): a service and its
//! endpoint groups give the service key, endpoint names, SRV records and the PTR names it owns;
//! pods give pod records; PTR values and `dns-version` are built from their owners.
//! Every key comes from `msg::Zone`; every array is sorted deterministically.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use msg::record::MAX_RECORDS_PER_VALUE;
use msg::{Record, Zone};

use crate::slim::{Protocol, ServiceKind, SlimEndpoints, SlimService};

/// The schema version of the Kubernetes DNS specification implemented.
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// The records of one service.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceRecords {
    /// Forward keys, all at or below the service key, in key order.
    pub records: Vec<(String, Vec<Record>)>,
    /// `(address, fqdn)` pairs this service contributes to PTR values, sorted and unique.
    pub ptrs: Vec<(IpAddr, String)>,
}

/// The records of `svc` given the endpoint groups of every slice labelled with its name.
pub fn service_records(
    zone: &Zone,
    ttl: u32,
    svc: &SlimService,
    slices: &[&SlimEndpoints],
) -> ServiceRecords {
    let ns = svc.id.namespace.as_str();
    let name = svc.id.name.as_str();
    let fqdn = zone.service_fqdn(ns, name);

    // Ready endpoint names → addresses, and headless SRV targets per (protocol, port name).
    let mut names: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    let mut ready: BTreeSet<IpAddr> = BTreeSet::new();
    let mut srv: BTreeMap<(Protocol, String), BTreeSet<(String, u16)>> = BTreeMap::new();
    for group in slices.iter().flat_map(|s| s.groups.iter()) {
        for ep in &group.endpoints {
            let labels: Vec<(String, Vec<IpAddr>)> = match &ep.hostname {
                Some(h) => vec![(h.to_ascii_lowercase(), ep.addresses.clone())],
                None => ep
                    .addresses
                    .iter()
                    .map(|ip| (msg::dashed_ip(*ip), vec![*ip]))
                    .collect(),
            };
            for (label, addrs) in labels {
                ready.extend(addrs.iter().copied());
                for port in group.ports.iter().filter(|p| !p.name.is_empty()) {
                    srv.entry((port.protocol, port.name.clone()))
                        .or_default()
                        .insert((label.clone(), port.port));
                }
                names.entry(label).or_default().extend(addrs);
            }
        }
    }

    let mut out: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut ptrs: BTreeSet<(IpAddr, String)> = BTreeSet::new();
    let key = zone.service_key(ns, name);
    match &svc.kind {
        ServiceKind::ClusterIp(ips) => {
            let mut seen = BTreeSet::new();
            let records: Vec<Record> = ips
                .iter()
                .filter(|ip| seen.insert(**ip))
                .map(|ip| Record::service(ip.to_string(), 0, ttl))
                .collect();
            if !records.is_empty() {
                out.insert(key, records);
            }
            ptrs.extend(ips.iter().map(|ip| (*ip, fqdn.clone())));
            for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                out.insert(
                    zone.srv_key(ns, name, port.protocol.label(), &port.name),
                    vec![Record::service(fqdn.clone(), port.port, ttl)],
                );
            }
        }
        ServiceKind::Headless => {
            if !ready.is_empty() {
                out.insert(key, address_records(&ready, ttl));
            }
            for ((proto, port_name), targets) in &srv {
                let records = targets
                    .iter()
                    .map(|(label, port)| {
                        Record::service(zone.endpoint_fqdn(ns, name, label), *port, ttl)
                    })
                    .collect();
                out.insert(zone.srv_key(ns, name, proto.label(), port_name), records);
            }
        }
        ServiceKind::ExternalName(host) => {
            out.insert(
                key,
                vec![Record {
                    host: host.clone(),
                    ttl,
                    ..Default::default()
                }],
            );
        }
    }
    for (label, addrs) in &names {
        out.insert(
            zone.endpoint_key(ns, name, label),
            address_records(addrs, ttl),
        );
        let efqdn = zone.endpoint_fqdn(ns, name, label);
        ptrs.extend(addrs.iter().map(|ip| (*ip, efqdn.clone())));
    }

    ServiceRecords {
        records: out.into_iter().map(|(k, v)| (k, cap(v))).collect(),
        ptrs: ptrs.into_iter().collect(),
    }
}

/// `P/pod/<ns>/<a-b-c-d>` → the pod address.
pub fn pod_record(zone: &Zone, ttl: u32, namespace: &str, ip: IpAddr) -> (String, Vec<Record>) {
    (
        zone.pod_key(namespace, ip),
        vec![Record::service(ip.to_string(), 0, ttl)],
    )
}

/// The PTR value of `ip`: one `{"host":"<fqdn>"}` per owning name, sorted.
pub fn ptr_record<'a>(
    zone: &Zone,
    ip: IpAddr,
    names: impl IntoIterator<Item = &'a str>,
) -> (String, Vec<Record>) {
    let names: BTreeSet<&str> = names.into_iter().collect();
    let records = names.into_iter().map(Record::host).collect();
    (zone.ptr_key(ip), cap(records))
}

/// `P/dns-version` → `{"text":"1.1.0"}`.
pub fn dns_version(zone: &Zone) -> (String, Vec<Record>) {
    (
        zone.dns_version_key(),
        vec![Record {
            text: DNS_SCHEMA_VERSION.to_string(),
            ..Default::default()
        }],
    )
}

fn address_records(addrs: &BTreeSet<IpAddr>, ttl: u32) -> Vec<Record> {
    addrs
        .iter()
        .map(|ip| Record::service(ip.to_string(), 0, ttl))
        .collect()
}

/// skydns rejects values of more than `MAX_RECORDS_PER_VALUE` records; keep the first ones.
fn cap(mut records: Vec<Record>) -> Vec<Record> {
    if records.len() > MAX_RECORDS_PER_VALUE {
        tracing::warn!(
            records = records.len(),
            limit = MAX_RECORDS_PER_VALUE,
            "too many records for one name; keeping the first ones"
        );
        records.truncate(MAX_RECORDS_PER_VALUE);
    }
    records
}

#[cfg(test)]
mod tests;
