//! The deployment files checked against the programs they run (no Docker engine or cluster
//! needed): `docker-compose.yml` is parsed as YAML, every manifest under `manifests/` as
//! k8s-openapi typed objects (unknown fields are errors), and every command line of skydns,
//! kube2sky and healthz goes through that program's own `Config::try_parse_from` + `validate`.
//!
//! From the parsed flags each program's listeners are derived (port, protocol, bind address and
//! the HTTP paths it serves), and the files must agree with them: declared containerPorts and
//! published ports are bound (not on loopback), ports are published on 127.0.0.1 only, no
//! container binds below 1024 or adds a capability, our compose services have a read-only root,
//! no capabilities and no-new-privileges, probes and healthchecks hit a served path,
//! Services reach a declared port, every URL a program is given (etcd, DNS, readiness) leads to
//! a program listening there, and the ClusterRole grants exactly get/list/watch on what
//! kube2sky watches. Negative tests at the end prove each rule fires.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Probe, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_yaml::Value;

const OUR_IMAGE_MARK: &str = "kube-dns-rs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Fail with every problem found, one per line.
fn assert_clean(what: &str, errors: &[String]) {
    assert!(
        errors.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        errors.len(),
        errors.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// Programs: flags → listeners and dependencies
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("TCP").to_ascii_uppercase().as_str() {
            "TCP" => Ok(Proto::Tcp),
            "UDP" => Ok(Proto::Udp),
            other => Err(format!("unsupported protocol {other}")),
        }
    }
}

/// A socket a program binds.
#[derive(Debug, Clone)]
struct Listen {
    ip: IpAddr,
    port: u16,
    proto: Proto,
    /// HTTP paths served (empty: not HTTP).
    paths: Vec<String>,
    what: &'static str,
}

/// Something a program connects to.
#[derive(Debug, Clone)]
enum Dep {
    Etcd {
        flag: &'static str,
        host: String,
        port: u16,
    },
    Dns {
        flag: &'static str,
        host: String,
        port: u16,
    },
    Http {
        flag: &'static str,
        host: String,
        port: u16,
        path: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Skydns,
    Kube2sky,
    Healthz,
    Etcd,
}

#[derive(Debug)]
struct Program {
    kind: Kind,
    listens: Vec<Listen>,
    deps: Vec<Dep>,
    leader_elect: bool,
    /// Paths that must be inside a mounted volume (data dir, kubeconfig).
    needs_mounted: Vec<(&'static str, String)>,
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `http://host:port[/...]` → (host, port); the port is required.
fn url_host_port(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{url:?} has no explicit port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{url:?} has a bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

fn host_ip(host: &str) -> Result<IpAddr, String> {
    if host == "localhost" {
        return Ok(Ipv4Addr::LOCALHOST.into());
    }
    host.parse()
        .map_err(|_| format!("listen address {host:?} is not an IP"))
}

fn existing_placeholder_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("deploy-files-kubeconfig-{}", std::process::id()));
    std::fs::write(&path, "apiVersion: v1\nkind: Config\n").expect("write placeholder kubeconfig");
    path
}

/// Parse one command line of one of our programs (or etcd) with the real parser.
fn parse_program(argv: &[String]) -> Result<Program, String> {
    let bin = argv
        .first()
        .ok_or("empty command")?
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let args = argv[1..].iter().cloned();
    let with_name = |name: &str| std::iter::once(name.to_string()).chain(args.clone());
    match bin.as_str() {
        "skydns" => {
            let config = skydns::Config::try_parse_from(with_name("skydns"))
                .map_err(|e| format!("skydns rejects its flags: {e}"))?;
            let settings = config
                .validate()
                .map_err(|e| format!("skydns rejects its flags: {e}"))?;
            let mut listens = Vec::new();
            for proto in [Proto::Udp, Proto::Tcp] {
                listens.push(Listen {
                    ip: settings.addr.ip(),
                    port: settings.addr.port(),
                    proto,
                    paths: vec![],
                    what: "skydns --addr (DNS)",
                });
            }
            listens.push(Listen {
                ip: settings.metrics_addr.ip(),
                port: settings.metrics_addr.port(),
                proto: Proto::Tcp,
                paths: vec!["/readiness".into(), "/metrics".into()],
                what: "skydns --metrics-addr",
            });
            let mut deps = Vec::new();
            for m in &settings.machines {
                let (host, port) =
                    url_host_port(m).map_err(|e| format!("skydns --machines: {e}"))?;
                deps.push(Dep::Etcd {
                    flag: "skydns --machines",
                    host,
                    port,
                });
            }
            Ok(Program {
                kind: Kind::Skydns,
                listens,
                deps,
                leader_elect: false,
                needs_mounted: vec![],
            })
        }
        "kube2sky" => {
            #[allow(unused_mut)]
            let mut config = kube2sky::Config::try_parse_from(with_name("kube2sky"))
                .map_err(|e| format!("kube2sky rejects its flags: {e}"))?;
            let mut needs_mounted = Vec::new();
            if let Some(path) = config.kubecfg_file.clone() {
                // validate() checks the file exists; it lives in a volume only the container
                // sees, so check it is absolute and mounted, and validate with a stand-in.
                let path = path.to_string_lossy().to_string();
                if !path.starts_with('/') {
                    return Err(format!("kube2sky --kubecfg-file {path:?} is not absolute"));
                }
                needs_mounted.push(("kube2sky --kubecfg-file", path));
                config.kubecfg_file = Some(existing_placeholder_file());
            }
            let settings = config
                .validate()
                .map_err(|e| format!("kube2sky rejects its flags: {e}"))?;
            let listens = vec![Listen {
                ip: settings.healthz_listen.ip(),
                port: settings.healthz_listen.port(),
                proto: Proto::Tcp,
                paths: vec!["/readiness".into(), "/healthz".into(), "/metrics".into()],
                what: "kube2sky --healthz-port",
            }];
            let mut deps = Vec::new();
            for url in &settings.etcd_server {
                let (host, port) =
                    url_host_port(url).map_err(|e| format!("kube2sky --etcd-server: {e}"))?;
                deps.push(Dep::Etcd {
                    flag: "kube2sky --etcd-server",
                    host,
                    port,
                });
            }
            Ok(Program {
                kind: Kind::Kube2sky,
                listens,
                deps,
                leader_elect: config.leader_elect,
                needs_mounted,
            })
        }
        "healthz" => {
            let config = healthz::Config::try_parse_from(with_name("healthz"))
                .map_err(|e| format!("healthz rejects its flags: {e}"))?;
            let settings = config
                .validate()
                .map_err(|e| format!("healthz rejects its flags: {e}"))?;
            let mut paths = vec!["/healthz".to_string(), "/metrics".to_string()];
            paths.extend(
                settings
                    .enabled_probes()
                    .iter()
                    .map(|p| format!("/healthz/{p}")),
            );
            let listens = vec![Listen {
                ip: config.address,
                port: config.port,
                proto: Proto::Tcp,
                paths,
                what: "healthz --port",
            }];
            let mut deps = Vec::new();
            if !config.no_skydns {
                let (host, port) = healthz::target::split_host_port(&config.dns_addr)
                    .map_err(|e| e.to_string())?;
                deps.push(Dep::Dns {
                    flag: "healthz --dns-addr",
                    host,
                    port,
                });
            }
            if !config.no_kube2sky {
                let t = healthz::target::HttpTarget::parse(&config.kube2sky_url)
                    .map_err(|e| e.to_string())?;
                deps.push(Dep::Http {
                    flag: "healthz --kube2sky-url",
                    host: t.host,
                    port: t.port,
                    path: t.path,
                });
            }
            Ok(Program {
                kind: Kind::Healthz,
                listens,
                deps,
                leader_elect: false,
                needs_mounted: vec![],
            })
        }
        "etcd" => parse_etcd(&argv[1..]),
        other => Err(format!("unknown program {other:?}")),
    }
}

/// The etcd flags our files use (single or double dash, `=value` or a separate value).
fn parse_etcd(args: &[String]) -> Result<Program, String> {
    const KNOWN: &[&str] = &[
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "listen-metrics-urls",
        "quota-backend-bytes",
        "auto-compaction-retention",
        "snapshot-count",
    ];
    let mut flags = BTreeMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let flag = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .ok_or_else(|| format!("etcd: unexpected argument {arg:?}"))?;
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (
                flag.to_string(),
                it.next()
                    .ok_or_else(|| format!("etcd: -{flag} needs a value"))?
                    .clone(),
            ),
        };
        if !KNOWN.contains(&name.as_str()) {
            return Err(format!("etcd: flag -{name} is not one this check knows"));
        }
        flags.insert(name, value);
    }
    let mut listens = Vec::new();
    let client = flags
        .get("listen-client-urls")
        .cloned()
        .unwrap_or_else(|| "http://localhost:2379".into());
    for url in client.split(',') {
        let (host, port) =
            url_host_port(url).map_err(|e| format!("etcd -listen-client-urls: {e}"))?;
        listens.push(Listen {
            ip: host_ip(&host)?,
            port,
            proto: Proto::Tcp,
            paths: vec!["/health".into(), "/metrics".into()],
            what: "etcd -listen-client-urls",
        });
    }
    let data_dir = flags
        .get("data-dir")
        .cloned()
        .ok_or("etcd: no -data-dir (it would write into the image filesystem)")?;
    Ok(Program {
        kind: Kind::Etcd,
        listens,
        deps: vec![],
        leader_elect: false,
        needs_mounted: vec![("etcd -data-dir", data_dir)],
    })
}

fn served_path(listen: &Listen, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    listen.paths.iter().any(|p| p == path)
}

fn find_listen(progs: &[(&str, &Program)], port: u16, proto: Proto) -> Option<(String, Listen)> {
    progs.iter().find_map(|(name, p)| {
        p.listens
            .iter()
            .find(|l| l.port == port && l.proto == proto)
            .map(|l| (name.to_string(), l.clone()))
    })
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------

fn str_list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            })
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => vec![],
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key)?.as_str()
}

/// Names of services in `depends_on` (list or map form).
fn depends_on(svc: &Value) -> BTreeMap<String, String> {
    match get(svc, "depends_on") {
        Some(Value::Sequence(s)) => s
            .iter()
            .filter_map(|x| {
                x.as_str()
                    .map(|n| (n.to_string(), "service_started".to_string()))
            })
            .collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let cond = get_str(v, "condition").unwrap_or("service_started");
                Some((k.as_str()?.to_string(), cond.to_string()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `source:target[:mode]` volume entries → (source, target).
fn volume_mounts(svc: &Value) -> Vec<(String, String)> {
    get(svc, "volumes")
        .map(str_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Published ports (short syntax `host:container[/proto]`) → (container port, proto).
fn published_ports(svc: &Value) -> Result<Vec<(u16, Proto)>, String> {
    let mut out = Vec::new();
    for p in get(svc, "ports").map(str_list).unwrap_or_default() {
        let (ports, proto) = match p.split_once('/') {
            Some((ports, proto)) => (ports, Proto::parse(Some(proto))?),
            None => (p.as_str(), Proto::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let container = parts.last().copied().unwrap_or_default();
        let port = container
            .parse()
            .map_err(|_| format!("port mapping {p:?}: bad container port"))?;
        // host_ip:host_port:container_port, the host address loopback: a resolver that
        // forwards, the API server and healthz are not for the network.
        match parts.as_slice() {
            [ip, _, _] if ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) => {}
            _ => {
                return Err(format!(
                "port mapping {p:?} is published on all interfaces: write 127.0.0.1:HOST:CONTAINER"
            ))
            }
        }
        out.push((port, proto));
    }
    Ok(out)
}

fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

fn check_compose(text: &str, dockerfile: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let file = "docker-compose.yml";
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("{file}: not YAML: {e}")],
    };
    let Some(services) = get(&doc, "services").and_then(Value::as_mapping) else {
        return vec![format!("{file}: no services")];
    };
    let declared_volumes: BTreeSet<String> = get(&doc, "volumes")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    // One-shot services: something waits for them to complete.
    let one_shot: BTreeSet<String> = services
        .values()
        .flat_map(depends_on)
        .filter(|(_, cond)| cond == "service_completed_successfully")
        .map(|(n, _)| n)
        .collect();

    let mut programs: BTreeMap<String, Program> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default().to_string();
        let ctx = format!("{file}: service {name}");
        for (dep, _) in depends_on(svc) {
            if !names.contains(&dep) {
                errors.push(format!("{ctx}: depends_on unknown service {dep}"));
            }
        }
        for (source, _) in volume_mounts(svc) {
            let bind = source.starts_with('.') || source.starts_with('/');
            if !bind && !declared_volumes.contains(&source) {
                errors.push(format!(
                    "{ctx}: volume {source} is not declared under volumes:"
                ));
            }
        }
        let restart = get_str(svc, "restart").unwrap_or("no");
        if one_shot.contains(&name) {
            if restart == "always" || restart == "unless-stopped" {
                errors.push(format!(
                    "{ctx}: one-shot service with restart: {restart} would loop"
                ));
            }
        } else {
            if restart != "unless-stopped" {
                errors.push(format!(
                    "{ctx}: restart is {restart:?}, want unless-stopped"
                ));
            }
            if get(svc, "healthcheck").is_none() {
                errors.push(format!("{ctx}: no healthcheck"));
            }
        }

        let image = get_str(svc, "image").unwrap_or_default();
        let ours = image.contains(OUR_IMAGE_MARK) || get(svc, "build").is_some();
        let is_etcd = image.contains("etcd");
        if !(ours || is_etcd) {
            // Other services (the API server): only where their ports are published.
            if let Err(e) = published_ports(svc) {
                errors.push(format!("{ctx}: {e}"));
            }
            continue;
        }
        let mut argv = get(svc, "entrypoint").map(str_list).unwrap_or_default();
        argv.extend(get(svc, "command").map(str_list).unwrap_or_default());
        if ours && !matches!(get(svc, "command"), Some(Value::Sequence(_))) {
            errors.push(format!("{ctx}: command must be a list naming the program"));
        }
        if ours {
            if get(svc, "read_only").and_then(Value::as_bool) != Some(true) {
                errors.push(format!(
                    "{ctx}: read_only: true missing (read-only root filesystem)"
                ));
            }
            if get(svc, "cap_drop").map(str_list).unwrap_or_default() != ["ALL"] {
                errors.push(format!("{ctx}: cap_drop: [ALL] missing"));
            }
            if !get(svc, "security_opt")
                .map(str_list)
                .unwrap_or_default()
                .iter()
                .any(|o| o == "no-new-privileges:true")
            {
                errors.push(format!(
                    "{ctx}: security_opt no-new-privileges:true missing"
                ));
            }
        }
        if ours && get(svc, "environment").is_some() {
            errors.push(format!(
                "{ctx}: environment on our programs is not checked by this test (flags only)"
            ));
        }
        let program = match parse_program(&argv) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{ctx}: {e}"));
                continue;
            }
        };
        if ours && program.kind == Kind::Etcd {
            errors.push(format!("{ctx}: our image does not contain etcd"));
        }
        let mounts = volume_mounts(svc);
        for (what, path) in &program.needs_mounted {
            if !mounts.iter().any(|(_, target)| is_under(path, target)) {
                errors.push(format!(
                    "{ctx}: {what} {path} is not inside a mounted volume"
                ));
            }
        }
        match published_ports(svc) {
            Ok(ports) => {
                for (port, proto) in ports {
                    match program
                        .listens
                        .iter()
                        .find(|l| l.port == port && l.proto == proto)
                    {
                        None => errors.push(format!(
                            "{ctx}: publishes container port {port}/{proto:?} that nothing binds"
                        )),
                        Some(l) if l.ip.is_loopback() => errors.push(format!(
                            "{ctx}: publishes {port}/{proto:?} but {} binds it on {}",
                            l.what, l.ip
                        )),
                        Some(_) => {}
                    }
                }
            }
            Err(e) => errors.push(format!("{ctx}: {e}")),
        }
        if let Some(hc) = get(svc, "healthcheck") {
            let test = get(hc, "test").map(str_list).unwrap_or_default();
            if is_etcd && test.first().map(String::as_str) != Some("CMD") {
                errors.push(format!(
                    "{ctx}: the etcd image has no shell: healthcheck must be [\"CMD\", ...]"
                ));
            }
            if test.iter().any(|t| t == "curl") && !dockerfile.contains("curl") {
                errors.push(format!(
                    "{ctx}: healthcheck uses curl, which the Dockerfile does not install"
                ));
            }
            if ours
                && test.iter().any(|t| t == "http-ok")
                && !dockerfile.contains("COPY docker/http-ok /usr/local/bin/http-ok")
            {
                errors.push(format!(
                    "{ctx}: healthcheck uses http-ok, which the Dockerfile does not install"
                ));
            }
            let urls: Vec<&str> = test
                .iter()
                .map(|t| t.strip_prefix("--endpoints=").unwrap_or(t))
                .filter(|t| t.starts_with("http://"))
                .collect();
            if urls.is_empty() {
                errors.push(format!(
                    "{ctx}: healthcheck {test:?} targets no http:// URL"
                ));
            }
            for url in urls {
                let Ok((host, port)) = url_host_port(url) else {
                    errors.push(format!("{ctx}: healthcheck URL {url:?} has no port"));
                    continue;
                };
                let path = url
                    .splitn(4, '/')
                    .nth(3)
                    .map(|p| format!("/{p}"))
                    .unwrap_or_else(|| "/".into());
                if !is_loopback_host(&host) {
                    errors.push(format!(
                        "{ctx}: healthcheck URL {url} should target 127.0.0.1"
                    ));
                }
                match program
                    .listens
                    .iter()
                    .find(|l| l.port == port && l.proto == Proto::Tcp)
                {
                    None => errors.push(format!(
                        "{ctx}: healthcheck {url}: nothing listens on {port}"
                    )),
                    Some(l) if !is_etcd && !served_path(l, &path) => errors.push(format!(
                        "{ctx}: healthcheck {url}: {} does not serve {path} (serves {:?})",
                        l.what, l.paths
                    )),
                    Some(_) => {}
                }
            }
        }
        programs.insert(name, program);
    }

    // Connections between services: by service name, to a non-loopback listener.
    for (name, program) in &programs {
        let ctx = format!("{file}: service {name}");
        let svc = services.get(name.as_str()).expect("service");
        let deps_on = depends_on(svc);
        for dep in &program.deps {
            let (flag, host, port, proto, path, want) = match dep {
                Dep::Etcd { flag, host, port } => (flag, host, *port, Proto::Tcp, None, Kind::Etcd),
                Dep::Dns { flag, host, port } => {
                    (flag, host, *port, Proto::Udp, None, Kind::Skydns)
                }
                Dep::Http {
                    flag,
                    host,
                    port,
                    path,
                } => (flag, host, *port, Proto::Tcp, Some(path), Kind::Kube2sky),
            };
            let Some(target) = programs.get(host.as_str()) else {
                errors.push(format!(
                    "{ctx}: {flag} points at {host}:{port}, which is not a service running {want:?}"
                ));
                continue;
            };
            if target.kind != want {
                errors.push(format!(
                    "{ctx}: {flag} points at {host}, which runs {:?}, not {want:?}",
                    target.kind
                ));
            }
            match target
                .listens
                .iter()
                .find(|l| l.port == port && l.proto == proto)
            {
                None => errors.push(format!(
                    "{ctx}: {flag}: {host} does not listen on {port}/{proto:?}"
                )),
                Some(l) if l.ip.is_loopback() => errors.push(format!(
                    "{ctx}: {flag}: {host} binds {port} on loopback, unreachable from {name}"
                )),
                Some(l) => {
                    if let Some(path) = path {
                        if !served_path(l, path) {
                            errors.push(format!("{ctx}: {flag}: {host} does not serve {path}"));
                        }
                    }
                }
            }
            if !deps_on.contains_key(host.as_str()) {
                errors.push(format!(
                    "{ctx}: uses {host} ({flag}) but does not depend_on it"
                ));
            }
        }
    }

    // kube2sky's kubeconfig: written by a one-shot step into a volume shared with kube2sky, with
    // the API server rewritten to a name k3s puts in its certificate.
    for (name, program) in &programs {
        for (what, path) in &program.needs_mounted {
            if *what != "kube2sky --kubecfg-file" {
                continue;
            }
            let ctx = format!("{file}: service {name}");
            let svc = services.get(name.as_str()).expect("service");
            let Some((volume, target)) = volume_mounts(svc)
                .into_iter()
                .find(|(_, target)| is_under(path, target))
            else {
                continue; // reported above
            };
            let rel = path[target.trim_end_matches('/').len()..].to_string();
            let writer = services.iter().find_map(|(wname, wsvc)| {
                let wname = wname.as_str()?;
                if wname == name {
                    return None;
                }
                let (_, wtarget) = volume_mounts(wsvc)
                    .into_iter()
                    .find(|(s, _)| *s == volume)?;
                let cmd = get(wsvc, "command")
                    .map(str_list)
                    .unwrap_or_default()
                    .join(" ");
                let written = format!("{}{rel}", wtarget.trim_end_matches('/'));
                cmd.contains(&written).then(|| (wname.to_string(), cmd))
            });
            let Some((wname, cmd)) = writer else {
                errors.push(format!("{ctx}: no service writes {path} (volume {volume})"));
                continue;
            };
            if !one_shot.contains(&wname) {
                errors.push(format!("{ctx}: {wname} writes the kubeconfig but kube2sky does not wait for it to complete"));
            }
            let Some(server) = cmd
                .split(['#', ' ', '\'', '"'])
                .find(|w| w.starts_with("https://") && !w.contains("127.0.0.1"))
            else {
                errors.push(format!(
                    "{file}: service {wname}: does not rewrite the API server address"
                ));
                continue;
            };
            let (api_host, _) = url_host_port(server).unwrap_or_default();
            let Some(api) = services.get(api_host.as_str()) else {
                errors.push(format!(
                    "{file}: service {wname}: API server {server} is not a service"
                ));
                continue;
            };
            let api_cmd = get(api, "command").map(str_list).unwrap_or_default();
            let san = api_cmd
                .iter()
                .any(|a| a == &format!("--tls-san={api_host}"))
                || api_cmd
                    .windows(2)
                    .any(|w| w[0] == "--tls-san" && w[1] == api_host);
            if !san {
                errors.push(format!(
                    "{file}: service {api_host}: needs --tls-san={api_host} for {server} to verify"
                ));
            }
            for flag in ["--disable=coredns", "--write-kubeconfig-mode=644"] {
                if !api_cmd.iter().any(|a| a == flag) {
                    errors.push(format!("{file}: service {api_host}: missing {flag}"));
                }
            }
        }
    }
    errors
}

#[test]
fn compose_file_matches_the_programs() {
    let errors = check_compose(&read("docker-compose.yml"), &read("Dockerfile"));
    assert_clean("docker-compose.yml", &errors);
}

#[test]
fn dockerfile_builds_the_three_binaries_non_root() {
    let d = read("Dockerfile");
    let mut errors = Vec::new();
    for want in [
        "ARG BINARIES=build",
        "FROM rust:1-bookworm AS build",
        "protobuf-compiler",
        "libprotobuf-dev",
        "cargo build --release",
        "--bin skydns --bin kube2sky --bin healthz",
        "FROM debian:bookworm-slim AS prebuilt",
        "FROM ${BINARIES} AS binaries",
        "COPY --from=binaries /out/skydns /out/kube2sky /out/healthz /usr/local/bin/",
        "COPY docker/http-ok /usr/local/bin/http-ok",
        "USER 10001:10001",
        "EXPOSE 10053/udp 10053/tcp",
    ] {
        if !d.contains(want) {
            errors.push(format!("Dockerfile: missing {want:?}"));
        }
    }
    // Offline builds: no frontend image fetched from a registry, nothing only BuildKit knows,
    // no second copy of a binary, no package manager in the runtime stage.
    let lines: Vec<&str> = d.lines().map(str::trim).collect();
    if lines.iter().any(|l| l.starts_with("# syntax=")) {
        errors.push("Dockerfile: a `# syntax=` line makes BuildKit fetch a frontend image".into());
    }
    if d.contains("--mount=") {
        errors.push("Dockerfile: RUN --mount is rejected by the classic builder".into());
    }
    if d.contains("setcap") {
        errors.push("Dockerfile: setcap copies the binary into a second layer".into());
    }
    let runtime = d.rsplit("\nFROM ").next().unwrap_or_default();
    if runtime.lines().any(|l| l.trim_start().starts_with("RUN ")) {
        errors.push("Dockerfile: the runtime stage runs commands (apt needs a mirror)".into());
    }
    let ignore = read(".dockerignore");
    if !ignore
        .lines()
        .any(|l| l.trim() == "target/" || l.trim() == "target")
    {
        errors.push(".dockerignore: target/ is not excluded".into());
    }
    if !ignore.lines().any(|l| l.trim() == "!target/docker-bin/") {
        errors.push(".dockerignore: target/docker-bin/ (BINARIES=prebuilt) is not let in".into());
    }
    assert_clean("Dockerfile", &errors);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Object {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    Service(Box<Service>),
    ServiceAccount(Box<ServiceAccount>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    NetworkPolicy(Box<NetworkPolicy>),
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    ConfigMap(Box<ConfigMap>),
}

/// Keys of `original` that the typed round trip dropped: unknown (misspelt) fields.
fn dropped_fields(
    original: &serde_json::Value,
    typed: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    match (original, typed) {
        (serde_json::Value::Object(o), serde_json::Value::Object(t)) => {
            for (k, v) in o {
                let here = format!("{at}.{k}");
                match t.get(k) {
                    Some(tv) => dropped_fields(v, tv, &here, out),
                    // Empty values may be omitted on the way back.
                    None if v.is_null()
                        || v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty()) => {}
                    None => out.push(here),
                }
            }
        }
        (serde_json::Value::Array(o), serde_json::Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                dropped_fields(ov, tv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn typed<T>(doc: &Value, ctx: &str, errors: &mut Vec<String>) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: T = match serde_yaml::from_value(doc.clone()) {
        Ok(o) => o,
        Err(e) => {
            errors.push(format!(
                "{ctx}: does not parse as {}: {e}",
                std::any::type_name::<T>()
            ));
            return None;
        }
    };
    let original = serde_json::to_value(doc).expect("YAML → JSON");
    let back = serde_json::to_value(&obj).expect("typed → JSON");
    let mut dropped = Vec::new();
    dropped_fields(&original, &back, "", &mut dropped);
    for d in dropped {
        errors.push(format!("{ctx}: unknown field {d}"));
    }
    Some(obj)
}

/// Parse every document of a multi-document YAML file into typed objects.
fn load_objects(file: &str, text: &str, errors: &mut Vec<String>) -> Vec<(String, Object)> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{file}: document {}: not YAML: {e}", i + 1));
                continue;
            }
        };
        if doc.is_null() {
            continue;
        }
        let kind = get_str(&doc, "kind").unwrap_or_default().to_string();
        let name = get(&doc, "metadata")
            .and_then(|m| get_str(m, "name"))
            .unwrap_or("?")
            .to_string();
        let ctx = format!("{file}: {kind} {name}");
        let obj = match kind.as_str() {
            "Deployment" => typed(&doc, &ctx, errors).map(|o| Object::Deployment(Box::new(o))),
            "StatefulSet" => typed(&doc, &ctx, errors).map(|o| Object::StatefulSet(Box::new(o))),
            "Service" => typed(&doc, &ctx, errors).map(|o| Object::Service(Box::new(o))),
            "ServiceAccount" => {
                typed(&doc, &ctx, errors).map(|o| Object::ServiceAccount(Box::new(o)))
            }
            "ClusterRole" => typed(&doc, &ctx, errors).map(|o| Object::ClusterRole(Box::new(o))),
            "ClusterRoleBinding" => {
                typed(&doc, &ctx, errors).map(|o| Object::ClusterRoleBinding(Box::new(o)))
            }
            "NetworkPolicy" => {
                typed(&doc, &ctx, errors).map(|o| Object::NetworkPolicy(Box::new(o)))
            }
            "PodDisruptionBudget" => {
                typed(&doc, &ctx, errors).map(|o| Object::PodDisruptionBudget(Box::new(o)))
            }
            "ConfigMap" => typed(&doc, &ctx, errors).map(|o| Object::ConfigMap(Box::new(o))),
            other => {
                errors.push(format!("{ctx}: kind {other:?} is not one this check knows"));
                None
            }
        };
        if let Some(obj) = obj {
            out.push((ctx, obj));
        }
    }
    out
}

/// A pod template with where it came from.
struct Workload<'a> {
    ctx: String,
    namespace: String,
    name: String,
    replicas: i32,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    spec: &'a PodSpec,
}

fn workloads(objects: &[(String, Object)]) -> Vec<Workload<'_>> {
    let mut out = Vec::new();
    for (ctx, obj) in objects {
        let (meta, replicas, selector, template) = match obj {
            Object::Deployment(d) => {
                let s = &d.spec;
                (
                    &d.metadata,
                    s.replicas,
                    Some(&s.selector),
                    Some(&s.template),
                )
            }
            Object::StatefulSet(d) => {
                let s = &d.spec;
                (
                    &d.metadata,
                    s.replicas,
                    Some(&s.selector),
                    Some(&s.template),
                )
            }
            _ => continue,
        };
        let Some(spec) = template.and_then(|t| t.spec.as_ref()) else {
            continue;
        };
        out.push(Workload {
            ctx: ctx.clone(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            replicas: replicas.unwrap_or(1),
            labels: template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            selector: selector
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default(),
            spec,
        });
    }
    out
}

fn services(objects: &[(String, Object)]) -> Vec<(&String, &Service)> {
    objects
        .iter()
        .filter_map(|(ctx, o)| match o {
            Object::Service(s) => Some((ctx, s.as_ref())),
            _ => None,
        })
        .collect()
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container_argv(c: &Container) -> Vec<String> {
    let mut argv = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    argv
}

fn is_ours(c: &Container) -> bool {
    c.image
        .as_deref()
        .is_some_and(|i| i.contains(OUR_IMAGE_MARK))
}

fn is_etcd_image(c: &Container) -> bool {
    c.image.as_deref().is_some_and(|i| i.contains("/etcd:"))
}

/// Resolve a probe's or Service's port (number or name) against declared container ports.
fn resolve_port(port: &IntOrString, containers: &[&Container], proto: Proto) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => containers.iter().find_map(|c| {
            c.ports.as_ref()?.iter().find_map(|p| {
                (p.name.as_deref() == Some(name.as_str())
                    && Proto::parse(p.protocol.as_deref()).ok() == Some(proto))
                .then_some(p.container_port as u16)
            })
        }),
    }
}

/// Checks of one pod template (containers, flags, ports, probes, local connections).
fn check_pod(w: &Workload<'_>, all_objects: &[(String, Object)], errors: &mut Vec<String>) {
    let spec = w.spec;
    let pod_non_root = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        .unwrap_or(false);
    // Parse every program first: probes and local URLs may target a sibling container.
    let mut programs: Vec<(String, Program)> = Vec::new();
    for c in &spec.containers {
        let ctx = format!("{}: container {}", w.ctx, c.name);
        if !(is_ours(c) || is_etcd_image(c)) {
            continue;
        }
        let argv = container_argv(c);
        if argv.is_empty() {
            errors.push(format!(
                "{ctx}: no command: the image has no entrypoint, name the program"
            ));
            continue;
        }
        if is_ours(c) && c.env.as_ref().is_some_and(|e| !e.is_empty()) {
            errors.push(format!(
                "{ctx}: env on our programs is not checked by this test (use flags)"
            ));
        }
        match parse_program(&argv) {
            Ok(p) => {
                if is_ours(c) == (p.kind == Kind::Etcd) {
                    errors.push(format!(
                        "{ctx}: image {:?} does not contain {:?}",
                        c.image, p.kind
                    ));
                }
                programs.push((c.name.clone(), p));
            }
            Err(e) => errors.push(format!("{ctx}: {e}")),
        }
    }
    let progs: Vec<(&str, &Program)> = programs.iter().map(|(n, p)| (n.as_str(), p)).collect();

    for c in &spec.containers {
        let ctx = format!("{}: container {}", w.ctx, c.name);
        let program = programs.iter().find(|(n, _)| *n == c.name).map(|(_, p)| p);
        let mounts: Vec<String> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();

        // Resources: requests and limits for cpu and memory.
        let res = c.resources.as_ref();
        for (what, map) in [
            ("requests", res.and_then(|r| r.requests.as_ref())),
            ("limits", res.and_then(|r| r.limits.as_ref())),
        ] {
            for key in ["cpu", "memory"] {
                if what == "limits" && key == "cpu" && !(is_ours(c) || is_etcd_image(c)) {
                    continue;
                }
                if !map.is_some_and(|m| m.contains_key(key)) {
                    errors.push(format!("{ctx}: no resources.{what}.{key}"));
                }
            }
        }

        let Some(program) = program else {
            continue;
        };

        // Security: non-root, no privilege escalation, drop ALL, NET_BIND_SERVICE only if a
        // port below 1024 is bound.
        let sc = c.security_context.as_ref();
        let non_root = sc.and_then(|s| s.run_as_non_root).unwrap_or(pod_non_root);
        if !non_root {
            errors.push(format!("{ctx}: runAsNonRoot is not set"));
        }
        if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            errors.push(format!("{ctx}: allowPrivilegeEscalation should be false"));
        }
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        let drop: Vec<String> = caps.and_then(|c| c.drop.clone()).unwrap_or_default();
        let add: Vec<String> = caps.and_then(|c| c.add.clone()).unwrap_or_default();
        if !drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
            errors.push(format!("{ctx}: capabilities.drop should be [ALL]"));
        }
        // Below 1024 a non-root process needs NET_BIND_SERVICE in its effective set, which
        // runtimes that give only the bounding set (allowPrivilegeEscalation: false, no file
        // capability) never grant: listen high and let the Service map the port.
        for l in program.listens.iter().filter(|l| l.port < 1024) {
            errors.push(format!(
                "{ctx}: {} binds port {} (below 1024 needs NET_BIND_SERVICE, which not every runtime grants a non-root process): listen above 1023 and map it in the Service",
                l.what, l.port
            ));
        }
        if !add.is_empty() {
            errors.push(format!("{ctx}: capabilities.add is {add:?}, want none"));
        }

        for (what, path) in &program.needs_mounted {
            if !mounts.iter().any(|m| is_under(path, m)) {
                errors.push(format!("{ctx}: {what} {path} is not inside a volumeMount"));
            }
        }

        // Declared ports are bound (not on loopback).
        for p in c.ports.iter().flatten() {
            let proto = match Proto::parse(p.protocol.as_deref()) {
                Ok(proto) => proto,
                Err(e) => {
                    errors.push(format!("{ctx}: port {}: {e}", p.container_port));
                    continue;
                }
            };
            let port = p.container_port as u16;
            match program
                .listens
                .iter()
                .find(|l| l.port == port && l.proto == proto)
            {
                None => {
                    errors.push(format!(
                    "{ctx}: declares containerPort {port}/{proto:?} ({}) but its flags bind {:?}",
                    p.name.as_deref().unwrap_or("unnamed"),
                    program.listens.iter().map(|l| (l.port, l.proto)).collect::<Vec<_>>()
                ))
                }
                Some(l) if l.ip.is_loopback() => errors.push(format!(
                    "{ctx}: declares containerPort {port} but {} binds it on {}",
                    l.what, l.ip
                )),
                Some(_) => {}
            }
        }

        // Probes reach a served path on a non-loopback listener of this pod.
        let own: Vec<&Container> = vec![c];
        for (kind, probe) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            let Some(probe) = probe else { continue };
            check_probe(&ctx, kind, probe, &own, &progs, errors);
        }

        // Local connections (loopback URLs) lead to a sibling listening there; others to a
        // Service of these manifests by clusterIP.
        for dep in &program.deps {
            check_pod_dep(&ctx, dep, &progs, w, all_objects, errors);
        }
    }

    // Several replicas writing to one shared etcd need the election.
    for (name, p) in &programs {
        if p.kind != Kind::Kube2sky || w.replicas <= 1 {
            continue;
        }
        let shared = p
            .deps
            .iter()
            .any(|d| matches!(d, Dep::Etcd { host, .. } if !is_loopback_host(host)));
        if shared && !p.leader_elect {
            errors.push(format!(
                "{}: container {name}: {} replicas share one etcd without --leader-elect",
                w.ctx, w.replicas
            ));
        }
    }
}

fn check_probe(
    ctx: &str,
    kind: &str,
    probe: &Probe,
    own: &[&Container],
    progs: &[(&str, &Program)],
    errors: &mut Vec<String>,
) {
    if let Some(http) = &probe.http_get {
        if http.host.is_some() {
            errors.push(format!(
                "{ctx}: {kind}: httpGet.host is set; the kubelet should use the pod IP"
            ));
        }
        if http.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            errors.push(format!("{ctx}: {kind}: our programs serve plain HTTP"));
        }
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let Some(port) = resolve_port(&http.port, own, Proto::Tcp) else {
            errors.push(format!(
                "{ctx}: {kind}: port {:?} is not a port of this container",
                http.port
            ));
            return;
        };
        match find_listen(progs, port, Proto::Tcp) {
            None => errors.push(format!(
                "{ctx}: {kind}: nothing in the pod listens on {port}"
            )),
            Some((who, l)) if l.ip.is_loopback() => errors.push(format!(
                "{ctx}: {kind}: {who} binds {port} on {} (the kubelet comes from outside)",
                l.ip
            )),
            Some((who, l)) if !served_path(&l, &path) => errors.push(format!(
                "{ctx}: {kind}: {who} ({}) does not serve {path} (serves {:?})",
                l.what, l.paths
            )),
            Some(_) => {}
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match resolve_port(&tcp.port, own, Proto::Tcp) {
            Some(port) if find_listen(progs, port, Proto::Tcp).is_some() => {}
            _ => errors.push(format!(
                "{ctx}: {kind}: tcpSocket {:?} is not listened on",
                tcp.port
            )),
        }
    }
}

fn check_pod_dep(
    ctx: &str,
    dep: &Dep,
    progs: &[(&str, &Program)],
    w: &Workload<'_>,
    all_objects: &[(String, Object)],
    errors: &mut Vec<String>,
) {
    let (flag, host, port, proto, path, want) = match dep {
        Dep::Etcd { flag, host, port } => (flag, host, *port, Proto::Tcp, None, Kind::Etcd),
        Dep::Dns { flag, host, port } => (flag, host, *port, Proto::Udp, None, Kind::Skydns),
        Dep::Http {
            flag,
            host,
            port,
            path,
        } => (flag, host, *port, Proto::Tcp, Some(path), Kind::Kube2sky),
    };
    if is_loopback_host(host) {
        let found = progs.iter().find(|(_, p)| {
            p.kind == want && p.listens.iter().any(|l| l.port == port && l.proto == proto)
        });
        match found {
            None => errors.push(format!(
                "{ctx}: {flag} {host}:{port}: no {want:?} container in the pod listens there"
            )),
            Some((who, p)) => {
                if let Some(path) = path {
                    let l = p
                        .listens
                        .iter()
                        .find(|l| l.port == port)
                        .expect("found above");
                    if !served_path(l, path) {
                        errors.push(format!("{ctx}: {flag}: {who} does not serve {path}"));
                    }
                }
            }
        }
        return;
    }
    if w.spec.dns_policy.as_deref() == Some("Default") && host.parse::<IpAddr>().is_err() {
        errors.push(format!(
            "{ctx}: {flag} {host}: with dnsPolicy Default the pod cannot resolve cluster names; use the Service's clusterIP"
        ));
        return;
    }
    // A Service of these manifests with that clusterIP and port, selecting a pod whose
    // program of the right kind listens on the target port.
    let svc = services(all_objects).into_iter().find(|(_, s)| {
        s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(host.as_str())
    });
    let Some((svc_ctx, svc)) = svc else {
        errors.push(format!(
            "{ctx}: {flag} {host}:{port}: no Service with that clusterIP in these manifests"
        ));
        return;
    };
    let spec = svc.spec.as_ref().expect("has clusterIP");
    let Some(sp) = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == i32::from(port))
    else {
        errors.push(format!("{ctx}: {flag}: {svc_ctx} has no port {port}"));
        return;
    };
    let selector = spec.selector.clone().unwrap_or_default();
    let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
    let ok = workloads(all_objects).iter().any(|tw| {
        if !matches(&selector, &tw.labels) {
            return false;
        }
        let containers: Vec<&Container> = tw.spec.containers.iter().collect();
        let Some(tport) = resolve_port(&target, &containers, proto) else {
            return false;
        };
        tw.spec.containers.iter().any(|c| {
            parse_program(&container_argv(c)).is_ok_and(|p| {
                p.kind == want
                    && p.listens
                        .iter()
                        .any(|l| l.port == tport && l.proto == proto && !l.ip.is_loopback())
            })
        })
    });
    if !ok {
        errors.push(format!(
            "{ctx}: {flag} {host}:{port}: {svc_ctx} does not lead to a {want:?} listening on its targetPort"
        ));
    }
}

fn check_services(objects: &[(String, Object)], errors: &mut Vec<String>) {
    let ws = workloads(objects);
    for (ctx, svc) in services(objects) {
        let Some(spec) = &svc.spec else {
            errors.push(format!("{ctx}: no spec"));
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            if spec.external_name.is_none() || spec.selector.is_some() {
                errors.push(format!(
                    "{ctx}: ExternalName needs externalName and no selector"
                ));
            }
            continue;
        }
        let selector = spec.selector.clone().unwrap_or_default();
        let ns = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let selected: Vec<&Workload<'_>> = ws
            .iter()
            .filter(|w| w.namespace == ns && matches(&selector, &w.labels))
            .collect();
        if selected.is_empty() {
            errors.push(format!(
                "{ctx}: selector {selector:?} matches no workload in {ns}"
            ));
        }
        for sp in spec.ports.iter().flatten() {
            let proto = match Proto::parse(sp.protocol.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(format!("{ctx}: {e}"));
                    continue;
                }
            };
            let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
            for w in &selected {
                let containers: Vec<&Container> = w.spec.containers.iter().collect();
                let declared = resolve_port(&target, &containers, proto).is_some_and(|port| {
                    containers.iter().any(|c| {
                        c.ports.iter().flatten().any(|p| {
                            p.container_port == i32::from(port)
                                && Proto::parse(p.protocol.as_deref()).ok() == Some(proto)
                        })
                    })
                });
                if !declared {
                    errors.push(format!(
                        "{ctx}: port {} ({proto:?}) → targetPort {target:?} is not a declared port of {}",
                        sp.name.as_deref().unwrap_or("?"),
                        w.ctx
                    ));
                }
            }
        }
    }
    for w in &ws {
        if !matches(&w.selector, &w.labels) {
            errors.push(format!(
                "{}: selector does not match the template labels",
                w.ctx
            ));
        }
    }
    // StatefulSets name an existing governing Service.
    for (ctx, obj) in objects {
        if let Object::StatefulSet(s) = obj {
            let name = s.spec.service_name.clone();
            let exists = services(objects).iter().any(|(_, svc)| {
                svc.metadata.name == name && svc.metadata.namespace == s.metadata.namespace
            });
            if !exists {
                errors.push(format!(
                    "{ctx}: serviceName {name:?} is not a Service of these manifests"
                ));
            }
        }
    }
}

/// What kube2sky watches: exactly get/list/watch on these.
const ALLOWED: &[(&str, &str)] = &[
    ("", "endpoints"),
    ("", "namespaces"),
    ("", "pods"),
    ("", "services"),
    ("discovery.k8s.io", "endpointslices"),
];

fn check_rbac(objects: &[(String, Object)], errors: &mut Vec<String>) {
    let want: BTreeSet<(String, String, String)> = ALLOWED
        .iter()
        .flat_map(|(g, r)| {
            ["get", "list", "watch"]
                .into_iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect();
    let mut roles = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for (ctx, obj) in objects {
        match obj {
            Object::ClusterRole(role) => {
                roles.insert(role.metadata.name.clone().unwrap_or_default());
                if role.aggregation_rule.is_some() {
                    errors.push(format!(
                        "{ctx}: aggregationRule grants whatever else matches"
                    ));
                }
                let mut granted = BTreeSet::new();
                for (i, rule) in role.rules.iter().flatten().enumerate() {
                    let rctx = format!("{ctx}: rule {i}");
                    if rule
                        .non_resource_urls
                        .as_ref()
                        .is_some_and(|u| !u.is_empty())
                    {
                        errors.push(format!("{rctx}: grants nonResourceURLs"));
                    }
                    if rule.resource_names.as_ref().is_some_and(|u| !u.is_empty()) {
                        errors.push(format!("{rctx}: resourceNames would break list/watch"));
                    }
                    for g in rule.api_groups.iter().flatten() {
                        for r in rule.resources.iter().flatten() {
                            for v in &rule.verbs {
                                granted.insert((g.clone(), r.clone(), v.clone()));
                            }
                        }
                    }
                }
                for extra in granted.difference(&want) {
                    errors.push(format!(
                        "{ctx}: grants more than needed: verb {:?} on {:?} in group {:?}",
                        extra.2, extra.1, extra.0
                    ));
                }
                for missing in want.difference(&granted) {
                    errors.push(format!(
                        "{ctx}: kube2sky needs {:?} on {:?} in group {:?}",
                        missing.2, missing.1, missing.0
                    ));
                }
            }
            Object::ServiceAccount(sa) => {
                accounts.insert((
                    sa.metadata.namespace.clone().unwrap_or_default(),
                    sa.metadata.name.clone().unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }
    for (ctx, obj) in objects {
        if let Object::ClusterRoleBinding(b) = obj {
            if b.role_ref.kind != "ClusterRole" || !roles.contains(&b.role_ref.name) {
                errors.push(format!(
                    "{ctx}: roleRef {} {} is not in these manifests",
                    b.role_ref.kind, b.role_ref.name
                ));
            }
            for s in b.subjects.iter().flatten() {
                let key = (s.namespace.clone().unwrap_or_default(), s.name.clone());
                if s.kind != "ServiceAccount" || !accounts.contains(&key) {
                    errors.push(format!(
                        "{ctx}: subject {} {key:?} is not a ServiceAccount here",
                        s.kind
                    ));
                }
            }
        }
    }
    for w in workloads(objects) {
        if let Some(sa) = &w.spec.service_account_name {
            if !accounts.contains(&(w.namespace.clone(), sa.clone())) {
                errors.push(format!(
                    "{}: serviceAccountName {sa} is not in these manifests",
                    w.ctx
                ));
            }
        }
    }
}

/// The kube-dns specifics: namespace, labels, dnsPolicy, the Service address and ports.
fn check_kube_dns(objects: &[(String, Object)], errors: &mut Vec<String>) {
    let mut found = false;
    for (ctx, obj) in objects {
        let meta = match obj {
            Object::Deployment(d) => &d.metadata,
            Object::StatefulSet(d) => &d.metadata,
            Object::Service(d) => &d.metadata,
            Object::ServiceAccount(d) => &d.metadata,
            Object::NetworkPolicy(d) => &d.metadata,
            Object::PodDisruptionBudget(d) => &d.metadata,
            Object::ConfigMap(d) => &d.metadata,
            Object::ClusterRole(_) | Object::ClusterRoleBinding(_) => continue,
        };
        if meta.namespace.as_deref() != Some("kube-system") {
            errors.push(format!("{ctx}: namespace should be kube-system"));
        }
        if let Object::Deployment(d) = obj {
            if meta.name.as_deref() != Some("kube-dns") {
                continue;
            }
            found = true;
            let labels = meta.labels.clone().unwrap_or_default();
            if labels.get("k8s-app").map(String::as_str) != Some("kube-dns") {
                errors.push(format!("{ctx}: label k8s-app: kube-dns missing"));
            }
            let spec = d.spec.template.spec.as_ref();
            if spec.and_then(|s| s.dns_policy.as_deref()) != Some("Default") {
                errors.push(format!("{ctx}: dnsPolicy should be Default"));
            }
        }
        if let Object::Service(s) = obj {
            if meta.name.as_deref() == Some("kube-dns") {
                let spec = s.spec.as_ref();
                if spec.and_then(|s| s.cluster_ip.as_deref()) != Some("10.43.0.10") {
                    errors.push(format!(
                        "{ctx}: clusterIP should be 10.43.0.10 (k3s's cluster DNS address)"
                    ));
                }
                let ports: BTreeSet<(String, i32, String)> = spec
                    .and_then(|s| s.ports.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| {
                        (
                            p.name.unwrap_or_default(),
                            p.port,
                            p.protocol.unwrap_or("TCP".into()),
                        )
                    })
                    .collect();
                let want: BTreeSet<(String, i32, String)> = [
                    ("dns".to_string(), 53, "UDP".to_string()),
                    ("dns-tcp".to_string(), 53, "TCP".to_string()),
                ]
                .into();
                if ports != want {
                    errors.push(format!("{ctx}: ports {ports:?}, want {want:?}"));
                }
            }
        }
    }
    if !found {
        errors.push("no Deployment kube-dns".into());
    }
}

/// Load and check a set of manifest files (applied together).
fn check_manifest_set(files: &[(String, String)], kube_dns: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let mut objects = Vec::new();
    for (file, text) in files {
        objects.extend(load_objects(file, text, &mut errors));
    }
    for w in workloads(&objects) {
        check_pod(&w, &objects, &mut errors);
    }
    check_services(&objects, &mut errors);
    check_rbac(&objects, &mut errors);
    if kube_dns {
        check_kube_dns(&objects, &mut errors);
    }
    errors
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    files.sort();
    files
}

fn with_text(files: &[String]) -> Vec<(String, String)> {
    files.iter().map(|f| (f.clone(), read(f))).collect()
}

/// `manifests/*.yaml`: the single-pod kube-dns.
fn base_set() -> Vec<String> {
    yaml_files("manifests")
}

/// `manifests/ha/*.yaml` with the base RBAC and Service (the HA Deployment replaces the base one).
fn ha_set() -> Vec<String> {
    let mut files: Vec<String> = base_set()
        .into_iter()
        .filter(|f| !f.ends_with("/deployment.yaml"))
        .collect();
    files.extend(yaml_files("manifests/ha"));
    files
}

#[test]
fn manifests_match_the_programs() {
    let files = base_set();
    assert!(
        files.iter().any(|f| f.ends_with("deployment.yaml")),
        "{files:?}"
    );
    assert_clean("manifests/", &check_manifest_set(&with_text(&files), true));
    // The checks above really saw the four programs of the pod.
    let mut e = Vec::new();
    let objects = load_objects(
        "manifests/deployment.yaml",
        &read("manifests/deployment.yaml"),
        &mut e,
    );
    let ws = workloads(&objects);
    let w = ws.iter().find(|w| w.name == "kube-dns").expect("kube-dns");
    let kinds: Vec<Kind> = w
        .spec
        .containers
        .iter()
        .map(|c| {
            parse_program(&container_argv(c))
                .expect("parsed above")
                .kind
        })
        .collect();
    assert_eq!(
        kinds,
        [Kind::Etcd, Kind::Kube2sky, Kind::Skydns, Kind::Healthz],
        "manifests/deployment.yaml: containers"
    );
}

#[test]
fn ha_manifests_match_the_programs() {
    let files = ha_set();
    let errors = check_manifest_set(&with_text(&files), true);
    assert_clean("manifests/ha/ (+ rbac.yaml, service.yaml)", &errors);
    // Two replicas, and the election on.
    let text = read("manifests/ha/deployment.yaml");
    let mut e = Vec::new();
    let objects = load_objects("manifests/ha/deployment.yaml", &text, &mut e);
    let ws = workloads(&objects);
    let w = ws
        .iter()
        .find(|w| w.name == "kube-dns")
        .expect("HA kube-dns Deployment");
    assert_eq!(w.replicas, 2, "manifests/ha/deployment.yaml: replicas");
    let k2s = w
        .spec
        .containers
        .iter()
        .find(|c| c.name == "kube2sky")
        .expect("kube2sky container");
    let p = parse_program(&container_argv(k2s)).unwrap();
    assert!(
        p.leader_elect,
        "manifests/ha/deployment.yaml: kube2sky without --leader-elect"
    );
}

#[test]
fn example_manifests_parse_and_are_consistent() {
    let files = yaml_files("manifests/examples");
    let errors = check_manifest_set(&with_text(&files), false);
    assert_clean("manifests/examples/", &errors);
    let mut e = Vec::new();
    let objects: Vec<_> = with_text(&files)
        .iter()
        .flat_map(|(f, t)| load_objects(f, t, &mut e))
        .collect();
    let svc = |name: &str| {
        services(&objects)
            .into_iter()
            .find(|(_, s)| s.metadata.name.as_deref() == Some(name))
            .map(|(_, s)| s.spec.clone().unwrap_or_default())
            .unwrap_or_else(|| panic!("manifests/examples: no Service {name}"))
    };
    assert_eq!(
        svc("web").cluster_ip.as_deref(),
        Some("None"),
        "web must be headless"
    );
    assert_eq!(svc("search").type_.as_deref(), Some("ExternalName"));
    // The stub-domains ConfigMap is the one the kube-dns Deployment mounts, and skydns reads
    // both of its keys.
    let cm = objects
        .iter()
        .find_map(|(_, o)| match o {
            Object::ConfigMap(c) if c.metadata.name.as_deref() == Some("kube-dns") => Some(c),
            _ => None,
        })
        .expect("manifests/examples: ConfigMap kube-dns");
    let data = cm.data.clone().unwrap_or_default();
    let stubs = skydns::forward::stubs::parse_stub_domains(&data["stubDomains"]).unwrap();
    assert!(!stubs.is_empty());
    let ups = skydns::forward::stubs::parse_upstream_nameservers(&data["upstreamNameservers"]);
    assert!(!ups.unwrap().is_empty());
    let deployment = std::fs::read_to_string(repo().join("manifests/deployment.yaml")).unwrap();
    assert!(
        deployment.contains("name: kube-dns\n            optional: true")
            && deployment.contains("--config-dir=/kube-dns-config"),
        "the Deployment mounts ConfigMap kube-dns (optional) as skydns's --config-dir"
    );
    assert!(
        svc("nginx").cluster_ip.is_none(),
        "nginx gets an allocated clusterIP"
    );
    let ws = workloads(&objects);
    let web = ws
        .iter()
        .find(|w| w.name == "web")
        .expect("StatefulSet web");
    assert_eq!(web.replicas, 2, "StatefulSet web replicas");
}

#[test]
fn every_manifest_file_is_checked() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(
                    p.strip_prefix(repo())
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    let mut all = Vec::new();
    walk(&repo().join("manifests"), &mut all);
    let checked: BTreeSet<String> = base_set()
        .into_iter()
        .chain(ha_set())
        .chain(yaml_files("manifests/examples"))
        .collect();
    let unchecked: Vec<&String> = all.iter().filter(|f| !checked.contains(*f)).collect();
    assert!(
        unchecked.is_empty(),
        "manifest files no test checks: {unchecked:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The checks catch mistakes (each edit must produce the named complaint)
// ---------------------------------------------------------------------------------------------

fn mutated(file: &str, from: &str, to: &str) -> String {
    let text = read(file);
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}; update this test"
    );
    text.replacen(from, to, 1)
}

fn expect_complaint(errors: &[String], want: &str, edit: &str) {
    assert!(
        errors.iter().any(|e| e.contains(want)),
        "after {edit}, expected a complaint containing {want:?}, got {errors:#?}"
    );
}

#[test]
fn manifest_checks_catch_mistakes() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "manifests/deployment.yaml",
            "--addr=0.0.0.0:10053",
            "--adr=0.0.0.0:10053",
            "skydns rejects its flags",
        ),
        (
            "manifests/deployment.yaml",
            "--addr=0.0.0.0:10053",
            "--addr=127.0.0.1:10053",
            "binds it on 127.0.0.1",
        ),
        (
            "manifests/deployment.yaml",
            "--metrics-addr=0.0.0.0:9153",
            "--metrics-addr=0.0.0.0:9154",
            "declares containerPort 9153",
        ),
        (
            "manifests/deployment.yaml",
            "path: /healthz/skydns",
            "path: /healthz/skydn",
            "does not serve /healthz/skydn",
        ),
        (
            "manifests/deployment.yaml",
            "- --healthz-port=8081",
            "- --healthz-port=8082",
            "nothing in the pod listens on 8081",
        ),
        (
            "manifests/deployment.yaml",
            "--kube2sky-url=http://127.0.0.1:8081/readiness",
            "--kube2sky-url=http://127.0.0.1:8081/ready",
            "does not serve /ready",
        ),
        (
            "manifests/deployment.yaml",
            "--dns-addr=127.0.0.1:10053",
            "--dns-addr=127.0.0.1:5353",
            "no Skydns container in the pod listens",
        ),
        (
            "manifests/deployment.yaml",
            "- --port=8080",
            "- --port=8080\n            - --period=0s",
            "healthz rejects its flags",
        ),
        (
            "manifests/deployment.yaml",
            "--etcd-server=http://127.0.0.1:2379",
            "--etcd-server=http://127.0.0.1:4001",
            "no Etcd container",
        ),
        (
            "manifests/deployment.yaml",
            "- --addr=0.0.0.0:10053",
            "- --addr=0.0.0.0:53",
            "below 1024 needs NET_BIND_SERVICE",
        ),
        (
            "manifests/deployment.yaml",
            "              drop: [\"ALL\"]\n\n        - name: healthz",
            "              drop: [\"ALL\"]\n              add: [\"NET_BIND_SERVICE\"]\n\n        - name: healthz",
            "capabilities.add",
        ),
        (
            "manifests/deployment.yaml",
            "readinessProbe:",
            "readinesProbe:",
            "unknown field",
        ),
        (
            "manifests/deployment.yaml",
            "- /var/etcd/data",
            "- /tmp/data",
            "not inside a volumeMount",
        ),
        (
            "manifests/rbac.yaml",
            "verbs: [\"get\", \"list\", \"watch\"]",
            "verbs: [\"get\", \"list\", \"watch\", \"create\"]",
            "grants more than needed",
        ),
        (
            "manifests/rbac.yaml",
            "resources: [\"endpointslices\"]",
            "resources: [\"endpointslices\", \"secrets\"]",
            "grants more than needed",
        ),
        ("manifests/rbac.yaml", "\"pods\", ", "", "kube2sky needs"),
        (
            "manifests/service.yaml",
            "targetPort: dns-tcp",
            "targetPort: dns-tpc",
            "is not a declared port",
        ),
    ];
    for (file, from, to, want) in cases {
        let files: Vec<(String, String)> = base_set()
            .iter()
            .map(|f| {
                let text = if f == file {
                    mutated(file, from, to)
                } else {
                    read(f)
                };
                (f.clone(), text)
            })
            .collect();
        let errors = check_manifest_set(&files, true);
        expect_complaint(&errors, want, &format!("{file}: {from:?} → {to:?}"));
    }
    // HA: dropping the election with a shared etcd.
    let files: Vec<(String, String)> = ha_set()
        .iter()
        .map(|f| {
            let text = if f.ends_with("ha/deployment.yaml") {
                mutated(f, "            - --leader-elect\n", "")
            } else {
                read(f)
            };
            (f.clone(), text)
        })
        .collect();
    expect_complaint(
        &check_manifest_set(&files, true),
        "without --leader-elect",
        "removing --leader-elect",
    );
}

#[test]
fn compose_checks_catch_mistakes() {
    let file = "docker-compose.yml";
    let dockerfile = read("Dockerfile");
    let cases: &[(&str, &str, &str)] = &[
        (
            "- --addr=0.0.0.0:10053",
            "- --addr=127.0.0.1:10053",
            "binds it on 127.0.0.1",
        ),
        (
            "- --addr=0.0.0.0:10053",
            "- --address=0.0.0.0:10053",
            "skydns rejects its flags",
        ),
        (
            "http://127.0.0.1:9153/readiness",
            "http://127.0.0.1:9153/ready",
            "does not serve /ready",
        ),
        (
            "--dns-addr=skydns:10053",
            "--dns-addr=skydns:54",
            "does not listen on 54",
        ),
        (
            "--kube2sky-url=http://kube2sky:8081/readiness",
            "--kube2sky-url=http://kube2sky:8081/healthy",
            "does not serve /healthy",
        ),
        (
            "--etcd-server=http://etcd:2379",
            "--etcd-server=http://etc:2379",
            "not a service running Etcd",
        ),
        (
            "--kubecfg-file=/kubeconfig/kube2sky.kubeconfig",
            "--kubecfg-file=/kubeconfig/other.kubeconfig",
            "no service writes",
        ),
        ("--tls-san=k3s", "--tls-san=k8s", "needs --tls-san=k3s"),
        (
            "\"127.0.0.1:1053:10053/udp\"",
            "\"127.0.0.1:1053:5353/udp\"",
            "nothing binds",
        ),
        (
            "\"127.0.0.1:8080:8080\"",
            "\"8080:8080\"",
            "published on all interfaces",
        ),
        (
            "\"127.0.0.1:6443:6443\"",
            "\"0.0.0.0:6443:6443\"",
            "published on all interfaces",
        ),
        ("    read_only: true\n", "", "read_only: true missing"),
        ("    cap_drop: [ALL]\n", "", "cap_drop: [ALL] missing"),
    ];
    for (from, to, want) in cases {
        let errors = check_compose(&mutated(file, from, to), &dockerfile);
        expect_complaint(&errors, want, &format!("{file}: {from:?} → {to:?}"));
    }
    let text = read(file);
    let idx = text.find("  skydns:").expect("skydns service");
    let broken = format!(
        "{}{}",
        &text[..idx],
        text[idx..].replacen("    restart: unless-stopped\n", "", 1)
    );
    expect_complaint(
        &check_compose(&broken, &dockerfile),
        "restart is \"no\"",
        "dropping skydns restart",
    );
}
