//! The checks catch mistakes: each edit must produce the named complaint.

use super::*;

pub(crate) fn mutated(file: &str, from: &str, to: &str) -> String {
    let text = read(file);
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}; update this test"
    );
    text.replacen(from, to, 1)
}

pub(crate) fn expect_complaint(errors: &[String], want: &str, edit: &str) {
    assert!(
        errors.iter().any(|e| e.contains(want)),
        "after {edit}, expected a complaint containing {want:?}, got {errors:#?}"
    );
}

#[test]
fn manifest_checks_catch_mistakes() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "manifests/deployment.yaml",
            "--addr=0.0.0.0:10053",
            "--adr=0.0.0.0:10053",
            "skydns rejects its flags",
        ),
        (
            "manifests/deployment.yaml",
            "--addr=0.0.0.0:10053",
            "--addr=127.0.0.1:10053",
            "binds it on 127.0.0.1",
        ),
        (
            "manifests/deployment.yaml",
            "--metrics-addr=0.0.0.0:9153",
            "--metrics-addr=0.0.0.0:9154",
            "declares containerPort 9153",
        ),
        (
            "manifests/deployment.yaml",
            "path: /healthz/skydns",
            "path: /healthz/skydn",
            "does not serve /healthz/skydn",
        ),
        (
            "manifests/deployment.yaml",
            "- --healthz-port=8081",
            "- --healthz-port=8082",
            "nothing in the pod listens on 8081",
        ),
        (
            "manifests/deployment.yaml",
            "--kube2sky-url=http://127.0.0.1:8081/readiness",
            "--kube2sky-url=http://127.0.0.1:8081/ready",
            "does not serve /ready",
        ),
        (
            "manifests/deployment.yaml",
            "--dns-addr=127.0.0.1:10053",
            "--dns-addr=127.0.0.1:5353",
            "no Skydns container in the pod listens",
        ),
        (
            "manifests/deployment.yaml",
            "- --port=8080",
            "- --port=8080\n            - --period=0s",
            "healthz rejects its flags",
        ),
        (
            "manifests/deployment.yaml",
            "--etcd-server=http://127.0.0.1:2379",
            "--etcd-server=http://127.0.0.1:4001",
            "no Etcd container",
        ),
        (
            "manifests/deployment.yaml",
            "- --addr=0.0.0.0:10053",
            "- --addr=0.0.0.0:53",
            "below 1024 needs NET_BIND_SERVICE",
        ),
        (
            "manifests/deployment.yaml",
            "              drop: [\"ALL\"]\n\n        - name: healthz",
            "              drop: [\"ALL\"]\n              add: [\"NET_BIND_SERVICE\"]\n\n        - name: healthz",
            "capabilities.add",
        ),
        (
            "manifests/deployment.yaml",
            "readinessProbe:",
            "readinesProbe:",
            "unknown field",
        ),
        (
            "manifests/deployment.yaml",
            "- /var/etcd/data",
            "- /tmp/data",
            "not inside a volumeMount",
        ),
        (
            "manifests/rbac.yaml",
            "verbs: [\"get\", \"list\", \"watch\"]",
            "verbs: [\"get\", \"list\", \"watch\", \"create\"]",
            "grants more than needed",
        ),
        (
            "manifests/rbac.yaml",
            "resources: [\"endpointslices\"]",
            "resources: [\"endpointslices\", \"secrets\"]",
            "grants more than needed",
        ),
        ("manifests/rbac.yaml", "\"pods\", ", "", "kube2sky needs"),
        (
            "manifests/service.yaml",
            "targetPort: dns-tcp",
            "targetPort: dns-tpc",
            "is not a declared port",
        ),
    ];
    for (file, from, to, want) in cases {
        let files: Vec<(String, String)> = base_set()
            .iter()
            .map(|f| {
                let text = if f == file {
                    mutated(file, from, to)
                } else {
                    read(f)
                };
                (f.clone(), text)
            })
            .collect();
        let errors = check_manifest_set(&files, true);
        expect_complaint(&errors, want, &format!("{file}: {from:?} → {to:?}"));
    }
    // HA: dropping the election with a shared etcd.
    let files: Vec<(String, String)> = ha_set()
        .iter()
        .map(|f| {
            let text = if f.ends_with("ha/deployment.yaml") {
                mutated(f, "            - --leader-elect\n", "")
            } else {
                read(f)
            };
            (f.clone(), text)
        })
        .collect();
    expect_complaint(
        &check_manifest_set(&files, true),
        "without --leader-elect",
        "removing --leader-elect",
    );
}

#[test]
fn compose_checks_catch_mistakes() {
    let file = "docker-compose.yml";
    let dockerfile = read("Dockerfile");
    let cases: &[(&str, &str, &str)] = &[
        (
            "- --addr=0.0.0.0:10053",
            "- --addr=127.0.0.1:10053",
            "binds it on 127.0.0.1",
        ),
        (
            "- --addr=0.0.0.0:10053",
            "- --address=0.0.0.0:10053",
            "skydns rejects its flags",
        ),
        (
            "http://127.0.0.1:9153/readiness",
            "http://127.0.0.1:9153/ready",
            "does not serve /ready",
        ),
        (
            "--dns-addr=skydns:10053",
            "--dns-addr=skydns:54",
            "does not listen on 54",
        ),
        (
            "--kube2sky-url=http://kube2sky:8081/readiness",
            "--kube2sky-url=http://kube2sky:8081/healthy",
            "does not serve /healthy",
        ),
        (
            "--etcd-server=http://etcd:2379",
            "--etcd-server=http://etc:2379",
            "not a service running Etcd",
        ),
        (
            "--kubecfg-file=/kubeconfig/kube2sky.kubeconfig",
            "--kubecfg-file=/kubeconfig/other.kubeconfig",
            "no service writes",
        ),
        ("--tls-san=k3s", "--tls-san=k8s", "needs --tls-san=k3s"),
        (
            "\"127.0.0.1:1053:10053/udp\"",
            "\"127.0.0.1:1053:5353/udp\"",
            "nothing binds",
        ),
        (
            "\"127.0.0.1:8080:8080\"",
            "\"8080:8080\"",
            "published on all interfaces",
        ),
        (
            "\"127.0.0.1:6443:6443\"",
            "\"0.0.0.0:6443:6443\"",
            "published on all interfaces",
        ),
        ("    read_only: true\n", "", "read_only: true missing"),
        ("    cap_drop: [ALL]\n", "", "cap_drop: [ALL] missing"),
    ];
    for (from, to, want) in cases {
        let errors = check_compose(&mutated(file, from, to), &dockerfile);
        expect_complaint(&errors, want, &format!("{file}: {from:?} → {to:?}"));
    }
    let text = read(file);
    let idx = text.find("  skydns:").expect("skydns service");
    let broken = format!(
        "{}{}",
        &text[..idx],
        text[idx..].replacen("    restart: unless-stopped\n", "", 1)
    );
    expect_complaint(
        &check_compose(&broken, &dockerfile),
        "restart is \"no\"",
        "dropping skydns restart",
    );
}
