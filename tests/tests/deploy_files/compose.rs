//! `docker-compose.yml` against the programs it runs.

use super::*;

pub(crate) fn str_list(v: &Value) -> Vec<String> {
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

pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

pub(crate) fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key)?.as_str()
}

/// Names of services in `depends_on` (list or map form).
pub(crate) fn depends_on(svc: &Value) -> BTreeMap<String, String> {
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
pub(crate) fn volume_mounts(svc: &Value) -> Vec<(String, String)> {
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
pub(crate) fn published_ports(svc: &Value) -> Result<Vec<(u16, Proto)>, String> {
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

pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

pub(crate) fn check_compose(text: &str, dockerfile: &str) -> Vec<String> {
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
