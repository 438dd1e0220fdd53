//! Part 3 of the benchmark: kube2sky at scale.
//!
//! Starts a real etcd and the test API server (in this process) holding the benchmark dataset
//! (10k services, 100k endpoints in EndpointSlices, mixed ClusterIP and headless), then runs the
//! release `kube2sky` binary against them and measures:
//!
//! * initial sync: time from spawning kube2sky until etcd holds exactly the records records.md
//!   §3 prescribes (followed with an etcd watch), etcd revisions (= write transactions) and keys
//!   written, kube2sky's peak RSS;
//! * steady churn: `--churn-rate` endpoint changes per second (an endpoint's address replaced)
//!   for `--churn-seconds`, and for each the time from the API change until a client polling
//!   the release `skydns` binary (UDP, every `--poll-ms`) gets the new answer;
//! * a forced relist (every watch expired with 410): kube2sky's RSS before, peak and after, and
//!   the writes it caused.
//!
//! Prints one JSON line (`"kind":"kube2sky"`) for `bench-report table`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::{percentile, proc_status_kb, Dataset, Rng, Service};
use clap::Parser;
use etcd_client::{EventType, GetOptions, WatchOptions};
use futures::StreamExt;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{json, Value};
use test_support::dns::{build_query, exchange_raw, Transport};
use test_support::{objects, EtcdProcess, TestApiServer};

#[derive(Parser)]
struct Args {
    /// The kube2sky binary (release).
    #[arg(long)]
    kube2sky: PathBuf,
    /// The skydns binary (release).
    #[arg(long)]
    skydns: PathBuf,
    /// Where to put kube2sky's and skydns's logs.
    #[arg(long, default_value = ".")]
    log_dir: PathBuf,
    #[command(flatten)]
    dataset: Dataset,
    /// Give up on the initial sync after this many seconds.
    #[arg(long, default_value_t = 120)]
    sync_timeout: u64,
    #[arg(long, default_value_t = 50.0)]
    churn_rate: f64,
    #[arg(long, default_value_t = 20)]
    churn_seconds: u64,
    /// How often the DNS client polls skydns for a changed name.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// How long to follow kube2sky after forcing a relist.
    #[arg(long, default_value_t = 15)]
    relist_seconds: u64,
}

/// What the etcd watch saw under the prefix.
#[derive(Default)]
struct EtcdView {
    values: HashMap<String, String>,
    /// Expected keys whose value differs from the expectation (missing counts).
    mismatched: usize,
    /// Keys present that the expectation does not have.
    extra: usize,
    puts: u64,
    deletes: u64,
    /// When the view last became exactly the expectation.
    matched_at: Option<Instant>,
}

impl EtcdView {
    fn apply(&mut self, expected: &HashMap<String, String>, key: String, value: Option<String>) {
        let want = expected.get(&key);
        let before_ok = want.is_some() && self.values.get(&key) == want;
        let before_extra = want.is_none() && self.values.contains_key(&key);
        match value {
            Some(v) => {
                self.puts += 1;
                self.values.insert(key.clone(), v);
            }
            None => {
                self.deletes += 1;
                self.values.remove(&key);
            }
        }
        let after_ok = want.is_some() && self.values.get(&key) == want;
        let after_extra = want.is_none() && self.values.contains_key(&key);
        match (before_ok, after_ok) {
            (true, false) => self.mismatched += 1,
            (false, true) => self.mismatched -= 1,
            _ => {}
        }
        match (before_extra, after_extra) {
            (false, true) => self.extra += 1,
            (true, false) => self.extra -= 1,
            _ => {}
        }
        if self.mismatched == 0 && self.extra == 0 {
            self.matched_at.get_or_insert_with(Instant::now);
        } else {
            self.matched_at = None;
        }
    }
}

struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(bin: &PathBuf, args: &[String], log: PathBuf) -> anyhow::Result<Proc> {
        let log =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        Ok(Proc { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kb(&self, field: &str) -> f64 {
        proc_status_kb(self.pid(), field).map_or(f64::NAN, |v| v as f64)
    }

    fn check_alive(&mut self, what: &str) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{what} exited: {status}");
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slice_of(s: &Service) -> Value {
    let eps: Vec<objects::EndpointSpec> = s
        .endpoints
        .iter()
        .map(|e| objects::endpoint(&[&e.ip.to_string()], e.hostname.as_deref(), Some(true)))
        .collect();
    objects::endpoint_slice(
        &s.ns,
        &format!("{}-abcde", s.name),
        &s.name,
        "IPv4",
        &eps,
        &[objects::port(s.port_name, s.port, "TCP")],
    )
}

fn service_of(s: &Service) -> Value {
    let ports = [objects::port(s.port_name, s.port, "TCP")];
    match s.cluster_ip {
        Some(ip) => objects::service_cluster_ip(&s.ns, &s.name, &[&ip.to_string()], &ports),
        None => objects::service_headless(&s.ns, &s.name, &ports),
    }
}

async fn revision(client: &mut etcd_client::Client) -> anyhow::Result<i64> {
    let r = client
        .get("/", Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(r.header().map(|h| h.revision()).unwrap_or_default())
}

/// Poll skydns for `name` A until it answers exactly `ip`; the elapsed time since `since`.
async fn await_answer(
    server: SocketAddr,
    name: String,
    ip: Ipv4Addr,
    since: Instant,
    poll: Duration,
    limit: Duration,
) -> Option<Duration> {
    let q = build_query(&name, RecordType::A, None)
        .ok()?
        .to_vec()
        .ok()?;
    while since.elapsed() < limit {
        if let Ok(reply) =
            exchange_raw(server, &q, Transport::Udp, Duration::from_millis(500)).await
        {
            if let Ok(msg) = Message::from_vec(&reply) {
                let got: Vec<Ipv4Addr> = msg
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                if got == [ip] {
                    return Some(since.elapsed());
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t_main = Instant::now();
    let phase = |what: &str| eprintln!("[{:7.1}s] {what}", t_main.elapsed().as_secs_f64());
    let ds = args.dataset;
    ds.validate()?;
    let zone = bench::zone();
    let expected: Arc<HashMap<String, String>> =
        Arc::new(ds.etcd_records(&zone).into_iter().collect());
    let mut services = ds.services();
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), json!("kube2sky"));
    out.insert(
        "objects".into(),
        json!(format!(
            "{} / {}",
            ds.services_total(),
            ds.endpoints_total()
        )),
    );
    out.insert("expected_keys".into(), json!(expected.len()));

    // --- API server and etcd.
    let t = Instant::now();
    let api = TestApiServer::start().await?;
    for n in 0..ds.namespaces {
        api.apply(objects::namespace(&Dataset::namespace(n)));
    }
    for s in &services {
        api.apply(service_of(s));
        api.apply(slice_of(s));
    }
    phase(&format!(
        "API server filled in {:.1}s",
        t.elapsed().as_secs_f64()
    ));
    let etcd = EtcdProcess::start().await?;
    phase("etcd started");
    let mut client = etcd.client().await?;
    let rev0 = revision(&mut client).await?;

    // --- Follow etcd with a watch from the current revision.
    let view = Arc::new(Mutex::new(EtcdView {
        mismatched: expected.len(),
        ..Default::default()
    }));
    {
        let mut stream = client
            .watch(
                "/skydns/",
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(rev0 + 1),
                ),
            )
            .await?;
        let view = view.clone();
        let expected = expected.clone();
        tokio::spawn(async move {
            while let Some(Ok(resp)) = stream.next().await {
                let mut v = view.lock().unwrap();
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let value = match ev.event_type() {
                        EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                        EventType::Delete => None,
                    };
                    v.apply(&expected, key, value);
                }
            }
        });
    }

    // --- Initial sync.
    let healthz = test_support::free_port();
    let k2s_args = vec![
        "--kube-master-url".to_string(),
        api.url(),
        "--etcd-server".into(),
        etcd.endpoint(),
        "--domain".into(),
        bench::ZONE.into(),
        "--healthz-port".into(),
        healthz.to_string(),
        "--healthz-bind-address".into(),
        "127.0.0.1".into(),
    ];
    let started = Instant::now();
    let mut k2s = Proc::spawn(&args.kube2sky, &k2s_args, args.log_dir.join("kube2sky.log"))?;
    let mut hwm = 0f64;
    let synced_at = loop {
        if let Some(at) = view.lock().unwrap().matched_at {
            break Some(at);
        }
        k2s.check_alive("kube2sky")?;
        hwm = hwm.max(k2s.kb("VmHWM"));
        if started.elapsed() > Duration::from_secs(args.sync_timeout) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let stragglers (anything written after the records matched) show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rev1 = revision(&mut client).await?;
    {
        let v = view.lock().unwrap();
        match synced_at {
            Some(at) => {
                out.insert("sync_seconds".into(), json!((at - started).as_secs_f64()));
            }
            None => {
                out.insert(
                    "sync_seconds".into(),
                    json!(format!("not reached in {}s", args.sync_timeout)),
                );
            }
        }
        out.insert(
            "sync_value_mismatches".into(),
            json!(v.mismatched + v.extra),
        );
        out.insert("sync_revisions".into(), json!(rev1 - rev0));
        out.insert(
            "sync_keys_written".into(),
            json!(format!("{} puts, {} deletes", v.puts, v.deletes)),
        );
        if v.mismatched + v.extra > 0 {
            let sample: Vec<String> = expected
                .iter()
                .filter(|(k, want)| v.values.get(*k) != Some(*want))
                .take(3)
                .map(|(k, want)| format!("{k}: want {want}, have {:?}", v.values.get(k)))
                .collect();
            eprintln!("records differing from the expectation, e.g. {sample:#?}");
        }
    }
    out.insert("sync_hwm_kb".into(), json!(hwm.max(k2s.kb("VmHWM"))));
    out.insert("sync_rss_kb".into(), json!(k2s.kb("VmRSS")));
    phase(&format!("sync: {out:?}"));

    // --- skydns on the same etcd.
    let dns_port = test_support::free_port();
    let dns: SocketAddr = format!("127.0.0.1:{dns_port}").parse()?;
    let metrics_port = test_support::free_port();
    let mut skydns = Proc::spawn(
        &args.skydns,
        &[
            "--addr".into(),
            dns.to_string(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--machines".into(),
            etcd.endpoint(),
            "--domain".into(),
            format!("{}.", bench::ZONE),
            "--no-rec".into(),
        ],
        args.log_dir.join("skydns-part3.log"),
    )?;
    // Ready when it answers a name kube2sky wrote.
    let probe = &services[0];
    let probe_name = zone.service_fqdn(&probe.ns, &probe.name);
    let probe_ip = probe.cluster_ip.unwrap_or(Ipv4Addr::LOCALHOST);
    if await_answer(
        dns,
        probe_name,
        probe_ip,
        Instant::now(),
        Duration::from_millis(50),
        Duration::from_secs(60),
    )
    .await
    .is_none()
    {
        skydns.check_alive("skydns")?;
        bail!("skydns did not answer within 60s");
    }

    phase("skydns answers");
    // --- Churn: replace one endpoint address per tick, poll skydns for the new answer.
    let rev_churn0 = revision(&mut client).await?;
    let mut rng = Rng::new(7);
    let next_ip = AtomicU64::new(0);
    let interval = Duration::from_secs_f64(1.0 / args.churn_rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pollers = Vec::new();
    let churn_started = Instant::now();
    let changes = (args.churn_rate * args.churn_seconds as f64) as usize;
    let endpoints_total = ds.endpoints_total();
    let mut touched = std::collections::HashSet::new();
    for _ in 0..changes {
        ticker.tick().await;
        // Never the same endpoint twice: a second change would hide the first from its poller.
        let (si, ei) = loop {
            let si = rng.below(services.len());
            let ei = rng.below(services[si].endpoints.len());
            if touched.insert((si, ei)) || touched.len() >= endpoints_total {
                break (si, ei);
            }
        };
        let s = &mut services[si];
        let n = next_ip.fetch_add(1, Ordering::Relaxed) as u32;
        let ip = Ipv4Addr::from(u32::from_be_bytes([10, 200, 0, 0]) + 1 + n);
        s.endpoints[ei].ip = ip;
        let name = zone.endpoint_fqdn(&s.ns, &s.name, &s.endpoints[ei].label());
        let slice = slice_of(s);
        let at = Instant::now();
        api.apply(slice);
        pollers.push(tokio::spawn(await_answer(
            dns,
            name,
            ip,
            at,
            Duration::from_millis(args.poll_ms),
            Duration::from_secs(10),
        )));
    }
    let churn_elapsed = churn_started.elapsed();
    let mut lat = Vec::new();
    let mut unseen = 0;
    for p in pollers {
        match p.await? {
            Some(d) => lat.push(ms(d)),
            None => unseen += 1,
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let rev_churn1 = revision(&mut client).await?;
    out.insert("churn_changes".into(), json!(changes));
    out.insert(
        "churn_rate".into(),
        json!(changes as f64 / churn_elapsed.as_secs_f64()),
    );
    out.insert("churn_p50_ms".into(), json!(percentile(&lat, 50.0)));
    out.insert("churn_p90_ms".into(), json!(percentile(&lat, 90.0)));
    out.insert("churn_p99_ms".into(), json!(percentile(&lat, 99.0)));
    out.insert(
        "churn_max_ms".into(),
        json!(lat.last().copied().unwrap_or(f64::NAN)),
    );
    out.insert("churn_unseen".into(), json!(unseen));
    out.insert(
        "churn_revisions_per_change".into(),
        json!(format!(
            "{:.2}",
            (rev_churn1 - rev_churn0) as f64 / changes.max(1) as f64
        )),
    );
    phase(&format!(
        "churn done: p50 {:.1} ms p99 {:.1} ms",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    ));

    // --- Forced relist.
    tokio::time::sleep(Duration::from_secs(2)).await;
    k2s.check_alive("kube2sky")?;
    let before = k2s.kb("VmRSS");
    let rev_relist0 = revision(&mut client).await?;
    let requests_before = api.requests().len();
    api.expire_watches();
    let t = Instant::now();
    let mut peak = before;
    while t.elapsed() < Duration::from_secs(args.relist_seconds) {
        peak = peak.max(k2s.kb("VmRSS"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    k2s.check_alive("kube2sky")?;
    let relists = api.requests()[requests_before..]
        .iter()
        .filter(|r| {
            !r.contains("watch=") && (r.contains("/services") || r.contains("/endpointslices"))
        })
        .count();
    out.insert("relist_before_rss_kb".into(), json!(before));
    out.insert("relist_peak_rss_kb".into(), json!(peak));
    out.insert("relist_after_rss_kb".into(), json!(k2s.kb("VmRSS")));
    out.insert("relist_hwm_kb".into(), json!(k2s.kb("VmHWM")));
    out.insert(
        "relist_revisions".into(),
        json!(revision(&mut client).await? - rev_relist0),
    );
    out.insert("relist_list_requests".into(), json!(relists));
    out.insert("skydns_rss_kb".into(), json!(skydns.kb("VmRSS")));
    out.insert(
        "note".into(),
        json!(format!(
            "Peak RSS sampled every 50 ms during the {}s after the relist: {:.1} MB; list requests seen: {relists}.",
            args.relist_seconds,
            peak / 1024.0
        )),
    );
    phase("relist done");
    println!("{}", Value::Object(out));
    drop(skydns);
    drop(k2s);
    Ok(())
}
