//! Each program's command line, through its own flag parser, → what it listens on and what it
//! connects to.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(crate) fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("TCP").to_ascii_uppercase().as_str() {
            "TCP" => Ok(Proto::Tcp),
            "UDP" => Ok(Proto::Udp),
            other => Err(format!("unsupported protocol {other}")),
        }
    }
}

/// A socket a program binds.
#[derive(Debug, Clone)]
pub(crate) struct Listen {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) proto: Proto,
    /// HTTP paths served (empty: not HTTP).
    pub(crate) paths: Vec<String>,
    pub(crate) what: &'static str,
}

/// Something a program connects to.
#[derive(Debug, Clone)]
pub(crate) enum Dep {
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
pub(crate) enum Kind {
    Skydns,
    Kube2sky,
    Healthz,
    Etcd,
}

#[derive(Debug)]
pub(crate) struct Program {
    pub(crate) kind: Kind,
    pub(crate) listens: Vec<Listen>,
    pub(crate) deps: Vec<Dep>,
    pub(crate) leader_elect: bool,
    /// Paths that must be inside a mounted volume (data dir, kubeconfig).
    pub(crate) needs_mounted: Vec<(&'static str, String)>,
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `http://host:port[/...]` → (host, port); the port is required.
pub(crate) fn url_host_port(url: &str) -> Result<(String, u16), String> {
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

pub(crate) fn host_ip(host: &str) -> Result<IpAddr, String> {
    if host == "localhost" {
        return Ok(Ipv4Addr::LOCALHOST.into());
    }
    host.parse()
        .map_err(|_| format!("listen address {host:?} is not an IP"))
}

pub(crate) fn existing_placeholder_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("deploy-files-kubeconfig-{}", std::process::id()));
    std::fs::write(&path, "apiVersion: v1\nkind: Config\n").expect("write placeholder kubeconfig");
    path
}

/// Parse one command line of one of our programs (or etcd) with the real parser.
pub(crate) fn parse_program(argv: &[String]) -> Result<Program, String> {
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
pub(crate) fn parse_etcd(args: &[String]) -> Result<Program, String> {
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

pub(crate) fn served_path(listen: &Listen, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    listen.paths.iter().any(|p| p == path)
}

pub(crate) fn find_listen(
    progs: &[(&str, &Program)],
    port: u16,
    proto: Proto,
) -> Option<(String, Listen)> {
    progs.iter().find_map(|(name, p)| {
        p.listens
            .iter()
            .find(|l| l.port == port && l.proto == proto)
            .map(|l| (name.to_string(), l.clone()))
    })
}
