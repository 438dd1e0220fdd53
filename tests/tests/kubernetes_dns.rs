//! Every row of kubernetes-dns.md (S1–S6, H1–H6, E1, C1, P0, D1, NODATA/NXDOMAIN rules) through
//! the real chain: test API server → kube2sky → etcd → skydns → DNS client (UDP and TCP), then
//! through updates (ClusterIP change, port rename, endpoint readiness, type changes) and deletes,
//! asserting both the DNS answers and the etcd keys.

mod common;

use std::time::Duration;

use common::{Stack, ZONE};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType::{self, *};
use test_support::dns::{self, TRANSPORTS};
use test_support::objects::{
    endpoint, endpoint_slice, pod, port, service_cluster_ip, service_external_name,
    service_headless,
};

const NOERROR: ResponseCode = ResponseCode::NoError;
const NXDOMAIN: ResponseCode = ResponseCode::NXDomain;

/// Wait until `name`/`rtype` answers `rcode` with exactly `want` (rendered, any order) over UDP
/// and TCP; negative answers must carry the SOA.
async fn expect(stack: &Stack, name: &str, rtype: RecordType, rcode: ResponseCode, want: &[&str]) {
    let fqdn = name.replace("$Z", ZONE);
    let mut want: Vec<String> = want.iter().map(|w| w.replace("$Z", ZONE)).collect();
    want.sort();
    let dns_addr = stack.dns;
    let what = format!("{fqdn} {rtype} → {rcode} {want:?}");
    let last = std::sync::Mutex::new(String::new());
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut ok = true;
            for t in TRANSPORTS {
                match dns::query(dns_addr, &fqdn, rtype, t).await {
                    Ok(m) => {
                        let got = dns::answers(&m);
                        let soa_ok = !(m.answers.is_empty()) || dns::has_soa(&m);
                        if dns::rcode(&m) != rcode || got != want || !soa_ok {
                            *last.lock().unwrap() = format!(
                                "{t:?}: {} {got:?} soa={}",
                                dns::rcode(&m),
                                dns::has_soa(&m)
                            );
                            ok = false;
                        }
                    }
                    Err(e) => {
                        *last.lock().unwrap() = format!("{t:?}: {e}");
                        ok = false;
                    }
                }
            }
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "{what}; last seen {}", last.lock().unwrap());
}

fn cluster() -> Vec<serde_json::Value> {
    vec![
        service_cluster_ip(
            "default",
            "kubernetes",
            &["10.96.0.1"],
            &[port("https", 443, "TCP")],
        ),
        service_cluster_ip(
            "default",
            "dual",
            &["10.96.0.20", "2001:db8::20"],
            &[port("http", 80, "TCP"), port("", 8080, "TCP")],
        ),
        service_headless("default", "nginx", &[port("http", 80, "TCP")]),
        endpoint_slice(
            "default",
            "nginx-abc",
            "nginx",
            "IPv4",
            &[
                endpoint(&["10.244.1.5"], Some("web-0"), Some(true)),
                endpoint(&["10.244.1.6"], Some("web-1"), None),
                endpoint(&["10.244.1.7"], Some("web-2"), Some(false)),
            ],
            &[port("http", 80, "TCP")],
        ),
        service_headless("default", "empty", &[port("http", 80, "TCP")]),
        endpoint_slice(
            "default",
            "empty-abc",
            "empty",
            "IPv4",
            &[endpoint(&["10.244.2.9"], None, Some(false))],
            &[port("http", 80, "TCP")],
        ),
        service_external_name("default", "foo", "www.example.com"),
        service_cluster_ip(
            "default",
            "mysvc",
            &["10.96.0.30"],
            &[port("mysql", 3306, "TCP")],
        ),
        endpoint_slice(
            "default",
            "mysvc-abc",
            "mysvc",
            "IPv4",
            &[endpoint(&["10.244.1.5"], None, Some(true))],
            &[port("mysql", 3306, "TCP")],
        ),
        service_headless("default", "hostnames", &[port("http", 80, "TCP")]),
        endpoint_slice(
            "default",
            "hostnames-abc",
            "hostnames",
            "IPv4",
            &[endpoint(&["10.244.3.3"], None, Some(true))],
            &[port("http", 80, "TCP")],
        ),
        pod("default", "web-0", &["10.244.1.5"]),
        pod("default", "hostnames-7c89f997cf-bx2f7", &["10.244.3.3"]),
    ]
}

#[tokio::test]
async fn every_row_of_the_kubernetes_dns_spec() {
    let stack = Stack::start(&[]).await;
    for obj in cluster() {
        stack.api.apply(obj);
    }
    // S1 schema version
    expect(&stack, "dns-version.$Z.", TXT, NOERROR, &["TXT 1.1.0"]).await;
    // S2 ClusterIP A; S3 dual stack AAAA
    expect(
        &stack,
        "kubernetes.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.96.0.1"],
    )
    .await;
    expect(
        &stack,
        "dual.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.96.0.20"],
    )
    .await;
    expect(
        &stack,
        "dual.default.svc.$Z.",
        AAAA,
        NOERROR,
        &["AAAA 2001:db8::20"],
    )
    .await;
    // S4 SRV per named port; unnamed ports get none
    expect(
        &stack,
        "_https._tcp.kubernetes.default.svc.$Z.",
        SRV,
        NOERROR,
        &["SRV 10 100 443 kubernetes.default.svc.$Z."],
    )
    .await;
    expect(
        &stack,
        "dual.default.svc.$Z.",
        SRV,
        NOERROR,
        &["SRV 10 100 80 dual.default.svc.$Z."],
    )
    .await;
    // S5, S6 PTR for ClusterIPs
    expect(
        &stack,
        "1.0.96.10.in-addr.arpa.",
        PTR,
        NOERROR,
        &["PTR kubernetes.default.svc.$Z."],
    )
    .await;
    expect(
        &stack,
        "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        PTR,
        NOERROR,
        &["PTR dual.default.svc.$Z."],
    )
    .await;
    // H1 headless: ready endpoints only (ready unset counts as ready)
    expect(
        &stack,
        "nginx.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5", "A 10.244.1.6"],
    )
    .await;
    // H3 headless without ready endpoints: NXDOMAIN
    expect(&stack, "empty.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    // H4 endpoint names; not-ready endpoint has no name
    expect(
        &stack,
        "web-0.nginx.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5"],
    )
    .await;
    expect(&stack, "web-2.nginx.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    // H5 headless SRV: one per ready endpoint × named port
    expect(
        &stack,
        "_http._tcp.nginx.default.svc.$Z.",
        SRV,
        NOERROR,
        &[
            "SRV 10 50 80 web-0.nginx.default.svc.$Z.",
            "SRV 10 50 80 web-1.nginx.default.svc.$Z.",
        ],
    )
    .await;
    // H6 PTR for endpoint IPs; an IP in two services has two PTRs
    expect(
        &stack,
        "5.1.244.10.in-addr.arpa.",
        PTR,
        NOERROR,
        &[
            "PTR 10-244-1-5.mysvc.default.svc.$Z.",
            "PTR web-0.nginx.default.svc.$Z.",
        ],
    )
    .await;
    expect(
        &stack,
        "6.1.244.10.in-addr.arpa.",
        PTR,
        NOERROR,
        &["PTR web-1.nginx.default.svc.$Z."],
    )
    .await;
    // E1 ExternalName → CNAME, chased upstream
    expect(
        &stack,
        "foo.default.svc.$Z.",
        A,
        NOERROR,
        &["CNAME www.example.com.", "A 203.0.113.10"],
    )
    .await;
    // C1 case-insensitive, question case kept
    expect(
        &stack,
        "Web-0.NGINX.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5"],
    )
    .await;
    let m = dns::query(
        stack.dns,
        &format!("Web-0.NGINX.default.svc.{ZONE}."),
        A,
        dns::Transport::Udp,
    )
    .await
    .unwrap();
    assert_eq!(
        m.answers[0].name.to_ascii(),
        format!("Web-0.NGINX.default.svc.{ZONE}.")
    );
    // P0 pod records
    expect(
        &stack,
        "10-244-1-5.default.pod.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5"],
    )
    .await;
    // D1 pod IP name under a service that selects it
    expect(
        &stack,
        "10-244-1-5.mysvc.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5"],
    )
    .await;
    // A pod whose name is not its hostname is not a DNS name; its dashed IP is
    expect(
        &stack,
        "hostnames-7c89f997cf-bx2f7.hostnames.default.svc.$Z.",
        A,
        NXDOMAIN,
        &[],
    )
    .await;
    expect(
        &stack,
        "10-244-3-3.hostnames.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.3.3"],
    )
    .await;
    // NODATA: name exists, type absent
    expect(&stack, "kubernetes.default.svc.$Z.", AAAA, NOERROR, &[]).await;
    expect(&stack, "kubernetes.default.svc.$Z.", TXT, NOERROR, &[]).await;
    // Empty non-terminals are NODATA, absent names NXDOMAIN
    expect(&stack, "svc.$Z.", A, NOERROR, &[]).await;
    expect(&stack, "default.svc.$Z.", A, NOERROR, &[]).await;
    expect(&stack, "pod.$Z.", A, NOERROR, &[]).await;
    expect(&stack, "nosuch.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    expect(&stack, "www.google.com.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    // Names outside the zone are forwarded
    expect(&stack, "www.example.com.", A, NOERROR, &["A 203.0.113.10"]).await;

    // The etcd keys, exactly as records.md §3 says.
    let dump = stack.etcd_dump().await;
    let get = |k: &str| {
        dump.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("/skydns/local/cluster/svc/default/kubernetes").as_deref(),
        Some(r#"{"host":"10.96.0.1","priority":10,"weight":10,"ttl":30}"#)
    );
    assert_eq!(
        get("/skydns/local/cluster/svc/default/kubernetes/_tcp/_https").as_deref(),
        Some(
            r#"{"host":"kubernetes.default.svc.cluster.local.","port":443,"priority":10,"weight":10,"ttl":30}"#
        )
    );
    assert_eq!(
        get("/skydns/local/cluster/dns-version").as_deref(),
        Some(r#"{"text":"1.1.0"}"#)
    );
    assert!(
        get("/skydns/local/cluster/svc/default/empty").is_none(),
        "no key for a headless service without ready endpoints"
    );
    assert!(
        get("/skydns/local/cluster/svc/default/nginx/web-2").is_none(),
        "not-ready endpoint has no key"
    );
    assert!(get("/skydns/local/cluster/svc/default/dual/_tcp/_").is_none());
    assert!(
        !dump.iter().any(
            |(k, _)| k.starts_with("/skydns/local/cluster/svc/default/dual/_tcp/")
                && !k.ends_with("/_http")
        ),
        "unnamed ports get no SRV key"
    );
    stack.stop().await;
}

#[tokio::test]
async fn updates_and_deletes_follow_the_api() {
    let stack = Stack::start(&[]).await;
    for obj in cluster() {
        stack.api.apply(obj);
    }
    expect(
        &stack,
        "kubernetes.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.96.0.1"],
    )
    .await;

    // ClusterIP change: new A and PTR, old PTR gone.
    stack.api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.2"],
        &[port("https", 443, "TCP")],
    ));
    expect(
        &stack,
        "kubernetes.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.96.0.2"],
    )
    .await;
    expect(
        &stack,
        "2.0.96.10.in-addr.arpa.",
        PTR,
        NOERROR,
        &["PTR kubernetes.default.svc.$Z."],
    )
    .await;
    // The old reverse name is no longer ours: it goes upstream (which says NXDOMAIN).
    expect(&stack, "1.0.96.10.in-addr.arpa.", PTR, NXDOMAIN, &[]).await;

    // Port rename: new SRV name, old one gone.
    stack.api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.2"],
        &[port("api", 443, "TCP")],
    ));
    expect(
        &stack,
        "_api._tcp.kubernetes.default.svc.$Z.",
        SRV,
        NOERROR,
        &["SRV 10 100 443 kubernetes.default.svc.$Z."],
    )
    .await;
    expect(
        &stack,
        "_https._tcp.kubernetes.default.svc.$Z.",
        SRV,
        NXDOMAIN,
        &[],
    )
    .await;

    // Endpoint becomes unready, then ready again.
    let slice = |web1_ready: bool| {
        endpoint_slice(
            "default",
            "nginx-abc",
            "nginx",
            "IPv4",
            &[
                endpoint(&["10.244.1.5"], Some("web-0"), Some(true)),
                endpoint(&["10.244.1.6"], Some("web-1"), Some(web1_ready)),
            ],
            &[port("http", 80, "TCP")],
        )
    };
    stack.api.apply(slice(false));
    expect(
        &stack,
        "nginx.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5"],
    )
    .await;
    expect(&stack, "web-1.nginx.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    expect(
        &stack,
        "_http._tcp.nginx.default.svc.$Z.",
        SRV,
        NOERROR,
        &["SRV 10 100 80 web-0.nginx.default.svc.$Z."],
    )
    .await;
    stack.api.apply(slice(true));
    expect(
        &stack,
        "web-1.nginx.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.6"],
    )
    .await;

    // Type changes: ClusterIP → headless → ExternalName → ClusterIP.
    stack.api.apply(service_headless(
        "default",
        "mysvc",
        &[port("mysql", 3306, "TCP")],
    ));
    expect(
        &stack,
        "mysvc.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.244.1.5"],
    )
    .await;
    stack
        .api
        .apply(service_external_name("default", "mysvc", "www.example.com"));
    expect(
        &stack,
        "mysvc.default.svc.$Z.",
        A,
        NOERROR,
        &["CNAME www.example.com.", "A 203.0.113.10"],
    )
    .await;
    stack.api.apply(service_cluster_ip(
        "default",
        "mysvc",
        &["10.96.0.31"],
        &[port("mysql", 3306, "TCP")],
    ));
    expect(
        &stack,
        "mysvc.default.svc.$Z.",
        A,
        NOERROR,
        &["A 10.96.0.31"],
    )
    .await;

    // Delete: every record of the service goes.
    stack.api.delete("v1", "Service", "default", "nginx");
    stack.api.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "default",
        "nginx-abc",
    );
    expect(&stack, "nginx.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    expect(&stack, "web-0.nginx.default.svc.$Z.", A, NXDOMAIN, &[]).await;
    expect(
        &stack,
        "_http._tcp.nginx.default.svc.$Z.",
        SRV,
        NXDOMAIN,
        &[],
    )
    .await;
    let dump = stack.etcd_dump().await;
    assert!(
        !dump
            .iter()
            .any(|(k, _)| k.starts_with("/skydns/local/cluster/svc/default/nginx")),
        "no nginx keys left: {dump:?}"
    );
    // 10.244.1.6 belonged only to nginx: its PTR is gone; 10.244.1.5 still has mysvc? (mysvc is ClusterIP
    // again, its endpoint name keeps the PTR).
    assert!(
        !dump
            .iter()
            .any(|(k, _)| k == "/skydns/arpa/in-addr/10/244/1/6"),
        "{dump:?}"
    );
    stack.stop().await;
}
