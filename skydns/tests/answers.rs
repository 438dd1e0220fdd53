//! records.md §4 as a table: real etcd holds the records, skydns answers, a real DNS client
//! (hickory-proto over UDP and TCP) checks rcode, answers and the SOA in authority.

mod common;

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport, TRANSPORTS};
use test_support::upstream::{FakeUpstream, Mode};
use test_support::EtcdProcess;

const Z: &str = "kube.local";

/// (etcd key under /skydns/, value)
const RECORDS: &[(&str, &str)] = &[
    (
        "local/kube/svc/default/mysql-service",
        r#"{"host":"10.254.162.44","ttl":30}"#,
    ),
    (
        "local/kube/svc/default/mysql-service/_tcp/_mysql",
        r#"{"host":"mysql-service.default.svc.kube.local.","port":3306,"priority":10,"weight":10,"ttl":30}"#,
    ),
    (
        "local/kube/svc/default/dual",
        r#"[{"host":"10.0.0.2","ttl":30},{"host":"fd00::2","ttl":30}]"#,
    ),
    (
        "local/kube/svc/default/nginx",
        r#"[{"host":"10.244.1.5"},{"host":"10.244.1.6"}]"#,
    ),
    (
        "local/kube/svc/default/nginx/web-0",
        r#"{"host":"10.244.1.5"}"#,
    ),
    (
        "local/kube/svc/default/nginx/web-1",
        r#"{"host":"10.244.1.6"}"#,
    ),
    (
        "local/kube/svc/default/nginx/_tcp/_http",
        r#"[{"host":"web-0.nginx.default.svc.kube.local.","port":80,"priority":10,"weight":10},{"host":"web-1.nginx.default.svc.kube.local.","port":80,"priority":10,"weight":10}]"#,
    ),
    (
        "local/kube/svc/default/ext",
        r#"{"host":"www.example.com","ttl":30}"#,
    ),
    (
        "local/kube/svc/default/alias",
        r#"{"host":"mysql-service.default.svc.kube.local."}"#,
    ),
    (
        "local/kube/svc/default/loop-a",
        r#"{"host":"loop-b.default.svc.kube.local."}"#,
    ),
    (
        "local/kube/svc/default/loop-b",
        r#"{"host":"loop-a.default.svc.kube.local."}"#,
    ),
    ("local/kube/svc/default/broken", r#"{"host":"#),
    ("local/kube/svc/default/badtype", r#"{"host":5}"#),
    ("local/kube/dns-version", r#"{"text":"1.1.0"}"#),
    (
        "local/kube/pod/default/10-244-1-5",
        r#"{"host":"10.244.1.5"}"#,
    ),
    (
        "arpa/in-addr/10/254/162/44",
        r#"[{"host":"mysql-service.default.svc.kube.local."}]"#,
    ),
    (
        "arpa/ip6/f/d/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/2",
        r#"[{"host":"dual.default.svc.kube.local."}]"#,
    ),
    ("local/kube/dns/ns/ns1", r#"{"host":"10.0.0.53"}"#),
    ("local/kube/skydns/east/web1", r#"{"host":"10.1.0.1"}"#),
    ("local/kube/skydns/east/web2", r#"{"host":"10.1.0.2"}"#),
    ("local/kube/skydns/west/web3", r#"{"host":"10.1.0.3"}"#),
    ("local/kube/skydns/east/_hidden/x", r#"{"host":"10.9.9.9"}"#),
    (
        "local/kube/mail",
        r#"{"host":"10.2.0.1","mail":true,"priority":20}"#,
    ),
    ("local/kube/txt", r#"{"text":"hello world"}"#),
    (
        "local/kube/srvs/a",
        r#"{"host":"10.3.0.1","port":80,"weight":30}"#,
    ),
    (
        "local/kube/srvs/b",
        r#"{"host":"10.3.0.2","port":80,"weight":10}"#,
    ),
    (
        "local/kube/srvs/c",
        r#"{"host":"10.3.0.3","port":81,"priority":20}"#,
    ),
];

struct Case {
    name: &'static str,
    rtype: RecordType,
    rcode: ResponseCode,
    /// Rendered answers, sorted ("A 10.0.0.1", "CNAME x.", "SRV 10 100 80 t.").
    answers: &'static [&'static str],
    /// SOA expected in authority.
    soa: bool,
    /// Rendered additional records that must be present.
    additional: &'static [&'static str],
}

const fn case(
    name: &'static str,
    rtype: RecordType,
    rcode: ResponseCode,
    answers: &'static [&'static str],
    soa: bool,
) -> Case {
    Case {
        name,
        rtype,
        rcode,
        answers,
        soa,
        additional: &[],
    }
}

use RecordType::*;
use ResponseCode::{NXDomain, NoError, Refused};

fn cases() -> Vec<Case> {
    vec![
        // 1. value at key(N): A, case-insensitive, dual stack
        case(
            "mysql-service.default.svc.kube.local.",
            A,
            NoError,
            &["A 10.254.162.44"],
            false,
        ),
        case(
            "MySQL-Service.DEFAULT.svc.Kube.Local.",
            A,
            NoError,
            &["A 10.254.162.44"],
            false,
        ),
        case(
            "dual.default.svc.kube.local.",
            A,
            NoError,
            &["A 10.0.0.2"],
            false,
        ),
        case(
            "dual.default.svc.kube.local.",
            AAAA,
            NoError,
            &["AAAA fd00::2"],
            false,
        ),
        // NODATA: name exists, type absent
        case(
            "mysql-service.default.svc.kube.local.",
            AAAA,
            NoError,
            &[],
            true,
        ),
        case(
            "mysql-service.default.svc.kube.local.",
            TXT,
            NoError,
            &[],
            true,
        ),
        case(
            "mysql-service.default.svc.kube.local.",
            MX,
            NoError,
            &[],
            true,
        ),
        // SRV per named port, at the port name and at the service name (Kubernetes trees)
        Case {
            additional: &["A 10.254.162.44"],
            ..case(
                "_mysql._tcp.mysql-service.default.svc.kube.local.",
                SRV,
                NoError,
                &["SRV 10 100 3306 mysql-service.default.svc.kube.local."],
                false,
            )
        },
        case(
            "mysql-service.default.svc.kube.local.",
            SRV,
            NoError,
            &["SRV 10 100 3306 mysql-service.default.svc.kube.local."],
            false,
        ),
        // headless: all endpoints; endpoint names; SRV per endpoint with glue; no port-0 SRV
        case(
            "nginx.default.svc.kube.local.",
            A,
            NoError,
            &["A 10.244.1.5", "A 10.244.1.6"],
            false,
        ),
        case(
            "web-0.nginx.default.svc.kube.local.",
            A,
            NoError,
            &["A 10.244.1.5"],
            false,
        ),
        case(
            "Web-0.NGINX.default.svc.kube.local.",
            A,
            NoError,
            &["A 10.244.1.5"],
            false,
        ),
        case(
            "web-2.nginx.default.svc.kube.local.",
            A,
            NXDomain,
            &[],
            true,
        ),
        Case {
            additional: &["A 10.244.1.5", "A 10.244.1.6"],
            ..case(
                "_http._tcp.nginx.default.svc.kube.local.",
                SRV,
                NoError,
                &[
                    "SRV 10 50 80 web-0.nginx.default.svc.kube.local.",
                    "SRV 10 50 80 web-1.nginx.default.svc.kube.local.",
                ],
                false,
            )
        },
        case(
            "web-0.nginx.default.svc.kube.local.",
            SRV,
            NoError,
            &[],
            true,
        ),
        // CNAME: ExternalName chased upstream; in-zone alias chased; loops terminate
        case(
            "ext.default.svc.kube.local.",
            A,
            NoError,
            &["A 203.0.113.10", "CNAME www.example.com."],
            false,
        ),
        case(
            "alias.default.svc.kube.local.",
            A,
            NoError,
            &[
                "A 10.254.162.44",
                "CNAME mysql-service.default.svc.kube.local.",
            ],
            false,
        ),
        case(
            "alias.default.svc.kube.local.",
            CNAME,
            NoError,
            &["CNAME mysql-service.default.svc.kube.local."],
            false,
        ),
        case(
            "loop-a.default.svc.kube.local.",
            A,
            NoError,
            &[
                "CNAME loop-a.default.svc.kube.local.",
                "CNAME loop-b.default.svc.kube.local.",
            ],
            false,
        ),
        // schema version, pod records
        case(
            "dns-version.kube.local.",
            TXT,
            NoError,
            &["TXT 1.1.0"],
            false,
        ),
        case(
            "10-244-1-5.default.pod.kube.local.",
            A,
            NoError,
            &["A 10.244.1.5"],
            false,
        ),
        // empty non-terminals of the Kubernetes trees are NODATA, never a dump
        case("svc.kube.local.", A, NoError, &[], true),
        case("default.svc.kube.local.", A, NoError, &[], true),
        case("default.svc.kube.local.", SRV, NoError, &[], true),
        case("pod.kube.local.", A, NoError, &[], true),
        case("kube.local.", A, NoError, &[], true),
        case("nosuchns.svc.kube.local.", A, NXDomain, &[], true),
        case(
            "www.google.com.default.svc.kube.local.",
            A,
            NXDomain,
            &[],
            true,
        ),
        case("nope.kube.local.", A, NXDomain, &[], true),
        // apex SOA and NS
        case(
            "kube.local.",
            NS,
            NoError,
            &["NS ns1.ns.dns.kube.local."],
            false,
        ),
        // PTR, IPv4 and IPv6
        case(
            "44.162.254.10.in-addr.arpa.",
            PTR,
            NoError,
            &["PTR mysql-service.default.svc.kube.local."],
            false,
        ),
        case(
            "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            PTR,
            NoError,
            &["PTR dual.default.svc.kube.local."],
            false,
        ),
        // generic SkyDNS: directory union (skipping _ labels), wildcards, MX, TXT, SRV weights
        case(
            "east.skydns.kube.local.",
            A,
            NoError,
            &["A 10.1.0.1", "A 10.1.0.2"],
            false,
        ),
        case(
            "skydns.kube.local.",
            A,
            NoError,
            &["A 10.1.0.1", "A 10.1.0.2", "A 10.1.0.3"],
            false,
        ),
        case(
            "*.east.skydns.kube.local.",
            A,
            NoError,
            &["A 10.1.0.1", "A 10.1.0.2"],
            false,
        ),
        case(
            "web1.*.skydns.kube.local.",
            A,
            NoError,
            &["A 10.1.0.1"],
            false,
        ),
        case(
            "any.west.skydns.kube.local.",
            A,
            NoError,
            &["A 10.1.0.3"],
            false,
        ),
        Case {
            additional: &["A 10.2.0.1"],
            ..case(
                "mail.kube.local.",
                MX,
                NoError,
                &["MX 20 mail.kube.local."],
                false,
            )
        },
        case("txt.kube.local.", TXT, NoError, &["TXT hello world"], false),
        case(
            "srvs.kube.local.",
            SRV,
            NoError,
            &[
                "SRV 10 25 80 b.srvs.kube.local.",
                "SRV 10 75 80 a.srvs.kube.local.",
                "SRV 20 100 81 c.srvs.kube.local.",
            ],
            false,
        ),
        // malformed values are skipped: the name does not exist
        case("broken.default.svc.kube.local.", A, NXDomain, &[], true),
        case("badtype.default.svc.kube.local.", A, NXDomain, &[], true),
        // ANY is refused (RFC 8482 allows it; SkyDNS did it)
        case(
            "mysql-service.default.svc.kube.local.",
            ANY,
            Refused,
            &[],
            false,
        ),
        // outside the zone: forwarded
        case("www.example.com.", A, NoError, &["A 203.0.113.10"], false),
        case("missing.example.com.", A, NXDomain, &[], true),
    ]
}

async fn setup() -> (EtcdProcess, FakeUpstream, common::Sky) {
    let etcd = EtcdProcess::start().await.expect("etcd");
    let mut client = etcd.client().await.expect("client");
    for (k, v) in RECORDS {
        common::put(&mut client, &format!("/skydns/{k}"), v).await;
    }
    let upstream = FakeUpstream::start(Mode::Answer).await.expect("upstream");
    upstream.add_a("www.example.com", "203.0.113.10".parse().unwrap(), 300);
    let sky = common::start_skydns(&etcd.endpoint(), Z, Some(upstream.addr()), &[]).await;
    wait_ready(&sky).await;
    (etcd, upstream, sky)
}

async fn wait_ready(sky: &common::Sky) {
    test_support::eventually(Duration::from_secs(10), "skydns ready", || async {
        (common::http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_rule_of_the_contract_over_udp_and_tcp() {
    let (_etcd, _up, sky) = setup().await;
    let mut failures = Vec::new();
    for transport in TRANSPORTS {
        for c in cases() {
            let msg = match dns::query(sky.dns, c.name, c.rtype, transport).await {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{transport:?} {} {}: {e}", c.name, c.rtype));
                    continue;
                }
            };
            let got = dns::answers(&msg);
            let mut want: Vec<String> = c.answers.iter().map(|s| s.to_string()).collect();
            want.sort();
            let soa = dns::has_soa(&msg);
            let additional: Vec<String> = msg
                .additionals
                .iter()
                .map(|r| format!("{} {}", r.record_type(), r.data))
                .collect();
            let missing_glue: Vec<&&str> = c
                .additional
                .iter()
                .filter(|a| !additional.iter().any(|g| g == *a))
                .collect();
            if dns::rcode(&msg) != c.rcode
                || got != want
                || soa != c.soa
                || !missing_glue.is_empty()
            {
                failures.push(format!(
                    "{transport:?} {} {}: got {} {got:?} soa={soa} additional={additional:?}; want {} {want:?} soa={} additional={:?}",
                    c.name,
                    c.rtype,
                    dns::rcode(&msg),
                    c.rcode,
                    c.soa,
                    c.additional
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    sky.stop().await;
}

#[tokio::test]
async fn answers_keep_the_question_case_and_ttl() {
    let (_etcd, _up, sky) = setup().await;
    let msg = dns::query(
        sky.dns,
        "MySQL-Service.DEFAULT.svc.Kube.Local.",
        A,
        Transport::Udp,
    )
    .await
    .unwrap();
    assert_eq!(msg.answers.len(), 1);
    assert_eq!(
        msg.answers[0].name.to_ascii(),
        "MySQL-Service.DEFAULT.svc.Kube.Local."
    );
    assert_eq!(msg.answers[0].ttl, 30);
    assert!(msg.metadata.authoritative);
    // Records without a ttl get the server default (30).
    let msg = dns::query(
        sky.dns,
        "web-0.nginx.default.svc.kube.local.",
        A,
        Transport::Udp,
    )
    .await
    .unwrap();
    assert_eq!(msg.answers[0].ttl, 30);
    // The SOA: ns.dns.Z., hostmaster.Z., serial = etcd revision (non-zero), negative TTL.
    let msg = dns::query(sky.dns, "kube.local.", SOA, Transport::Udp)
        .await
        .unwrap();
    let soa = msg.answers[0].data.to_string();
    assert!(
        soa.starts_with("ns.dns.kube.local. hostmaster.kube.local. "),
        "{soa}"
    );
    assert!(
        !soa.contains(" 0 28800"),
        "serial is the etcd revision: {soa}"
    );
    sky.stop().await;
}

#[tokio::test]
async fn changes_and_deletes_in_etcd_show_up_in_the_next_answers() {
    let (etcd, _up, sky) = setup().await;
    let mut client = etcd.client().await.unwrap();
    let name = "mysql-service.default.svc.kube.local.";
    // change
    common::put(
        &mut client,
        "/skydns/local/kube/svc/default/mysql-service",
        r#"{"host":"10.254.0.99"}"#,
    )
    .await;
    test_support::eventually(Duration::from_secs(5), "changed A", || async {
        let m = dns::query(sky.dns, name, A, Transport::Udp).await.ok()?;
        (dns::answers(&m) == vec!["A 10.254.0.99"]).then_some(())
    })
    .await;
    // add a new service
    common::put(
        &mut client,
        "/skydns/local/kube/svc/default/new",
        r#"{"host":"10.254.0.100"}"#,
    )
    .await;
    test_support::eventually(Duration::from_secs(5), "new A", || async {
        let m = dns::query(sky.dns, "new.default.svc.kube.local.", A, Transport::Tcp)
            .await
            .ok()?;
        (dns::answers(&m) == vec!["A 10.254.0.100"]).then_some(())
    })
    .await;
    // delete: the name goes, but the SRV below it keeps the name an empty non-terminal (NODATA)
    client
        .delete("/skydns/local/kube/svc/default/mysql-service", None)
        .await
        .unwrap();
    test_support::eventually(Duration::from_secs(5), "deleted A", || async {
        let m = dns::query(sky.dns, name, A, Transport::Udp).await.ok()?;
        (m.answers.is_empty() && dns::rcode(&m) == NoError).then_some(())
    })
    .await;
    client
        .delete(
            "/skydns/local/kube/svc/default/mysql-service",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    test_support::eventually(
        Duration::from_secs(5),
        "NXDOMAIN after subtree delete",
        || async {
            let m = dns::query(sky.dns, name, A, Transport::Udp).await.ok()?;
            (dns::rcode(&m) == NXDomain).then_some(())
        },
    )
    .await;
    // a malformed update removes the name but never its neighbours
    common::put(
        &mut client,
        "/skydns/local/kube/svc/default/nginx/web-0",
        "not json",
    )
    .await;
    test_support::eventually(
        Duration::from_secs(5),
        "malformed update skipped",
        || async {
            let m = dns::query(
                sky.dns,
                "web-0.nginx.default.svc.kube.local.",
                A,
                Transport::Udp,
            )
            .await
            .ok()?;
            (dns::rcode(&m) == NXDomain).then_some(())
        },
    )
    .await;
    let m = dns::query(
        sky.dns,
        "web-1.nginx.default.svc.kube.local.",
        A,
        Transport::Udp,
    )
    .await
    .unwrap();
    assert_eq!(dns::answers(&m), vec!["A 10.244.1.6"]);
    let (_, metrics) = common::http_get(sky.http, "/metrics").await;
    let skipped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("skydns_records_skipped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(skipped >= 3.0, "malformed values counted: {skipped}");
    sky.stop().await;
}
