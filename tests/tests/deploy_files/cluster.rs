//! Checks across objects: Services reach declared ports, RBAC grants exactly what kube2sky
//! watches, the kube-dns specifics.

use super::*;

pub(crate) fn check_services(objects: &[(String, Object)], errors: &mut Vec<String>) {
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
pub(crate) const ALLOWED: &[(&str, &str)] = &[
    ("", "endpoints"),
    ("", "namespaces"),
    ("", "pods"),
    ("", "services"),
    ("discovery.k8s.io", "endpointslices"),
];

pub(crate) fn check_rbac(objects: &[(String, Object)], errors: &mut Vec<String>) {
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
pub(crate) fn check_kube_dns(objects: &[(String, Object)], errors: &mut Vec<String>) {
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
