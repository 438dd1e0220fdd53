//! Faults: expired and dropped watches, restarts after deletes, etcd outages and wipes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// The records of a port-less ClusterIP service `name` in `default`.
fn cluster_ip_records(name: &str, ip: &str) -> [(String, String); 2] {
    let octets = ip.replace('.', "/");
    [
        (format!("{SVC}/default/{name}"), a(ip)),
        (
            format!("/skydns/arpa/in-addr/{octets}"),
            ptr(&[&format!("{name}.default.svc.cluster.local.")]),
        ),
    ]
}

fn expected(services: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut m = records(&[]);
    for (name, ip) in services {
        m.extend(cluster_ip_records(name, ip));
    }
    m
}

fn lists(api: &TestApiServer, resource: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.contains(resource) && !r.contains("watch=true"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_dropped_watches_relist_without_stale_or_missing_records() {
    let (etcd, api, mut c) = cluster().await;
    let mut model = BTreeMap::new();
    for i in 1..=4 {
        let ip = format!("10.96.7.{i}");
        api.apply(service_cluster_ip("default", &format!("s{i}"), &[&ip], &[]));
        model.insert(format!("s{i}"), ip);
    }
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    expect_exactly(&mut c, &expected(&model)).await;

    // 410 Gone: history is compacted, so the changes below are only visible through a relist.
    let lists_before = lists(&api, "/api/v1/services");
    api.expire_watches();
    api.delete("v1", "Service", "default", "s1");
    model.remove("s1");
    api.apply(service_cluster_ip("default", "s2", &["10.96.7.22"], &[]));
    model.insert("s2".into(), "10.96.7.22".into());
    api.apply(service_cluster_ip("default", "s5", &["10.96.7.5"], &[]));
    model.insert("s5".into(), "10.96.7.5".into());
    expect_exactly(&mut c, &expected(&model)).await;
    assert!(
        lists(&api, "/api/v1/services") > lists_before,
        "410 must cause a relist"
    );
    assert!(
        k.metric(r#"kube2sky_watch_events_total{resource="services",type="error"}"#)
            .await
            >= 1.0
    );

    // Plain disconnect: the watch resumes (or relists) and catches the changes made meanwhile.
    api.drop_watches();
    api.delete("v1", "Service", "default", "s3");
    model.remove("s3");
    api.apply(service_cluster_ip("default", "s6", &["10.96.7.6"], &[]));
    model.insert("s6".into(), "10.96.7.6".into());
    expect_exactly(&mut c, &expected(&model)).await;

    // Both at once, repeatedly, with changes in between.
    for round in 0..3u8 {
        api.drop_watches();
        api.apply(service_cluster_ip(
            "default",
            "s4",
            &[&format!("10.96.8.{round}")],
            &[],
        ));
        model.insert("s4".into(), format!("10.96.8.{round}"));
        api.expire_watches();
        api.delete("v1", "Service", "default", "s6");
        model.remove("s6");
    }
    expect_exactly(&mut c, &expected(&model)).await;
    // Relists replace the objects held, they do not add to them.
    eventually(SETTLE, "object gauge settles", || async {
        (k.metric(r#"kube2sky_objects{kind="service"}"#).await == model.len() as f64).then_some(())
    })
    .await;
    assert!(k.is_running());
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_deletes_prunes_what_no_object_explains() {
    let (etcd, api, mut c) = cluster().await;
    api.apply(service_cluster_ip(
        "default",
        "keep",
        &["10.96.9.1"],
        &[port("http", 80, "TCP")],
    ));
    api.apply(service_cluster_ip(
        "default",
        "gone",
        &["10.96.9.2"],
        &[port("http", 80, "TCP")],
    ));
    api.apply(service_headless("default", "hl", &[]));
    api.apply(endpoint_slice(
        "default",
        "hl-1",
        "hl",
        "IPv4",
        &[
            endpoint(&["10.244.9.1"], Some("hl-0"), Some(true)),
            endpoint(&["10.244.9.2"], Some("hl-1"), Some(true)),
        ],
        &[],
    ));
    api.apply(pod("default", "p", &["10.244.9.9"]));
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    eventually(SETTLE, "all records written", || {
        let mut c = c.clone();
        async move { (dump(&mut c).await?.len() == 13).then_some(()) }
    })
    .await;
    k.stop().await.expect("clean shutdown");

    // While kube2sky is down: a service, an endpoint and a pod are deleted.
    api.delete("v1", "Service", "default", "gone");
    api.apply(endpoint_slice(
        "default",
        "hl-1",
        "hl",
        "IPv4",
        &[endpoint(&["10.244.9.1"], Some("hl-0"), Some(true))],
        &[],
    ));
    api.delete("v1", "Pod", "default", "p");

    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    // Ready means synced: etcd must already be exact, no polling needed.
    let want = records(&[
        (&format!("{SVC}/default/keep"), &a("10.96.9.1")),
        (
            &format!("{SVC}/default/keep/_tcp/_http"),
            &srv("keep.default.svc.cluster.local.", 80),
        ),
        (
            "/skydns/arpa/in-addr/10/96/9/1",
            &ptr(&["keep.default.svc.cluster.local."]),
        ),
        (&format!("{SVC}/default/hl"), &a("10.244.9.1")),
        (&format!("{SVC}/default/hl/hl-0"), &a("10.244.9.1")),
        (
            "/skydns/arpa/in-addr/10/244/9/1",
            &ptr(&["hl-0.hl.default.svc.cluster.local."]),
        ),
    ]);
    assert_eq!(dump(&mut c).await.unwrap_or_default(), want);
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_mid_churn_converges_to_exactly_the_desired_records() {
    let (mut etcd, api, c) = cluster().await;
    let api = Arc::new(api);
    // The default coalescing window.
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &["--write-interval=100ms"]).await;
    k.wait_ready().await;

    // ~50 changes per second for 6 s over 20 services.
    let churn = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for step in 0..300u32 {
                tick.tick().await;
                let i = step % 20;
                let name = format!("churn-{i}");
                if (step * 7 + i) % 5 == 0 {
                    api.delete("v1", "Service", "default", &name);
                    model.remove(&name);
                } else {
                    let ip = format!("10.97.{}.{}", step % 250, i + 1);
                    api.apply(service_cluster_ip("default", &name, &[&ip], &[]));
                    model.insert(name, ip);
                }
            }
            model
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    etcd.restart().await.expect("etcd restarts");
    let model = churn.await.expect("churn task");
    let mut c2 = etcd.client().await.expect("client after restart");
    expect_exactly(&mut c2, &expected(&model)).await;
    assert!(
        k.is_running(),
        "kube2sky must not exit because etcd blinked"
    );
    assert!(k.is_ready().await);
    let errors = k.metric_sum("kube2sky_etcd_errors_total").await;
    assert!(errors >= 1.0, "the outage must have been noticed");
    // Coalescing: far fewer transactions than changes.
    let txns = k.metric("kube2sky_etcd_writes_total").await;
    // 300 changes in 6 s with a 100 ms window: at most ~10 write rounds per second.
    assert!(txns <= 80.0, "{txns} transactions for 300 changes");
    drop(c);
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_at_start_then_wiped_is_filled_again() {
    let (mut etcd, api, _) = cluster().await;
    api.apply(service_cluster_ip("default", "a", &["10.96.4.1"], &[]));
    etcd.stop();
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    // Lists done, etcd unreachable: not ready.
    eventually(SETTLE, "initial lists and an etcd error", || async {
        let lists = k
            .metric(r#"kube2sky_watch_events_total{resource="services",type="init_done"}"#)
            .await;
        let errors = k.metric_sum("kube2sky_etcd_errors_total").await >= 1.0;
        (lists >= 1.0 && errors).then_some(())
    })
    .await;
    assert_eq!(k.get("/readiness").await.0, 503);
    assert_eq!(k.get("/healthz").await.0, 200);

    etcd.restart().await.expect("etcd starts");
    k.wait_ready().await;
    let mut c = etcd.client().await.expect("client");
    let mut want = records(&[]);
    want.extend(cluster_ip_records("a", "10.96.4.1"));
    expect_exactly(&mut c, &want).await;
    assert_eq!(k.metric("kube2sky_leader").await, 1.0);
    assert!(k.metric("kube2sky_last_sync_timestamp_seconds").await > 1.0e9);
    assert_eq!(k.metric("kube2sky_records").await, 3.0);

    // etcd restored empty (new data dir): kube2sky notices and writes everything again.
    etcd.restart_empty().await.expect("etcd starts empty");
    let mut c = etcd.client().await.expect("client");
    expect_exactly(&mut c, &want).await;
    assert!(k.is_running());
    k.stop().await.expect("clean shutdown");
}

/// A value larger than etcd accepts (`--max-request-bytes`, here 32 KiB): kube2sky must not
/// leave the old value standing (a stale answer) nor block every other write behind it. The
/// name's key is deleted, the value counted in `kube2sky_values_too_large_total`, and once the
/// value fits again it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_over_etcds_request_limit_removes_the_stale_record_and_blocks_nothing() {
    let etcd = EtcdProcess::start_with_args(vec!["--max-request-bytes=32768".into()])
        .await
        .expect("etcd");
    let api = TestApiServer::start().await.expect("api");
    let mut c = etcd.client().await.expect("client");
    let big = format!("{SVC}/default/big");
    let slice = |n: u32| {
        let ips: Vec<String> = (0..n)
            .map(|i| format!("10.244.{}.{}", i / 250, i % 250 + 1))
            .collect();
        let eps: Vec<_> = ips
            .iter()
            .map(|ip| endpoint(&[ip.as_str()], None, Some(true)))
            .collect();
        endpoint_slice("default", "big-1", "big", "IPv4", &eps, &[])
    };
    api.apply(service_headless("default", "big", &[]));
    api.apply(slice(3));
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    let value = |c: &etcd_client::Client, key: String| {
        let mut c = c.clone();
        async move {
            let r = c.get(key.as_str(), None).await.ok()?;
            Some(
                r.kvs()
                    .first()
                    .map(|kv| kv.value_str().unwrap_or("").to_string()),
            )
        }
    };
    assert_eq!(
        value(&c, big.clone()).await.flatten().as_deref(),
        Some(arr(&["10.244.0.1", "10.244.0.2", "10.244.0.3"]).as_str())
    );

    // 1000 ready endpoints: the service's A value is ~52 KB, over the limit.
    api.apply(slice(1000));
    api.apply(service_cluster_ip("default", "after", &["10.96.5.5"], &[]));
    eventually(
        SETTLE,
        "other records written, the stale value gone",
        || async {
            let after = value(&c, format!("{SVC}/default/after")).await??;
            let last = value(&c, format!("{SVC}/default/big/10-244-3-250")).await??;
            let big_now = value(&c, big.clone()).await?;
            (after == a("10.96.5.5") && last == a("10.244.3.250") && big_now.is_none())
                .then_some(())
        },
    )
    .await;
    assert!(k.metric("kube2sky_values_too_large_total").await >= 1.0);
    eventually(SETTLE, "nothing pending", || async {
        (k.metric("kube2sky_pending_writes").await == 0.0).then_some(())
    })
    .await;
    assert!(k.is_ready().await);

    // Back to two endpoints: the value fits and is written; every endpoint key is gone.
    api.apply(slice(2));
    let mut want = records(&[
        (&big, &arr(&["10.244.0.1", "10.244.0.2"])),
        (&format!("{big}/10-244-0-1"), &a("10.244.0.1")),
        (&format!("{big}/10-244-0-2"), &a("10.244.0.2")),
        (&format!("{SVC}/default/after"), &a("10.96.5.5")),
        (
            "/skydns/arpa/in-addr/10/96/5/5",
            &ptr(&["after.default.svc.cluster.local."]),
        ),
        (
            "/skydns/arpa/in-addr/10/244/0/1",
            &ptr(&["10-244-0-1.big.default.svc.cluster.local."]),
        ),
        (
            "/skydns/arpa/in-addr/10/244/0/2",
            &ptr(&["10-244-0-2.big.default.svc.cluster.local."]),
        ),
    ]);
    want.retain(|_, v| !v.is_empty());
    expect_exactly(&mut c, &want).await;
    k.stop().await.expect("clean shutdown");
}
