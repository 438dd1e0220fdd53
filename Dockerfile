# One image with the three programs of the kube-dns pod: skydns, kube2sky and healthz
# (/usr/local/bin). The command picks the program (see docker-compose.yml and manifests/).
# etcd runs from its own image.
#
#   docker build -t kube-dns-rs:dev .
#
# Builds with the classic builder and with BuildKit, and needs nothing from a registry but the
# two base images (no `# syntax=` frontend, no RUN --mount). The runtime stage runs no package
# manager at all, so it builds in an air-gapped build farm once `debian:bookworm-slim` is there.
#
# Binaries built elsewhere (CI, or `cargo build --release` on the host) instead of in the
# `build` stage, where `rust:1-bookworm` is not at hand:
#
#   mkdir -p target/docker-bin && cp target/release/{skydns,kube2sky,healthz} target/docker-bin/
#   strip target/docker-bin/*          # optional: the release profile already strips
#   docker build --build-arg BINARIES=prebuilt -t kube-dns-rs:dev .
#
# With BuildKit the unused stage is skipped; the classic builder runs both, so `prebuilt` copies
# with a pattern that also matches when target/docker-bin/ is absent.
ARG BINARIES=build

# ---- build: compile in the official Rust image -----------------------------------------
FROM rust:1-bookworm AS build
# protoc and the well-known .proto files for etcd-client's gRPC code generation.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin skydns --bin kube2sky --bin healthz \
 && mkdir -p /out \
 && cp target/release/skydns target/release/kube2sky target/release/healthz /out/ \
 && rm -rf target

# ---- prebuilt: binaries from target/docker-bin/ in the build context -------------------
FROM debian:bookworm-slim AS prebuilt
COPY docker/http-ok target/docker-bin* /out/

# ---- binaries: whichever of the two BINARIES names -------------------------------------
FROM ${BINARIES} AS binaries

# ---- runtime ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# One copy of each binary (release profile: stripped). http-ok: a bash HTTP check for the
# docker-compose healthchecks (no curl in the image; Kubernetes probes need neither).
COPY --from=binaries /out/skydns /out/kube2sky /out/healthz /usr/local/bin/
COPY docker/http-ok /usr/local/bin/http-ok

# Numeric user and group (no passwd entry needed) so Kubernetes can verify runAsNonRoot. Nothing
# is written to the root filesystem: it can be mounted read-only.
USER 10001:10001

# Port 53 is not bound inside the container: skydns listens on 10053 (as kube-dns's own DNS
# container did), which needs no capability on any runtime; the Kubernetes Service maps 53 to it
# and docker-compose publishes it. 9153 skydns /metrics+/readiness, 8081 kube2sky
# /readiness+/healthz+/metrics, 8080 healthz /healthz+/metrics.
EXPOSE 10053/udp 10053/tcp 9153/tcp 8081/tcp 8080/tcp

# No entrypoint: the command names the program, e.g. `skydns --addr=0.0.0.0:10053`.
CMD ["skydns", "--help"]
