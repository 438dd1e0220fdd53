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

const FOREIGN_5: &str = r#"{"host":"x.example.com."}"#;
const FOREIGN_6: &str = r#"{"host":"y.example.com."}"#;
const FOREIGN_7: &str = r#"{"host":"z.other.cluster."}"#;

/// Whether a PTR key is ours is decided from what kube2sky read (or wrote); a foreign writer
/// (another cluster sharing this etcd) can put its own value there afterwards. kube2sky's later
/// delete or put must not clobber it: its writes compare the key's revision and, when that
/// fails, read again and leave a foreign value alone. Deterministic: with the default
/// reconcile interval kube2sky does not read the reverse tree again during the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ptr_written_after_our_read_is_never_clobbered() {
    let (etcd, api, mut c) = cluster().await;
    api.apply(service_cluster_ip("default", "gone", &["10.96.0.5"], &[]));
    api.apply(service_cluster_ip("default", "shared", &["10.96.0.7"], &[]));
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    let mut want = records(&[
        (&format!("{SVC}/default/gone"), &a("10.96.0.5")),
        (
            "/skydns/arpa/in-addr/10/96/0/5",
            &ptr(&["gone.default.svc.cluster.local."]),
        ),
        (&format!("{SVC}/default/shared"), &a("10.96.0.7")),
        (
            "/skydns/arpa/in-addr/10/96/0/7",
            &ptr(&["shared.default.svc.cluster.local."]),
        ),
    ]);
    expect_exactly(&mut c, &want).await;

    // The foreign writer, after kube2sky's read: takes over two PTR keys kube2sky wrote and
    // one that was free.
    for (key, value) in [
        ("/skydns/arpa/in-addr/10/96/0/5", FOREIGN_5),
        ("/skydns/arpa/in-addr/10/96/0/6", FOREIGN_6),
        ("/skydns/arpa/in-addr/10/96/0/7", FOREIGN_7),
    ] {
        c.put(key, value, None).await.expect("foreign put");
        want.insert(key.to_string(), value.to_string());
    }
    // kube2sky would now delete .5 (service gone), put .6 (new service) and rewrite .7 (a
    // second name on the address).
    api.delete("v1", "Service", "default", "gone");
    want.remove(&format!("{SVC}/default/gone"));
    api.apply(service_cluster_ip("default", "new", &["10.96.0.6"], &[]));
    want.insert(format!("{SVC}/default/new"), a("10.96.0.6"));
    api.apply(service_cluster_ip(
        "default",
        "shared2",
        &["10.96.0.7"],
        &[],
    ));
    want.insert(format!("{SVC}/default/shared2"), a("10.96.0.7"));
    expect_exactly(&mut c, &want).await;
    // Settled: nothing left to write, and still exactly that.
    eventually(SETTLE, "nothing pending", || async {
        (k.metric("kube2sky_pending_writes").await == 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    expect_exactly(&mut c, &want).await;

    // Once the foreign writer lets go of .6, the next reconcile (here: a restart) writes ours.
    c.delete("/skydns/arpa/in-addr/10/96/0/6", None)
        .await
        .expect("delete");
    k.stop().await.expect("clean shutdown");
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    want.insert(
        "/skydns/arpa/in-addr/10/96/0/6".into(),
        ptr(&["new.default.svc.cluster.local."]),
    );
    expect_exactly(&mut c, &want).await;
    k.stop().await.expect("clean shutdown");
}

/// A foreign writer hammering PTR keys while kube2sky churns services on the same addresses:
/// etcd's history (every event with its previous value) shows no kube2sky write or delete
/// replacing a foreign value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_writer_racing_on_ptr_keys_is_never_overwritten() {
    use etcd_client::WatchOptions;
    let (etcd, api, mut c) = cluster().await;
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    let start_rev = c
        .get(VERSION_KEY, None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision())
        .unwrap_or(1);

    let foreign_task = {
        let mut c = c.clone();
        tokio::spawn(async move {
            for round in 0..150u32 {
                let key = format!("/skydns/arpa/in-addr/10/96/3/{}", round % 10);
                if round % 3 == 0 {
                    let _ = c.delete(key.as_str(), None).await;
                } else {
                    let value = format!(r#"{{"host":"f{round}.example.com."}}"#);
                    let _ = c.put(key.as_str(), value.as_str(), None).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(7)).await;
            }
        })
    };
    for round in 0..100u32 {
        let name = format!("r{}", round % 10);
        if round % 4 == 3 {
            api.delete("v1", "Service", "default", &name);
        } else {
            let ip = format!("10.96.3.{}", round % 10);
            api.apply(service_cluster_ip("default", &name, &[&ip], &[]));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    foreign_task.await.expect("foreign writer");
    eventually(SETTLE, "nothing pending", || async {
        (k.metric("kube2sky_pending_writes").await == 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let end_rev = c
        .get(VERSION_KEY, None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision())
        .unwrap_or(1);

    let mut stream = c
        .watch(
            "/skydns/arpa/in-addr/10/96/3/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(start_rev),
            ),
        )
        .await
        .expect("watch");
    let is_foreign = |v: &[u8]| String::from_utf8_lossy(v).contains("example.com");
    let mut events = 0;
    let mut clobbered = Vec::new();
    'read: while let Ok(Some(resp)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), stream.message())
            .await
            .unwrap_or(Ok(None))
    {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if kv.mod_revision() > end_rev {
                break 'read;
            }
            events += 1;
            let Some(prev) = ev.prev_kv() else { continue };
            if !is_foreign(prev.value()) {
                continue;
            }
            let ours = !is_foreign(kv.value());
            // A put of our value over a foreign one. (Deletes of foreign values are told apart
            // from the foreign writer's own only in the deterministic test above.)
            if ev.event_type() == etcd_client::EventType::Put && ours {
                clobbered.push(format!("put {} over foreign", kv.key_str().unwrap_or("?")));
            }
        }
        if resp
            .events()
            .last()
            .and_then(|e| e.kv())
            .map(|kv| kv.mod_revision())
            >= Some(end_rev)
        {
            break;
        }
    }
    assert!(events > 100, "the race happened ({events} events)");
    assert!(
        clobbered.is_empty(),
        "foreign PTR values clobbered: {clobbered:?}"
    );
    k.stop().await.expect("clean shutdown");
}
