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
//! kube2sky watches. Negative tests prove each rule fires.
//!
//! By job: `programs` (flags → listeners and dependencies), `compose` (docker-compose.yml),
//! `dockerfile`, `manifests` (typed loading, the manifest sets, their tests), `pods` (checks of
//! one pod template), `cluster` (Services, RBAC, kube-dns specifics), `mistakes` (the negative
//! tests). Shared helpers are here.

mod cluster;
mod compose;
mod dockerfile;
mod manifests;
mod mistakes;
mod pods;
mod programs;

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

pub(crate) const OUR_IMAGE_MARK: &str = "kube-dns-rs";

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub(crate) fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Fail with every problem found, one per line.
pub(crate) fn assert_clean(what: &str, errors: &[String]) {
    assert!(
        errors.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        errors.len(),
        errors.join("\n  - ")
    );
}

use cluster::*;
use compose::*;
use manifests::*;
use pods::*;
use programs::*;
