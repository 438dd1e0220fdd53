//! skydns as the cluster's resolver for everything outside the zone (real etcd, real sockets,
//! scriptable upstreams): per-zone upstreams from flags and from a kube-dns ConfigMap
//! directory, reloaded live, bad files kept out; forwarding loops (one hop through a relay,
//! two skydns forwarding to each other, our own address) detected with bounded traffic; stale
//! answers when the upstreams die, and not once `--serve-stale` has passed; fail-fast past a
//! dead upstream; prefetch keeping a hot name warm.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::upstream::{bind_pair, FakeUpstream, Mode};
use test_support::EtcdProcess;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const Z: &str = "kube.local";

async fn ready(sky: &common::Sky) {
    test_support::eventually(Duration::from_secs(10), "ready", || async {
        (common::http_get(sky.http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
}

/// Sum of a metric's samples whose line starts with `prefix` (name and, optionally, labels).
async fn metric(http: SocketAddr, prefix: &str) -> f64 {
    let (_, body) = common::http_get(http, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn a(sky: &common::Sky, name: &str) -> hickory_proto::op::Message {
    dns::query(sky.dns, name, RecordType::A, Transport::Udp)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn upstream_with(name: &str, ip: &str) -> FakeUpstream {
    let u = FakeUpstream::start(Mode::Answer).await.unwrap();
    u.add_a(name, ip.parse().unwrap(), 300);
    u
}

/// Write a ConfigMap volume as the kubelet does: files in a timestamped directory, `..data`
/// pointing at it, and each key a symlink through `..data`; an update swaps `..data`.
fn write_configmap(dir: &Path, files: &[(&str, &str)]) {
    let stamp = format!("..{}", rand_suffix());
    let target = dir.join(&stamp);
    std::fs::create_dir_all(&target).unwrap();
    for (k, v) in files {
        std::fs::write(target.join(k), v).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (k, _) in files {
        let link = dir.join(k);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{k}"), &link).unwrap();
        }
    }
}

fn rand_suffix() -> String {
    format!(
        "{}",
        Instant::now().elapsed().as_nanos() + rand::random::<u32>() as u128
    )
}

#[tokio::test]
async fn zones_route_to_their_upstreams_from_flags_and_a_configmap() {
    let etcd = EtcdProcess::start().await.unwrap();
    let default = upstream_with("www.example.com", "192.0.2.1").await;
    let acme = upstream_with("x.acme.local", "192.0.2.2").await;
    let dev = upstream_with("x.dev.acme.local", "192.0.2.3").await;
    let reverse = FakeUpstream::start(Mode::Answer).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_configmap(
        dir.path(),
        &[(
            "stubDomains",
            &format!(
                r#"{{"dev.acme.local": ["{}"], "10.in-addr.arpa": ["{}"]}}"#,
                dev.addr(),
                reverse.addr()
            ),
        )],
    );
    let stub = format!("acme.local={}", acme.addr());
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        Some(default.addr()),
        &[
            "--stub-domain",
            &stub,
            "--config-dir",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    ready(&sky).await;
    assert_eq!(
        dns::answers(&a(&sky, "www.example.com.").await),
        vec!["A 192.0.2.1"]
    );
    assert_eq!(
        dns::answers(&a(&sky, "x.acme.local.").await),
        vec!["A 192.0.2.2"]
    );
    assert_eq!(
        dns::answers(&a(&sky, "X.Dev.Acme.Local.").await),
        vec!["A 192.0.2.3"]
    );
    // The default upstream knows nothing of the stub zones' names: each went to its own.
    let r = a(&sky, "x.dev.acme.local.").await;
    assert!(r
        .answers
        .iter()
        .all(|r| r.name.to_ascii() == "x.dev.acme.local."));
    let before = reverse.queries();
    let r = dns::query(
        sky.dns,
        "4.3.2.10.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await
    .unwrap();
    assert_eq!(dns::rcode(&r), ResponseCode::NXDomain);
    assert_eq!(
        reverse.queries(),
        before + 1,
        "reverse zone routed to its upstream"
    );
    // The cluster zone is never forwarded.
    let before = (default.queries(), acme.queries(), dev.queries());
    let r = a(&sky, "nothing.svc.kube.local.").await;
    assert_eq!(dns::rcode(&r), ResponseCode::NXDomain);
    assert_eq!((default.queries(), acme.queries(), dev.queries()), before);
    sky.stop().await;

    // Naming the cluster zone as a stub domain is refused before anything binds.
    let e = skydns::Config::try_parse_from([
        "skydns",
        "--domain",
        Z,
        "--stub-domain",
        "svc.kube.local=10.0.0.1",
    ])
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("cluster zone"), "{e}");
}

#[tokio::test]
async fn a_configmap_change_applies_within_five_seconds_and_a_bad_file_keeps_the_last_good() {
    let etcd = EtcdProcess::start().await.unwrap();
    let first = upstream_with("x.acme.local", "192.0.2.10").await;
    let second = upstream_with("x.acme.local", "192.0.2.20").await;
    let dir = tempfile::tempdir().unwrap();
    let stubs = |u: &FakeUpstream| format!(r#"{{"acme.local": ["{}"]}}"#, u.addr());
    write_configmap(dir.path(), &[("stubDomains", &stubs(&first))]);
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        None,
        &[
            "--nameservers",
            &first.addr().to_string(),
            "--config-dir",
            dir.path().to_str().unwrap(),
            "--rcache",
            "0",
        ],
    )
    .await;
    ready(&sky).await;
    assert_eq!(
        dns::answers(&a(&sky, "x.acme.local.").await),
        vec!["A 192.0.2.10"]
    );

    // A flow of queries during the change: none is dropped.
    let stop = CancellationToken::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let flow = {
        let (stop, failures, server) = (stop.clone(), failures.clone(), sky.dns);
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                match dns::query(server, "x.acme.local.", RecordType::A, Transport::Udp).await {
                    Ok(r) if !r.answers.is_empty() => {}
                    _ => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };
    let changed = Instant::now();
    write_configmap(dir.path(), &[("stubDomains", &stubs(&second))]);
    test_support::eventually(
        Duration::from_secs(5),
        "routed to the new upstream",
        || async {
            (dns::answers(&a(&sky, "x.acme.local.").await) == vec!["A 192.0.2.20"]).then_some(())
        },
    )
    .await;
    eprintln!("config change in effect after {:?}", changed.elapsed());

    // A bad file: the last good configuration keeps serving; counted once.
    write_configmap(
        dir.path(),
        &[("stubDomains", r#"{"acme.local": ["not an address"]}"#)],
    );
    test_support::eventually(Duration::from_secs(5), "bad file counted", || async {
        (metric(sky.http, "skydns_config_errors_total").await >= 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        dns::answers(&a(&sky, "x.acme.local.").await),
        vec!["A 192.0.2.20"]
    );
    assert_eq!(
        metric(sky.http, "skydns_config_errors_total").await,
        1.0,
        "one line per bad file"
    );
    stop.cancel();
    let sent = flow.await.unwrap();
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "of {sent} queries during the changes"
    );

    // Our own address as an upstream: refused at once.
    write_configmap(
        dir.path(),
        &[
            ("upstreamNameservers", &format!(r#"["{}"]"#, sky.dns)),
            ("stubDomains", "{}"),
        ],
    );
    test_support::eventually(Duration::from_secs(5), "own address refused", || async {
        let (_, body) = common::http_get(sky.http, "/readiness").await;
        let _ = body;
        (metric(sky.http, "skydns_config_errors_total").await >= 2.0).then_some(())
    })
    .await;
    sky.stop().await;

    // Start-up with a bad file fails, naming the file and the problem.
    write_configmap(dir.path(), &[("stubDomains", "{nope")]);
    let e = skydns::Config::try_parse_from([
        "skydns",
        "--domain",
        Z,
        "--config-dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap()
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("stubDomains") && e.contains("not a JSON object"),
        "{e}"
    );
}

/// A UDP relay to `to`: every datagram is passed on from a fresh socket and the reply sent
/// back; counts what it relayed.
async fn relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            c.fetch_add(1, Ordering::SeqCst);
            let packet = buf[..n].to_vec();
            let sock = sock.clone();
            tokio::spawn(async move {
                let out = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let _ = out.send_to(&packet, to).await;
                let mut b = vec![0u8; 65535];
                if let Ok(Ok((m, _))) =
                    tokio::time::timeout(Duration::from_secs(3), out.recv_from(&mut b)).await
                {
                    let _ = sock.send_to(&b[..m], peer).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_loop_through_a_relay_is_detected_and_answered_servfail_at_once() {
    let etcd = EtcdProcess::start().await.unwrap();
    // The relay's target is skydns itself: bind skydns's sockets first.
    let (udp, tcp) = bind_pair().await.unwrap();
    let dns_addr = udp.local_addr().unwrap();
    let (relay_addr, relayed) = relay(dns_addr).await;
    let sky = start_on(&etcd.endpoint(), udp, tcp, &relay_addr.to_string()).await;
    ready(&sky).await;
    let label = format!("skydns_forward_loop{{to=\"{relay_addr}\"}}");
    test_support::eventually(Duration::from_secs(5), "loop detected", || async {
        (metric(sky.http, &label).await == 1.0).then_some(())
    })
    .await;
    let (_, body) = common::http_get(sky.http, "/readiness").await;
    assert!(body.contains(&relay_addr.to_string()), "{body}");
    let before = relayed.load(Ordering::SeqCst);
    for i in 0..10 {
        let started = Instant::now();
        let r = a(&sky, &format!("q{i}.example.com.")).await;
        assert_eq!(dns::rcode(&r), ResponseCode::ServFail);
        assert!(started.elapsed() < Duration::from_millis(300));
    }
    assert_eq!(
        relayed.load(Ordering::SeqCst),
        before,
        "nothing more sent through the loop"
    );
    sky.stop().await;
}

async fn start_on(
    etcd: &str,
    udp: UdpSocket,
    tcp: tokio::net::TcpListener,
    upstream: &str,
) -> common::Sky {
    test_support::init_test_tracing();
    let settings = skydns::Config::try_parse_from([
        "skydns",
        "--lameduck",
        "0",
        "--machines",
        etcd,
        "--domain",
        Z,
        "--rtimeout",
        "500ms",
        "--nameservers",
        upstream,
    ])
    .unwrap()
    .validate()
    .unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (dns, http_addr) = (udp.local_addr().unwrap(), http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(skydns::run(
        settings,
        skydns::Listeners { udp, tcp, http },
        shutdown.clone(),
    ));
    common::Sky::from_parts(dns, http_addr, shutdown, task)
}

#[tokio::test]
async fn two_replicas_forwarding_to_each_other_find_the_loop_with_bounded_traffic() {
    let etcd = EtcdProcess::start().await.unwrap();
    let (udp_a, tcp_a) = bind_pair().await.unwrap();
    let (udp_b, tcp_b) = bind_pair().await.unwrap();
    let (addr_a, addr_b) = (udp_a.local_addr().unwrap(), udp_b.local_addr().unwrap());
    let sky_a = start_on(&etcd.endpoint(), udp_a, tcp_a, &addr_b.to_string()).await;
    let sky_b = start_on(&etcd.endpoint(), udp_b, tcp_b, &addr_a.to_string()).await;
    ready(&sky_a).await;
    ready(&sky_b).await;
    for (sky, other) in [(&sky_a, addr_b), (&sky_b, addr_a)] {
        let label = format!("skydns_forward_loop{{to=\"{other}\"}}");
        test_support::eventually(Duration::from_secs(5), "loop detected", || async {
            (metric(sky.http, &label).await == 1.0).then_some(())
        })
        .await;
    }
    for i in 0..20 {
        let sky = if i % 2 == 0 { &sky_a } else { &sky_b };
        let started = Instant::now();
        let r = a(sky, &format!("q{i}.example.com.")).await;
        assert_eq!(dns::rcode(&r), ResponseCode::ServFail);
        assert!(started.elapsed() < Duration::from_millis(300));
    }
    let sent = metric(sky_a.http, "skydns_forward_requests_total").await
        + metric(sky_b.http, "skydns_forward_requests_total").await;
    eprintln!("questions sent between the two replicas: {sent}");
    assert!(sent <= 4.0, "no storm: {sent} questions between them");
    sky_a.stop().await;
    sky_b.stop().await;
}

#[tokio::test]
async fn stale_answers_when_upstreams_die_and_not_past_serve_stale() {
    let etcd = EtcdProcess::start().await.unwrap();
    let up = FakeUpstream::start(Mode::Answer).await.unwrap();
    up.add_a("www.example.com", "192.0.2.7".parse().unwrap(), 1);
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        Some(up.addr()),
        &["--serve-stale", "3s"],
    )
    .await;
    ready(&sky).await;
    let r = a(&sky, "www.example.com.").await;
    assert_eq!(dns::answers(&r), vec!["A 192.0.2.7"]);
    up.set_mode(Mode::Silent);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Expired, upstream silent: the stale answer, TTL 30, within the client's patience.
    let started = Instant::now();
    let r = a(&sky, "www.example.com.").await;
    assert_eq!(dns::answers(&r), vec!["A 192.0.2.7"]);
    assert_eq!(r.answers[0].ttl, 30);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(metric(sky.http, "skydns_forward_cache_served_stale_total").await >= 1.0);
    // Past --serve-stale: SERVFAIL.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let r = a(&sky, "www.example.com.").await;
    assert_eq!(dns::rcode(&r), ResponseCode::ServFail);
    sky.stop().await;
}

#[tokio::test]
async fn a_dead_first_upstream_is_skipped_after_the_first_questions() {
    let etcd = EtcdProcess::start().await.unwrap();
    let dead = FakeUpstream::start(Mode::Silent).await.unwrap();
    let live = FakeUpstream::start(Mode::Answer).await.unwrap();
    for i in 0..20 {
        live.add_a(
            &format!("n{i}.example.com"),
            "192.0.2.9".parse().unwrap(),
            300,
        );
    }
    let list = format!("{},{}", dead.addr(), live.addr());
    let sky = common::start_skydns(
        &etcd.endpoint(),
        Z,
        None,
        &["--nameservers", &list, "--forward-policy", "sequential"],
    )
    .await;
    ready(&sky).await;
    let mut times = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let r = a(&sky, &format!("n{i}.example.com.")).await;
        assert_eq!(dns::answers(&r), vec!["A 192.0.2.9"], "n{i}");
        times.push(started.elapsed());
    }
    eprintln!("latencies past a dead first upstream: {times:?}");
    assert!(
        times[0] >= Duration::from_millis(400),
        "the first waits for the dead one"
    );
    assert!(
        times[2..].iter().all(|t| *t < Duration::from_millis(200)),
        "then answered at the live one's latency: {times:?}"
    );
    sky.stop().await;
}

#[tokio::test]
async fn prefetch_keeps_a_hot_name_warm() {
    let etcd = EtcdProcess::start().await.unwrap();
    let up = FakeUpstream::start(Mode::Answer).await.unwrap();
    up.add_a("hot.example.com", "192.0.2.5".parse().unwrap(), 2);
    let sky =
        common::start_skydns(&etcd.endpoint(), Z, Some(up.addr()), &["--prefetch", "2"]).await;
    ready(&sky).await;
    let base = up.queries();
    for _ in 0..3 {
        assert_eq!(
            dns::answers(&a(&sky, "hot.example.com.").await),
            vec!["A 192.0.2.5"]
        );
    }
    assert_eq!(up.queries(), base + 1, "one lookup, then hits");
    // In the last 10% of the TTL, a hit refreshes the entry in the background.
    tokio::time::sleep(Duration::from_millis(1850)).await;
    a(&sky, "hot.example.com.").await;
    test_support::eventually(Duration::from_secs(1), "prefetched", || async {
        (up.queries() == base + 2).then_some(())
    })
    .await;
    // Past the original expiry: still a hit, no miss, no wait.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let misses = metric(sky.http, "skydns_skydns_dns_cachemiss_count_total").await;
    let started = Instant::now();
    assert_eq!(
        dns::answers(&a(&sky, "hot.example.com.").await),
        vec!["A 192.0.2.5"]
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(up.queries(), base + 2, "served from the refreshed entry");
    assert_eq!(
        metric(sky.http, "skydns_skydns_dns_cachemiss_count_total").await,
        misses
    );
    assert!(metric(sky.http, "skydns_forward_cache_prefetches_total").await >= 1.0);
    sky.stop().await;
}
