//! Builders for the Kubernetes objects kube2sky reads, in the JSON shape a Kubernetes 1.30+ API
//! server emits (Service, EndpointSlice, v1 Endpoints, Pod, Namespace). Feed them to
//! [`crate::TestApiServer::apply`]; adjust the returned JSON for unusual cases.

use serde_json::{json, Map, Value};

/// One service / endpoint port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Port name (`None` for an unnamed port).
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// "TCP", "UDP" or "SCTP".
    pub protocol: String,
}

/// A port; an empty `name` means an unnamed port.
pub fn port(name: &str, port: u16, protocol: &str) -> PortSpec {
    PortSpec {
        name: (!name.is_empty()).then(|| name.to_string()),
        port,
        protocol: protocol.to_string(),
    }
}

fn metadata(ns: &str, name: &str) -> Value {
    json!({"name": name, "namespace": ns})
}

fn ip_family(ip: &str) -> &'static str {
    if ip.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    }
}

fn service_ports(ports: &[PortSpec]) -> Vec<Value> {
    ports
        .iter()
        .map(|p| {
            let mut m = Map::new();
            if let Some(n) = &p.name {
                m.insert("name".into(), json!(n));
            }
            m.insert("protocol".into(), json!(p.protocol));
            m.insert("port".into(), json!(p.port));
            m.insert("targetPort".into(), json!(p.port));
            Value::Object(m)
        })
        .collect()
}

fn service(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(ns, name),
        "spec": spec,
        "status": {"loadBalancer": {}},
    })
}

fn insert_ports(spec: &mut Value, ports: &[PortSpec]) {
    if !ports.is_empty() {
        spec["ports"] = Value::Array(service_ports(ports));
    }
}

/// A ClusterIP service. One IP: single stack; two IPs: dual stack (`ipFamilies` in the order
/// of the IPs, `ipFamilyPolicy: PreferDualStack`).
pub fn service_cluster_ip(ns: &str, name: &str, cluster_ips: &[&str], ports: &[PortSpec]) -> Value {
    let families: Vec<&str> = cluster_ips.iter().map(|ip| ip_family(ip)).collect();
    let policy = if cluster_ips.len() > 1 {
        "PreferDualStack"
    } else {
        "SingleStack"
    };
    let mut spec = json!({
        "clusterIP": cluster_ips.first().copied().unwrap_or(""),
        "clusterIPs": cluster_ips,
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": families,
        "ipFamilyPolicy": policy,
        "selector": {"app": name},
        "sessionAffinity": "None",
        "type": "ClusterIP",
    });
    insert_ports(&mut spec, ports);
    service(ns, name, spec)
}

/// A headless service (`clusterIP: None`).
pub fn service_headless(ns: &str, name: &str, ports: &[PortSpec]) -> Value {
    let mut spec = json!({
        "clusterIP": "None",
        "clusterIPs": ["None"],
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "selector": {"app": name},
        "sessionAffinity": "None",
        "type": "ClusterIP",
    });
    insert_ports(&mut spec, ports);
    service(ns, name, spec)
}

/// An ExternalName service (no cluster IP, no ports).
pub fn service_external_name(ns: &str, name: &str, external_name: &str) -> Value {
    service(
        ns,
        name,
        json!({
            "externalName": external_name,
            "sessionAffinity": "None",
            "type": "ExternalName",
        }),
    )
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// IP addresses, as text.
    pub addresses: Vec<String>,
    /// `hostname` of the endpoint (headless services name it in DNS).
    pub hostname: Option<String>,
    /// `conditions.ready` (also used for `serving`); `None` leaves the conditions empty, which
    /// consumers must read as ready.
    pub ready: Option<bool>,
    /// When set, the endpoint gets `targetRef` (kind Pod) and `nodeName`.
    pub pod_name: Option<String>,
}

/// An endpoint without a target pod.
pub fn endpoint(addresses: &[&str], hostname: Option<&str>, ready: Option<bool>) -> EndpointSpec {
    EndpointSpec {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        hostname: hostname.map(str::to_string),
        ready,
        pod_name: None,
    }
}

/// A stable pseudo-uid for a referenced object (the real one would come from the pod).
fn ref_uid(ns: &str, name: &str) -> String {
    // FNV-1a, twice with different offsets, for 128 bits of stable digits.
    let fnv = |seed: u64| {
        let mut h = seed;
        for b in ns.bytes().chain([0u8]).chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x84222325_cbf29ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a & 0xfff,
        (b >> 52) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// An EndpointSlice for `service` (label `kubernetes.io/service-name`), `address_type` "IPv4",
/// "IPv6" or "FQDN". Unnamed ports get `name: ""` as the EndpointSlice controller writes them.
pub fn endpoint_slice(
    ns: &str,
    slice_name: &str,
    service: &str,
    address_type: &str,
    endpoints: &[EndpointSpec],
    ports: &[PortSpec],
) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("addresses".into(), json!(e.addresses));
            let conditions = match e.ready {
                Some(r) => json!({"ready": r, "serving": r, "terminating": false}),
                None => json!({}),
            };
            m.insert("conditions".into(), conditions);
            if let Some(h) = &e.hostname {
                m.insert("hostname".into(), json!(h));
            }
            if let Some(pod) = &e.pod_name {
                m.insert("nodeName".into(), json!("test-node"));
                m.insert(
                    "targetRef".into(),
                    json!({"kind": "Pod", "namespace": ns, "name": pod, "uid": ref_uid(ns, pod)}),
                );
            }
            Value::Object(m)
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": p.name.as_deref().unwrap_or(""), "protocol": p.protocol, "port": p.port}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type,
        "endpoints": eps,
        "ports": ports,
    })
}

/// v1 Endpoints with one subset: `ready` and `not_ready` are `(ip, hostname)`. No subsets at all
/// when both are empty, as the endpoints controller writes it.
pub fn endpoints_legacy(
    ns: &str,
    name: &str,
    ready: &[(&str, Option<&str>)],
    not_ready: &[(&str, Option<&str>)],
    ports: &[PortSpec],
) -> Value {
    let addrs = |list: &[(&str, Option<&str>)]| -> Vec<Value> {
        list.iter()
            .map(|(ip, host)| match host {
                Some(h) => json!({"ip": ip, "hostname": h}),
                None => json!({"ip": ip}),
            })
            .collect()
    };
    let mut obj = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": metadata(ns, name),
    });
    if !ready.is_empty() || !not_ready.is_empty() {
        let mut subset = Map::new();
        if !ready.is_empty() {
            subset.insert("addresses".into(), Value::Array(addrs(ready)));
        }
        if !not_ready.is_empty() {
            subset.insert("notReadyAddresses".into(), Value::Array(addrs(not_ready)));
        }
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                if let Some(n) = &p.name {
                    m.insert("name".into(), json!(n));
                }
                m.insert("port".into(), json!(p.port));
                m.insert("protocol".into(), json!(p.protocol));
                Value::Object(m)
            })
            .collect();
        if !ports.is_empty() {
            subset.insert("ports".into(), Value::Array(ports));
        }
        obj["subsets"] = json!([Value::Object(subset)]);
    }
    obj
}

/// A running pod with one container; `podIP` is the first of `ips` (none when empty).
pub fn pod(ns: &str, name: &str, ips: &[&str]) -> Value {
    let mut status = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{
            "name": "app",
            "image": "registry.k8s.io/pause:3.9",
            "ready": true,
            "restartCount": 0,
            "started": true,
            "state": {"running": {}},
        }],
    });
    if let Some(first) = ips.first() {
        status["podIP"] = json!(first);
        status["podIPs"] = Value::Array(ips.iter().map(|ip| json!({"ip": ip})).collect());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}],
            "dnsPolicy": "ClusterFirst",
            "nodeName": "test-node",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
        },
        "status": status,
    })
}

/// A namespace (cluster-scoped, phase Active, with the `kubernetes.io/metadata.name` label).
pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let s = service_cluster_ip(
            "ns",
            "web",
            &["10.0.0.1", "fd00::1"],
            &[port("http", 80, "TCP"), port("", 53, "UDP")],
        );
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
        assert_eq!(s["spec"]["ipFamilyPolicy"], "PreferDualStack");
        assert_eq!(s["spec"]["ports"][1].get("name"), None);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let h = service_headless("ns", "h", &[]);
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
        assert!(h["spec"].get("ports").is_none());
        let e = service_external_name("ns", "x", "example.org");
        assert!(e["spec"].get("clusterIP").is_none());
        let mut ep = endpoint(&["10.1.0.1"], Some("h0"), Some(true));
        ep.pod_name = Some("p0".into());
        let sl = endpoint_slice(
            "ns",
            "web-abc",
            "web",
            "IPv4",
            &[ep],
            &[port("", 80, "TCP")],
        );
        assert_eq!(
            sl["metadata"]["labels"]["kubernetes.io/service-name"],
            "web"
        );
        assert_eq!(sl["endpoints"][0]["targetRef"]["name"], "p0");
        assert_eq!(sl["ports"][0]["name"], "");
        let legacy = endpoints_legacy("ns", "web", &[], &[], &[]);
        assert!(legacy.get("subsets").is_none());
        let p = pod("ns", "p", &["10.1.0.5", "fd00::5"]);
        assert_eq!(p["status"]["podIP"], "10.1.0.5");
        assert_eq!(p["status"]["podIPs"][1]["ip"], "fd00::5");
        assert_eq!(namespace("a")["metadata"].get("namespace"), None);
    }
}
