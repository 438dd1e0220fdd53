//! `manifests/monitoring/`: every metric name the PrometheusRule's expressions and the Grafana
//! dashboard's queries use is one the programs really export — skydns, kube2sky (against the
//! test API server) and healthz are started as in `health_and_metrics.rs` and their `/metrics`
//! scraped — and exported by the program behind the `job` the expression selects (the job
//! labels come from the ServiceMonitor's relabelings, through the metrics Service's ports, to
//! the Deployment's containers). The ServiceMonitor and PrometheusRule are Prometheus Operator
//! CRDs that `kubernetes-validate` has no schema for (it only warns), so their structure is
//! checked here: apiVersion, kind, required fields, and no field the CRDs do not define among
//! those used. A misspelt name, a metric under the wrong job and a stray field must be reported
//! (negative cases at the end).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{http_get, Stack};
use hickory_proto::rr::RecordType;
use serde::Deserialize;
use serde_yaml::Value;
use test_support::dns::{self, Transport};
use test_support::objects::{port, service_cluster_ip};
use test_support::upstream::Mode;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Deployment of a (possibly multi-document) manifest file.
fn deployment_of(rel: &str) -> Value {
    let text = read(rel);
    let found = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .find(|v| str_at(v, &["kind"]) == Some("Deployment"))
        .unwrap_or_else(|| panic!("{rel}: no Deployment"));
    found
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str()
}

/// PromQL words that are not metric names when they are not followed by `(`.
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];
/// Aggregation operators (`sum without (…) (…)`: not followed by `(` at once).
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression reads (a Grafana `label_values(expr, label)` reads
/// those of `expr`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = match expr.trim().strip_prefix("label_values(") {
        Some(rest) => rest.split_once(',').map_or(rest, |(first, _)| first),
        None => expr,
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_group = |i: &mut usize, open: char, close: char| {
        let mut depth = 0;
        while *i < chars.len() {
            let c = chars[*i];
            if c == '"' || c == '\'' || c == '`' {
                *i += 1;
                while *i < chars.len() && chars[*i] != c {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    *i += 1;
                    return;
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => skip_group(&mut i, '{', '}'),
            '[' => skip_group(&mut i, '[', ']'),
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += 1;
                }
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let next: String = chars[j..].iter().take(8).collect();
                let call = j < chars.len() && chars[j] == '('
                    || (AGGREGATIONS.contains(&word.as_str())
                        && (next.starts_with("by") || next.starts_with("without")));
                if LABEL_LISTS.contains(&word.as_str()) {
                    if call {
                        i = j;
                        skip_group(&mut i, '(', ')');
                    }
                } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The `job` values an expression selects (`job="x"`, or the alternatives of `job=~"a|b"`).
fn jobs(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (pat, regex) in [("job=\"", false), ("job=~\"", true)] {
        let mut rest = expr;
        while let Some(at) = rest.find(pat) {
            rest = &rest[at + pat.len()..];
            let value = rest.split('"').next().unwrap_or_default();
            if regex {
                out.extend(value.split('|').map(str::to_string));
            } else {
                out.insert(value.to_string());
            }
        }
    }
    out
}

/// Every sample name a scrape can hold, from its `# TYPE` lines (so families without a series
/// yet count) and its samples.
fn exported(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in body.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut parts = t.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    out.insert(format!("{name}_total"));
                    out.insert(format!("{name}_created"));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count", "_created"] {
                        out.insert(format!("{name}{s}"));
                    }
                }
                "info" => {
                    out.insert(format!("{name}_info"));
                }
                _ => {
                    out.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_string());
        }
    }
    out
}

/// Where each expression of the rules and the dashboard comes from, and the expression.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rule = yaml("manifests/monitoring/prometheusrule.yaml");
    for group in rule["spec"]["groups"].as_sequence().expect("groups") {
        for r in group["rules"].as_sequence().expect("rules") {
            let name = str_at(r, &["alert"])
                .or_else(|| str_at(r, &["record"]))
                .expect("alert or record");
            out.push((
                format!("prometheusrule.yaml {name}"),
                str_at(r, &["expr"]).expect("expr").to_string(),
            ));
        }
    }
    let dash: serde_json::Value =
        serde_json::from_str(&read("manifests/monitoring/grafana-dashboard.json"))
            .expect("dashboard JSON");
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("grafana-dashboard.json {}", panel["title"]),
                t["expr"].as_str().expect("target expr").to_string(),
            ));
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if var["type"] == "query" {
            let q = var["query"]["query"]
                .as_str()
                .or_else(|| var["query"].as_str())
                .expect("variable query");
            out.push((
                format!("grafana-dashboard.json ${}", var["name"]),
                q.to_string(),
            ));
        }
    }
    out
}

/// `job` → program (container name), through the ServiceMonitor's relabelings, the metrics
/// Service's ports and the Deployment's containers.
fn job_programs(deployment: &str) -> BTreeMap<String, String> {
    let monitor = yaml("manifests/monitoring/servicemonitor.yaml");
    let service = yaml("manifests/monitoring/service.yaml");
    let deploy = deployment_of(deployment);
    let mut out = BTreeMap::new();
    for ep in monitor["spec"]["endpoints"]
        .as_sequence()
        .expect("endpoints")
    {
        let port = str_at(ep, &["port"]).expect("endpoint port");
        let job = ep["relabelings"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|r| str_at(r, &["targetLabel"]) == Some("job"))
            .and_then(|r| str_at(r, &["replacement"]))
            .unwrap_or_else(|| panic!("endpoint {port}: no job relabeling"));
        let target = service["spec"]["ports"]
            .as_sequence()
            .expect("service ports")
            .iter()
            .find(|p| str_at(p, &["name"]) == Some(port))
            .and_then(|p| str_at(p, &["targetPort"]))
            .unwrap_or_else(|| {
                panic!("ServiceMonitor port {port} is not a named port of service.yaml")
            });
        let container = deploy["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .expect("containers")
            .iter()
            .find(|c| {
                c["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|p| str_at(p, &["name"]) == Some(target))
            })
            .and_then(|c| str_at(c, &["name"]))
            .unwrap_or_else(|| panic!("{deployment}: no container declares port {target}"));
        out.insert(job.to_string(), container.to_string());
    }
    out
}

/// Problems: names no program exports, or not the program of the job the expression selects.
fn check_names(
    exprs: &[(String, String)],
    job_programs: &BTreeMap<String, String>,
    by_program: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (place, expr) in exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            problems.push(format!("{place}: no metric in {expr:?}"));
        }
        let selected = jobs(expr);
        if selected.is_empty() {
            problems.push(format!("{place}: selects no job: {expr}"));
        }
        for job in &selected {
            if !job_programs.contains_key(job) {
                problems.push(format!("{place}: job {job:?} is scraped by no endpoint"));
            }
        }
        for name in names {
            // `up` is Prometheus's own, per target.
            if name == "up" {
                continue;
            }
            let programs: Vec<&String> = selected
                .iter()
                .filter_map(|j| job_programs.get(j))
                .collect();
            if !programs
                .iter()
                .any(|p| by_program.get(*p).is_some_and(|s| s.contains(&name)))
            {
                problems.push(format!(
                    "{place}: {name} is not exported by {programs:?} (job {selected:?})"
                ));
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_use_is_exported() {
    let stack = Stack::start(&[]).await;
    stack.api.apply(service_cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1"],
        &[port("https", 443, "TCP")],
    ));
    let k2s = stack.kube2sky.as_ref().expect("kube2sky").http;
    let (hz, hz_stop) = common::start_healthz(stack.dns, k2s).await;
    // Some work, so that the lazily created series exist too (the check reads the families'
    // TYPE lines, which are there before any series).
    for (name, t) in [
        ("kubernetes.default.svc.cluster.local.", Transport::Udp),
        ("nope.default.svc.cluster.local.", Transport::Tcp),
        ("www.example.com.", Transport::Udp),
        ("www.example.com.", Transport::Udp),
    ] {
        dns::query(stack.dns, name, RecordType::A, t)
            .await
            .expect("answer");
    }
    // An upstream that stops answering: a failed exchange (skydns_forward_errors_total).
    stack.upstream.set_mode(Mode::Silent);
    let r = dns::query(
        stack.dns,
        "gone.example.com.",
        RecordType::A,
        Transport::Udp,
    )
    .await
    .expect("SERVFAIL");
    assert_eq!(dns::rcode(&r), hickory_proto::op::ResponseCode::ServFail);
    stack.upstream.set_mode(Mode::Answer);
    test_support::eventually(
        std::time::Duration::from_secs(10),
        "healthz probes",
        || async { (http_get(hz, "/healthz").await.0 == 200).then_some(()) },
    )
    .await;
    let mut by_program = BTreeMap::new();
    for (program, addr) in [
        ("skydns", stack.skydns.http),
        ("kube2sky", k2s),
        ("healthz", hz),
    ] {
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200, "{program} /metrics");
        by_program.insert(program.to_string(), exported(&body));
    }
    assert!(by_program["skydns"].contains("coredns_dns_requests_total"));
    assert!(by_program["kube2sky"].contains("kube2sky_leader"));
    assert!(by_program["healthz"].contains("healthz_probe_healthy"));

    let exprs = expressions();
    assert!(exprs.len() >= 30, "expressions found: {}", exprs.len());
    let all: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for needed in [
        "coredns_dns_request_duration_seconds_bucket",
        "coredns_dns_responses_total",
        "coredns_forward_responses_total",
        "coredns_forward_request_duration_seconds_bucket",
        "coredns_forward_healthcheck_failures_total",
        "coredns_forward_healthcheck_broken_total",
        "coredns_cache_hits_total",
        "kube2sky_last_sync_timestamp_seconds",
        "kube2sky_leader",
        "kube2sky_etcd_errors_total",
        "healthz_probe_healthy",
    ] {
        assert!(all.contains(needed), "{needed} is used: {all:?}");
    }
    for deployment in ["manifests/deployment.yaml", "manifests/ha/deployment.yaml"] {
        let jobs = job_programs(deployment);
        assert_eq!(
            jobs.get("kube-dns").map(String::as_str),
            Some("skydns"),
            "{deployment}: job kube-dns (what the CoreDNS alerts select) is skydns: {jobs:?}"
        );
        let problems = check_names(&exprs, &jobs, &by_program);
        assert!(
            problems.is_empty(),
            "{deployment}:\n{}",
            problems.join("\n")
        );
    }

    // Negative: a misspelt name, and a kube2sky metric under skydns's job, are reported.
    let jobs = job_programs("manifests/deployment.yaml");
    let bad = vec![
        (
            "misspelt".to_string(),
            r#"sum(rate(coredns_dns_response_total{job="kube-dns"}[5m]))"#.to_string(),
        ),
        (
            "wrong job".to_string(),
            r#"max(kube2sky_leader{job="kube-dns"})"#.to_string(),
        ),
        ("no job".to_string(), "max(kube2sky_leader)".to_string()),
    ];
    let problems = check_names(&bad, &jobs, &by_program);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    hz_stop.cancel();
    stack.stop().await;
}

#[test]
fn the_extractor_finds_metric_names_only() {
    let e = r#"sum without (pod, instance, rcode) (rate(coredns_forward_responses_total{job="kube-dns", rcode="SERVFAIL"}[5m])) / ignoring(x) sum by (to) (rate(b_total[$__rate_interval])) > 0.03 and on() time() - c > 4"#;
    let names: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(names, ["b_total", "c", "coredns_forward_responses_total"]);
    assert_eq!(
        metric_names(r#"label_values(up{job=~"a|b"}, pod)"#),
        BTreeSet::from(["up".to_string()])
    );
    assert_eq!(
        jobs(r#"x{job="kube-dns"} / y{job=~"a|b"}"#),
        BTreeSet::from(["kube-dns".into(), "a".into(), "b".into()])
    );
}

/// Fields a CRD object may carry where these manifests use them (from the Prometheus Operator
/// CRDs, `monitoring.coreos.com/v1`).
fn unknown_fields(v: &Value, allowed: &[&str], place: &str, problems: &mut Vec<String>) {
    match v.as_mapping() {
        Some(m) => {
            for k in m.keys() {
                let k = k.as_str().unwrap_or("?");
                if !allowed.contains(&k) {
                    problems.push(format!("{place}: unknown field {k:?}"));
                }
            }
        }
        None => problems.push(format!("{place}: not a mapping")),
    }
}

const METADATA: [&str; 4] = ["name", "namespace", "labels", "annotations"];
const MONITOR_SPEC: [&str; 7] = [
    "endpoints",
    "selector",
    "namespaceSelector",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "sampleLimit",
];
const ENDPOINT: [&str; 9] = [
    "port",
    "targetPort",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
    "metricRelabelings",
];
const RELABELING: [&str; 7] = [
    "action",
    "sourceLabels",
    "separator",
    "targetLabel",
    "regex",
    "modulus",
    "replacement",
];
const RULE: [&str; 6] = ["alert", "record", "expr", "for", "labels", "annotations"];

fn check_monitor(m: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if str_at(m, &["apiVersion"]) != Some("monitoring.coreos.com/v1") {
        p.push("ServiceMonitor: apiVersion".into());
    }
    if str_at(m, &["kind"]) != Some("ServiceMonitor") {
        p.push("ServiceMonitor: kind".into());
    }
    unknown_fields(
        m,
        &["apiVersion", "kind", "metadata", "spec"],
        "ServiceMonitor",
        &mut p,
    );
    unknown_fields(&m["metadata"], &METADATA, "metadata", &mut p);
    if str_at(m, &["metadata", "name"]).is_none() {
        p.push("metadata.name is required".into());
    }
    let spec = &m["spec"];
    unknown_fields(spec, &MONITOR_SPEC, "spec", &mut p);
    if spec.get("selector").is_none() {
        p.push("spec.selector is required".into());
    }
    unknown_fields(
        &spec["selector"],
        &["matchLabels", "matchExpressions"],
        "spec.selector",
        &mut p,
    );
    if let Some(ns) = spec.get("namespaceSelector") {
        unknown_fields(ns, &["any", "matchNames"], "spec.namespaceSelector", &mut p);
    }
    match spec["endpoints"].as_sequence() {
        Some(eps) if !eps.is_empty() => {
            for (i, ep) in eps.iter().enumerate() {
                let place = format!("spec.endpoints[{i}]");
                unknown_fields(ep, &ENDPOINT, &place, &mut p);
                if str_at(ep, &["port"]).is_none() {
                    p.push(format!(
                        "{place}: port (a Service port name) is required here"
                    ));
                }
                for (j, r) in ep["relabelings"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    unknown_fields(r, &RELABELING, &format!("{place}.relabelings[{j}]"), &mut p);
                }
            }
        }
        _ => p.push("spec.endpoints is required".into()),
    }
    p
}

fn is_duration(s: &str) -> bool {
    !s.is_empty()
        && s.split_inclusive(|c: char| c.is_ascii_alphabetic())
            .all(|part| {
                let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &part[digits.len()..];
                !digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && ["ms", "s", "m", "h", "d", "w", "y"].contains(&unit)
            })
}

fn check_rule(r: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if str_at(r, &["apiVersion"]) != Some("monitoring.coreos.com/v1") {
        p.push("PrometheusRule: apiVersion".into());
    }
    if str_at(r, &["kind"]) != Some("PrometheusRule") {
        p.push("PrometheusRule: kind".into());
    }
    unknown_fields(
        r,
        &["apiVersion", "kind", "metadata", "spec"],
        "PrometheusRule",
        &mut p,
    );
    unknown_fields(&r["metadata"], &METADATA, "metadata", &mut p);
    unknown_fields(&r["spec"], &["groups"], "spec", &mut p);
    let mut group_names = BTreeSet::new();
    for (i, g) in r["spec"]["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let place = format!("spec.groups[{i}]");
        unknown_fields(
            g,
            &["name", "interval", "rules", "labels", "limit"],
            &place,
            &mut p,
        );
        match str_at(g, &["name"]) {
            Some(n) if group_names.insert(n.to_string()) => {}
            Some(n) => p.push(format!("{place}: group name {n} twice")),
            None => p.push(format!("{place}: name is required")),
        }
        for (j, rule) in g["rules"].as_sequence().into_iter().flatten().enumerate() {
            let place = format!("{place}.rules[{j}]");
            unknown_fields(rule, &RULE, &place, &mut p);
            if str_at(rule, &["expr"]).is_none_or(|e| e.trim().is_empty()) {
                p.push(format!("{place}: expr is required"));
            }
            match (str_at(rule, &["alert"]), str_at(rule, &["record"])) {
                (Some(_), None) => {
                    if !matches!(
                        str_at(rule, &["labels", "severity"]),
                        Some("critical" | "warning" | "info")
                    ) {
                        p.push(format!("{place}: labels.severity critical|warning|info"));
                    }
                    for a in ["summary", "description"] {
                        if str_at(rule, &["annotations", a]).is_none() {
                            p.push(format!("{place}: annotations.{a}"));
                        }
                    }
                }
                (None, Some(_)) => {}
                _ => p.push(format!("{place}: exactly one of alert and record")),
            }
            if let Some(f) = rule.get("for") {
                if !f.as_str().is_some_and(is_duration) {
                    p.push(format!("{place}: for is not a duration: {f:?}"));
                }
            }
        }
    }
    if group_names.is_empty() {
        p.push("spec.groups is empty".into());
    }
    p
}

#[test]
fn the_crd_manifests_are_well_formed_and_the_service_selects_the_pods() {
    let monitor = yaml("manifests/monitoring/servicemonitor.yaml");
    let problems = check_monitor(&monitor);
    assert!(problems.is_empty(), "servicemonitor.yaml: {problems:#?}");
    let rule = yaml("manifests/monitoring/prometheusrule.yaml");
    let problems = check_rule(&rule);
    assert!(problems.is_empty(), "prometheusrule.yaml: {problems:#?}");

    // The kube-prometheus CoreDNS alerts, by name.
    let alerts: BTreeSet<&str> = rule["spec"]["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .filter_map(|r| str_at(r, &["alert"]))
        .collect();
    for a in [
        "CoreDNSDown",
        "CoreDNSLatencyHigh",
        "CoreDNSErrorsHigh",
        "CoreDNSForwardLatencyHigh",
        "CoreDNSForwardErrorsHigh",
        "CoreDNSForwardHealthcheckFailureCount",
        "CoreDNSForwardHealthcheckBrokenCount",
    ] {
        assert!(alerts.contains(a), "{a} missing: {alerts:?}");
    }

    // The ServiceMonitor selects the metrics Service, in its namespace; the Service selects
    // the pods of both Deployments.
    let service = yaml("manifests/monitoring/service.yaml");
    assert_eq!(str_at(&service, &["kind"]), Some("Service"));
    let labels = &service["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(labels.get(k), Some(v), "Service lacks label {k:?}");
    }
    let ns = str_at(&service, &["metadata", "namespace"]).expect("namespace");
    let names: Vec<&str> = monitor["spec"]["namespaceSelector"]["matchNames"]
        .as_sequence()
        .expect("matchNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&ns), "{names:?} lacks {ns}");
    assert!(
        labels.get("k8s-app").is_none(),
        "no k8s-app label: a CoreDNS ServiceMonitor selecting k8s-app=kube-dns would scrape twice"
    );
    for deployment in ["manifests/deployment.yaml", "manifests/ha/deployment.yaml"] {
        let d = deployment_of(deployment);
        let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_mapping().expect("selector") {
            assert_eq!(pod_labels.get(k), Some(v), "{deployment}: pods lack {k:?}");
        }
        let jobs = job_programs(deployment);
        let programs: BTreeSet<&str> = jobs.values().map(String::as_str).collect();
        assert_eq!(
            programs,
            BTreeSet::from(["skydns", "kube2sky", "healthz"]),
            "{deployment}: one job per program"
        );
    }

    // Negative: a stray field, a missing expr and a bad duration are reported.
    let mut broken = monitor.clone();
    broken["spec"]["endpoints"][0]["intervall"] = Value::from("15s");
    assert_eq!(check_monitor(&broken).len(), 1);
    let mut broken = rule.clone();
    broken["spec"]["groups"][0]["rules"][0]["for"] = Value::from("15 minutes");
    broken["spec"]["groups"][0]["rules"][1]
        .as_mapping_mut()
        .expect("rule")
        .remove("expr");
    assert_eq!(check_rule(&broken).len(), 2, "{:#?}", check_rule(&broken));
}

#[test]
fn the_dashboard_is_grafana_json_with_a_query_in_every_panel() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("manifests/monitoring/grafana-dashboard.json"))
            .expect("dashboard JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let mut titles = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert!(titles.insert(title), "{title} twice");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    for wanted in [
        "Answers by rcode",
        "Requests by type",
        "Latency",
        "Cache hit ratio",
        "Forward latency",
        "Forward errors",
        "Time since last full sync",
        "etcd writes",
        "Leader",
        "Probe healthy",
        "Probe latency",
    ] {
        assert!(titles.contains(wanted), "panel {wanted}: {titles:?}");
    }
}
