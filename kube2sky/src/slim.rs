//! The slim objects kube2sky keeps: only what DNS needs, already validated (names are DNS
//! labels, addresses are parsed, not-ready endpoints and pods without an IP are dropped).
//! `watch` produces them, `desired` stores them, `translate` turns them into records.

use std::fmt;
use std::net::IpAddr;

/// The watched resource an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Services.
    Service,
    /// EndpointSlices, or legacy v1 Endpoints with `--legacy-endpoints`.
    Endpoints,
    /// Pods (with `--pod-records`).
    Pod,
}

impl Kind {
    /// Every kind, in [`Kind::index`] order.
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::Endpoints, Kind::Pod];

    /// Position in per-kind arrays (0, 1, 2).
    pub fn index(self) -> usize {
        match self {
            Kind::Service => 0,
            Kind::Endpoints => 1,
            Kind::Pod => 2,
        }
    }

    /// The kind's metric label (`service`, `endpoints`, `pod`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Endpoints => "endpoints",
            Kind::Pod => "pod",
        }
    }
}

/// Namespace and name of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjRef {
    /// The namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjRef {
    /// A reference to `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Kubernetes spelling (`TCP`), any case.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The SRV label without its underscore (`tcp`).
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A port. `name` is empty for an unnamed port (which gets no SRV record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimPort {
    /// Port name, a DNS label (empty when unnamed).
    pub name: String,
    /// The port's protocol.
    pub protocol: Protocol,
    /// Port number (1..=65535).
    pub port: u16,
}

/// What the service key of a Service holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// One or two (dual stack) cluster IPs, in `spec.clusterIPs` order.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the ready endpoint addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimService {
    /// The service's namespace and name.
    pub id: ObjRef,
    /// What its service key holds.
    pub kind: ServiceKind,
    /// Its valid ports.
    pub ports: Vec<SlimPort>,
}

/// One ready endpoint: its addresses and, when set and valid, its hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimEndpoint {
    /// The endpoint's addresses (at least one).
    pub addresses: Vec<IpAddr>,
    /// Its hostname, a DNS label.
    pub hostname: Option<String>,
}

/// Ready endpoints sharing one port list (an EndpointSlice, or one subset of v1 Endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlimEndpointGroup {
    /// The ports these endpoints serve.
    pub ports: Vec<SlimPort>,
    /// The ready endpoints.
    pub endpoints: Vec<SlimEndpoint>,
}

/// An EndpointSlice (or v1 Endpoints object) and the service it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimEndpoints {
    /// The slice's own namespace and name.
    pub id: ObjRef,
    /// The owning service's name (`kubernetes.io/service-name`), in `id.namespace`.
    pub service: String,
    /// Its port lists and ready endpoints (one group for a slice).
    pub groups: Vec<SlimEndpointGroup>,
}

impl SlimEndpoints {
    /// The owning service's namespace and name.
    pub fn service_ref(&self) -> ObjRef {
        ObjRef::new(self.id.namespace.clone(), self.service.clone())
    }
}

/// A Running or Pending pod with at least one IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimPod {
    /// The pod's namespace and name.
    pub id: ObjRef,
    /// Its IPs (`status.podIPs`, else `status.podIP`; at least one).
    pub ips: Vec<IpAddr>,
}

/// Any slim object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlimObject {
    /// A Service.
    Service(SlimService),
    /// An EndpointSlice or v1 Endpoints object.
    Endpoints(SlimEndpoints),
    /// A Pod.
    Pod(SlimPod),
}

impl SlimObject {
    /// The kind of the object.
    pub fn kind(&self) -> Kind {
        match self {
            SlimObject::Service(_) => Kind::Service,
            SlimObject::Endpoints(_) => Kind::Endpoints,
            SlimObject::Pod(_) => Kind::Pod,
        }
    }
}

/// What the watchers tell the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlimEvent {
    /// A (re)list of `Kind` starts: objects not applied before the matching `InitDone` are gone.
    Init(Kind),
    /// An object exists with this content (from a list or a watch).
    Apply(SlimObject),
    /// An object is gone, or no longer has DNS records.
    Delete(Kind, ObjRef),
    /// The (re)list of `Kind` is complete.
    InitDone(Kind),
}
