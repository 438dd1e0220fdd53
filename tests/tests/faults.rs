//! Faults across the whole chain, each asserting nothing is lost: etcd down for 10 s while
//! queries flow, etcd restarted empty, API watches dropped / expired (410) / API history reset,
//! kube2sky restarted after deletes, foreign keys under the prefix surviving every reconcile.

mod common;

use std::time::Duration;

use common::{Stack, ZONE};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType::{self, A, PTR};
use test_support::dns::{self, Transport};
use test_support::objects::{endpoint, endpoint_slice, port, service_cluster_ip, service_headless};

async fn answers(
    stack: &Stack,
    name: &str,
    rtype: RecordType,
) -> Option<(ResponseCode, Vec<String>)> {
    let m = dns::query(stack.dns, &name.replace("$Z", ZONE), rtype, Transport::Udp)
        .await
        .ok()?;
    Some((dns::rcode(&m), dns::answers(&m)))
}

async fn wait_for(
    stack: &Stack,
    name: &str,
    rtype: RecordType,
    rcode: ResponseCode,
    want: &[&str],
    within: u64,
) {
    let want: Vec<String> = want.iter().map(|s| s.replace("$Z", ZONE)).collect();
    let last = std::sync::Mutex::new(None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(within);
    loop {
        let got = answers(stack, name, rtype).await;
        if matches!(&got, Some((rc, g)) if *rc == rcode && *g == want) {
            return;
        }
        *last.lock().unwrap() = got;
        if tokio::time::Instant::now() > deadline {
            let keys: Vec<String> = stack
                .etcd_dump()
                .await
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            panic!(
                "after {within}s {name} {rtype}: want {rcode} {want:?}, last got {:?}; etcd keys {keys:?}",
                last.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn svc(name: &str, ip: &str) -> serde_json::Value {
    service_cluster_ip("default", name, &[ip], &[port("http", 80, "TCP")])
}

/// The keys kube2sky owns (svc/, pod/, dns-version, reverse keys) as a sorted list.
async fn owned(stack: &Stack) -> Vec<(String, String)> {
    stack
        .etcd_dump()
        .await
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("/skydns/local/cluster/svc/")
                || k.starts_with("/skydns/local/cluster/pod/")
                || k == "/skydns/local/cluster/dns-version"
                || k.starts_with("/skydns/arpa/")
        })
        .collect()
}

#[tokio::test]
async fn etcd_down_for_ten_seconds_answers_continue_and_everything_converges() {
    let mut stack = Stack::start(&[]).await;
    stack.api.apply(svc("a", "10.96.1.1"));
    wait_for(
        &stack,
        "a.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.1.1"],
        10,
    )
    .await;

    stack.etcd.stop();
    // Churn on the API while etcd is down; every query is answered from the last state.
    stack.api.apply(svc("a", "10.96.1.2"));
    stack.api.apply(svc("b", "10.96.1.3"));
    stack.api.delete("v1", "Service", "default", "a");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while tokio::time::Instant::now() < until {
        let t = if n % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let m = dns::query(stack.dns, &format!("a.default.svc.{ZONE}."), A, t)
            .await
            .expect("answered during the outage");
        assert_eq!(
            dns::answers(&m),
            vec!["A 10.96.1.1"],
            "last state served (query {n})"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.etcd.restart().await.unwrap();
    // Both reconnect without a restart; etcd ends with exactly the desired records.
    wait_for(
        &stack,
        "a.default.svc.$Z.",
        A,
        ResponseCode::NXDomain,
        &[],
        30,
    )
    .await;
    wait_for(
        &stack,
        "b.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.1.3"],
        30,
    )
    .await;
    let keys: Vec<String> = owned(&stack).await.into_iter().map(|(k, _)| k).collect();
    assert!(
        !keys.iter().any(|k| k.contains("/svc/default/a")),
        "{keys:?}"
    );
    assert!(!keys
        .iter()
        .any(|k| k == "/skydns/arpa/in-addr/10/96/1/1" || k == "/skydns/arpa/in-addr/10/96/1/2"));
    stack.stop().await;
}

#[tokio::test]
async fn etcd_restarted_empty_is_rewritten() {
    let mut stack = Stack::start(&[]).await;
    stack.api.apply(svc("a", "10.96.2.1"));
    stack.api.apply(svc("b", "10.96.2.2"));
    wait_for(
        &stack,
        "b.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.2.2"],
        10,
    )
    .await;
    let before = owned(&stack).await;
    stack.etcd.restart_empty().await.unwrap();
    // kube2sky rewrites everything; skydns follows.
    test_support::eventually(Duration::from_secs(30), "etcd rewritten", || async {
        (owned(&stack).await == before).then_some(())
    })
    .await;
    wait_for(
        &stack,
        "a.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.2.1"],
        15,
    )
    .await;
    wait_for(
        &stack,
        "1.2.96.10.in-addr.arpa.",
        PTR,
        ResponseCode::NoError,
        &["PTR a.default.svc.$Z."],
        15,
    )
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn dropped_expired_and_reset_watches_leave_no_stale_records() {
    let stack = Stack::start(&[]).await;
    stack.api.apply(svc("a", "10.96.3.1"));
    wait_for(
        &stack,
        "a.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.3.1"],
        10,
    )
    .await;

    // Plain disconnect, with a change right after.
    stack.api.drop_watches();
    stack.api.apply(svc("a", "10.96.3.2"));
    wait_for(
        &stack,
        "a.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.3.2"],
        20,
    )
    .await;

    // 410 Gone: history compacted; changes made meanwhile must be seen after the relist.
    stack.api.expire_watches();
    stack.api.delete("v1", "Service", "default", "a");
    stack.api.apply(svc("b", "10.96.3.3"));
    wait_for(
        &stack,
        "a.default.svc.$Z.",
        A,
        ResponseCode::NXDomain,
        &[],
        20,
    )
    .await;
    wait_for(
        &stack,
        "b.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.3.3"],
        20,
    )
    .await;

    // API server restored from a backup: new resourceVersion history.
    stack.api.reset_history(1_000_000);
    stack.api.delete("v1", "Service", "default", "b");
    stack.api.apply(svc("c", "10.96.3.4"));
    wait_for(
        &stack,
        "b.default.svc.$Z.",
        A,
        ResponseCode::NXDomain,
        &[],
        20,
    )
    .await;
    wait_for(
        &stack,
        "c.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.3.4"],
        20,
    )
    .await;
    let keys: Vec<String> = owned(&stack).await.into_iter().map(|(k, _)| k).collect();
    let svc_keys: Vec<&String> = keys.iter().filter(|k| k.contains("/svc/")).collect();
    assert!(
        svc_keys.iter().all(|k| k.contains("/svc/default/c")),
        "only c remains: {svc_keys:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn kube2sky_restarted_after_deletes_removes_stale_keys_and_keeps_foreign_ones() {
    let mut stack = Stack::start(&[]).await;
    let mut c = stack.etcd.client().await.unwrap();
    let foreign = [
        (
            "/skydns/local/cluster/dns/ns/ns1",
            r#"{"host":"10.0.0.53"}"#,
        ),
        ("/skydns/com/example/x", r#"{"host":"10.9.9.9"}"#),
        (
            "/skydns/arpa/in-addr/10/9/9/9",
            r#"{"host":"x.example.com."}"#,
        ),
        (
            "/skydns/local/cluster/other/thing",
            r#"{"host":"10.9.9.8"}"#,
        ),
        ("/unrelated/key", "anything"),
    ];
    for (k, v) in foreign {
        c.put(k, v, None).await.unwrap();
    }
    stack.api.apply(svc("keep", "10.96.4.1"));
    stack.api.apply(service_headless(
        "default",
        "gone",
        &[port("http", 80, "TCP")],
    ));
    stack.api.apply(endpoint_slice(
        "default",
        "gone-abc",
        "gone",
        "IPv4",
        &[endpoint(&["10.244.4.4"], Some("gone-0"), Some(true))],
        &[port("http", 80, "TCP")],
    ));
    wait_for(
        &stack,
        "gone-0.gone.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.244.4.4"],
        10,
    )
    .await;

    // kube2sky down; the service is deleted meanwhile.
    if let Some(p) = stack.kube2sky.take() {
        p.stop().await;
    }
    stack.api.delete("v1", "Service", "default", "gone");
    stack.api.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "default",
        "gone-abc",
    );
    stack.restart_kube2sky(&[]).await;
    stack.wait_ready().await;
    wait_for(
        &stack,
        "gone.default.svc.$Z.",
        A,
        ResponseCode::NXDomain,
        &[],
        20,
    )
    .await;
    wait_for(
        &stack,
        "gone-0.gone.default.svc.$Z.",
        A,
        ResponseCode::NXDomain,
        &[],
        20,
    )
    .await;
    wait_for(
        &stack,
        "keep.default.svc.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.96.4.1"],
        20,
    )
    .await;
    let dump = stack.etcd_dump().await;
    assert!(!dump.iter().any(|(k, _)| k.contains("/svc/default/gone") || k == "/skydns/arpa/in-addr/10/244/4/4"), "{dump:?}");
    // Foreign keys survived the start-up prune.
    let mut c = stack.etcd.client().await.unwrap();
    for (k, v) in foreign {
        let got = c.get(k, None).await.unwrap();
        assert_eq!(
            got.kvs().first().map(|kv| kv.value()),
            Some(v.as_bytes()),
            "{k} survived"
        );
    }
    // And skydns still serves the foreign generic record.
    wait_for(
        &stack,
        "thing.other.$Z.",
        A,
        ResponseCode::NoError,
        &["A 10.9.9.8"],
        10,
    )
    .await;
    stack.stop().await;
}
