//! Before measuring: check that two servers give the same answers for a sample of a query file,
//! over UDP and TCP — same rcode, same answer RRs (name, type, TTL, data; order ignored), same
//! authority and additional record types — and that the mix gets what it claims (hits: NOERROR
//! with answers; misses: NXDOMAIN with SOA; nodata: NOERROR, no answers, SOA).
//!
//! `bench-check --a skydns=127.0.0.1:5300 --b knot=127.0.0.1:5301 --mix hits FILE`

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use test_support::dns::{build_query, exchange_raw, Transport};

#[derive(Parser)]
struct Args {
    /// First server, `label=ip:port`.
    #[arg(long)]
    a: String,
    /// Second server, `label=ip:port`.
    #[arg(long)]
    b: String,
    /// hits, misses or nodata.
    #[arg(long)]
    mix: String,
    /// Queries to check from the start of the file.
    #[arg(long, default_value_t = 300)]
    n: usize,
    /// Print this many examples side by side.
    #[arg(long, default_value_t = 2)]
    show: usize,
    file: std::path::PathBuf,
}

fn server(spec: &str) -> anyhow::Result<(String, SocketAddr)> {
    let (label, addr) = spec.split_once('=').context("expected label=ip:port")?;
    Ok((label.to_string(), addr.parse()?))
}

fn render(r: &Record) -> String {
    format!(
        "{} {} {} {}",
        r.name.to_ascii().to_ascii_lowercase(),
        r.ttl,
        r.record_type(),
        r.data.to_string().to_ascii_lowercase()
    )
}

/// What we compare of one reply.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    rcode: ResponseCode,
    truncated: bool,
    answers: Vec<String>,
    authority_types: Vec<RecordType>,
    additionals: Vec<String>,
}

fn shape(msg: &Message) -> Shape {
    let mut answers: Vec<String> = msg.answers.iter().map(render).collect();
    answers.sort();
    let mut authority_types: Vec<RecordType> =
        msg.authorities.iter().map(|r| r.record_type()).collect();
    authority_types.sort();
    authority_types.dedup();
    let mut additionals: Vec<String> = msg
        .additionals
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(render)
        .collect();
    additionals.sort();
    Shape {
        rcode: msg.metadata.response_code,
        truncated: msg.metadata.truncation,
        answers,
        authority_types,
        additionals,
    }
}

async fn ask(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    t: Transport,
) -> anyhow::Result<Shape> {
    // No EDNS, like dnsperf's queries.
    let q = build_query(name, rtype, None)?;
    let reply = exchange_raw(addr, &q.to_vec()?, t, Duration::from_secs(3)).await?;
    Ok(shape(&Message::from_vec(&reply)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (la, a) = server(&args.a)?;
    let (lb, b) = server(&args.b)?;
    let text = std::fs::read_to_string(&args.file)?;
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines().take(args.n) {
        let (name, ty) = line.split_once(' ').context("query line: name type")?;
        let rtype: RecordType = ty.parse()?;
        for t in [Transport::Udp, Transport::Tcp] {
            let sa = ask(a, name, rtype, t).await?;
            let sb = ask(b, name, rtype, t).await?;
            let claim = match args.mix.as_str() {
                "hits" => sa.rcode == ResponseCode::NoError && !sa.answers.is_empty(),
                "misses" => {
                    sa.rcode == ResponseCode::NXDomain
                        && sa.authority_types == vec![RecordType::SOA]
                }
                "nodata" => {
                    sa.rcode == ResponseCode::NoError
                        && sa.answers.is_empty()
                        && sa.authority_types == vec![RecordType::SOA]
                }
                other => bail!("unknown mix {other}"),
            };
            if checked < args.show {
                println!("  {line} ({t:?}):\n    {la}: {sa:?}\n    {lb}: {sb:?}");
            }
            checked += 1;
            if sa != sb || sa.truncated || !claim {
                failures.push(format!(
                    "{line} ({t:?}) claim_ok={claim}\n    {la}: {sa:?}\n    {lb}: {sb:?}"
                ));
            }
        }
    }
    println!(
        "check {}: {checked} queries (UDP+TCP), {} differ",
        args.mix,
        failures.len()
    );
    for f in failures.iter().take(5) {
        println!("  DIFF {f}");
    }
    if !failures.is_empty() {
        bail!("{} and {lb} answer differently", la);
    }
    Ok(())
}
