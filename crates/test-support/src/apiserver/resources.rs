//! The resources the test API server serves, their discovery documents (`/api`, `/api/v1`,
//! `/apis`, `/apis/discovery.k8s.io/v1`, `/version`) and the `meta.k8s.io/v1` `Table` rendering
//! kubectl asks for when it prints.

use serde_json::{json, Map, Value};

use super::util::human_age;

/// One served resource type.
#[derive(Debug)]
pub(crate) struct ResourceType {
    /// API group, "" for core.
    pub group: &'static str,
    /// `apiVersion` of its objects ("v1", "discovery.k8s.io/v1").
    pub api_version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Field selector labels beyond `metadata.name` / `metadata.namespace`.
    pub fields: &'static [&'static str],
}

impl ResourceType {
    pub(crate) fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub(crate) fn supports_field(&self, field: &str) -> bool {
        matches!(field, "metadata.name" | "metadata.namespace") || self.fields.contains(&field)
    }
}

pub(crate) static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        api_version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        fields: &["spec.clusterIP", "spec.type"],
    },
    ResourceType {
        group: "",
        api_version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        fields: &[],
    },
    ResourceType {
        group: "",
        api_version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    ResourceType {
        group: "",
        api_version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        fields: &["status.phase"],
    },
    ResourceType {
        group: "discovery.k8s.io",
        api_version: "discovery.k8s.io/v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        fields: &[],
    },
];

/// The resource served at `plural` in `group` ("" = core).
pub(crate) fn by_plural(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
}

/// `APIResourceList` for one group version.
pub(crate) fn resource_list(group_version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.api_version == group_version)
        .map(|r| {
            let mut v = json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "list", "watch"],
            });
            if let Some(m) = v.as_object_mut() {
                if !r.short_names.is_empty() {
                    m.insert("shortNames".into(), json!(r.short_names));
                }
                if !r.categories.is_empty() {
                    m.insert("categories".into(), json!(r.categories));
                }
            }
            v
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

/// `APIVersions` for `/api`.
pub(crate) fn api_versions(port: u16) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}
        ],
    })
}

fn discovery_group() -> Value {
    let gv = json!({"groupVersion": "discovery.k8s.io/v1", "version": "v1"});
    json!({
        "name": "discovery.k8s.io",
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

/// `APIGroupList` for `/apis`.
pub(crate) fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [discovery_group()]})
}

/// `APIGroup` for `/apis/discovery.k8s.io`.
pub(crate) fn api_group() -> Value {
    let mut g = discovery_group();
    if let Some(m) = g.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    g
}

/// `/version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-test-apiserver",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/` — the path list the real server returns.
pub(crate) fn root_paths() -> Value {
    json!({"paths": [
        "/api", "/api/v1", "/apis", "/apis/discovery.k8s.io", "/apis/discovery.k8s.io/v1",
        "/healthz", "/livez", "/readyz", "/version",
    ]})
}

/// Which object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub(crate) fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn col(name: &str, ty: &str, priority: u8, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn column_definitions(rt: &ResourceType) -> Vec<Value> {
    let name = col(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = col("Age", "string", 0, "CreationTimestamp of the object.");
    match rt.kind {
        "Service" => vec![
            name,
            col("Type", "string", 0, "Type of the service."),
            col("Cluster-IP", "string", 0, "ClusterIP of the service."),
            col("External-IP", "string", 0, "External IPs of the service."),
            col("Port(s)", "string", 0, "Ports of the service."),
            age,
            col("Selector", "string", 1, "Selector of the service."),
        ],
        "Endpoints" => vec![
            name,
            col("Endpoints", "string", 0, "Endpoints of the object."),
            age,
        ],
        "Pod" => vec![
            name,
            col("Ready", "string", 0, "Ready containers / all containers."),
            col("Status", "string", 0, "Phase of the pod."),
            col("Restarts", "string", 0, "Container restarts."),
            age,
            col("IP", "string", 1, "IP address of the pod."),
            col("Node", "string", 1, "Node of the pod."),
        ],
        "Namespace" => vec![
            name,
            col("Status", "string", 0, "Phase of the namespace."),
            age,
        ],
        "EndpointSlice" => vec![
            name,
            col("AddressType", "string", 0, "Type of addresses."),
            col("Ports", "string", 0, "Ports of the slice."),
            col("Endpoints", "string", 0, "Endpoint addresses."),
            age,
        ],
        _ => vec![name, age],
    }
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

fn arr_at<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(s: String, none: &str) -> String {
    if s.is_empty() {
        none.to_string()
    } else {
        s
    }
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = str_at(obj, "/metadata/name").unwrap_or("").to_string();
    let age = human_age(str_at(obj, "/metadata/creationTimestamp"));
    match rt.kind {
        "Service" => {
            let ty = str_at(obj, "/spec/type").unwrap_or("ClusterIP");
            let cluster_ip = match str_at(obj, "/spec/clusterIP") {
                Some(ip) if !ip.is_empty() => ip.to_string(),
                _ => "<none>".to_string(),
            };
            let external = match ty {
                "ExternalName" => str_at(obj, "/spec/externalName").unwrap_or("").to_string(),
                _ => {
                    let mut ips: Vec<String> = arr_at(obj, "/spec/externalIPs")
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                    ips.extend(
                        arr_at(obj, "/status/loadBalancer/ingress")
                            .iter()
                            .filter_map(|i| {
                                str_at(i, "/ip")
                                    .or(str_at(i, "/hostname"))
                                    .map(str::to_string)
                            }),
                    );
                    if ips.is_empty() && ty == "LoadBalancer" {
                        "<pending>".to_string()
                    } else {
                        ips.join(",")
                    }
                }
            };
            let ports: Vec<String> = arr_at(obj, "/spec/ports")
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
                    let proto = str_at(p, "/protocol").unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_u64) {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect();
            let selector = obj
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                json!(name),
                json!(ty),
                json!(cluster_ip),
                json!(or_none(external, "<none>")),
                json!(or_none(ports.join(","), "<none>")),
                json!(age),
                json!(or_none(selector, "<none>")),
            ]
        }
        "Endpoints" => {
            let mut eps = Vec::new();
            for subset in arr_at(obj, "/subsets") {
                for addr in arr_at(subset, "/addresses") {
                    let ip = str_at(addr, "/ip").unwrap_or("");
                    let ports = arr_at(subset, "/ports");
                    if ports.is_empty() {
                        eps.push(ip.to_string());
                    }
                    for p in ports {
                        let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
                        eps.push(format!("{ip}:{port}"));
                    }
                }
            }
            vec![
                json!(name),
                json!(or_none(eps.join(","), "<none>")),
                json!(age),
            ]
        }
        "Pod" => {
            let total = arr_at(obj, "/spec/containers").len();
            let statuses = arr_at(obj, "/status/containerStatuses");
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: u64 = statuses
                .iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_u64))
                .sum();
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(str_at(obj, "/status/phase").unwrap_or("Unknown")),
                json!(restarts.to_string()),
                json!(age),
                json!(str_at(obj, "/status/podIP").unwrap_or("<none>")),
                json!(str_at(obj, "/spec/nodeName").unwrap_or("<none>")),
            ]
        }
        "Namespace" => vec![
            json!(name),
            json!(str_at(obj, "/status/phase").unwrap_or("Active")),
            json!(age),
        ],
        "EndpointSlice" => {
            let ports: Vec<String> = arr_at(obj, "/ports")
                .iter()
                .filter_map(|p| p.get("port").and_then(Value::as_u64))
                .map(|p| p.to_string())
                .collect();
            let addrs: Vec<String> = arr_at(obj, "/endpoints")
                .iter()
                .flat_map(|e| arr_at(e, "/addresses"))
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            vec![
                json!(name),
                json!(str_at(obj, "/addressType").unwrap_or("")),
                json!(or_none(ports.join(","), "<unset>")),
                json!(or_none(addrs.join(","), "<unset>")),
                json!(age),
            ]
        }
        _ => vec![json!(name), json!(age)],
    }
}

fn row(rt: &ResourceType, obj: &Value, include: IncludeObject) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells(rt, obj)));
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => {
            row.insert("object".into(), obj.clone());
        }
        IncludeObject::Metadata => {
            row.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
    }
    Value::Object(row)
}

/// A `meta.k8s.io/v1` `Table` of `objects` (full objects, with apiVersion and kind).
pub(crate) fn table<'a>(
    rt: &ResourceType,
    objects: impl IntoIterator<Item = &'a Value>,
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objects.into_iter().map(|o| row(rt, o, include)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(rt),
        "rows": rows,
    })
}
