# syntax=docker/dockerfile:1
#
# One image with the three programs of the kube-dns pod: skydns, kube2sky and healthz
# (/usr/local/bin). The command picks the program (see docker-compose.yml and manifests/).
# etcd runs from its official image.

# ---- build ----------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# protoc and the well-known .proto files for etcd-client's gRPC code generation.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Cache the registry and target dir between builds; copy the binaries out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin skydns --bin kube2sky --bin healthz \
 && mkdir -p /out \
 && cp target/release/skydns target/release/kube2sky target/release/healthz /out/

# ---- runtime --------------------------------------------------------------------------
FROM debian:bookworm-slim

# curl: used by the docker-compose healthchecks (Kubernetes probes do not need it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 kubedns \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kubedns

COPY --from=builder /out/skydns /out/kube2sky /out/healthz /usr/local/bin/

# Let the non-root user bind port 53: a file capability on skydns only. In Kubernetes the
# container must keep NET_BIND_SERVICE (capabilities: drop ALL, add NET_BIND_SERVICE).
RUN setcap cap_net_bind_service=+ep /usr/local/bin/skydns \
 && getcap /usr/local/bin/skydns | grep -q cap_net_bind_service

# Numeric user so Kubernetes can verify runAsNonRoot.
USER 10001:10001

# 53 skydns DNS, 9153 skydns /metrics+/readiness, 8081 kube2sky /readiness+/healthz+/metrics,
# 8080 healthz /healthz+/metrics.
EXPOSE 53/udp 53/tcp 9153/tcp 8081/tcp 8080/tcp

# No entrypoint: the command names the program, e.g. `skydns --addr=0.0.0.0:53`.
CMD ["skydns", "--help"]
