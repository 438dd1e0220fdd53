//! Faults of a real 3-member etcd cluster under the whole chain (kube2sky and skydns in-process
//! through their `run`, both given all three endpoints): the etcd leader SIGKILLed during a
//! burst of writes, one member SIGSTOPped and continued, and kube2sky's own leader (two
//! `--leader-elect` replicas) cut off from etcd behind a TCP proxy.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_get, start_kube2sky, start_skydns, Program, ZONE};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType::A;
use test_support::dns::{self, Transport};
use test_support::etcd::{dump, EtcdCluster};
use test_support::objects::service_cluster_ip;
use test_support::upstream::{FakeUpstream, Mode};
use test_support::TestApiServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const VERSION_KEY: &str = "/skydns/local/cluster/dns-version";
const VERSION: &str = r#"{"text":"1.1.0"}"#;
const ELECTION: &str = "/kube2sky/leader/cluster.local";

fn a(ip: &str, ttl: u32) -> String {
    format!(r#"{{"host":"{ip}","priority":10,"weight":10,"ttl":{ttl}}}"#)
}

fn ptr(name: &str) -> String {
    format!(r#"{{"host":"{name}.default.svc.{ZONE}."}}"#)
}

/// What etcd must hold for port-less ClusterIP services `name → ip` in `default`.
fn expected(services: &BTreeMap<String, String>, ttl: u32) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(VERSION_KEY.to_string(), VERSION.to_string());
    for (name, ip) in services {
        m.insert(
            format!("/skydns/local/cluster/svc/default/{name}"),
            a(ip, ttl),
        );
        m.insert(
            format!("/skydns/arpa/in-addr/{}", ip.replace('.', "/")),
            ptr(name),
        );
    }
    m
}

/// Wait until etcd (through `c`) holds exactly `want` under `/skydns/`.
async fn expect_exactly(c: &etcd_client::Client, want: &BTreeMap<String, String>, within: u64) {
    let deadline = Instant::now() + Duration::from_secs(within);
    loop {
        let got = dump(&mut c.clone()).await;
        if got.as_ref() == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            let got = got.unwrap_or_default();
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(v))
                .collect();
            panic!(
                "etcd does not hold the expected records after {within}s\nmissing or different ({}): {:?}\nunexpected ({}): {:?}",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                extra.len(),
                extra.iter().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_ready(http: SocketAddr, what: &str) {
    test_support::eventually(Duration::from_secs(20), what, || async move {
        (http_get(http, "/readiness").await.0 == 200).then_some(())
    })
    .await;
}

/// The A answer for `name.default.svc.<zone>` (`None` when unanswered).
async fn lookup(dns_addr: SocketAddr, name: &str) -> Option<(ResponseCode, Vec<String>)> {
    let m = dns::query(
        dns_addr,
        &format!("{name}.default.svc.{ZONE}."),
        A,
        Transport::Udp,
    )
    .await
    .ok()?;
    Some((dns::rcode(&m), dns::answers(&m)))
}

async fn wait_answer(dns_addr: SocketAddr, name: &str, want: Option<&str>, within: u64) {
    let want = match want {
        Some(ip) => (ResponseCode::NoError, vec![format!("A {ip}")]),
        None => (ResponseCode::NXDomain, vec![]),
    };
    let deadline = Instant::now() + Duration::from_secs(within);
    loop {
        let got = lookup(dns_addr, name).await;
        if got.as_ref() == Some(&want) {
            return;
        }
        if Instant::now() > deadline {
            panic!("{name}: want {want:?}, got {got:?} after {within}s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Queries one name over and over until stopped; counts answers, wrong answers and queries
/// left unanswered (3 s timeout each).
struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64, u64)>,
}

impl Prober {
    fn start(dns_addr: SocketAddr, name: &str, ip: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name, want) = (stop.clone(), name.to_string(), vec![format!("A {ip}")]);
        let task = tokio::spawn(async move {
            let (mut ok, mut wrong, mut unanswered) = (0, 0, 0);
            while !s.load(Ordering::Relaxed) {
                match lookup(dns_addr, &name).await {
                    Some((ResponseCode::NoError, got)) if got == want => ok += 1,
                    Some(_) => wrong += 1,
                    None => unanswered += 1,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, wrong, unanswered)
        });
        Prober { stop, task }
    }

    async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("prober")
    }
}

/// Cancels the programs' shutdown tokens when dropped, so a failing test ends instead of
/// waiting on their tasks.
struct CancelOnDrop(Vec<tokio_util::sync::CancellationToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.cancel();
        }
    }
}

struct ClusterStack {
    _cancel: CancelOnDrop,
    etcd: EtcdCluster,
    api: TestApiServer,
    _upstream: FakeUpstream,
    dns: SocketAddr,
    skydns: Program,
    kube2sky: Program,
}

impl ClusterStack {
    async fn start() -> ClusterStack {
        test_support::init_test_tracing();
        let etcd = EtcdCluster::start(3).await.expect("etcd cluster");
        let api = TestApiServer::start().await.expect("api server");
        let upstream = FakeUpstream::start(Mode::Answer).await.expect("upstream");
        let endpoints = etcd.endpoint_list();
        let (dns, skydns) = start_skydns(&endpoints, upstream.addr()).await;
        let kube2sky =
            start_kube2sky(&endpoints, &api.url(), &["--etcd-mutation-timeout=2s"]).await;
        wait_ready(skydns.http, "skydns ready").await;
        wait_ready(kube2sky.http, "kube2sky ready").await;
        ClusterStack {
            _cancel: CancelOnDrop(vec![skydns.shutdown.clone(), kube2sky.shutdown.clone()]),
            etcd,
            api,
            _upstream: upstream,
            dns,
            skydns,
            kube2sky,
        }
    }

    fn apply(&self, model: &mut BTreeMap<String, String>, name: &str, ip: &str) {
        self.api
            .apply(service_cluster_ip("default", name, &[ip], &[]));
        model.insert(name.to_string(), ip.to_string());
    }

    async fn stop(self) {
        self.kube2sky.stop().await;
        self.skydns.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_killed_mid_burst_loses_no_write_and_no_query() {
    let began = Instant::now();
    let mut stack = ClusterStack::start().await;
    let started = began.elapsed();
    let mut model = BTreeMap::new();
    stack.apply(&mut model, "probe", "10.96.200.1");
    wait_answer(stack.dns, "probe", Some("10.96.200.1"), 10).await;
    let prober = Prober::start(stack.dns, "probe", "10.96.200.1");

    // A burst of 200 services; the etcd leader is SIGKILLed half-way through.
    let leader = stack.etcd.wait_leader().await.expect("leader");
    for i in 0..200u32 {
        let ip = format!("10.96.{}.{}", 10 + i / 200, i % 200 + 1);
        stack.apply(&mut model, &format!("burst-{i}"), &ip);
        if i == 100 {
            stack.etcd.kill(leader);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed_at = Instant::now();
    let new_leader = stack.etcd.wait_leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);

    // Nothing lost: etcd ends with exactly the desired records.
    let c = stack.etcd.client().await.expect("client");
    expect_exactly(&c, &expected(&model, 30), 20).await;
    let converged = killed_at.elapsed();
    // Both programs follow the new leader without a restart: a change made now is written
    // and served.
    stack.apply(&mut model, "after", "10.96.201.1");
    wait_answer(stack.dns, "after", Some("10.96.201.1"), 15).await;
    wait_answer(stack.dns, "burst-199", Some("10.96.10.200"), 15).await;
    wait_answer(stack.dns, "burst-0", Some("10.96.10.1"), 15).await;
    expect_exactly(&c, &expected(&model, 30), 10).await;

    let (ok, wrong, unanswered) = prober.finish().await;
    eprintln!(
        "etcd leader killed: stack up in {started:?}; converged {converged:?} after the kill; {ok} queries answered, {wrong} wrong, {unanswered} unanswered; test {:?}",
        began.elapsed()
    );
    assert_eq!(
        (wrong, unanswered),
        (0, 0),
        "every query answered, correctly"
    );
    assert!(ok > 100, "queries flowed ({ok})");
    // The killed member comes back and catches up.
    stack.etcd.restart(leader).await.expect("member restarts");
    let want = expected(&model, 30);
    test_support::eventually(
        Duration::from_secs(10),
        "restarted member caught up",
        || {
            let etcd = &stack.etcd;
            let want = &want;
            async move { (etcd.local_dump(leader, "/skydns/").await.ok()? == *want).then_some(()) }
        },
    )
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_paused_then_continued_loses_nothing_and_serves_nothing_stale() {
    let began = Instant::now();
    let stack = ClusterStack::start().await;
    let mut model = BTreeMap::new();
    for i in 0..20u32 {
        stack.apply(&mut model, &format!("s{i}"), &format!("10.96.20.{}", i + 1));
    }
    let c = stack.etcd.client().await.expect("client");
    expect_exactly(&c, &expected(&model, 30), 15).await;
    let prober = Prober::start(stack.dns, "s0", "10.96.20.1");

    // The leader is the worst member to lose: SIGSTOP it (connections stay open, nothing is
    // answered), change things meanwhile.
    let paused = stack.etcd.wait_leader().await.expect("leader");
    stack.etcd.pause(paused).expect("SIGSTOP");
    let paused_at = Instant::now();
    for i in 15..20u32 {
        stack
            .api
            .delete("v1", "Service", "default", &format!("s{i}"));
        model.remove(&format!("s{i}"));
    }
    for i in 5..10u32 {
        stack.apply(&mut model, &format!("s{i}"), &format!("10.96.21.{}", i + 1));
    }
    for i in 20..30u32 {
        stack.apply(&mut model, &format!("s{i}"), &format!("10.96.20.{}", i + 1));
    }
    // The two others hold quorum: everything is written while the member is stopped.
    let others: Vec<usize> = (0..3).filter(|&i| i != paused).collect();
    let want = expected(&model, 30);
    for &i in &others {
        test_support::eventually(
            Duration::from_secs(20),
            "the running members hold the new state",
            || {
                let (etcd, want) = (&stack.etcd, &want);
                async move { (etcd.local_dump(i, "/skydns/").await.ok()? == *want).then_some(()) }
            },
        )
        .await;
    }
    let written = paused_at.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.etcd.resume(paused).expect("SIGCONT");
    let resumed_at = Instant::now();

    // Once it is back: every member holds exactly the desired records, and skydns answers
    // the latest state for every name (deleted names are gone, changed ones changed).
    for i in 0..3 {
        test_support::eventually(Duration::from_secs(15), "member caught up", || {
            let (etcd, want) = (&stack.etcd, &want);
            async move { (etcd.local_dump(i, "/skydns/").await.ok()? == *want).then_some(()) }
        })
        .await;
    }
    for i in 0..30u32 {
        let name = format!("s{i}");
        wait_answer(stack.dns, &name, model.get(&name).map(String::as_str), 15).await;
    }
    let fresh = resumed_at.elapsed();
    // And stays so: no stale value comes back from the returned member.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..30u32 {
        let name = format!("s{i}");
        wait_answer(stack.dns, &name, model.get(&name).map(String::as_str), 0).await;
    }
    expect_exactly(&c, &want, 5).await;
    let (ok, wrong, unanswered) = prober.finish().await;
    eprintln!(
        "etcd member paused: written through the others {written:?} after SIGSTOP; all fresh {fresh:?} after SIGCONT; {ok} queries answered, {wrong} wrong, {unanswered} unanswered; test {:?}",
        began.elapsed()
    );
    assert_eq!(
        (wrong, unanswered),
        (0, 0),
        "every query answered, correctly"
    );
    stack.stop().await;
}

/// A TCP proxy whose forwarding can be held (bytes wait, in order, until released): the
/// connection looks alive to both sides but nothing gets through, as in a partition.
struct Proxy {
    addr: SocketAddr,
    hold: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (hold, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, rx.clone()));
                    tokio::spawn(pump(sr, cw, rx));
                });
            }
        });
        Proxy { addr, hold, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_hold(&self, hold: bool) {
        self.hold.send_replace(hold);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hold: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hold.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn elected(c: &mut etcd_client::Client) -> Option<String> {
    let resp = c.leader(ELECTION).await.ok()?;
    Some(resp.kv()?.value_str().ok()?.to_string())
}

async fn metric(http: SocketAddr, series: &str) -> f64 {
    let (_, body) = http_get(http, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Two `--leader-elect` replicas; the leader (replica a) reaches etcd through a proxy that is
/// then held. Its lease expires, replica b takes over within the TTL, and a's write that was
/// in flight across the cut reaches etcd only after b leads: the fence (the election key's
/// creation revision, compared by every transaction) refuses it. The replicas write different
/// TTLs (30 / 31), so etcd's history shows who wrote what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube2sky_leader_cut_off_is_fenced_and_the_other_replica_takes_over() {
    use etcd_client::{EventType, WatchOptions};
    let began = Instant::now();
    test_support::init_test_tracing();
    let etcd = EtcdCluster::start(3).await.expect("etcd cluster");
    let api = TestApiServer::start().await.expect("api server");
    let mut model = BTreeMap::new();
    for i in 0..10u32 {
        let (name, ip) = (format!("s{i}"), format!("10.96.30.{}", i + 1));
        api.apply(service_cluster_ip("default", &name, &[&ip], &[]));
        model.insert(name, ip);
    }
    let member0: SocketAddr = etcd
        .endpoint(0)
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let proxy = Proxy::start(member0).await;
    let ttl = Duration::from_secs(2);
    // a: a long request timeout, so its write stays in flight across the cut.
    let replica_a = start_kube2sky(
        &proxy.url(),
        &api.url(),
        &[
            "--leader-elect",
            "--leader-elect-ttl=2s",
            "--leader-elect-id=a",
            "--ttl=30",
            "--etcd-mutation-timeout=30s",
        ],
    )
    .await;
    let mut c = etcd.client().await.expect("client");
    test_support::eventually(Duration::from_secs(15), "replica a leads", || {
        let mut c = c.clone();
        async move { (elected(&mut c).await? == "a").then_some(()) }
    })
    .await;
    expect_exactly(&c, &expected(&model, 30), 15).await;
    let replica_b = start_kube2sky(
        &etcd.endpoint_list(),
        &api.url(),
        &[
            "--leader-elect",
            "--leader-elect-ttl=2s",
            "--leader-elect-id=b",
            "--ttl=31",
            "--etcd-mutation-timeout=2s",
        ],
    )
    .await;
    let _cancel = CancelOnDrop(vec![replica_a.shutdown.clone(), replica_b.shutdown.clone()]);
    wait_ready(replica_b.http, "replica b ready (standby)").await;
    assert_eq!(metric(replica_b.http, "kube2sky_leader").await, 0.0);

    // Every event from here on, with the previous value.
    let cut_rev = c
        .get(VERSION_KEY, None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision())
        .expect("revision");
    let mut stream = c
        .watch(
            "/skydns/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(cut_rev + 1),
            ),
        )
        .await
        .expect("watch");
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let collector = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.message().await {
                let mut ev = events.lock().unwrap();
                for e in resp.events() {
                    if let Some(kv) = e.kv() {
                        ev.push((
                            e.event_type(),
                            kv.key_str().unwrap_or("").to_string(),
                            kv.value_str().unwrap_or("").to_string(),
                            kv.mod_revision(),
                        ));
                    }
                }
            }
        })
    };
    let a_writes_before = metric(replica_a.http, "kube2sky_etcd_writes_total").await;

    // The cut, then a change both replicas see: a (still leader for up to a TTL) sends its
    // transaction into the held proxy.
    proxy.set_hold(true);
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    api.apply(service_cluster_ip(
        "default",
        "during",
        &["10.96.31.1"],
        &[],
    ));
    model.insert("during".into(), "10.96.31.1".into());
    let takeover = test_support::eventually(Duration::from_secs(10), "replica b leads", || {
        let mut c = c.clone();
        async move { (elected(&mut c).await? == "b").then(|| cut_at.elapsed()) }
    })
    .await;
    // b reconciles and writes everything with its TTL.
    expect_exactly(&c, &expected(&model, 31), 10).await;
    let b_synced = cut_at.elapsed();

    // Heal: a's held transaction now reaches etcd and is refused by the fence.
    proxy.set_hold(false);
    test_support::eventually(
        Duration::from_secs(10),
        "a's late write refused",
        || async {
            (metric(
                replica_a.http,
                r#"kube2sky_etcd_errors_total{error="not_leader"}"#,
            )
            .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    test_support::eventually(Duration::from_secs(10), "a is a follower", || async {
        (metric(replica_a.http, "kube2sky_leader").await == 0.0).then_some(())
    })
    .await;
    // Another change after the heal: written by b only.
    api.apply(service_cluster_ip(
        "default",
        "healed",
        &["10.96.31.2"],
        &[],
    ));
    model.insert("healed".into(), "10.96.31.2".into());
    expect_exactly(&c, &expected(&model, 31), 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect_exactly(&c, &expected(&model, 31), 1).await;
    assert_eq!(
        metric(replica_a.http, "kube2sky_etcd_writes_total").await,
        a_writes_before,
        "a committed nothing after the cut"
    );
    assert_eq!(elected(&mut c).await.as_deref(), Some("b"));
    collector.abort();

    // etcd's history since the cut: no write carries a's TTL, and no record flapped (a delete
    // followed by a put of the same key).
    let events = events.lock().unwrap().clone();
    assert!(!events.is_empty(), "b's writes were seen");
    let from_a: Vec<_> = events
        .iter()
        .filter(|(t, _, v, _)| *t == EventType::Put && v.contains(r#""ttl":30"#))
        .collect();
    assert!(
        from_a.is_empty(),
        "writes from the cut-off leader: {from_a:?}"
    );
    let mut deleted = std::collections::HashSet::new();
    let mut flaps = Vec::new();
    for (t, k, _, rev) in &events {
        match t {
            EventType::Delete => {
                deleted.insert(k.clone());
            }
            EventType::Put if deleted.contains(k) => flaps.push((k.clone(), *rev)),
            EventType::Put => {}
        }
    }
    assert!(
        deleted.is_empty() && flaps.is_empty(),
        "deletes {deleted:?}, flaps {flaps:?}"
    );
    eprintln!(
        "kube2sky leader cut off: b elected {takeover:?} after the cut (lease TTL {ttl:?}), etcd exact with b's records {b_synced:?} after the cut; {} events since the cut, 0 from a; test {:?}",
        events.len(),
        began.elapsed()
    );
    assert!(
        takeover < ttl + Duration::from_millis(1500),
        "takeover took {takeover:?}"
    );
    replica_a.stop().await;
    replica_b.stop().await;
    drop(proxy);
}

/// Two `--leader-elect` replicas, both given every endpoint; the etcd leader is SIGSTOPped.
/// The election (lease keep-alives, campaigns) and the writes go on through the two others:
/// changes made meanwhile are written within a few seconds, and exactly one replica leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_elect_replicas_write_through_a_paused_etcd_member() {
    let began = Instant::now();
    test_support::init_test_tracing();
    let etcd = EtcdCluster::start(3).await.expect("etcd cluster");
    let api = TestApiServer::start().await.expect("api server");
    let mut model = BTreeMap::new();
    for i in 0..5u32 {
        let (name, ip) = (format!("s{i}"), format!("10.96.40.{}", i + 1));
        api.apply(service_cluster_ip("default", &name, &[&ip], &[]));
        model.insert(name, ip);
    }
    let mut replicas = Vec::new();
    for id in ["a", "b"] {
        let flag = format!("--leader-elect-id={id}");
        replicas.push(
            start_kube2sky(
                &etcd.endpoint_list(),
                &api.url(),
                &[
                    "--leader-elect",
                    "--leader-elect-ttl=2s",
                    &flag,
                    "--etcd-mutation-timeout=2s",
                ],
            )
            .await,
        );
    }
    let _cancel = CancelOnDrop(replicas.iter().map(|r| r.shutdown.clone()).collect());
    let c = etcd.client().await.expect("client");
    expect_exactly(&c, &expected(&model, 30), 15).await;

    let paused = etcd.wait_leader().await.expect("leader");
    etcd.pause(paused).expect("SIGSTOP");
    let paused_at = Instant::now();
    for round in 0..3u32 {
        for i in 0..5u32 {
            let (name, ip) = (format!("s{i}"), format!("10.96.4{}.{}", round + 1, i + 1));
            api.apply(service_cluster_ip("default", &name, &[&ip], &[]));
            model.insert(name, ip);
        }
        let want = expected(&model, 30);
        let others: Vec<usize> = (0..3).filter(|&i| i != paused).collect();
        for &i in &others {
            test_support::eventually(
                Duration::from_secs(10),
                "written through the running members",
                || {
                    let (etcd, want) = (&etcd, &want);
                    async move {
                        (etcd.local_dump(i, "/skydns/").await.ok()? == *want).then_some(())
                    }
                },
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let written = paused_at.elapsed();
    etcd.resume(paused).expect("SIGCONT");
    let mut leaders = 0.0;
    for r in &replicas {
        leaders += metric(r.http, "kube2sky_leader").await;
    }
    assert_eq!(leaders, 1.0, "exactly one replica leads");
    eprintln!(
        "leader-elect with a paused etcd member: 3 rounds of changes written in {written:?}; test {:?}",
        began.elapsed()
    );
    for r in replicas {
        r.stop().await;
    }
}
