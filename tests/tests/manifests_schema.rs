//! Every manifest under `manifests/` validated by a real schema validator: `kubernetes-validate`
//! (PyPI; `.ci/run` installs it) with `--strict` (unknown fields are errors) against the
//! Kubernetes versions the README claims, 1.29 to 1.37, including 1.31 (the compose stack's
//! k3s). A broken copy must be rejected, so the validator is known to be looking. Without the
//! validator the test prints `SKIPPED` and returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Oldest and newest claimed, and the compose stack's k3s (v1.31).
const VERSIONS: [&str; 3] = ["1.29.0", "1.31.0", "1.37.0"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("manifests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read manifests/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `(success, output)` of `kubernetes-validate --strict -k VERSION files…`, or `None` when it
/// is not installed.
fn validate(version: &str, files: &[PathBuf]) -> Option<(bool, String)> {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output()
        .ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn manifests_pass_strict_schema_validation() {
    let files = manifests();
    assert!(files.len() >= 8, "manifests found: {files:?}");
    if validate(VERSIONS[0], &files[..1]).is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED manifests_pass_strict_schema_validation: kubernetes-validate is not \
             installed (`pip install kubernetes-validate`; .ci/run does)"
        );
        return;
    }
    for version in VERSIONS {
        let (ok, output) = validate(version, &files).expect("ran before");
        assert!(ok, "kubernetes-validate --strict -k {version}:\n{output}");
    }

    // The validator is really looking: a misspelt field and a wrong type are rejected.
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment =
        std::fs::read_to_string(repo().join("manifests/deployment.yaml")).expect("read");
    for (from, to, want) in [
        ("readinessProbe:", "readinesProbe:", "readinesProbe"),
        ("replicas: 1", "replicas: one", "replicas"),
    ] {
        assert!(deployment.contains(from), "deployment.yaml lacks {from:?}");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, deployment.replacen(from, to, 1)).expect("write");
        let (ok, output) = validate(VERSIONS[0], &[broken]).expect("ran before");
        assert!(!ok, "{from:?} → {to:?} was accepted:\n{output}");
        assert!(output.contains(want), "{from:?} → {to:?}: {output}");
    }
}
