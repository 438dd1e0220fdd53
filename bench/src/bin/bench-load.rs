//! Write the benchmark dataset into etcd exactly as kube2sky would (records.md §3), and emit the
//! equivalent Knot DNS zone files plus dnsperf query files for each mix.
//!
//! `bench-load --etcd http://127.0.0.1:2379 --out DIR` (omit `--etcd` to only write files).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bench::{Dataset, Mix};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// etcd endpoint to load; none: only write the files.
    #[arg(long)]
    etcd: Option<String>,
    /// Directory for the zone files and query files.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    dataset: Dataset,
    /// Queries per mix file (dnsperf loops over the file).
    #[arg(long, default_value_t = 200_000)]
    queries: usize,
    /// Transactions in flight at once while loading.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ds = args.dataset;
    ds.validate()?;
    let zone = bench::zone();
    std::fs::create_dir_all(&args.out).context("create --out")?;

    let mut kv: Vec<(String, String)> = ds.etcd_records(&zone).into_iter().collect();
    kv.push(Dataset::ns_record(&zone));
    let zones = ds.knot_zones();
    let zone_rrs: usize = zones
        .iter()
        .map(|(_, text)| text.lines().filter(|l| l.contains(" IN ")).count())
        .sum();
    for (origin, text) in &zones {
        let path = args.out.join(format!("{}zone", origin));
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    for mix in Mix::ALL {
        let path = args.out.join(format!("queries-{}.txt", mix.name()));
        std::fs::write(&path, ds.queries(mix, args.queries, 42))
            .with_context(|| format!("write {}", path.display()))?;
    }

    let mut summary = format!(
        "services={} (headless={}) endpoints={} etcd_keys={} zone_rrs={}",
        ds.services_total(),
        ds.namespaces * ds.headless_per_ns,
        ds.endpoints_total(),
        kv.len(),
        zone_rrs
    );
    if let Some(endpoint) = &args.etcd {
        let client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .context("connect to etcd")?;
        let started = Instant::now();
        let txns = bench::put_all(&client, &kv, args.parallel).await?;
        let status = client.clone().maintenance_client().status().await?;
        summary.push_str(&format!(
            " load_txns={txns} load_seconds={:.2} etcd_revision={} etcd_db_bytes={}",
            started.elapsed().as_secs_f64(),
            status.header().map(|h| h.revision()).unwrap_or_default(),
            status.db_size()
        ));
    }
    std::fs::write(args.out.join("dataset.txt"), format!("{summary}\n"))?;
    println!("{summary}");
    Ok(())
}
