//! The Kubernetes manifests as typed objects, the manifest sets applied together, and the
//! tests that check them.

use super::*;

#[derive(Debug, Clone)]
pub(crate) enum Object {
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
pub(crate) fn dropped_fields(
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

pub(crate) fn typed<T>(doc: &Value, ctx: &str, errors: &mut Vec<String>) -> Option<T>
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
pub(crate) fn load_objects(
    file: &str,
    text: &str,
    errors: &mut Vec<String>,
) -> Vec<(String, Object)> {
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
pub(crate) struct Workload<'a> {
    pub(crate) ctx: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) replicas: i32,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) selector: BTreeMap<String, String>,
    pub(crate) spec: &'a PodSpec,
}

pub(crate) fn workloads(objects: &[(String, Object)]) -> Vec<Workload<'_>> {
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

pub(crate) fn services(objects: &[(String, Object)]) -> Vec<(&String, &Service)> {
    objects
        .iter()
        .filter_map(|(ctx, o)| match o {
            Object::Service(s) => Some((ctx, s.as_ref())),
            _ => None,
        })
        .collect()
}

pub(crate) fn matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(crate) fn container_argv(c: &Container) -> Vec<String> {
    let mut argv = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    argv
}

pub(crate) fn is_ours(c: &Container) -> bool {
    c.image
        .as_deref()
        .is_some_and(|i| i.contains(OUR_IMAGE_MARK))
}

pub(crate) fn is_etcd_image(c: &Container) -> bool {
    c.image.as_deref().is_some_and(|i| i.contains("/etcd:"))
}

/// Resolve a probe's or Service's port (number or name) against declared container ports.
pub(crate) fn resolve_port(
    port: &IntOrString,
    containers: &[&Container],
    proto: Proto,
) -> Option<u16> {
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

/// Load and check a set of manifest files (applied together).
pub(crate) fn check_manifest_set(files: &[(String, String)], kube_dns: bool) -> Vec<String> {
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

pub(crate) fn yaml_files(dir: &str) -> Vec<String> {
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

pub(crate) fn with_text(files: &[String]) -> Vec<(String, String)> {
    files.iter().map(|f| (f.clone(), read(f))).collect()
}

/// `manifests/*.yaml`: the single-pod kube-dns.
pub(crate) fn base_set() -> Vec<String> {
    yaml_files("manifests")
}

/// `manifests/ha/*.yaml` with the base RBAC and Service (the HA Deployment replaces the base one).
pub(crate) fn ha_set() -> Vec<String> {
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
    pub(crate) fn walk(dir: &Path, out: &mut Vec<String>) {
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
        // Checked by tests/tests/monitoring_names.rs (names against the programs, CRD shape).
        .chain(yaml_files("manifests/monitoring"))
        .collect();
    let unchecked: Vec<&String> = all.iter().filter(|f| !checked.contains(*f)).collect();
    assert!(
        unchecked.is_empty(),
        "manifest files no test checks: {unchecked:?}"
    );
}
