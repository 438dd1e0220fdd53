//! Tests of `desired`.

use super::*;
use crate::slim::{
    Protocol, ServiceKind, SlimEndpoint, SlimEndpointGroup, SlimEvent, SlimObject, SlimPort,
};
use msg::Prefix;

const P: &str = "/skydns/local/cluster/svc/default";

fn state() -> State {
    let mut s = State::new(
        Zone::new(Prefix::default(), "cluster.local"),
        30,
        &Kind::ALL,
    );
    for k in Kind::ALL {
        s.apply(SlimEvent::Init(k));
        s.apply(SlimEvent::InitDone(k));
    }
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(name: &str, p: u16) -> SlimPort {
    SlimPort {
        name: name.into(),
        protocol: Protocol::Tcp,
        port: p,
    }
}

fn service(name: &str, kind: ServiceKind, ports: Vec<SlimPort>) -> SlimEvent {
    SlimEvent::Apply(SlimObject::Service(SlimService {
        id: ObjRef::new("default", name),
        kind,
        ports,
    }))
}

fn cluster_ip(name: &str, a: &str, ports: Vec<SlimPort>) -> SlimEvent {
    service(name, ServiceKind::ClusterIp(vec![ip(a)]), ports)
}

fn slice(name: &str, svc: &str, eps: &[(&str, Option<&str>)], ports: Vec<SlimPort>) -> SlimEvent {
    SlimEvent::Apply(SlimObject::Endpoints(SlimEndpoints {
        id: ObjRef::new("default", name),
        service: svc.into(),
        groups: vec![SlimEndpointGroup {
            ports,
            endpoints: eps
                .iter()
                .map(|(a, h)| SlimEndpoint {
                    addresses: vec![ip(a)],
                    hostname: h.map(str::to_string),
                })
                .collect(),
        }],
    }))
}

fn pod(ns: &str, name: &str, ips: &[&str]) -> SlimEvent {
    SlimEvent::Apply(SlimObject::Pod(SlimPod {
        id: ObjRef::new(ns, name),
        ips: ips.iter().map(|a| ip(a)).collect(),
    }))
}

/// Drain every pending op as a flat list of batches.
fn drain(s: &mut State, max_ops: usize) -> Vec<Vec<Op>> {
    let mut out = Vec::new();
    loop {
        let b = s.take_batch(max_ops, MAX_OP_BYTES);
        if b.is_empty() {
            return out;
        }
        out.push(b);
    }
}

fn flat(batches: Vec<Vec<Op>>) -> Vec<Op> {
    batches.into_iter().flatten().collect()
}

fn puts(ops: &[Op]) -> Vec<&str> {
    ops.iter()
        .filter(|&o| matches!(o, Op::Put { .. }))
        .map(|o| o.key())
        .collect()
}

fn dels(ops: &[Op]) -> Vec<&str> {
    ops.iter()
        .filter(|&o| matches!(o, Op::Delete { .. }))
        .map(|o| o.key())
        .collect()
}

#[test]
fn dns_version_is_desired_from_the_start() {
    let mut s = state();
    let ops = flat(drain(&mut s, 128));
    assert_eq!(
        ops,
        vec![Op::Put {
            key: "/skydns/local/cluster/dns-version".into(),
            value: r#"{"text":"1.1.0"}"#.into()
        }]
    );
}

#[test]
fn initial_lists_gate() {
    let mut s = State::new(
        Zone::new(Prefix::default(), "cluster.local"),
        30,
        &[Kind::Service, Kind::Endpoints],
    );
    assert!(!s.initial_lists_done());
    s.apply(SlimEvent::Init(Kind::Service));
    s.apply(SlimEvent::InitDone(Kind::Service));
    assert!(!s.initial_lists_done());
    s.apply(SlimEvent::Init(Kind::Endpoints));
    s.apply(SlimEvent::InitDone(Kind::Endpoints));
    assert!(s.initial_lists_done());
}

#[test]
fn cluster_ip_change_overwrites_and_moves_the_ptr() {
    let mut s = state();
    s.apply(cluster_ip("web", "10.0.0.1", vec![port("http", 80)]));
    drain(&mut s, 128);
    assert!(s.apply(cluster_ip("web", "10.0.0.2", vec![port("http", 80)])));
    let batches = drain(&mut s, 128);
    let ops = flat(batches);
    assert_eq!(
        puts(&ops),
        vec!["/skydns/arpa/in-addr/10/0/0/2", &format!("{P}/web")]
    );
    assert_eq!(dels(&ops), vec!["/skydns/arpa/in-addr/10/0/0/1"]);
    // Re-applying the same object changes nothing.
    assert!(!s.apply(cluster_ip("web", "10.0.0.2", vec![port("http", 80)])));
}

#[test]
fn port_rename_puts_the_new_srv_before_deleting_the_old() {
    let mut s = state();
    s.apply(cluster_ip("web", "10.0.0.1", vec![port("http", 80)]));
    drain(&mut s, 128);
    s.apply(cluster_ip("web", "10.0.0.1", vec![port("web", 80)]));
    let batches = drain(&mut s, 1);
    assert_eq!(batches.len(), 2);
    assert_eq!(puts(&batches[0]), vec![format!("{P}/web/_tcp/_web")]);
    assert_eq!(dels(&batches[1]), vec![format!("{P}/web/_tcp/_http")]);
}

#[test]
fn headless_follows_endpoint_readiness() {
    let mut s = state();
    s.apply(service("db", ServiceKind::Headless, vec![port("pg", 5432)]));
    assert!(s.desired(&format!("{P}/db")).is_none());
    s.apply(slice(
        "db-1",
        "db",
        &[("10.1.0.1", Some("db-0"))],
        vec![port("pg", 5432)],
    ));
    assert!(s.desired(&format!("{P}/db")).is_some());
    assert!(s.desired(&format!("{P}/db/db-0")).is_some());
    assert!(s.desired(&format!("{P}/db/_tcp/_pg")).is_some());
    assert!(s.desired("/skydns/arpa/in-addr/10/1/0/1").is_some());
    drain(&mut s, 128);
    // Endpoint becomes unready: the watch layer drops it from the slice.
    s.apply(slice("db-1", "db", &[], vec![port("pg", 5432)]));
    let ops = flat(drain(&mut s, 128));
    assert!(puts(&ops).is_empty());
    let mut d = dels(&ops);
    d.sort();
    assert_eq!(
        d,
        vec![
            "/skydns/arpa/in-addr/10/1/0/1".to_string(),
            format!("{P}/db"),
            format!("{P}/db/_tcp/_pg"),
            format!("{P}/db/db-0"),
        ]
    );
}

#[test]
fn type_changes_cluster_ip_headless_external_name() {
    let mut s = state();
    s.apply(slice("x-1", "x", &[("10.1.0.9", None)], vec![]));
    s.apply(cluster_ip("x", "10.0.0.9", vec![]));
    assert_eq!(
        s.desired(&format!("{P}/x")),
        Some(r#"{"host":"10.0.0.9","priority":10,"weight":10,"ttl":30}"#)
    );
    s.apply(service("x", ServiceKind::Headless, vec![]));
    assert_eq!(
        s.desired(&format!("{P}/x")),
        Some(r#"{"host":"10.1.0.9","priority":10,"weight":10,"ttl":30}"#)
    );
    assert!(s.desired("/skydns/arpa/in-addr/10/0/0/9").is_none());
    s.apply(service(
        "x",
        ServiceKind::ExternalName("a.example.com".into()),
        vec![],
    ));
    assert_eq!(
        s.desired(&format!("{P}/x")),
        Some(r#"{"host":"a.example.com","ttl":30}"#)
    );
    s.apply(cluster_ip("x", "10.0.0.9", vec![]));
    assert!(s.desired("/skydns/arpa/in-addr/10/0/0/9").is_some());
    s.apply(SlimEvent::Delete(
        Kind::Service,
        ObjRef::new("default", "x"),
    ));
    s.apply(SlimEvent::Delete(
        Kind::Endpoints,
        ObjRef::new("default", "x-1"),
    ));
    assert_eq!(s.stats().records, 1, "{:?}", s.desired_snapshot());
}

#[test]
fn an_ip_in_two_services_gets_both_ptr_names() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![]));
    s.apply(slice("a-1", "a", &[("10.1.0.1", None)], vec![]));
    s.apply(cluster_ip("b", "10.0.0.2", vec![]));
    s.apply(slice("b-1", "b", &[("10.1.0.1", None)], vec![]));
    assert_eq!(
        s.desired("/skydns/arpa/in-addr/10/1/0/1"),
        Some(
            r#"[{"host":"10-1-0-1.a.default.svc.cluster.local."},{"host":"10-1-0-1.b.default.svc.cluster.local."}]"#
        )
    );
    s.apply(SlimEvent::Delete(
        Kind::Service,
        ObjRef::new("default", "a"),
    ));
    assert_eq!(
        s.desired("/skydns/arpa/in-addr/10/1/0/1"),
        Some(r#"{"host":"10-1-0-1.b.default.svc.cluster.local."}"#)
    );
}

#[test]
fn slices_arriving_before_their_service_and_moving_between_services() {
    let mut s = state();
    s.apply(slice("s1", "a", &[("10.1.0.1", Some("h"))], vec![]));
    assert!(s.desired(&format!("{P}/a/h")).is_none());
    s.apply(service("a", ServiceKind::Headless, vec![]));
    s.apply(service("b", ServiceKind::Headless, vec![]));
    assert!(s.desired(&format!("{P}/a/h")).is_some());
    s.apply(slice("s1", "b", &[("10.1.0.1", Some("h"))], vec![]));
    assert!(s.desired(&format!("{P}/a/h")).is_none());
    assert!(s.desired(&format!("{P}/a")).is_none());
    assert!(s.desired(&format!("{P}/b/h")).is_some());
}

#[test]
fn similar_service_names_do_not_disturb_each_other() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![port("http", 80)]));
    s.apply(cluster_ip("a-b", "10.0.0.2", vec![port("http", 80)]));
    s.apply(SlimEvent::Delete(
        Kind::Service,
        ObjRef::new("default", "a"),
    ));
    assert!(s.desired(&format!("{P}/a-b")).is_some());
    assert!(s.desired(&format!("{P}/a-b/_tcp/_http")).is_some());
    assert!(s.desired(&format!("{P}/a")).is_none());
    assert!(s.desired(&format!("{P}/a/_tcp/_http")).is_none());
}

#[test]
fn pod_records_live_while_any_pod_has_the_ip() {
    let mut s = state();
    let key = "/skydns/local/cluster/pod/ns1/10-2-0-1";
    s.apply(pod("ns1", "p1", &["10.2.0.1"]));
    s.apply(pod("ns1", "p2", &["10.2.0.1"]));
    assert!(s.desired(key).is_some());
    s.apply(SlimEvent::Delete(Kind::Pod, ObjRef::new("ns1", "p1")));
    assert!(s.desired(key).is_some());
    s.apply(pod("ns1", "p2", &["10.2.0.2"]));
    assert!(s.desired(key).is_none());
    assert!(s
        .desired("/skydns/local/cluster/pod/ns1/10-2-0-2")
        .is_some());
}

#[test]
fn relist_replaces_state_without_doubling_it() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![]));
    s.apply(cluster_ip("b", "10.0.0.2", vec![]));
    drain(&mut s, 128);
    let records = s.stats().records;
    // Relist: `a` unchanged, `b` gone, `c` new.
    s.apply(SlimEvent::Init(Kind::Service));
    assert!(!s.apply(cluster_ip("a", "10.0.0.1", vec![])));
    s.apply(cluster_ip("c", "10.0.0.3", vec![]));
    // Until the relist completes nothing is removed.
    assert!(s.desired(&format!("{P}/b")).is_some());
    s.apply(SlimEvent::InitDone(Kind::Service));
    assert!(s.desired(&format!("{P}/b")).is_none());
    assert_eq!(s.stats().services, 2);
    assert_eq!(s.stats().records, records);
    let ops = flat(drain(&mut s, 128));
    assert_eq!(puts(&ops).len(), 2);
    assert_eq!(dels(&ops).len(), 2);
}

#[test]
fn batches_respect_the_op_and_byte_limits() {
    let mut s = state();
    for i in 0..300u32 {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        s.apply(cluster_ip(&format!("s{i}"), &a, vec![]));
    }
    // 300 services + 300 PTRs + dns-version.
    let batches = drain(&mut s, 128);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![128, 128, 128, 128, 89]
    );
    for i in 0..300u32 {
        s.apply(SlimEvent::Delete(
            Kind::Service,
            ObjRef::new("default", format!("s{i}")),
        ));
    }
    let small = s.take_batch(128, 1000);
    assert!(small.is_empty() || small.iter().all(|o| matches!(o, Op::Delete { .. })));
    let mut s2 = state();
    for i in 0..50u32 {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        s2.apply(cluster_ip(&format!("s{i}"), &a, vec![]));
    }
    let b = s2.take_batch(128, 1000);
    let bytes: usize = b
        .iter()
        .map(|o| match o {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        })
        .sum();
    assert!(bytes <= 1000 && !b.is_empty());
}

#[test]
fn requeued_ops_are_written_again_with_the_latest_value() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![]));
    let failed = s.take_batch(128, MAX_OP_BYTES);
    assert_eq!(s.pending(), 0);
    s.apply(cluster_ip("a", "10.0.0.5", vec![]));
    s.requeue(failed);
    let ops = flat(drain(&mut s, 128));
    assert!(ops.contains(&Op::Put {
        key: format!("{P}/a"),
        value: r#"{"host":"10.0.0.5","priority":10,"weight":10,"ttl":30}"#.into()
    }));
    assert!(ops.contains(&Op::Delete {
        key: "/skydns/arpa/in-addr/10/0/0/1".into()
    }));
}

fn reconcile_all(s: &mut State, etcd: &BTreeMap<String, String>) {
    s.begin_reconcile();
    let ranges = owned_ranges(s.zone());
    for r in &ranges {
        let kvs: Vec<(String, Vec<u8>, i64)> = etcd
            .range(r.start.clone()..r.end.clone())
            .map(|(k, v)| (k.clone(), v.clone().into_bytes(), 1))
            .collect();
        s.reconcile_chunk(r, &r.start, &r.end, &kvs);
    }
}

#[test]
fn reconcile_prunes_stale_owned_keys_and_leaves_foreign_ones() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![]));
    s.apply(cluster_ip("b", "10.9.9.9", vec![]));
    drain(&mut s, 128);
    let mut etcd: BTreeMap<String, String> = s.desired_snapshot();
    let foreign = [
        (
            "/skydns/local/cluster/dns/ns/ns1",
            r#"{"host":"10.0.0.53"}"#,
        ),
        ("/skydns/com/example/x", r#"{"host":"1.2.3.4"}"#),
        (
            "/skydns/arpa/in-addr/10/9/9/9",
            r#"{"host":"x.example.com."}"#,
        ),
        ("/skydns/arpa/in-addr/10/8/8/8", "not json"),
    ];
    for (k, v) in foreign {
        etcd.insert(k.into(), v.into());
    }
    // A stale service and PTR from before a restart, and a changed value.
    etcd.insert(format!("{P}/gone"), r#"{"host":"10.0.0.7"}"#.into());
    etcd.insert(
        "/skydns/arpa/in-addr/10/0/0/7".into(),
        r#"{"host":"gone.default.svc.cluster.local."}"#.into(),
    );
    etcd.insert(format!("{P}/a"), r#"{"host":"10.0.0.99"}"#.into());
    etcd.remove("/skydns/local/cluster/dns-version");
    reconcile_all(&mut s, &etcd);
    let ops = flat(drain(&mut s, 128));
    let mut p = puts(&ops);
    p.sort();
    assert_eq!(
        p,
        vec![
            "/skydns/local/cluster/dns-version",
            format!("{P}/a").as_str()
        ]
    );
    let mut d = dels(&ops);
    d.sort();
    assert_eq!(
        d,
        vec![
            "/skydns/arpa/in-addr/10/0/0/7".to_string(),
            format!("{P}/gone")
        ]
    );
    // The foreign PTR at 10.9.9.9 is never overwritten while it is there...
    s.apply(cluster_ip("b", "10.9.9.9", vec![port("x", 1)]));
    let ops = flat(drain(&mut s, 128));
    assert!(!ops
        .iter()
        .any(|o| o.key() == "/skydns/arpa/in-addr/10/9/9/9"));
    // ...and once it is gone, the next reconcile writes ours.
    etcd.remove("/skydns/arpa/in-addr/10/9/9/9");
    for op in &ops {
        if let Op::Put { key, value } = op {
            etcd.insert(key.clone(), value.clone());
        }
    }
    etcd.insert(
        format!("{P}/a"),
        s.desired(&format!("{P}/a")).unwrap().into(),
    );
    etcd.remove(&format!("{P}/gone"));
    etcd.remove("/skydns/arpa/in-addr/10/0/0/7");
    etcd.insert(
        "/skydns/local/cluster/dns-version".into(),
        r#"{"text":"1.1.0"}"#.into(),
    );
    reconcile_all(&mut s, &etcd);
    let ops = flat(drain(&mut s, 128));
    assert_eq!(puts(&ops), vec!["/skydns/arpa/in-addr/10/9/9/9"]);
    assert!(dels(&ops).is_empty());
}

#[test]
fn reconcile_of_an_identical_store_queues_nothing() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![port("http", 80)]));
    s.apply(pod("default", "p", &["10.2.0.1"]));
    drain(&mut s, 128);
    let etcd = s.desired_snapshot();
    reconcile_all(&mut s, &etcd);
    assert_eq!(s.pending(), 0);
}

#[test]
fn owned_ranges_cover_exactly_the_owned_trees() {
    let z = Zone::new(Prefix::default(), "cluster.local");
    let r = owned_ranges(&z);
    let inside = |k: &str| {
        r.iter()
            .any(|r| k >= r.start.as_str() && k < r.end.as_str())
    };
    assert!(inside("/skydns/local/cluster/svc/a/b"));
    assert!(inside("/skydns/local/cluster/pod/a/1-2-3-4"));
    assert!(inside("/skydns/local/cluster/dns-version"));
    assert!(inside("/skydns/arpa/in-addr/10/0/0/1"));
    assert!(inside("/skydns/arpa/ip6/f/d"));
    assert!(!inside("/skydns/local/cluster/svcx"));
    assert!(!inside("/skydns/local/cluster/dns-versions"));
    assert!(!inside("/skydns/local/cluster/dns/ns/ns1"));
    assert!(!inside("/skydns/local/cluster/svc"));
    assert!(!inside("/skydns/com/example/x"));
}

#[test]
fn reverse_writes_are_guarded_by_the_revision_last_seen() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![]));
    let ptr = "/skydns/arpa/in-addr/10/0/0/1";
    // Never seen: expected absent. Forward keys are not guarded.
    assert_eq!(s.guard(ptr), Some(0));
    assert_eq!(s.guard(&format!("{P}/a")), None);
    let batch = s.take_batch(128, MAX_OP_BYTES);
    s.committed(&batch, 42);
    assert_eq!(s.guard(ptr), Some(42));
    // A later delete compares 42; a committed delete forgets it.
    s.apply(SlimEvent::Delete(
        Kind::Service,
        ObjRef::new("default", "a"),
    ));
    let batch = flat(drain(&mut s, 128));
    assert!(batch.contains(&Op::Delete { key: ptr.into() }));
    s.committed(&batch, 43);
    assert_eq!(s.guard(ptr), Some(0));
}

#[test]
fn a_failed_comparison_decides_again_and_never_touches_a_foreign_value() {
    let mut s = state();
    s.apply(cluster_ip("a", "10.0.0.1", vec![]));
    s.apply(cluster_ip("b", "10.0.0.2", vec![]));
    drain(&mut s, 128);
    s.apply(cluster_ip("a", "10.0.0.3", vec![]));
    s.apply(cluster_ip("b", "10.0.0.4", vec![]));
    let batch = flat(drain(&mut s, 128));
    let (p1, p3) = (
        "/skydns/arpa/in-addr/10/0/0/1",
        "/skydns/arpa/in-addr/10/0/0/3",
    );
    assert!(batch.iter().any(|o| o.key() == p1));
    // At read time: .1 was taken by a foreign writer, .3 holds our value at revision 9, .4 is
    // absent, .2 holds a stale value of ours.
    let current = vec![
        (
            p1.to_string(),
            Some((br#"{"host":"x.example.com."}"#.to_vec(), 8)),
        ),
        (
            p3.to_string(),
            Some((br#"{"host":"c.default.svc.cluster.local."}"#.to_vec(), 9)),
        ),
        ("/skydns/arpa/in-addr/10/0/0/4".to_string(), None),
        (
            "/skydns/arpa/in-addr/10/0/0/2".to_string(),
            Some((br#"{"host":"b.default.svc.cluster.local."}"#.to_vec(), 7)),
        ),
    ];
    assert_eq!(s.conflicted(batch, &current), 1);
    let again = flat(drain(&mut s, 128));
    assert!(
        !again.iter().any(|o| o.key() == p1),
        "foreign key left alone"
    );
    assert!(again.iter().any(|o| o.key() == p3));
    assert_eq!(s.guard(p3), Some(9));
    assert_eq!(s.guard("/skydns/arpa/in-addr/10/0/0/2"), Some(7));
    assert!(again.contains(&Op::Delete {
        key: "/skydns/arpa/in-addr/10/0/0/2".into()
    }));
}

#[test]
fn a_value_too_large_deletes_the_key_until_it_fits_again() {
    let mut s = state();
    let eps: Vec<(String, Option<&str>)> = (0..200u32)
        .map(|i| (format!("10.1.{}.{}", i / 200, i % 200 + 1), None))
        .collect();
    let refs: Vec<(&str, Option<&str>)> = eps.iter().map(|(a, h)| (a.as_str(), *h)).collect();
    s.apply(service("big", ServiceKind::Headless, vec![]));
    s.apply(slice("big-1", "big", &refs, vec![]));
    let key = format!("{P}/big");
    let size = key.len() + s.desired(&key).unwrap().len();
    // etcd refused the value alone: the key is deleted, counted, and kept absent.
    s.refused_as_too_large(&key, size);
    assert_eq!(s.stats().too_large, 1);
    assert_eq!(s.stats().too_large_total, 1);
    let ops = flat(drain(&mut s, 128));
    assert!(ops.contains(&Op::Delete { key: key.clone() }));
    assert!(!ops
        .iter()
        .any(|o| matches!(o, Op::Put { key: k, .. } if *k == key)));
    // A reconcile that finds it absent queues nothing for it; finding it present deletes it.
    let mut etcd = s.desired_snapshot();
    etcd.remove(&key);
    reconcile_all(&mut s, &etcd);
    assert!(!flat(drain(&mut s, 128)).iter().any(|o| o.key() == key));
    etcd.insert(key.clone(), "stale".into());
    reconcile_all(&mut s, &etcd);
    assert_eq!(
        flat(drain(&mut s, 128)),
        vec![Op::Delete { key: key.clone() }]
    );
    // Smaller again: written.
    s.apply(slice("big-1", "big", &refs[..2], vec![]));
    assert_eq!(s.stats().too_large, 0);
    assert!(flat(drain(&mut s, 128))
        .iter()
        .any(|o| matches!(o, Op::Put { key: k, .. } if *k == key)));
}
