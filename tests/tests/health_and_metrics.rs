//! The whole pod together: real etcd + test API server + kube2sky + skydns + healthz.
//! `/healthz` is 200 when all is well, 503 naming skydns within `--max-age` after skydns stops,
//! and 200 again after it returns; every program's `/metrics` parses as Prometheus text and its
//! counters move when there is work.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::{http_get, Stack, ZONE};
use hickory_proto::rr::RecordType;
use test_support::dns::{self, Transport};
use test_support::objects::{port, service_cluster_ip};
use tokio_util::sync::CancellationToken;

/// Parse Prometheus/OpenMetrics text into `series → value`; panics on a malformed line.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        out.insert(series.to_string(), v);
    }
    assert!(!out.is_empty(), "no metrics at all");
    out
}

async fn metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    parse_metrics(&body)
}

fn sum(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn healthz_follows_skydns_and_metrics_move() {
    let mut stack = Stack::start(&[]).await;
    stack.api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1"],
        &[port("https", 443, "TCP")],
    ));
    let k2s = stack.kube2sky.as_ref().expect("kube2sky").http;
    let (hz, hz_stop) = common::start_healthz(stack.dns, k2s).await;

    // All well → 200 ok.
    test_support::eventually(Duration::from_secs(15), "/healthz 200", || async {
        let (status, body) = http_get(hz, "/healthz").await;
        (status == 200 && body.trim() == "ok").then_some(())
    })
    .await;

    // Metrics parse; counters move with queries.
    let before = metrics(stack.skydns.http).await;
    for _ in 0..5 {
        dns::query(
            stack.dns,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            Transport::Udp,
        )
        .await
        .unwrap();
        dns::query(
            stack.dns,
            "nope.default.svc.cluster.local.",
            RecordType::A,
            Transport::Tcp,
        )
        .await
        .unwrap();
    }
    let after = metrics(stack.skydns.http).await;
    let key = "skydns_skydns_dns_request_count_total{system=\"auth\"}";
    assert!(
        after[key] >= before[key] + 10.0,
        "request counter moved: {} → {}",
        before[key],
        after[key]
    );
    let nx = "skydns_skydns_dns_error_count_total{system=\"auth\",cause=\"nxdomain\"}";
    assert!(after[nx] >= before[nx] + 5.0, "nxdomain counter moved");
    assert!(after["skydns_records_held"] >= 3.0);

    let k = metrics(k2s).await;
    assert!(
        sum(&k, "kube2sky_watch_events_total") > 0.0,
        "kube2sky watch events counted"
    );
    assert!(
        sum(&k, "kube2sky_etcd_writes_total") > 0.0,
        "kube2sky etcd writes counted"
    );
    let writes = sum(&k, "kube2sky_etcd_writes_total");
    stack
        .api
        .apply(service_cluster_ip("default", "other", &["10.96.0.9"], &[]));
    test_support::eventually(
        Duration::from_secs(10),
        "kube2sky writes counter moves",
        || async {
            (sum(&metrics(k2s).await, "kube2sky_etcd_writes_total") > writes).then_some(())
        },
    )
    .await;
    let h = metrics(hz).await;
    assert!(
        sum(&h, "healthz_probe_latency_seconds_count") > 0.0,
        "healthz probe latency observed: {h:?}"
    );

    // skydns stops → 503 naming skydns within max-age (1 s) plus a probe period.
    let dns_addr = stack.dns;
    let placeholder = common::Program::new(
        stack.skydns.http,
        CancellationToken::new(),
        tokio::spawn(async { Ok(()) }),
    );
    std::mem::replace(&mut stack.skydns, placeholder)
        .stop()
        .await;
    let started = tokio::time::Instant::now();
    let reason = test_support::eventually(Duration::from_secs(5), "/healthz 503", || async {
        let (status, body) = http_get(hz, "/healthz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "503 within max-age: {:?}",
        started.elapsed()
    );
    assert!(reason.contains("skydns"), "reason names skydns: {reason}");
    assert!(
        !reason.contains("kube2sky:"),
        "kube2sky still healthy: {reason}"
    );
    let (status, json) =
        test_support::http::get_with_accept(hz, "/healthz/skydns", "application/json").await;
    assert_eq!(status, 503);
    assert!(
        json.contains("\"skydns\"") || json.contains("skydns"),
        "{json}"
    );
    let errors = sum(&metrics(hz).await, "healthz_probe_errors_total");
    assert!(errors > 0.0, "probe errors counted");

    // skydns returns on the same address → 200 again.
    let (new_dns, new_sky) = restart_skydns_on(&stack, dns_addr).await;
    assert_eq!(new_dns, dns_addr);
    stack.skydns = new_sky;
    test_support::eventually(Duration::from_secs(15), "/healthz 200 again", || async {
        (http_get(hz, "/healthz").await.0 == 200).then_some(())
    })
    .await;
    hz_stop.cancel();
    stack.stop().await;
}

/// Start a new skydns on the address the old one used.
async fn restart_skydns_on(stack: &Stack, addr: SocketAddr) -> (SocketAddr, common::Program) {
    let argv = [
        "skydns",
        "--lameduck",
        "0",
        "--machines",
        &stack.etcd.endpoint(),
        "--domain",
        ZONE,
        "--nameservers",
        &stack.upstream.addr().to_string(),
    ];
    let settings = skydns::Config::try_parse_from(argv)
        .unwrap()
        .validate()
        .unwrap();
    let udp = tokio::net::UdpSocket::bind(addr).await.expect("rebind udp");
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind tcp");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(skydns::run(
        settings,
        skydns::Listeners { udp, tcp, http },
        shutdown.clone(),
    ));
    (addr, common::Program::new(http_addr, shutdown, task))
}
