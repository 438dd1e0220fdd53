//! Partial Kubernetes objects as the watcher decodes them: only the fields DNS needs, every
//! field lenient (see `lenient`), metadata cut down to name, namespace, resourceVersion and the
//! `kubernetes.io/service-name` label. Each converts to its slim form, or to a reason to skip it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

use crate::lenient::{List, Obj, Scalar};
use crate::slim::{
    ObjRef, Protocol, ServiceKind, SlimEndpoint, SlimEndpointGroup, SlimEndpoints, SlimObject,
    SlimPod, SlimPort, SlimService,
};

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why an object yields no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Normal (a pod without an IP, an unlabelled or FQDN slice): logged at debug.
    Ignore(String),
    /// Missing or odd fields: logged as a warning and counted.
    Invalid(String),
}

/// The result of converting one object: its slim form (or why not), plus field-level warnings
/// about parts that were dropped (a bad address, an odd port).
#[derive(Debug)]
pub struct Converted {
    /// The slim object, or why the object is skipped.
    pub object: Result<SlimObject, Skip>,
    /// Parts dropped from an object that is kept (each one a log line).
    pub warnings: Vec<String>,
}

/// A partial Kubernetes object the watcher can decode.
pub trait PartialObject:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static
{
    /// Validate and reduce to the slim form kube2sky keeps.
    fn convert(&self) -> Converted;
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    #[serde(default)]
    name: Scalar<String>,
    #[serde(default)]
    namespace: Scalar<String>,
    #[serde(default)]
    resource_version: Scalar<String>,
    #[serde(default)]
    labels: Obj<BTreeMap<String, Scalar<String>>>,
}

/// Decode `metadata` leniently, keeping only what kube2sky reads.
fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let meta = Obj::<WireMeta>::deserialize(d)?;
    let Obj::Ok(m) = meta else {
        return Ok(ObjectMeta::default());
    };
    let labels = m.labels.ok().and_then(|l| {
        l.get(SERVICE_NAME_LABEL)
            .and_then(|v| v.ok().cloned())
            .map(|v| BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), v)]))
    });
    Ok(ObjectMeta {
        name: m.name.ok().cloned(),
        namespace: m.namespace.ok().cloned(),
        resource_version: m.resource_version.ok().cloned(),
        labels,
        ..Default::default()
    })
}

macro_rules! partial_resource {
    ($ty:ident, $group:literal, $version:literal, $kind:literal, $plural:literal) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `v1/Service`.
#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    /// Name, namespace, resourceVersion and the service-name label only.
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Obj<ServiceSpec>,
}
partial_resource!(Service, "", "v1", "Service", "services");

#[derive(Debug, Clone, Default, Deserialize)]
struct ServiceSpec {
    #[serde(default, rename = "type")]
    type_: Scalar<String>,
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Scalar<String>,
    #[serde(default, rename = "clusterIPs")]
    cluster_ips: List<Scalar<String>>,
    #[serde(default, rename = "externalName")]
    external_name: Scalar<String>,
    #[serde(default)]
    ports: List<Obj<WirePort>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WirePort {
    #[serde(default)]
    name: Scalar<String>,
    #[serde(default)]
    protocol: Scalar<String>,
    #[serde(default)]
    port: Scalar<i64>,
}

/// `discovery.k8s.io/v1/EndpointSlice`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Name, namespace, resourceVersion and the service-name label only.
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    address_type: Scalar<String>,
    #[serde(default)]
    endpoints: List<Obj<WireEndpoint>>,
    #[serde(default)]
    ports: List<Obj<WirePort>>,
}
partial_resource!(
    EndpointSlice,
    "discovery.k8s.io",
    "v1",
    "EndpointSlice",
    "endpointslices"
);

#[derive(Debug, Clone, Default, Deserialize)]
struct WireEndpoint {
    #[serde(default)]
    addresses: List<Scalar<String>>,
    #[serde(default)]
    hostname: Scalar<String>,
    #[serde(default)]
    conditions: Obj<WireConditions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WireConditions {
    #[serde(default)]
    ready: Scalar<bool>,
}

/// Legacy `v1/Endpoints`.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    /// Name, namespace, resourceVersion and the service-name label only.
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    subsets: List<Obj<WireSubset>>,
}
partial_resource!(Endpoints, "", "v1", "Endpoints", "endpoints");

#[derive(Debug, Clone, Default, Deserialize)]
struct WireSubset {
    #[serde(default)]
    addresses: List<Obj<WireAddress>>,
    #[serde(default)]
    ports: List<Obj<WirePort>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WireAddress {
    #[serde(default)]
    ip: Scalar<String>,
    #[serde(default)]
    hostname: Scalar<String>,
}

/// `v1/Pod`: only the phase and addresses.
#[derive(Debug, Clone, Deserialize)]
pub struct Pod {
    /// Name, namespace, resourceVersion and the service-name label only.
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    status: Obj<PodStatus>,
}
partial_resource!(Pod, "", "v1", "Pod", "pods");

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    phase: Scalar<String>,
    #[serde(default, rename = "podIP")]
    pod_ip: Scalar<String>,
    #[serde(default, rename = "podIPs")]
    pod_ips: List<Obj<WirePodIp>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WirePodIp {
    #[serde(default)]
    ip: Scalar<String>,
}

/// A Kubernetes object name usable as a DNS label (DNS-1123: lower-case letters, digits, `-`).
pub fn is_dns1123_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A domain name for an ExternalName target.
fn is_domain_name(s: &str) -> bool {
    let bare = s.strip_suffix('.').unwrap_or(s);
    (1..=253).contains(&bare.len())
        && bare.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The object's namespace and name, both valid labels.
pub fn object_ref(meta: &ObjectMeta) -> Option<ObjRef> {
    let ns = meta.namespace.as_deref()?;
    let name = meta.name.as_deref()?;
    Some(ObjRef::new(ns, name))
}

fn checked_ref(meta: &ObjectMeta) -> Result<ObjRef, Skip> {
    let id = object_ref(meta)
        .ok_or_else(|| Skip::Invalid("metadata lacks a name or namespace".into()))?;
    if !is_dns1123_label(&id.namespace) || !is_dns1123_label(&id.name) {
        return Err(Skip::Invalid(format!(
            "{id}: namespace and name must be DNS labels"
        )));
    }
    Ok(id)
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

/// Ports with a valid number and protocol; a name that is not a label makes the port unnamed.
fn convert_ports(
    ports: &List<Obj<WirePort>>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Vec<SlimPort> {
    if ports.is_bad() {
        warnings.push(format!("{what}: ports is not a list"));
    }
    let mut out = Vec::new();
    for (i, p) in ports.items().iter().enumerate() {
        let Some(p) = p.ok() else {
            if p.is_bad() {
                warnings.push(format!("{what}: port #{i} is not an object"));
            }
            continue;
        };
        let number = match &p.port {
            Scalar::Ok(n) => match u16::try_from(*n) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    warnings.push(format!("{what}: port #{i} has number {n} out of range"));
                    None
                }
            },
            // An EndpointSlice port without a number means "all ports": no SRV record.
            Scalar::Missing => None,
            Scalar::Bad => {
                warnings.push(format!("{what}: port #{i} has a non-numeric port"));
                None
            }
        };
        let protocol = match &p.protocol {
            Scalar::Ok(s) => Protocol::parse(s),
            Scalar::Missing => Some(Protocol::Tcp),
            Scalar::Bad => None,
        };
        let Some(protocol) = protocol else {
            warnings.push(format!("{what}: port #{i} has an unknown protocol"));
            continue;
        };
        let Some(port) = number else { continue };
        let name = match &p.name {
            Scalar::Ok(n) if n.is_empty() => String::new(),
            Scalar::Ok(n) if is_dns1123_label(&n.to_ascii_lowercase()) => n.clone(),
            Scalar::Missing => String::new(),
            _ => {
                warnings.push(format!(
                    "{what}: port #{i} has an invalid name; no SRV record"
                ));
                String::new()
            }
        };
        out.push(SlimPort {
            name,
            protocol,
            port,
        });
    }
    out
}

impl PartialObject for Service {
    fn convert(&self) -> Converted {
        let mut warnings = Vec::new();
        let object = convert_service(self, &mut warnings).map(SlimObject::Service);
        Converted { object, warnings }
    }
}

fn convert_service(svc: &Service, warnings: &mut Vec<String>) -> Result<SlimService, Skip> {
    let id = checked_ref(&svc.metadata)?;
    let spec = match &svc.spec {
        Obj::Ok(s) => s,
        _ => return Err(Skip::Invalid(format!("service {id}: no spec"))),
    };
    let type_ = match &spec.type_ {
        Scalar::Ok(t) => t.as_str(),
        Scalar::Missing => "ClusterIP",
        Scalar::Bad => {
            return Err(Skip::Invalid(format!(
                "service {id}: spec.type is not a string"
            )))
        }
    };
    let kind = if type_ == "ExternalName" {
        match spec.external_name.ok() {
            Some(name) if is_domain_name(name) => ServiceKind::ExternalName(name.clone()),
            _ => {
                return Err(Skip::Invalid(format!(
                    "service {id}: ExternalName without a valid spec.externalName"
                )))
            }
        }
    } else {
        if spec.cluster_ips.is_bad() || spec.cluster_ip.is_bad() {
            return Err(Skip::Invalid(format!(
                "service {id}: clusterIP(s) of the wrong type"
            )));
        }
        let mut ips: Vec<String> = spec
            .cluster_ips
            .items()
            .iter()
            .map(|s| s.ok().cloned().unwrap_or_default())
            .collect();
        if ips.is_empty() {
            ips.extend(spec.cluster_ip.ok().cloned());
        }
        match ips.first().map(String::as_str) {
            None | Some("") => {
                return Err(Skip::Invalid(format!("service {id}: no clusterIP")));
            }
            Some("None") => ServiceKind::Headless,
            Some(_) => {
                let mut parsed = Vec::with_capacity(ips.len());
                for text in &ips {
                    match parse_ip(text) {
                        Some(ip) => parsed.push(ip),
                        None => {
                            return Err(Skip::Invalid(format!(
                                "service {id}: unparseable clusterIP {text:?}"
                            )))
                        }
                    }
                }
                ServiceKind::ClusterIp(parsed)
            }
        }
    };
    let ports = convert_ports(&spec.ports, &format!("service {id}"), warnings);
    Ok(SlimService { id, kind, ports })
}

impl PartialObject for EndpointSlice {
    fn convert(&self) -> Converted {
        let mut warnings = Vec::new();
        let object = convert_slice(self, &mut warnings).map(SlimObject::Endpoints);
        Converted { object, warnings }
    }
}

fn convert_slice(slice: &EndpointSlice, warnings: &mut Vec<String>) -> Result<SlimEndpoints, Skip> {
    let id = checked_ref(&slice.metadata)?;
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
        .ok_or_else(|| {
            Skip::Ignore(format!("endpointslice {id}: no {SERVICE_NAME_LABEL} label"))
        })?;
    if !is_dns1123_label(&service) {
        return Err(Skip::Invalid(format!(
            "endpointslice {id}: service name {service:?} is not a DNS label"
        )));
    }
    if let Scalar::Ok(t) = &slice.address_type {
        if t == "FQDN" {
            return Err(Skip::Ignore(format!("endpointslice {id}: FQDN addresses")));
        }
    }
    let what = format!("endpointslice {id}");
    if slice.endpoints.is_bad() {
        return Err(Skip::Invalid(format!("{what}: endpoints is not a list")));
    }
    let mut endpoints = Vec::new();
    for (i, ep) in slice.endpoints.items().iter().enumerate() {
        let Some(ep) = ep.ok() else {
            warnings.push(format!("{what}: endpoint #{i} is not an object"));
            continue;
        };
        let ready = match ep.conditions.ok().map(|c| &c.ready) {
            None | Some(Scalar::Missing) => true,
            Some(Scalar::Ok(r)) => *r,
            Some(Scalar::Bad) => {
                warnings.push(format!(
                    "{what}: endpoint #{i} has a non-boolean ready condition"
                ));
                false
            }
        };
        if !ready {
            continue;
        }
        let addresses = addresses(ep.addresses.items().iter().map(|a| a.ok()), &what, warnings);
        if addresses.is_empty() {
            continue;
        }
        let hostname = hostname(&ep.hostname, &what, warnings);
        endpoints.push(SlimEndpoint {
            addresses,
            hostname,
        });
    }
    let ports = convert_ports(&slice.ports, &what, warnings);
    Ok(SlimEndpoints {
        id,
        service,
        groups: vec![SlimEndpointGroup { ports, endpoints }],
    })
}

fn addresses<'a>(
    texts: impl Iterator<Item = Option<&'a String>>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for t in texts {
        match t.and_then(|t| parse_ip(t)) {
            Some(ip) if !out.contains(&ip) => out.push(ip),
            Some(_) => {}
            None => warnings.push(format!("{what}: skipping unparseable address {t:?}")),
        }
    }
    out
}

fn hostname(h: &Scalar<String>, what: &str, warnings: &mut Vec<String>) -> Option<String> {
    match h {
        Scalar::Ok(h) if h.is_empty() => None,
        Scalar::Ok(h) if is_dns1123_label(&h.to_ascii_lowercase()) => Some(h.to_ascii_lowercase()),
        Scalar::Missing => None,
        _ => {
            warnings.push(format!(
                "{what}: hostname {h:?} is not a DNS label; using the address"
            ));
            None
        }
    }
}

impl PartialObject for Endpoints {
    fn convert(&self) -> Converted {
        let mut warnings = Vec::new();
        let object = convert_endpoints(self, &mut warnings).map(SlimObject::Endpoints);
        Converted { object, warnings }
    }
}

fn convert_endpoints(eps: &Endpoints, warnings: &mut Vec<String>) -> Result<SlimEndpoints, Skip> {
    let id = checked_ref(&eps.metadata)?;
    let what = format!("endpoints {id}");
    if eps.subsets.is_bad() {
        return Err(Skip::Invalid(format!("{what}: subsets is not a list")));
    }
    let mut groups = Vec::new();
    for subset in eps.subsets.items() {
        let Some(subset) = subset.ok() else {
            warnings.push(format!("{what}: a subset is not an object"));
            continue;
        };
        let mut endpoints = Vec::new();
        for a in subset.addresses.items() {
            let Some(a) = a.ok() else {
                warnings.push(format!("{what}: an address is not an object"));
                continue;
            };
            let addresses = addresses(std::iter::once(a.ip.ok()), &what, warnings);
            if addresses.is_empty() {
                continue;
            }
            let hostname = hostname(&a.hostname, &what, warnings);
            endpoints.push(SlimEndpoint {
                addresses,
                hostname,
            });
        }
        let ports = convert_ports(&subset.ports, &what, warnings);
        groups.push(SlimEndpointGroup { ports, endpoints });
    }
    Ok(SlimEndpoints {
        service: id.name.clone(),
        id,
        groups,
    })
}

impl PartialObject for Pod {
    fn convert(&self) -> Converted {
        let mut warnings = Vec::new();
        let object = convert_pod(self, &mut warnings).map(SlimObject::Pod);
        Converted { object, warnings }
    }
}

fn convert_pod(pod: &Pod, warnings: &mut Vec<String>) -> Result<SlimPod, Skip> {
    let id = checked_ref(&pod.metadata)?;
    let what = format!("pod {id}");
    let Some(status) = pod.status.ok() else {
        return Err(Skip::Ignore(format!("{what}: no status")));
    };
    match status.phase.ok().map(String::as_str) {
        Some("Running" | "Pending") => {}
        _ => return Err(Skip::Ignore(format!("{what}: not running"))),
    }
    let mut texts: Vec<Option<&String>> = status
        .pod_ips
        .items()
        .iter()
        .map(|p| p.ok().and_then(|p| p.ip.ok()))
        .collect();
    if texts.is_empty() {
        if let Scalar::Ok(ip) = &status.pod_ip {
            if !ip.is_empty() {
                texts.push(Some(ip));
            }
        }
    }
    let ips = addresses(texts.into_iter(), &what, warnings);
    if ips.is_empty() {
        return Err(Skip::Ignore(format!("{what}: no IP yet")));
    }
    Ok(SlimPod { id, ips })
}

#[cfg(test)]
mod tests;
