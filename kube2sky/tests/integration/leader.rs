//! `--leader-elect`: two replicas, one writer, failover when the writer dies.

use crate::common::*;

const ELECTION: &str = "/kube2sky/leader/cluster.local";

async fn elected(c: &mut etcd_client::Client) -> Option<String> {
    let resp = c.leader(ELECTION).await.ok()?;
    Some(resp.kv()?.value_str().ok()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_writer_and_failover_when_it_dies() {
    let (etcd, api, mut c) = cluster().await;
    api.apply(service_cluster_ip("default", "first", &["10.96.6.1"], &[]));
    let start = |id: &'static str| {
        let (e, u) = (etcd.endpoint(), api.url());
        async move {
            let flag = format!("--leader-elect-id={id}");
            Kube2sky::start(&e, &u, &["--leader-elect", "--leader-elect-ttl=2s", &flag]).await
        }
    };
    let a = start("replica-a").await;
    let b = start("replica-b").await;
    a.wait_ready().await;
    b.wait_ready().await;
    let first = [
        (format!("{SVC}/default/first"), a_record("10.96.6.1")),
        (
            "/skydns/arpa/in-addr/10/96/6/1".to_string(),
            ptr(&["first.default.svc.cluster.local."]),
        ),
    ];
    let mut want = records(&[]);
    want.extend(first.iter().cloned());
    expect_exactly(&mut c, &want).await;

    // Exactly one leader, and it is the one etcd's election names.
    let a_leads = eventually(SETTLE, "exactly one leader", || async {
        let (la, lb) = (
            a.metric("kube2sky_leader").await,
            b.metric("kube2sky_leader").await,
        );
        (la + lb == 1.0).then_some(la == 1.0)
    })
    .await;
    let (leader, follower, follower_id) = if a_leads {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    let leader_id = if a_leads { "replica-a" } else { "replica-b" };
    assert_eq!(elected(&mut c).await.as_deref(), Some(leader_id));

    // Changes are written by the leader only.
    api.apply(service_cluster_ip("default", "second", &["10.96.6.2"], &[]));
    want.insert(format!("{SVC}/default/second"), a_record("10.96.6.2"));
    want.insert(
        "/skydns/arpa/in-addr/10/96/6/2".into(),
        ptr(&["second.default.svc.cluster.local."]),
    );
    expect_exactly(&mut c, &want).await;
    assert!(leader.metric("kube2sky_etcd_writes_total").await >= 1.0);
    assert_eq!(follower.metric("kube2sky_etcd_writes_total").await, 0.0);
    assert_eq!(follower.metric("kube2sky_leader").await, 0.0);

    // The leader crashes (no resignation): the follower takes over once the lease expires,
    // reconciles, and writes what changed meanwhile.
    leader.kill().await;
    api.delete("v1", "Service", "default", "first");
    api.apply(service_cluster_ip("default", "third", &["10.96.6.3"], &[]));
    for (k, _) in &first {
        want.remove(k);
    }
    want.insert(format!("{SVC}/default/third"), a_record("10.96.6.3"));
    want.insert(
        "/skydns/arpa/in-addr/10/96/6/3".into(),
        ptr(&["third.default.svc.cluster.local."]),
    );
    expect_exactly(&mut c, &want).await;
    assert_eq!(follower.metric("kube2sky_leader").await, 1.0);
    assert_eq!(elected(&mut c).await.as_deref(), Some(follower_id));
    assert!(follower.metric("kube2sky_etcd_writes_total").await >= 1.0);

    // A graceful stop resigns: the election is free at once.
    follower.stop().await.expect("clean shutdown");
    eventually(SETTLE, "election released", || {
        let mut c = c.clone();
        async move { elected(&mut c).await.is_none().then_some(()) }
    })
    .await;
}

fn a_record(ip: &str) -> String {
    a(ip)
}
