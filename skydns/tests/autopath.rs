//! `--autopath` against a real etcd and the real server: a pod (its address is the client's,
//! 127.0.0.1, recorded by kube2sky's pod tree in `team-a`) asking `<base>.team-a.svc.<zone>`
//! gets the first name of the rest of its search path that exists, as a CNAME plus records.
//! Checked with hickory's client and with glibc's resolver (`getent ahostsv4` in a mount
//! namespace whose /etc/resolv.conf has the pod's search path and `ndots:5`), counting the
//! queries that reach the server for one lookup with autopath off and on.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use clap::Parser;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType::{self, A, CNAME};
use test_support::dns::{self, Transport};
use test_support::upstream::{FakeUpstream, Mode};
use test_support::EtcdProcess;
use tokio_util::sync::CancellationToken;

const DOMAIN: &str = "kube.local";

async fn cluster() -> (EtcdProcess, FakeUpstream) {
    let etcd = EtcdProcess::start().await.expect("etcd");
    let mut c = etcd.client().await.unwrap();
    for (key, value) in [
        // The asking pod, as kube2sky writes it: its address is the test client's.
        (
            "/skydns/local/kube/pod/team-a/127-0-0-1",
            r#"{"host":"127.0.0.1"}"#,
        ),
        ("/skydns/local/kube/svc/other/db", r#"{"host":"10.4.0.1"}"#),
        (
            "/skydns/local/kube/svc/team-a/api",
            r#"{"host":"10.4.0.2"}"#,
        ),
    ] {
        common::put(&mut c, key, value).await;
    }
    let upstream = FakeUpstream::start(Mode::Answer).await.expect("upstream");
    upstream.add_a("www.example.test.", Ipv4Addr::new(192, 0, 2, 7), 300);
    (etcd, upstream)
}

async fn ask(sky: SocketAddr, name: &str, t: RecordType) -> Message {
    dns::query(sky, name, t, Transport::Udp)
        .await
        .unwrap_or_else(|e| panic!("{name} {t}: {e}"))
}

fn rendered(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[tokio::test]
async fn a_pods_search_path_is_walked_server_side() {
    let (etcd, upstream) = cluster().await;
    let up = upstream.addr().to_string();
    let sky = common::start_skydns(
        &etcd.endpoint(),
        DOMAIN,
        None,
        &["--autopath", "--nameservers", &up],
    )
    .await;
    common::ready(&sky).await;

    // A service in another namespace by `<svc>.<ns>`: the pod's first search domain misses,
    // `db.other.svc.kube.local` exists.
    let m = ask(sky.dns, "db.other.team-a.svc.kube.local.", A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        rendered(&m),
        vec![
            "db.other.team-a.svc.kube.local. CNAME db.other.svc.kube.local.",
            "db.other.svc.kube.local. A 10.4.0.1",
        ]
    );
    // An external name: every cluster search domain misses; the bare name is asked upstream.
    let m = ask(sky.dns, "www.example.test.team-a.svc.kube.local.", A).await;
    assert_eq!(
        rendered(&m),
        vec![
            "www.example.test.team-a.svc.kube.local. CNAME www.example.test.",
            "www.example.test. A 192.0.2.7",
        ]
    );
    // Nothing anywhere: the NXDOMAIN the pod asked for (it walks its search path itself).
    let m = ask(sky.dns, "nothing.test.team-a.svc.kube.local.", A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty() && dns::has_soa(&m));
    // A name that exists is answered as it is.
    let m = ask(sky.dns, "api.team-a.svc.kube.local.", A).await;
    assert_eq!(rendered(&m), vec!["api.team-a.svc.kube.local. A 10.4.0.2"]);
    // The client is no pod of team-b: no walk, and the NXDOMAIN is not cached for team-a's
    // identical question (asked next, from the same address, as team-a).
    let m = ask(sky.dns, "db.other.team-b.svc.kube.local.", A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(sky.dns, "db.other.team-a.svc.kube.local.", A).await;
    assert_eq!(dns::rdata_of(&m, CNAME), vec!["db.other.svc.kube.local."]);
    assert_eq!(
        common::metric(&sky, "skydns_autopath_success_total").await,
        3
    );
    sky.stop().await;

    // Off (the default): the same question is NXDOMAIN.
    let sky = common::start_skydns(&etcd.endpoint(), DOMAIN, None, &["--nameservers", &up]).await;
    common::ready(&sky).await;
    let m = ask(sky.dns, "db.other.team-a.svc.kube.local.", A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    sky.stop().await;
}

/// skydns on `addr:53` (glibc's resolver only speaks to port 53).
async fn skydns_on_port_53(
    etcd: &EtcdProcess,
    addr: Ipv4Addr,
    upstream: SocketAddr,
    autopath: bool,
) -> (common::Sky, SocketAddr) {
    let mut argv = vec![
        "skydns".to_string(),
        "--machines".into(),
        etcd.endpoint(),
        "--domain".into(),
        DOMAIN.into(),
        "--nameservers".into(),
        upstream.to_string(),
        "--lameduck".into(),
        "0".into(),
        // Count every query the resolver sends: no answer cache in between.
        "--answer-cache".into(),
        "0".into(),
    ];
    if autopath {
        argv.push("--autopath".into());
    }
    let settings = skydns::Config::try_parse_from(&argv)
        .expect("flags")
        .validate()
        .expect("valid flags");
    let dns = SocketAddr::from((addr, 53));
    let udp = tokio::net::UdpSocket::bind(dns).await.expect("bind :53");
    let tcp = tokio::net::TcpListener::bind(dns)
        .await
        .expect("bind :53/tcp");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(skydns::run(
        settings,
        skydns::Listeners { udp, tcp, http },
        shutdown.clone(),
    ));
    let sky = common::Sky::from_parts(dns, http_addr, shutdown, task);
    common::ready(&sky).await;
    (sky, dns)
}

/// Every request skydns counted (all `system`s).
async fn requests(sky: &common::Sky) -> u64 {
    let (_, body) = common::http_get(sky.http, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("skydns_skydns_dns_request_count_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `getent ahostsv4 <name>` with `resolv` as /etc/resolv.conf (a private mount namespace).
async fn glibc_lookup(resolv: &std::path::Path, name: &str) -> String {
    let out = tokio::process::Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/resolv.conf && exec getent ahostsv4 {name}",
            resolv.display()
        ))
        .output()
        .await
        .expect("unshare");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn glibc_stops_after_one_round_trip() {
    if !is_root() {
        eprintln!("SKIPPED: needs root (port 53, a mount namespace for resolv.conf)");
        return;
    }
    let (etcd, upstream) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for (i, autopath) in [false, true].into_iter().enumerate() {
        let addr = Ipv4Addr::new(127, 53, 0, 1 + i as u8);
        let (sky, _) = skydns_on_port_53(&etcd, addr, upstream.addr(), autopath).await;
        let resolv = dir.path().join(format!("resolv-{i}.conf"));
        std::fs::write(
            &resolv,
            format!(
                "nameserver {addr}\n\
                 search team-a.svc.kube.local svc.kube.local kube.local\n\
                 options ndots:5 attempts:1 timeout:2\n"
            ),
        )
        .unwrap();
        let before = requests(&sky).await;
        let external = glibc_lookup(&resolv, "www.example.test").await;
        assert!(
            external.contains("192.0.2.7"),
            "autopath={autopath}: {external:?}"
        );
        let external_queries = requests(&sky).await - before;
        let before = requests(&sky).await;
        let service = glibc_lookup(&resolv, "db.other").await;
        assert!(
            service.contains("10.4.0.1"),
            "autopath={autopath}: {service:?}"
        );
        let service_queries = requests(&sky).await - before;
        counts.push((external_queries, service_queries));
        sky.stop().await;
    }
    eprintln!(
        "queries per lookup (external, cross-namespace): off {:?}, on {:?}",
        counts[0], counts[1]
    );
    // Off: three search domains miss, then the bare name (external); one miss then the
    // service (cross-namespace). On: one query each.
    assert_eq!(counts[0], (4, 2), "without autopath");
    assert_eq!(counts[1], (1, 1), "with autopath");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
