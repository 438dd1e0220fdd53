//! Checks of one pod template: containers, flags, ports, probes, local connections.

use super::*;

/// Checks of one pod template (containers, flags, ports, probes, local connections).
pub(crate) fn check_pod(
    w: &Workload<'_>,
    all_objects: &[(String, Object)],
    errors: &mut Vec<String>,
) {
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

pub(crate) fn check_probe(
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

pub(crate) fn check_pod_dep(
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
