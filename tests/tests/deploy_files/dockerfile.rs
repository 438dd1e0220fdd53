//! The `Dockerfile`: the three binaries, non-root.

use super::*;

#[test]
fn dockerfile_builds_the_three_binaries_non_root() {
    let d = read("Dockerfile");
    let mut errors = Vec::new();
    for want in [
        "ARG BINARIES=build",
        "FROM rust:1-bookworm AS build",
        "protobuf-compiler",
        "libprotobuf-dev",
        "cargo build --release",
        "--bin skydns --bin kube2sky --bin healthz",
        "FROM debian:bookworm-slim AS prebuilt",
        "FROM ${BINARIES} AS binaries",
        "COPY --from=binaries /out/skydns /out/kube2sky /out/healthz /usr/local/bin/",
        "COPY docker/http-ok /usr/local/bin/http-ok",
        "USER 10001:10001",
        "EXPOSE 10053/udp 10053/tcp",
    ] {
        if !d.contains(want) {
            errors.push(format!("Dockerfile: missing {want:?}"));
        }
    }
    // Offline builds: no frontend image fetched from a registry, nothing only BuildKit knows,
    // no second copy of a binary, no package manager in the runtime stage.
    let lines: Vec<&str> = d.lines().map(str::trim).collect();
    if lines.iter().any(|l| l.starts_with("# syntax=")) {
        errors.push("Dockerfile: a `# syntax=` line makes BuildKit fetch a frontend image".into());
    }
    if d.contains("--mount=") {
        errors.push("Dockerfile: RUN --mount is rejected by the classic builder".into());
    }
    if d.contains("setcap") {
        errors.push("Dockerfile: setcap copies the binary into a second layer".into());
    }
    let runtime = d.rsplit("\nFROM ").next().unwrap_or_default();
    if runtime.lines().any(|l| l.trim_start().starts_with("RUN ")) {
        errors.push("Dockerfile: the runtime stage runs commands (apt needs a mirror)".into());
    }
    let ignore = read(".dockerignore");
    if !ignore
        .lines()
        .any(|l| l.trim() == "target/" || l.trim() == "target")
    {
        errors.push(".dockerignore: target/ is not excluded".into());
    }
    if !ignore.lines().any(|l| l.trim() == "!target/docker-bin/") {
        errors.push(".dockerignore: target/docker-bin/ (BINARIES=prebuilt) is not let in".into());
    }
    assert_clean("Dockerfile", &errors);
}
