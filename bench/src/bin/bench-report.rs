//! Turn raw benchmark output into results.
//!
//! * `bench-report dnsperf --file OUT --server S --transport T --mix M --phase P
//!    --cpu-ticks N --clk-tck HZ` reads one `dnsperf -v` output, computes qps, latency
//!   percentiles (from every per-query line) and CPU per query, and prints one JSON line.
//! * `bench-report table FILE.jsonl` renders every JSON line (dnsperf runs, memory samples,
//!   kube2sky results) as the Markdown tables of `bench/out/results.md`, with the targets.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Summarise one `dnsperf -v` run as a JSON line.
    Dnsperf {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        server: String,
        #[arg(long)]
        transport: String,
        #[arg(long)]
        mix: String,
        /// `sat` (saturation) or `rate` (fixed rate).
        #[arg(long)]
        phase: String,
        /// Server CPU (utime+stime) used during the run, in clock ticks.
        #[arg(long)]
        cpu_ticks: u64,
        #[arg(long, default_value_t = 100)]
        clk_tck: u64,
        /// CPU seconds dnsperf itself used.
        #[arg(long, default_value_t = 0.0)]
        client_cpu_s: f64,
        /// Wall time over which both CPU figures were taken (dnsperf's whole life).
        #[arg(long, default_value_t = 0.0)]
        window_s: f64,
    },
    /// Render the Markdown tables from a JSON-lines file.
    Table { file: PathBuf },
    /// Render the forwarding benchmark's table (bench/forwarding) with its targets.
    Forwarding { file: PathBuf },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Dnsperf {
            file,
            server,
            transport,
            mix,
            phase,
            cpu_ticks,
            clk_tck,
            client_cpu_s,
            window_s,
        } => {
            let v = summarize(&file)?;
            let completed = v.completed.max(1) as f64;
            let cpu_s = cpu_ticks as f64 / clk_tck as f64;
            let line = json!({
                "kind": "dnsperf",
                "phase": phase, "server": server, "transport": transport, "mix": mix,
                "qps": v.qps, "sent": v.sent, "completed": v.completed, "lost": v.lost,
                "rcodes": v.rcodes, "avg_ms": v.avg_ms,
                "p50_ms": v.p50_ms, "p99_ms": v.p99_ms, "p999_ms": v.p999_ms, "max_ms": v.max_ms,
                "samples": v.samples,
                "cpu_s": cpu_s, "cpu_us_per_query": cpu_s * 1e6 / completed,
                "client_cpu_s": client_cpu_s, "run_s": v.run_s, "window_s": window_s,
            });
            println!("{line}");
        }
        Cmd::Table { file } => print!("{}", table(&read_rows(&file)?)),
        Cmd::Forwarding { file } => print!("{}", forwarding(&read_rows(&file)?)),
    }
    Ok(())
}

fn read_rows(file: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file)?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The forwarding table: per mix and server the median round by qps, and the targets of
/// issue 13 (hits ≥ 1.0 × dnsmasq's qps and CPU per query ≤ Unbound's; misses within 1.2 × of
/// Unbound's CPU per query).
fn forwarding(rows: &[Value]) -> String {
    let mut runs: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for r in rows.iter().filter(|r| s(r, "phase") == "fwd") {
        runs.entry((s(r, "mix").to_string(), s(r, "server").to_string()))
            .or_default()
            .push(r);
    }
    for v in runs.values_mut() {
        v.sort_by(|a, b| f(a, "qps").total_cmp(&f(b, "qps")));
    }
    let median = |m: &str, srv: &str| {
        runs.get(&(m.to_string(), srv.to_string()))
            .and_then(|v| v.get(v.len().saturating_sub(1) / 2).copied())
    };
    let mut out = String::from(
        "| mix | server | qps | CPU µs/q | p50 / p99 ms | rcodes | lost |\n|---|---|---:|---:|---:|---|---:|\n",
    );
    for m in ["hits", "nxhits", "misses"] {
        for srv in ["skydns", "dnsmasq", "unbound"] {
            if let Some(r) = median(m, srv) {
                out.push_str(&format!(
                    "| {m} | {srv} | {} | {:.1} | {} / {} | {} | {} |\n",
                    kqps(f(r, "qps")),
                    f(r, "cpu_us_per_query"),
                    ms(f(r, "p50_ms")),
                    ms(f(r, "p99_ms")),
                    s(r, "rcodes"),
                    f(r, "lost"),
                ));
            }
        }
    }
    out.push_str("\n| target | measured | met |\n|---|---|---|\n");
    let mut target = |label: &str, value: Option<f64>, min: bool, bound: f64| {
        if let Some(v) = value {
            let met = if min { v >= bound } else { v <= bound };
            out.push_str(&format!(
                "| {label} | {v:.2} × | {} |\n",
                if met { "met" } else { "**missed**" }
            ));
        }
    };
    let ratio =
        |m: &str, k: &str, a: &str, b: &str| Some(f(median(m, a)?, k) / f(median(m, b)?, k));
    target(
        "hits: skydns qps ≥ 1.0 × dnsmasq's",
        ratio("hits", "qps", "skydns", "dnsmasq"),
        true,
        1.0,
    );
    target(
        "hits: skydns CPU/query ≤ 1.0 × Unbound's",
        ratio("hits", "cpu_us_per_query", "skydns", "unbound"),
        false,
        1.0,
    );
    target(
        "misses: skydns CPU/query ≤ 1.2 × Unbound's",
        ratio("misses", "cpu_us_per_query", "skydns", "unbound"),
        false,
        1.2,
    );
    out
}

#[derive(Default)]
struct Run {
    qps: f64,
    sent: u64,
    completed: u64,
    lost: u64,
    rcodes: String,
    avg_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    samples: usize,
    run_s: f64,
}

fn number_after(line: &str, label: &str) -> Option<f64> {
    line.trim()
        .strip_prefix(label)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn summarize(path: &PathBuf) -> anyhow::Result<Run> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut run = Run::default();
    let mut lat: Vec<f64> = Vec::with_capacity(1 << 20);
    for line in std::io::BufReader::with_capacity(1 << 20, file).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("> ") {
            // "> NOERROR name type 0.000123"
            if let Some(Ok(s)) = rest.rsplit(' ').next().map(str::parse::<f64>) {
                lat.push(s * 1e3);
            }
            continue;
        }
        let t = line.trim();
        if let Some(v) = number_after(t, "Queries per second:") {
            run.qps = v;
        } else if let Some(v) = number_after(t, "Queries sent:") {
            run.sent = v as u64;
        } else if let Some(v) = number_after(t, "Queries completed:") {
            run.completed = v as u64;
        } else if let Some(v) = number_after(t, "Queries lost:") {
            run.lost = v as u64;
        } else if let Some(v) = number_after(t, "Run time (s):") {
            run.run_s = v;
        } else if let Some(v) = number_after(t, "Average Latency (s):") {
            run.avg_ms = v * 1e3;
        } else if let Some(r) = t.strip_prefix("Response codes:") {
            run.rcodes = r.trim().to_string();
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    run.samples = lat.len();
    run.p50_ms = bench::percentile(&lat, 50.0);
    run.p99_ms = bench::percentile(&lat, 99.0);
    run.p999_ms = bench::percentile(&lat, 99.9);
    run.max_ms = lat.last().copied().unwrap_or(f64::NAN);
    if run.avg_ms == 0.0 && !lat.is_empty() {
        run.avg_ms = lat.iter().sum::<f64>() / lat.len() as f64;
    }
    Ok(run)
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.1}")
    }
}

fn kqps(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1}k", x / 1e3)
    }
}

fn mb(kb: f64) -> String {
    if kb.is_nan() {
        "–".into()
    } else {
        format!("{:.1} MB", kb / 1024.0)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn table(rows: &[Value]) -> String {
    let mut out = String::new();
    // Every round of one configuration; the table shows the round with the median qps.
    let mut dns: BTreeMap<(String, String, String, String), Vec<&Value>> = BTreeMap::new();
    for r in rows.iter().filter(|r| s(r, "kind") == "dnsperf") {
        dns.entry((
            s(r, "phase").to_string(),
            s(r, "transport").to_string(),
            s(r, "mix").to_string(),
            s(r, "server").to_string(),
        ))
        .or_default()
        .push(r);
    }
    // Rounds in the order they ran (results.jsonl is appended run by run), for paired ratios.
    let in_order = dns.clone();
    for runs in dns.values_mut() {
        runs.sort_by(|a, b| f(a, "qps").total_cmp(&f(b, "qps")));
    }
    // Median over rounds of qps(a in round i) / qps(b in round i): runs of one round are
    // seconds apart, so drift in the machine's speed between rounds cancels out.
    let paired = |a: (&str, &str, &str), b: (&str, &str, &str)| -> Option<(f64, String)> {
        let key = |(t, m, srv): (&str, &str, &str)| {
            (
                "sat".to_string(),
                t.to_string(),
                m.to_string(),
                srv.to_string(),
            )
        };
        let (ra, rb) = (in_order.get(&key(a))?, in_order.get(&key(b))?);
        let mut ratios: Vec<f64> = ra
            .iter()
            .zip(rb.iter())
            .map(|(x, y)| f(x, "qps") / f(y, "qps"))
            .filter(|r| r.is_finite())
            .collect();
        if ratios.is_empty() {
            return None;
        }
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        Some((median, each.join(", ")))
    };
    let all = |phase: &str, t: &str, m: &str, srv: &str| {
        dns.get(&(phase.into(), t.into(), m.into(), srv.into()))
            .cloned()
            .unwrap_or_default()
    };
    let get = |phase: &str, t: &str, m: &str, srv: &str| {
        let runs = all(phase, t, m, srv);
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    };
    let spread = |phase: &str, t: &str, m: &str, srv: &str| {
        let runs = all(phase, t, m, srv);
        let q: Vec<String> = runs.iter().map(|r| kqps(f(r, "qps"))).collect();
        q.join(", ")
    };
    let mut targets: Vec<(String, String, bool)> = Vec::new();

    out.push_str(
        "### 1. Query throughput at saturation (dnsperf, fixed time; median of the rounds)\n\n",
    );
    out.push_str(
        "| transport | mix | skydns qps | Knot qps | skydns/Knot | skydns p50 / p99 ms | Knot p50 / p99 ms | skydns CPU µs/q | Knot CPU µs/q | skydns CPU/Knot CPU | lost (s/K) |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for t in ["udp", "tcp"] {
        for m in ["hits", "misses", "nodata"] {
            let (Some(a), Some(b)) = (get("sat", t, m, "skydns"), get("sat", t, m, "knot")) else {
                continue;
            };
            out.push_str(&format!(
                "| {t} | {m} | {} | {} | {:.2} | {} / {} | {} / {} | {:.1} | {:.1} | {:.2} | {} / {} |\n",
                kqps(f(a, "qps")),
                kqps(f(b, "qps")),
                f(a, "qps") / f(b, "qps"),
                ms(f(a, "p50_ms")),
                ms(f(a, "p99_ms")),
                ms(f(b, "p50_ms")),
                ms(f(b, "p99_ms")),
                f(a, "cpu_us_per_query"),
                f(b, "cpu_us_per_query"),
                f(a, "cpu_us_per_query") / f(b, "cpu_us_per_query"),
                f(a, "lost"),
                f(b, "lost"),
            ));
        }
    }
    out.push('\n');
    out.push_str(
        "Median round: response codes (skydns / Knot), and the CPU share of the run used by the \
         server and by dnsperf (100% = one core):\n\n",
    );
    // CPU over the wall time dnsperf lived (start-up and the wait for stragglers included).
    let share = |r: &Value, k: &str| {
        let w = f(r, "window_s");
        100.0 * f(r, k) / if w > 0.0 { w } else { f(r, "run_s") }
    };
    for t in ["udp", "tcp"] {
        for m in ["hits", "misses", "nodata"] {
            if let (Some(a), Some(b)) = (get("sat", t, m, "skydns"), get("sat", t, m, "knot")) {
                out.push_str(&format!(
                    "- {t} {m}: {} / {}; CPU skydns {:.0}% + dnsperf {:.0}%, Knot {:.0}% + dnsperf {:.0}%\n",
                    s(a, "rcodes"),
                    s(b, "rcodes"),
                    share(a, "cpu_s"),
                    share(a, "client_cpu_s"),
                    share(b, "cpu_s"),
                    share(b, "client_cpu_s"),
                ));
                out.push_str(&format!(
                    "  - qps of every round: skydns {}; Knot {}\n",
                    spread("sat", t, m, "skydns"),
                    spread("sat", t, m, "knot")
                ));
            }
        }
    }
    out.push('\n');
    // Targets on paired ratios (see `paired`); the ratio of the median rounds is shown beside.
    let mut ratio_target =
        |label: String, a: (&str, &str, &str), b: (&str, &str, &str), min: f64| {
            let Some((median, each)) = paired(a, b) else {
                return;
            };
            let of_medians = match (get("sat", a.0, a.1, a.2), get("sat", b.0, b.1, b.2)) {
                (Some(x), Some(y)) => format!(
                    "; ratio of the median rounds {:.2}",
                    f(x, "qps") / f(y, "qps")
                ),
                _ => String::new(),
            };
            targets.push((
                label,
                format!("{median:.2} × (rounds: {each}{of_medians})"),
                median >= min,
            ));
        };
    ratio_target(
        "UDP hits: skydns ≥ 0.9 × Knot".into(),
        ("udp", "hits", "skydns"),
        ("udp", "hits", "knot"),
        0.9,
    );
    for m in ["misses", "nodata"] {
        ratio_target(
            format!("UDP {m}: ≥ 0.9 × skydns's own UDP hit rate"),
            ("udp", m, "skydns"),
            ("udp", "hits", "skydns"),
            0.9,
        );
    }
    for m in ["hits", "misses", "nodata"] {
        ratio_target(
            format!("TCP {m}: skydns ≥ 0.6 × Knot"),
            ("tcp", m, "skydns"),
            ("tcp", m, "knot"),
            0.6,
        );
    }

    let worst: Vec<&Value> = dns
        .iter()
        .filter(|((phase, ..), _)| phase == "worst")
        .filter_map(|(_, runs)| runs.first().copied())
        .collect();
    if !worst.is_empty() {
        out.push_str("### 1b. Worst-case queries (skydns with the answer cache off, UDP, one query repeated)\n\n");
        out.push_str("| query | qps | CPU µs/q | × an ordinary hit | rcodes |\n");
        out.push_str("|---|---:|---:|---:|---|\n");
        let ordinary = worst
            .iter()
            .find(|r| s(r, "mix") == "w-ordinary")
            .map(|r| f(r, "cpu_us_per_query"));
        for r in &worst {
            let cpu = f(r, "cpu_us_per_query");
            out.push_str(&format!(
                "| {} | {} | {:.1} | {} | {} |\n",
                s(r, "mix").trim_start_matches("w-"),
                kqps(f(r, "qps")),
                cpu,
                ordinary.map_or("–".to_string(), |o| format!("{:.1}", cpu / o)),
                s(r, "rcodes"),
            ));
        }
        out.push('\n');
    }

    let rate: Vec<&Value> = dns
        .values()
        .flatten()
        .copied()
        .filter(|r| s(r, "phase") == "rate")
        .collect();
    if !rate.is_empty() {
        out.push_str("### 2. Latency at a fixed rate\n\n");
        out.push_str("| transport | mix | server | achieved qps | p50 ms | p99 ms | p99.9 ms | max ms | CPU µs/q | lost |\n");
        out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for t in ["udp", "tcp"] {
            for m in ["hits", "misses", "nodata"] {
                for srv in ["skydns", "knot"] {
                    if let Some(r) = get("rate", t, m, srv) {
                        out.push_str(&format!(
                            "| {t} | {m} | {srv} | {:.0} | {} | {} | {} | {} | {:.1} | {} |\n",
                            f(r, "qps"),
                            ms(f(r, "p50_ms")),
                            ms(f(r, "p99_ms")),
                            ms(f(r, "p999_ms")),
                            ms(f(r, "max_ms")),
                            f(r, "cpu_us_per_query"),
                            f(r, "lost"),
                        ));
                    }
                }
            }
        }
        out.push('\n');
    }

    let k2s: Vec<&Value> = rows.iter().filter(|r| s(r, "kind") == "kube2sky").collect();
    if let Some(k) = k2s.last() {
        out.push_str("### 3. kube2sky at scale\n\n");
        out.push_str("| measure | value |\n|---|---:|\n");
        let items: &[(&str, &str, &str)] = &[
            ("services / endpoints in the API server", "objects", ""),
            ("records (etcd keys) expected", "expected_keys", ""),
            (
                "initial sync: start → all records in etcd",
                "sync_seconds",
                "s",
            ),
            (
                "etcd revisions during initial sync (writes)",
                "sync_revisions",
                "",
            ),
            (
                "etcd keys written during initial sync",
                "sync_keys_written",
                "",
            ),
            (
                "records differing from records.md §3 after sync",
                "sync_value_mismatches",
                "",
            ),
            ("kube2sky peak RSS (VmHWM) after sync", "sync_hwm_kb", "kb"),
            ("kube2sky RSS after sync", "sync_rss_kb", "kb"),
            ("churn: endpoint changes applied", "churn_changes", ""),
            ("churn: rate", "churn_rate", "/s"),
            ("churn: API change → DNS answer p50", "churn_p50_ms", "ms"),
            ("churn: API change → DNS answer p90", "churn_p90_ms", "ms"),
            ("churn: API change → DNS answer p99", "churn_p99_ms", "ms"),
            ("churn: API change → DNS answer max", "churn_max_ms", "ms"),
            ("churn: changes never seen in DNS", "churn_unseen", ""),
            (
                "churn: etcd revisions per change",
                "churn_revisions_per_change",
                "",
            ),
            (
                "kube2sky RSS before forced relist",
                "relist_before_rss_kb",
                "kb",
            ),
            (
                "kube2sky peak RSS during relist (sampled)",
                "relist_peak_rss_kb",
                "kb",
            ),
            (
                "kube2sky RSS after forced relist",
                "relist_after_rss_kb",
                "kb",
            ),
            (
                "kube2sky peak RSS (VmHWM) after relist",
                "relist_hwm_kb",
                "kb",
            ),
            ("relist: etcd revisions (writes)", "relist_revisions", ""),
            (
                "skydns RSS at the end (fed by kube2sky)",
                "skydns_rss_kb",
                "kb",
            ),
        ];
        for (label, key, unit) in items {
            let Some(v) = k.get(*key) else { continue };
            let text = match (*unit, v.as_f64()) {
                ("kb", Some(x)) => mb(x),
                ("ms", Some(x)) => format!("{} ms", ms(x)),
                ("s", Some(x)) => format!("{x:.2} s"),
                ("/s", Some(x)) => format!("{x:.1}/s"),
                _ => v.to_string().trim_matches('"').to_string(),
            };
            out.push_str(&format!("| {label} | {text} |\n"));
        }
        if let Some(note) = k.get("note").and_then(Value::as_str) {
            out.push_str(&format!("\n{note}\n"));
        }
        out.push('\n');
        if let Some(x) = k.get("churn_p99_ms").and_then(Value::as_f64) {
            targets.push((
                "API change → DNS answer p99 < 100 ms".into(),
                format!("{} ms", ms(x)),
                x < 100.0,
            ));
        }
        if let Some(x) = k.get("sync_seconds").and_then(Value::as_f64) {
            targets.push((
                "initial sync 10k svc / 100k endpoints < 15 s".into(),
                format!("{x:.2} s"),
                x < 15.0,
            ));
        }
        let hwm = f(k, "relist_hwm_kb").max(f(k, "sync_hwm_kb"));
        if !hwm.is_nan() {
            targets.push((
                "kube2sky RSS < 200 MB (peak)".into(),
                mb(hwm),
                hwm < 200.0 * 1024.0,
            ));
        }
        let (before, after) = (f(k, "relist_before_rss_kb"), f(k, "relist_peak_rss_kb"));
        if !before.is_nan() && !after.is_nan() {
            targets.push((
                "kube2sky RSS not doubling on relist (peak/before)".into(),
                format!("{:.2} ×", after / before),
                after < 2.0 * before,
            ));
        }
    }

    let mem: Vec<&Value> = rows.iter().filter(|r| s(r, "kind") == "mem").collect();
    if !mem.is_empty() {
        out.push_str(
            "### 4. Memory\n\n| process | when | RSS | peak RSS (VmHWM) |\n|---|---|---:|---:|\n",
        );
        for m in &mem {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                s(m, "process"),
                s(m, "when"),
                mb(f(m, "rss_kb")),
                mb(f(m, "hwm_kb"))
            ));
        }
        out.push('\n');
        let skydns_hwm = mem
            .iter()
            .filter(|m| s(m, "process") == "skydns")
            .map(|m| f(m, "hwm_kb"))
            .fold(f64::NAN, f64::max);
        if !skydns_hwm.is_nan() {
            targets.push((
                "skydns RSS < 150 MB holding 110k records (peak)".into(),
                mb(skydns_hwm),
                skydns_hwm < 150.0 * 1024.0,
            ));
        }
    }

    if !targets.is_empty() {
        out.push_str(
            "### Targets\n\nThroughput ratios are paired: the median over rounds of the ratio \
             within one round (its runs are seconds apart, so the machine's drift between rounds \
             cancels out); each round's ratio and the ratio of the median rounds are listed.\n\n\
             | target | measured | |\n|---|---:|---|\n",
        );
        for (t, m, ok) in &targets {
            out.push_str(&format!("| {t} | {m} | {} |\n", verdict(*ok)));
        }
        out.push('\n');
    }
    out
}
