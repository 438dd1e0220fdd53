//! kube2sky owns `P/svc/`, `P/pod/`, `P/dns-version` and the PTR keys it wrote; everything
//! else under the prefix (and outside it) survives every reconcile.

use std::collections::BTreeMap;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_survive_every_reconcile_and_stale_owned_keys_go() {
    let (etcd, api, mut c) = cluster().await;
    let foreign: BTreeMap<String, String> = [
        (
            "/skydns/local/cluster/dns/ns/ns1",
            r#"{"host":"10.0.0.53"}"#,
        ),
        ("/skydns/com/example/x", r#"{"host":"1.2.3.4"}"#),
        (
            "/skydns/arpa/in-addr/10/9/9/9",
            r#"{"host":"x.example.com."}"#,
        ),
        ("/skydns/arpa/in-addr/10/9/9/8", "not json at all"),
        (
            "/skydns/arpa/in-addr/10/9/9/7",
            r#"[{"host":"a.svc.cluster.local.example."},{"host":"b.default.svc.cluster.local."}]"#,
        ),
        ("/skydns/local/cluster/svcx", r#"{"host":"10.0.0.1"}"#),
        ("/skydns/local/cluster/dns-version2", r#"{"text":"mine"}"#),
        (
            "/skydns/local/other/svc/default/web",
            r#"{"host":"10.0.0.2"}"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in &foreign {
        c.put(k.as_str(), v.as_str(), None).await.expect("put");
    }
    c.put("/other/x", "y", None).await.expect("put");
    // Left behind by an earlier kube2sky: objects deleted while it was down.
    let stale = [
        (format!("{SVC}/default/stale"), a("10.96.0.99")),
        (
            format!("{SVC}/default/stale/_tcp/_http"),
            srv("stale.default.svc.cluster.local.", 80),
        ),
        (
            "/skydns/arpa/in-addr/10/96/0/99".to_string(),
            ptr(&["stale.default.svc.cluster.local."]),
        ),
        (format!("{POD}/default/10-1-1-1"), a("10.1.1.1")),
        (format!("{SVC}/default/web"), "garbage".to_string()),
        (VERSION_KEY.to_string(), r#"{"text":"0.9"}"#.to_string()),
    ];
    for (k, v) in &stale {
        c.put(k.as_str(), v.as_str(), None).await.expect("put");
    }

    api.apply(service_cluster_ip("default", "web", &["10.96.0.5"], &[]));
    // Its PTR would land on the foreign key: the foreign value wins.
    api.apply(service_cluster_ip("default", "clash", &["10.9.9.9"], &[]));
    let mut want = records(&[
        (&format!("{SVC}/default/web"), &a("10.96.0.5")),
        (
            "/skydns/arpa/in-addr/10/96/0/5",
            &ptr(&["web.default.svc.cluster.local."]),
        ),
        (&format!("{SVC}/default/clash"), &a("10.9.9.9")),
    ]);
    want.extend(foreign.clone());

    let k = Kube2sky::start(
        &etcd.endpoint(),
        &api.url(),
        &["--reconcile-interval=200ms"],
    )
    .await;
    k.wait_ready().await;
    expect_exactly(&mut c, &want).await;
    // Several periodic reconciles later, nothing foreign has been touched.
    let before = k.metric("kube2sky_reconciles_total").await;
    eventually(SETTLE, "three more reconciles", || async {
        (k.metric("kube2sky_reconciles_total").await >= before + 3.0).then_some(())
    })
    .await;
    expect_exactly(&mut c, &want).await;

    // Churn that touches the PTR tree, then a restart (start-up reconcile).
    api.delete("v1", "Service", "default", "clash");
    want.remove(&format!("{SVC}/default/clash"));
    api.apply(service_cluster_ip("default", "web", &["10.96.0.6"], &[]));
    want.remove("/skydns/arpa/in-addr/10/96/0/5");
    want.insert(format!("{SVC}/default/web"), a("10.96.0.6"));
    want.insert(
        "/skydns/arpa/in-addr/10/96/0/6".into(),
        ptr(&["web.default.svc.cluster.local."]),
    );
    expect_exactly(&mut c, &want).await;
    k.stop().await.expect("clean shutdown");
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    expect_exactly(&mut c, &want).await;
    let other = c.get("/other/x", None).await.expect("get");
    assert_eq!(
        other.kvs().first().map(|kv| kv.value().to_vec()),
        Some(b"y".to_vec())
    );
    k.stop().await.expect("clean shutdown");
}
