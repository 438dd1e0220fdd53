//! A rolling restart of two replicas behind one address loses no query. Two skydns processes
//! (the built binary) share a real etcd; a small UDP load balancer in the test stands for the
//! Service: it sends each query to a replica whose `/readiness` said 200 at its last poll
//! (every 500 ms, as endpoints follow readiness with a delay). While a client sends 200
//! queries a second (each retried once after 2 s, as a stub resolver does), each replica in
//! turn gets SIGTERM, exits, and is started again. With `--lameduck` longer than the
//! balancer's poll every query is answered, correctly, and next to no first attempt is lost;
//! with `--lameduck 0` the first attempts sent in the window before the balancer notices are
//! lost (the test runs that too, to show its check can fail).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// The one record these tests ask for.
const WEB: (&str, &str) = (
    "/skydns/local/kube/svc/default/web",
    r#"{"host":"10.5.0.1"}"#,
);
use tokio::net::UdpSocket;

struct Replica {
    dns: u16,
    http: u16,
    child: Option<Child>,
}

impl Replica {
    fn start(&mut self, etcd: &str, lameduck: &str) {
        let child = Command::new(env!("CARGO_BIN_EXE_skydns"))
            .args(["--addr", &format!("127.0.0.1:{}", self.dns)])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", self.http)])
            .args(["--domain", "kube.local", "--machines", etcd, "--no-rec"])
            .args(["--lameduck", lameduck])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn skydns");
        self.child = Some(child);
    }

    /// SIGTERM, then wait (bounded) for the exit; the exit code.
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..150 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn ready(http: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], http).into();
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            test_support::http::get(addr, "/readiness")
        )
        .await,
        Ok((200, _))
    )
}

async fn wait_ready(http: u16) {
    test_support::eventually(Duration::from_secs(10), "replica ready", || async {
        ready(http).await.then_some(())
    })
    .await;
}

/// How long the client (and the balancer) wait for a reply; a stub resolver waits 5 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// How often the balancer reads the replicas' readiness.
const POLL: Duration = Duration::from_millis(500);

/// The Service: forwards each datagram to a replica that was ready at the last poll.
async fn balancer(backends: Vec<(u16, u16)>, stop: Arc<AtomicBool>) -> SocketAddr {
    let ready_now = Arc::new(Mutex::new(vec![false; backends.len()]));
    {
        let (ready_now, backends, stop) = (ready_now.clone(), backends.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (i, (_, http)) in backends.iter().enumerate() {
                    let r = ready(*http).await;
                    ready_now.lock().unwrap()[i] = r;
                }
                tokio::time::sleep(POLL).await;
            }
        });
    }
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut next = 0usize;
        let mut buf = vec![0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let Ok(Ok((n, client))) =
                tokio::time::timeout(Duration::from_millis(200), front.recv_from(&mut buf)).await
            else {
                continue;
            };
            let up = {
                let r = ready_now.lock().unwrap();
                let candidates: Vec<usize> = (0..r.len()).filter(|&i| r[i]).collect();
                if candidates.is_empty() {
                    continue;
                }
                next += 1;
                backends[candidates[next % candidates.len()]].0
            };
            let packet = buf[..n].to_vec();
            let front = front.clone();
            tokio::spawn(async move {
                let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                if sock.send_to(&packet, ("127.0.0.1", up)).await.is_err() {
                    return;
                }
                let mut reply = vec![0u8; 4096];
                if let Ok(Ok(n)) = tokio::time::timeout(ANSWER_WITHIN, sock.recv(&mut reply)).await
                {
                    let _ = front.send_to(&reply[..n], client).await;
                }
            });
        }
    });
    addr
}

/// One query through the balancer: `Some(true)` answered right, `Some(false)` wrong, `None`
/// no answer within [`ANSWER_WITHIN`].
async fn ask(server: SocketAddr, id: u16) -> Option<bool> {
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("web.default.svc.kube.local.").unwrap(),
        RecordType::A,
    ));
    let sock = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    sock.send_to(&q.to_vec().ok()?, server).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(ANSWER_WITHIN, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let reply = Message::from_vec(&buf[..n]).ok()?;
    Some(
        reply.metadata.id == id
            && reply.answers.iter().any(
                |r| matches!(&r.data, RData::A(a) if a.0 == std::net::Ipv4Addr::new(10, 5, 0, 1)),
            ),
    )
}

/// What a run saw.
struct Outcome {
    sent: usize,
    /// Queries whose first attempt got no answer in time.
    first_lost: usize,
    /// Queries not answered after one retry (a stub resolver's second attempt).
    unanswered: usize,
    wrong: usize,
    exits: Vec<Option<i32>>,
}

/// Restart both replicas in turn under load.
async fn rolling_restart(lameduck: &str) -> Outcome {
    let etcd = common::etcd_with(&[WEB]).await;
    let mut replicas: Vec<Replica> = (0..2)
        .map(|_| Replica {
            dns: test_support::free_port(),
            http: test_support::free_port(),
            child: None,
        })
        .collect();
    for r in &mut replicas {
        r.start(&etcd.endpoint(), lameduck);
        wait_ready(r.http).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let lb = balancer(
        replicas.iter().map(|r| (r.dns, r.http)).collect(),
        stop.clone(),
    )
    .await;
    // Until the balancer's first poll is in, queries would have nowhere to go.
    test_support::eventually(Duration::from_secs(5), "balancer ready", || async {
        ask(lb, 1).await.filter(|ok| *ok)
    })
    .await;

    let (sent, first_lost, unanswered, wrong) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = {
        let (sent, first_lost, unanswered, wrong, stop) = (
            sent.clone(),
            first_lost.clone(),
            unanswered.clone(),
            wrong.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut id = 2u16;
            let mut inflight = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                id = id.wrapping_add(1);
                sent.fetch_add(1, Ordering::Relaxed);
                let (first_lost, unanswered, wrong) =
                    (first_lost.clone(), unanswered.clone(), wrong.clone());
                inflight.push(tokio::spawn(async move {
                    let mut answer = ask(lb, id).await;
                    if answer.is_none() {
                        first_lost.fetch_add(1, Ordering::Relaxed);
                        answer = ask(lb, id.wrapping_add(32768)).await;
                    }
                    match answer {
                        None => unanswered.fetch_add(1, Ordering::Relaxed),
                        Some(false) => wrong.fetch_add(1, Ordering::Relaxed),
                        Some(true) => 0,
                    };
                }));
            }
            for t in inflight {
                let _ = t.await;
            }
        })
    };
    let mut codes = Vec::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let endpoint = etcd.endpoint();
    for r in &mut replicas {
        codes.push(tokio::task::block_in_place(|| r.stop()));
        r.start(&endpoint, lameduck);
        wait_ready(r.http).await;
        // The balancer takes it back at its next poll.
        tokio::time::sleep(POLL * 2).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    Outcome {
        sent: sent.load(Ordering::Relaxed),
        first_lost: first_lost.load(Ordering::Relaxed),
        unanswered: unanswered.load(Ordering::Relaxed),
        wrong: wrong.load(Ordering::Relaxed),
        exits: codes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_a_lameduck_loses_no_query() {
    // One scenario after the other: both at once would compete for the machine's cores.
    let with = rolling_restart("1500ms").await;
    let without = rolling_restart("0").await;
    for (name, o) in [("lameduck 1.5s", &with), ("lameduck 0", &without)] {
        eprintln!(
            "{name}: {} sent, {} first attempts lost, {} unanswered after a retry, {} wrong, exits {:?}",
            o.sent, o.first_lost, o.unanswered, o.wrong, o.exits
        );
    }
    assert!(
        with.sent > 400,
        "the load ran throughout ({} queries)",
        with.sent
    );
    assert_eq!(
        (with.unanswered, with.wrong),
        (0, 0),
        "of {} queries",
        with.sent
    );
    assert_eq!(
        with.exits,
        vec![Some(0), Some(0)],
        "each replica exits 0 after its lameduck"
    );
    // Without a lameduck, queries sent to a replica that stopped before the balancer noticed
    // are lost at the first attempt; with one, (next to) none are: the check can fail.
    assert!(
        without.first_lost >= 5 && with.first_lost * 4 < without.first_lost,
        "first attempts lost: {} with the lameduck, {} without",
        with.first_lost,
        without.first_lost
    );
}
