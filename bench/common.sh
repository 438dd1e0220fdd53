# Shared shell helpers of bench/run and bench/profile (sourced, not run).
# Everything listens on 127.0.0.1 only; every wait loop is bounded.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
ZONE=cluster.local
PIDS=()

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_tools() {
  local t missing=()
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (apt-get install etcd-server knot dnsperf dnsutils curl iproute2)"
}

# A free port (TCP and UDP) on 127.0.0.1, not handed out before in this run.
declare -A USED_PORTS=()
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 40000))
    [[ -n ${USED_PORTS[$p]:-} ]] && continue
    if [[ -z $(ss -Hltun "( sport = :$p )" 2>/dev/null) ]]; then
      USED_PORTS[$p]=1
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# Kill what we started (by pid), then remove the work dir.
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ -n ${WORK:-} && -z ${BENCH_KEEP:-} ]]; then rm -rf "$WORK"; fi
}

# Wait (bounded) until no cargo/rustc runs on this machine; returns 1 if still busy.
wait_idle() {
  local max=${1:-300} waited=0
  while pgrep -x "cargo|rustc" >/dev/null 2>&1; do
    ((waited == 0)) && log "cargo/rustc running: waiting up to ${max}s for it to finish"
    ((waited >= max)) && return 1
    sleep 5
    waited=$((waited + 5))
  done
  return 0
}

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
mem_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

start_etcd() { # dir -> sets ETCD_PORT ETCD_PID ETCD_URL
  local dir=$1 peer
  ETCD_PORT=$(free_port)
  peer=$(free_port)
  ETCD_URL=http://127.0.0.1:$ETCD_PORT
  mkdir -p "$dir"
  etcd --name bench --data-dir "$dir/data" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" --log-level error \
    >"$dir/etcd.log" 2>&1 &
  ETCD_PID=$!
  PIDS+=("$ETCD_PID")
  for _ in $(seq 200); do
    curl -sf "$ETCD_URL/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "etcd did not start: $(tail -5 "$dir/etcd.log")"
}

start_skydns() { # [wrapper...] -> sets SKYDNS_PORT SKYDNS_PID METRICS_PORT
  SKYDNS_PORT=$(free_port)
  METRICS_PORT=$(free_port)
  RUST_LOG=${SKYDNS_LOG:-warn} "$@" "$BIN/skydns" --addr "127.0.0.1:$SKYDNS_PORT" \
    --metrics-addr "127.0.0.1:$METRICS_PORT" --machines "$ETCD_URL" \
    --domain "$ZONE." --no-rec --ttl 30 --min-ttl 30 ${SKYDNS_ARGS:-} \
    >"$WORK/skydns.log" 2>&1 &
  SKYDNS_PID=$!
  PIDS+=("$SKYDNS_PID")
}

wait_skydns_ready() { # timeout seconds
  local t=${1:-60} i
  for ((i = 0; i < t * 10; i++)); do
    curl -sf "http://127.0.0.1:$METRICS_PORT/readiness" >/dev/null 2>&1 && return 0
    kill -0 "$SKYDNS_PID" 2>/dev/null || die "skydns exited: $(tail -5 "$WORK/skydns.log")"
    sleep 0.1
  done
  die "skydns not ready after ${t}s"
}

start_knot() { # zone dir -> sets KNOT_PORT KNOT_PID
  local zdir=$1 kdir=$WORK/knot
  KNOT_PORT=$(free_port)
  mkdir -p "$kdir"
  cat >"$kdir/knot.conf" <<EOF
server:
    rundir: "$kdir"
    listen: 127.0.0.1@$KNOT_PORT
log:
  - target: stderr
    any: warning
database:
    storage: "$kdir"
template:
  - id: default
    storage: "$zdir"
    semantic-checks: off
zone:
  - domain: $ZONE.
    file: "$ZONE.zone"
  - domain: 10.in-addr.arpa.
    file: "10.in-addr.arpa.zone"
EOF
  knotd -c "$kdir/knot.conf" >"$kdir/knot.log" 2>&1 &
  KNOT_PID=$!
  PIDS+=("$KNOT_PID")
  for _ in $(seq 300); do
    if [[ -n $(dig +short +time=1 +tries=1 @127.0.0.1 -p "$KNOT_PORT" "$ZONE." SOA 2>/dev/null) &&
      -n $(dig +short +time=1 +tries=1 @127.0.0.1 -p "$KNOT_PORT" 10.in-addr.arpa. SOA 2>/dev/null) ]]; then
      return 0
    fi
    kill -0 "$KNOT_PID" 2>/dev/null || die "knotd exited: $(tail -5 "$kdir/knot.log")"
    sleep 0.1
  done
  die "knotd did not load the zones: $(tail -5 "$kdir/knot.log")"
}
