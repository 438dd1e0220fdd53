//! Properties of the query path that need no network, over arbitrary inputs (proptest):
//! - `handler::fit`: never more than the client's size, TC exactly when answers were dropped,
//!   everything kept when it fits;
//! - `Handler::handle_sync` end to end over an in-memory index (our own index, not an etcd
//!   stand-in): any UDP reply fits the client's size (512 without EDNS, min(client, 1232) with
//!   it), decodes, keeps the id, is complete over TCP, and a reply-cache hit equals a miss;
//! - record values: what `msg::encode_value` writes, `skydns::index::parse_entry` reads back.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;
use skydns::answer::ZoneParams;
use skydns::forward::{Forwarder, Transport};
use skydns::handler::{fit, Handler, Step};
use skydns::index::{parse_entry, Host, Index, Snapshot};

const UDP_SIZE: u16 = 1232;

/// `cases` cases; failures are reported (with the shrunk input), not written to a file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A response to `name`/A holding one A record per address, `glue` additional A records and,
/// optionally, an SOA in authority and an OPT with `edns` as its payload.
fn response(name: &Name, ips: &[u32], glue: usize, soa: bool, edns: Option<u16>) -> Message {
    let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
    m.queries.push(Query::query(name.clone(), RecordType::A));
    for ip in ips {
        m.answers.push(Record::from_rdata(
            name.clone(),
            30,
            RData::A(A(Ipv4Addr::from(*ip))),
        ));
    }
    let glue_name = Name::from_ascii("glue.example.").unwrap();
    for i in 0..glue {
        m.additionals.push(Record::from_rdata(
            glue_name.clone(),
            30,
            RData::A(A(Ipv4Addr::from(0x0a00_0000 + i as u32))),
        ));
    }
    if soa {
        let apex = Name::from_ascii("kube.local.").unwrap();
        let soa = SOA::new(
            Name::from_ascii("ns.dns.kube.local.").unwrap(),
            Name::from_ascii("hostmaster.kube.local.").unwrap(),
            7,
            28800,
            7200,
            604800,
            30,
        );
        m.authorities
            .push(Record::from_rdata(apex, 30, RData::SOA(soa)));
    }
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// A name of 1–4 labels under `kube.local.`, up to ~200 characters.
fn owner_name() -> impl Strategy<Value = Name> {
    prop::collection::vec("[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?", 1..4)
        .prop_map(|labels| Name::from_ascii(format!("{}.kube.local.", labels.join("."))).unwrap())
}

/// "No EDNS" or a client payload of 512..=4096.
fn client_size() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![Just(None), (512u16..=4096).prop_map(Some)]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fit_never_exceeds_the_size_and_sets_tc_exactly_when_answers_are_cut(
        name in owner_name(),
        ips in prop::collection::btree_set(any::<u32>(), 1..300),
        glue in 0usize..40,
        soa: bool,
        edns in client_size(),
    ) {
        let ips: Vec<u32> = ips.into_iter().collect();
        let max = edns.map_or(512, usize::from);
        let original = response(&name, &ips, glue, soa, edns);
        let full = skydns::encoder::encode(&original).unwrap();
        let mut without_glue = original.clone();
        without_glue.additionals.clear();
        let answers_only = skydns::encoder::encode(&without_glue).unwrap();

        let mut m = original.clone();
        let bytes = fit(&mut m, max).expect("a reply always fits");
        prop_assert!(bytes.len() <= max, "{} bytes > {max}", bytes.len());
        let back = Message::from_vec(&bytes).unwrap();
        prop_assert_eq!(back.metadata.id, 0x1234);
        prop_assert_eq!(&back.queries, &original.queries);
        let cut = back.answers.len() < ips.len();
        prop_assert_eq!(back.metadata.truncation, cut, "TC exactly when answers were dropped");
        if full.len() <= max {
            // Everything fits: the reply is the message, unchanged.
            prop_assert_eq!(&bytes, &full);
        } else if answers_only.len() <= max {
            // The answers fit once the glue goes: all of them, no TC.
            prop_assert!(!cut);
            prop_assert!(back.additionals.is_empty());
            prop_assert_eq!(&back.answers, &original.answers);
        } else {
            prop_assert!(cut && back.answers.is_empty() && back.additionals.is_empty());
        }
        // The EDNS OPT survives every step (the client learns our size even when cut).
        prop_assert_eq!(back.edns.is_some(), edns.is_some());

        // Over TCP (65535) 300 A records always fit whole.
        let mut m = original.clone();
        let bytes = fit(&mut m, 65535).unwrap();
        prop_assert_eq!(&bytes, &full);
    }
}

// ---- end to end through the handler ---------------------------------------------------------

fn handler(snapshot: Snapshot) -> Handler {
    let zone = msg::Zone::new(msg::Prefix::new("skydns"), "kube.local");
    let index = Arc::new(Index::new());
    index.store(snapshot);
    Handler::new(
        ZoneParams::new(zone, 30, 30, "hostmaster.kube.local."),
        index,
        Forwarder::new(
            skydns::forward::ForwardSettings {
                upstreams: Vec::new(),
                stub_domains: Vec::new(),
                file_config: None,
                timeout: Duration::from_millis(100),
                policy: skydns::forward::routes::Policy::Sequential,
                cache: skydns::forward::cache::CacheLimits {
                    entries: 100,
                    bytes: 1 << 20,
                    min_ttl: 0,
                    max_ttl: 60,
                    serve_stale: Duration::ZERO,
                    prefetch_hits: 0,
                },
                cluster_zone: hickory_proto::rr::Name::from_ascii("kube.local.").unwrap(),
            },
            Arc::new(skydns::metrics::Metrics::new()),
        ),
        Arc::new(skydns::metrics::Metrics::new()),
    )
    .with_recursion(false)
    .with_udp_size(UDP_SIZE)
    .with_answer_cache(skydns::answer_cache::AnswerCache::new(1024, 1 << 20))
    .with_max_concurrent(64)
}

/// One question; an OPT record with payload `edns` when given (any value, 0 included).
fn raw_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x0100u16.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some(payload) = edns {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    p
}

fn reply(h: &Handler, packet: &[u8], t: Transport) -> Vec<u8> {
    let addr = "127.0.0.1:4000".parse().unwrap();
    let client = skydns::observe::Client { addr, transport: t };
    match h.handle_sync(packet, client) {
        Step::Reply(bytes) => bytes,
        Step::Drop => panic!("{t:?}: dropped"),
        Step::Upstream(_) => panic!("{t:?}: an in-zone name went upstream"),
    }
}

#[derive(Debug, Clone)]
enum Addr {
    V4(u32),
    V6(u128),
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn udp_replies_fit_the_client_and_tcp_replies_are_whole(
        addrs in prop::collection::vec(
            prop_oneof![any::<u32>().prop_map(Addr::V4), any::<u128>().prop_map(Addr::V6)],
            1..300,
        ),
        // None: no EDNS; otherwise any advertised payload, below 512 included.
        edns in prop_oneof![Just(None), (0u16..=4096).prop_map(Some), (512u16..=4096).prop_map(Some)],
        id: u16,
        aaaa: bool,
        upper: bool,
    ) {
        let records: Vec<msg::Record> = addrs
            .iter()
            .map(|a| match a {
                Addr::V4(v) => msg::Record::host(Ipv4Addr::from(*v).to_string()),
                Addr::V6(v) => msg::Record::host(Ipv6Addr::from(*v).to_string()),
            })
            .collect();
        let wanted: BTreeSet<String> = addrs
            .iter()
            .filter_map(|a| match (a, aaaa) {
                (Addr::V4(v), false) => Some(Ipv4Addr::from(*v).to_string()),
                (Addr::V6(v), true) => Some(Ipv6Addr::from(*v).to_string()),
                _ => None,
            })
            .collect();
        let mut snapshot = Snapshot::default();
        snapshot.ready = true;
        snapshot.revision = 9;
        snapshot.insert(
            Arc::from("local/kube/svc/default/big"),
            parse_entry(msg::encode_value(&records).as_bytes()).unwrap(),
        );
        let h = handler(snapshot);
        let name = if upper { "BIG.default.SVC.kube.local." } else { "big.default.svc.kube.local." };
        let qtype = if aaaa { 28 } else { 1 };
        let limit = edns.map_or(512, |p| usize::from(p.clamp(512, UDP_SIZE)));

        let packet = raw_query(id, name, qtype, edns);
        let udp = reply(&h, &packet, Transport::Udp);
        prop_assert!(udp.len() <= limit, "{} bytes > {limit} (edns {edns:?})", udp.len());
        let m = Message::from_vec(&udp).unwrap();
        prop_assert_eq!(m.metadata.id, id);
        prop_assert_eq!(m.edns.is_some(), edns.is_some());
        let got: BTreeSet<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        if m.metadata.truncation {
            prop_assert!(got.len() < wanted.len());
        } else {
            prop_assert_eq!(&got, &wanted, "not truncated, so complete");
        }
        // The cache admits a question on its second sighting; the third is a hit. Each time:
        // the same bytes, with the new id.
        for k in 1..=2u16 {
            let other = id.wrapping_add(k);
            let again = reply(&h, &raw_query(other, name, qtype, edns), Transport::Udp);
            prop_assert_eq!(&again[2..], &udp[2..]);
            prop_assert_eq!(u16::from_be_bytes([again[0], again[1]]), other);
        }

        let tcp = reply(&h, &packet, Transport::Tcp);
        let m = Message::from_vec(&tcp).unwrap();
        prop_assert_eq!(m.metadata.id, id);
        prop_assert!(!m.metadata.truncation);
        let got: BTreeSet<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        prop_assert_eq!(&got, &wanted);
        for r in &m.answers {
            prop_assert_eq!(r.name.to_ascii(), name, "answers keep the question's case");
        }
    }
}

// ---- name ↔ path and record values ----------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn encoded_values_read_back_into_the_index(
        records in prop::collection::vec(
            (
                prop_oneof![
                    any::<u32>().prop_map(|v| Ipv4Addr::from(v).to_string()),
                    any::<u128>().prop_map(|v| Ipv6Addr::from(v).to_string()),
                    "[a-z0-9_]([a-z0-9-]{0,18}[a-z0-9])?(\\.[a-z0-9_]([a-z0-9-]{0,18}[a-z0-9])?){0,3}\\.?",
                    Just(String::new()),
                ],
                any::<u16>(), any::<u16>(), any::<u16>(),
                // Any text, control characters, quotes and backslashes included.
                "(?s).{0,300}",
                any::<bool>(), any::<u32>(), 0u32..10, "[a-z]{0,8}",
            ),
            1..20,
        ),
    ) {
        let records: Vec<msg::Record> = records
            .into_iter()
            .map(|(host, port, priority, weight, text, mail, ttl, targetstrip, group)| {
                msg::Record { host, port, priority, weight, text, mail, ttl, targetstrip, group }
            })
            .collect();
        let value = msg::encode_value(&records);
        prop_assert_eq!(&msg::parse_value(value.as_bytes()).unwrap(), &records);
        let entry = parse_entry(value.as_bytes()).unwrap();
        prop_assert_eq!(entry.len(), records.len());
        for (rec, r) in entry.iter().zip(&records) {
            prop_assert_eq!(rec.port, r.port);
            prop_assert_eq!(rec.priority, r.effective_priority());
            prop_assert_eq!(rec.weight, r.weight);
            prop_assert_eq!(&rec.text, &r.text);
            prop_assert_eq!(rec.mail, r.mail);
            prop_assert_eq!(rec.ttl, if r.ttl > skydns::index::MAX_TTL { 0 } else { r.ttl });
            prop_assert_eq!(rec.targetstrip, r.targetstrip);
            match &rec.host {
                Host::None => prop_assert!(r.host.is_empty()),
                Host::V4(ip) => prop_assert_eq!(ip.to_string(), r.host.clone()),
                Host::V6(ip) => prop_assert_eq!(ip.to_string(), r.host.clone()),
                Host::Name(n) => prop_assert_eq!(
                    n.to_ascii(),
                    format!("{}.", r.host.trim_end_matches('.'))
                ),
            }
        }
    }
}

/// A name of 1–5 labels (mixed case, so exact-byte compression is exercised) under one of a
/// few suffixes, so that names share suffixes the way a reply's names do.
fn any_name() -> impl Strategy<Value = Name> {
    (
        prop::collection::vec("[a-zA-Z0-9_]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", 0..5),
        prop::sample::select(vec![
            "svc.cluster.local.",
            "default.svc.cluster.local.",
            "cluster.local.",
            "in-addr.arpa.",
            "example.com.",
            ".",
        ]),
    )
        .prop_map(|(labels, suffix)| {
            let text = if labels.is_empty() {
                suffix.to_string()
            } else if suffix == "." {
                format!("{}.", labels.join("."))
            } else {
                format!("{}.{suffix}", labels.join("."))
            };
            Name::from_ascii(text).unwrap()
        })
}

/// One record of a type skydns composes.
fn any_record() -> impl Strategy<Value = Record> {
    use hickory_proto::rr::rdata::{AAAA, CNAME, MX, NS, PTR, SRV, TXT};
    let data = prop_oneof![
        any::<u32>().prop_map(|ip| RData::A(A(Ipv4Addr::from(ip)))),
        any::<u128>().prop_map(|ip| RData::AAAA(AAAA(Ipv6Addr::from(ip)))),
        any_name().prop_map(|n| RData::CNAME(CNAME(n))),
        any_name().prop_map(|n| RData::NS(NS(n))),
        any_name().prop_map(|n| RData::PTR(PTR(n))),
        (any::<u16>(), any_name()).prop_map(|(p, n)| RData::MX(MX::new(p, n))),
        (any::<u16>(), any::<u16>(), any::<u16>(), any_name())
            .prop_map(|(p, w, port, n)| RData::SRV(SRV::new(p, w, port, n))),
        prop::collection::vec("[ -~]{0,40}", 1..3).prop_map(|t| RData::TXT(TXT::new(t))),
        (any_name(), any_name(), any::<u32>())
            .prop_map(|(m, r, serial)| RData::SOA(SOA::new(m, r, serial, 1, 2, 3, 4))),
    ];
    (any_name(), any::<u32>(), data)
        .prop_map(|(name, ttl, data)| Record::from_rdata(name, ttl, data))
}

proptest! {
    #![proptest_config(config(512))]

    /// skydns's own encoder: what it writes decodes (with hickory-proto) to the same message as
    /// hickory-proto's encoding, byte-for-byte names included, and is never larger.
    #[test]
    fn wire_encoder_agrees_with_hickory(
        id in any::<u16>(),
        qname in any_name(),
        answers in prop::collection::vec(any_record(), 0..12),
        authorities in prop::collection::vec(any_record(), 0..2),
        additionals in prop::collection::vec(any_record(), 0..4),
        edns in prop::option::of((512u16..=4096, any::<bool>())),
        rcode in prop::sample::select(vec![0u16, 2, 3, 5, 16]),
        flags in any::<[bool; 5]>(),
    ) {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.queries.push(Query::query(qname, RecordType::A));
        m.answers = answers;
        m.authorities = authorities;
        m.additionals = additionals;
        [
            m.metadata.authoritative,
            m.metadata.truncation,
            m.metadata.recursion_desired,
            m.metadata.recursion_available,
            m.metadata.checking_disabled,
        ] = flags;
        m.metadata.response_code = hickory_proto::op::ResponseCode::from(
            (rcode >> 4) as u8,
            (rcode & 0x0f) as u8,
        );
        if let Some((payload, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        let ours = skydns::encoder::encode(&m).expect("every record type here is covered");
        let theirs = m.to_vec().unwrap();
        let (a, b) = (Message::from_vec(&ours).unwrap(), Message::from_vec(&theirs).unwrap());
        prop_assert_eq!(&a, &b);
        // Name equality ignores case; the bytes of every name must survive exactly.
        let names = |m: &Message| -> Vec<String> {
            m.queries.iter().map(|q| q.name().to_ascii())
                .chain(m.answers.iter().chain(&m.authorities).chain(&m.additionals)
                    .map(|r| format!("{} {}", r.name.to_ascii(), r.data)))
                .collect()
        };
        prop_assert_eq!(names(&a), names(&b));
        if edns.is_some() || rcode < 16 {
            // (An extended code needs the OPT record to carry its high bits.)
            prop_assert_eq!(u16::from(a.metadata.response_code), rcode);
        }
        prop_assert!(ours.len() <= theirs.len(), "{} > {}", ours.len(), theirs.len());
    }
}

// ---- arithmetic on untrusted numbers ---------------------------------------------------------

fn srv(priority: u16, weight: u16) -> Record {
    let target = Name::from_ascii("t.kube.local.").unwrap();
    Record::from_rdata(
        Name::from_ascii("s.kube.local.").unwrap(),
        30,
        RData::SRV(hickory_proto::rr::rdata::SRV::new(
            priority, weight, 80, target,
        )),
    )
}

fn weights(answers: &[Record]) -> Vec<u16> {
    answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => s.weight,
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn srv_weight_sums_never_overflow() {
    // 70,000 records of the largest weight at one priority: the sum exceeds u32.
    let mut answers: Vec<Record> = (0..70_000).map(|_| srv(10, u16::MAX)).collect();
    skydns::answer::normalise_weights(&mut answers);
    assert!(
        weights(&answers).iter().all(|&w| w == 1),
        "floor(100/70000) → 1"
    );
}

proptest! {
    #![proptest_config(config(256))]

    /// Any weights and priorities: no panic, every weight in 1..=100, and within a priority
    /// the normalised weights keep the order of the raw ones.
    #[test]
    fn srv_weights_are_normalised_for_hostile_values(
        raw in proptest::collection::vec((0u16..4, any::<u16>()), 1..200),
    ) {
        let mut answers: Vec<Record> = raw.iter().map(|&(p, w)| srv(p, w)).collect();
        skydns::answer::normalise_weights(&mut answers);
        let got = weights(&answers);
        prop_assert!(got.iter().all(|&w| (1..=100).contains(&w)), "{:?}", got);
        let eff = |w: u16| if w == 0 { 100u32 } else { u32::from(w) };
        for (i, a) in raw.iter().enumerate() {
            for (j, b) in raw.iter().enumerate() {
                if a.0 == b.0 && eff(a.1) <= eff(b.1) {
                    prop_assert!(got[i] <= got[j]);
                }
            }
        }
    }

    /// Any TTL in a value: what the index serves never has the top bit set.
    #[test]
    fn ttls_from_etcd_are_clamped(ttl in any::<u32>()) {
        let entry = parse_entry(format!(r#"{{"host":"10.0.0.1","ttl":{ttl}}}"#).as_bytes()).unwrap();
        prop_assert!(entry[0].ttl <= skydns::index::MAX_TTL);
        prop_assert_eq!(entry[0].ttl, if ttl > skydns::index::MAX_TTL { 0 } else { ttl });
    }
}
