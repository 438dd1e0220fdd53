//! Tests of `translate`.

use super::*;
use crate::slim::{ObjRef, SlimEndpoint, SlimEndpointGroup, SlimPort};
use msg::{encode_value, Prefix};

fn zone() -> Zone {
    Zone::new(Prefix::default(), "cluster.local")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(name: &str, protocol: Protocol, port: u16) -> SlimPort {
    SlimPort {
        name: name.into(),
        protocol,
        port,
    }
}

fn svc(name: &str, kind: ServiceKind, ports: Vec<SlimPort>) -> SlimService {
    SlimService {
        id: ObjRef::new("default", name),
        kind,
        ports,
    }
}

fn slice(service: &str, ports: Vec<SlimPort>, eps: &[(&[&str], Option<&str>)]) -> SlimEndpoints {
    SlimEndpoints {
        id: ObjRef::new("default", format!("{service}-abc")),
        service: service.into(),
        groups: vec![SlimEndpointGroup {
            ports,
            endpoints: eps
                .iter()
                .map(|(addrs, host)| SlimEndpoint {
                    addresses: addrs.iter().map(|a| ip(a)).collect(),
                    hostname: host.map(str::to_string),
                })
                .collect(),
        }],
    }
}

/// The records as `key → encoded value`, the way they land in etcd.
fn encoded(r: &ServiceRecords) -> Vec<(String, String)> {
    r.records
        .iter()
        .map(|(k, v)| (k.clone(), encode_value(v)))
        .collect()
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

const P: &str = "/skydns/local/cluster/svc/default";

#[test]
fn cluster_ip_single_stack_with_named_and_unnamed_ports() {
    let s = svc(
        "kubernetes",
        ServiceKind::ClusterIp(vec![ip("10.96.0.1")]),
        vec![
            port("https", Protocol::Tcp, 443),
            port("", Protocol::Tcp, 80),
        ],
    );
    let r = service_records(&zone(), 30, &s, &[]);
    assert_eq!(
        encoded(&r),
        vec![
            kv(
                &format!("{P}/kubernetes"),
                r#"{"host":"10.96.0.1","priority":10,"weight":10,"ttl":30}"#
            ),
            kv(
                &format!("{P}/kubernetes/_tcp/_https"),
                r#"{"host":"kubernetes.default.svc.cluster.local.","port":443,"priority":10,"weight":10,"ttl":30}"#
            ),
        ]
    );
    assert_eq!(
        r.ptrs,
        vec![(
            ip("10.96.0.1"),
            "kubernetes.default.svc.cluster.local.".to_string()
        )]
    );
}

#[test]
fn cluster_ip_dual_stack_keeps_cluster_ips_order() {
    let s = svc(
        "dual",
        ServiceKind::ClusterIp(vec![ip("fd00::12"), ip("10.96.0.12")]),
        vec![],
    );
    let r = service_records(&zone(), 7, &s, &[]);
    assert_eq!(
        encoded(&r),
        vec![kv(
            &format!("{P}/dual"),
            r#"[{"host":"fd00::12","priority":10,"weight":10,"ttl":7},{"host":"10.96.0.12","priority":10,"weight":10,"ttl":7}]"#
        )]
    );
    assert_eq!(r.ptrs.len(), 2);
}

#[test]
fn cluster_ip_service_gets_endpoint_names_and_ptrs_for_ready_endpoints() {
    let s = svc("web", ServiceKind::ClusterIp(vec![ip("10.96.0.5")]), vec![]);
    let sl = slice(
        "web",
        vec![port("http", Protocol::Tcp, 8080)],
        &[(&["10.244.1.5"], None)],
    );
    let r = service_records(&zone(), 30, &s, &[&sl]);
    let keys: Vec<_> = r.records.iter().map(|(k, _)| k.as_str()).collect();
    // ClusterIP SRV comes from the service's ports, not the slice's.
    assert_eq!(
        keys,
        vec![format!("{P}/web"), format!("{P}/web/10-244-1-5")]
    );
    assert_eq!(
        r.ptrs,
        vec![
            (ip("10.96.0.5"), "web.default.svc.cluster.local.".into()),
            (
                ip("10.244.1.5"),
                "10-244-1-5.web.default.svc.cluster.local.".into()
            ),
        ]
    );
}

#[test]
fn headless_with_hostnames_dashed_ips_and_srv() {
    let s = svc(
        "nginx",
        ServiceKind::Headless,
        vec![port("http", Protocol::Tcp, 80)],
    );
    let sl = slice(
        "nginx",
        vec![
            port("http", Protocol::Tcp, 8080),
            port("", Protocol::Udp, 53),
        ],
        &[(&["10.244.1.6"], Some("web-1")), (&["10.244.1.5"], None)],
    );
    let r = service_records(&zone(), 30, &s, &[&sl]);
    assert_eq!(
        encoded(&r),
        vec![
            kv(
                &format!("{P}/nginx"),
                r#"[{"host":"10.244.1.5","priority":10,"weight":10,"ttl":30},{"host":"10.244.1.6","priority":10,"weight":10,"ttl":30}]"#
            ),
            kv(
                &format!("{P}/nginx/10-244-1-5"),
                r#"{"host":"10.244.1.5","priority":10,"weight":10,"ttl":30}"#
            ),
            kv(
                &format!("{P}/nginx/_tcp/_http"),
                r#"[{"host":"10-244-1-5.nginx.default.svc.cluster.local.","port":8080,"priority":10,"weight":10,"ttl":30},{"host":"web-1.nginx.default.svc.cluster.local.","port":8080,"priority":10,"weight":10,"ttl":30}]"#
            ),
            kv(
                &format!("{P}/nginx/web-1"),
                r#"{"host":"10.244.1.6","priority":10,"weight":10,"ttl":30}"#
            ),
        ]
    );
    assert_eq!(
        r.ptrs,
        vec![
            (
                ip("10.244.1.5"),
                "10-244-1-5.nginx.default.svc.cluster.local.".into()
            ),
            (
                ip("10.244.1.6"),
                "web-1.nginx.default.svc.cluster.local.".into()
            ),
        ]
    );
}

#[test]
fn headless_without_ready_endpoints_has_no_key() {
    let s = svc(
        "empty",
        ServiceKind::Headless,
        vec![port("http", Protocol::Tcp, 80)],
    );
    let sl = slice("empty", vec![port("http", Protocol::Tcp, 80)], &[]);
    assert_eq!(
        service_records(&zone(), 30, &s, &[&sl]),
        ServiceRecords::default()
    );
    assert_eq!(
        service_records(&zone(), 30, &s, &[]),
        ServiceRecords::default()
    );
}

#[test]
fn headless_dual_stack_hostname_merges_families_across_slices() {
    let s = svc("db", ServiceKind::Headless, vec![]);
    let v4 = slice(
        "db",
        vec![port("pg", Protocol::Tcp, 5432)],
        &[(&["10.0.0.2"], Some("db-0"))],
    );
    let mut v6 = slice(
        "db",
        vec![port("pg", Protocol::Tcp, 5432)],
        &[(&["fd00::2"], Some("db-0"))],
    );
    v6.id.name = "db-v6".into();
    let r = service_records(&zone(), 30, &s, &[&v4, &v6]);
    let enc = encoded(&r);
    assert!(enc.contains(&kv(
        &format!("{P}/db/db-0"),
        r#"[{"host":"10.0.0.2","priority":10,"weight":10,"ttl":30},{"host":"fd00::2","priority":10,"weight":10,"ttl":30}]"#
    )));
    // One SRV record per endpoint name, not per address.
    assert!(enc.contains(&kv(
        &format!("{P}/db/_tcp/_pg"),
        r#"{"host":"db-0.db.default.svc.cluster.local.","port":5432,"priority":10,"weight":10,"ttl":30}"#
    )));
}

#[test]
fn ipv6_endpoint_without_hostname_uses_the_dashed_address() {
    let s = svc("v6", ServiceKind::Headless, vec![]);
    let sl = slice("v6", vec![], &[(&["fd00::1"], None), (&["::1"], None)]);
    let r = service_records(&zone(), 30, &s, &[&sl]);
    let keys: Vec<_> = r.records.iter().map(|(k, _)| k.clone()).collect();
    assert!(keys.contains(&format!("{P}/v6/fd00--1")));
    assert!(keys.contains(&format!("{P}/v6/0--1")));
}

#[test]
fn external_name() {
    let s = svc(
        "ext",
        ServiceKind::ExternalName("www.example.com".into()),
        vec![port("http", Protocol::Tcp, 80)],
    );
    let r = service_records(&zone(), 30, &s, &[]);
    assert_eq!(
        encoded(&r),
        vec![kv(
            &format!("{P}/ext"),
            r#"{"host":"www.example.com","ttl":30}"#
        )]
    );
    assert!(r.ptrs.is_empty());
}

#[test]
fn names_are_lower_cased_in_keys() {
    let mut s = svc(
        "Web",
        ServiceKind::ClusterIp(vec![ip("10.0.0.1")]),
        vec![port("HTTP", Protocol::Udp, 80)],
    );
    s.id.namespace = "Prod".into();
    let r = service_records(&zone(), 30, &s, &[]);
    assert_eq!(r.records[0].0, "/skydns/local/cluster/svc/prod/web");
    assert_eq!(
        r.records[1].0,
        "/skydns/local/cluster/svc/prod/web/_udp/_http"
    );
}

#[test]
fn pod_ptr_and_version_records() {
    let z = zone();
    let (k, v) = pod_record(&z, 30, "default", ip("10.244.1.5"));
    assert_eq!(k, "/skydns/local/cluster/pod/default/10-244-1-5");
    assert_eq!(
        encode_value(&v),
        r#"{"host":"10.244.1.5","priority":10,"weight":10,"ttl":30}"#
    );
    let (k, v) = ptr_record(
        &z,
        ip("10.244.1.5"),
        [
            "b.x.default.svc.cluster.local.",
            "a.y.default.svc.cluster.local.",
        ],
    );
    assert_eq!(k, "/skydns/arpa/in-addr/10/244/1/5");
    assert_eq!(
        encode_value(&v),
        r#"[{"host":"a.y.default.svc.cluster.local."},{"host":"b.x.default.svc.cluster.local."}]"#
    );
    assert!(z.owns_ptr_value(&v));
    let (k, v) = dns_version(&z);
    assert_eq!(k, "/skydns/local/cluster/dns-version");
    assert_eq!(encode_value(&v), r#"{"text":"1.1.0"}"#);
}

#[test]
fn huge_headless_services_are_capped_at_the_value_limit() {
    let s = svc("big", ServiceKind::Headless, vec![]);
    let addrs: Vec<String> = (0..5000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string())
        .collect();
    let eps: Vec<(&[&str], Option<&str>)> = Vec::new();
    let mut sl = slice("big", vec![], &eps);
    sl.groups[0].endpoints = addrs
        .iter()
        .map(|a| SlimEndpoint {
            addresses: vec![ip(a)],
            hostname: None,
        })
        .collect();
    let r = service_records(&zone(), 30, &s, &[&sl]);
    let (_, svc_records) = r
        .records
        .iter()
        .find(|(k, _)| k == &format!("{P}/big"))
        .unwrap();
    assert_eq!(svc_records.len(), MAX_RECORDS_PER_VALUE);
}
