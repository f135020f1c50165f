#!/usr/bin/env bash
# The front-end benchmark of docs/PERFORMANCE.md: GetTenant served from a coordinator core's
# cache, against nghttpd serving a 16-byte file and a minimal tonic server answering GetTenant
# from a HashMap, plus the floor of h2 + glommio (examples/h2_floor.rs: a fixed reply to every
# request, nothing else) and nghttpd answering the same gRPC-shaped POST the gRPC servers get
# (line "ngh-post": whether that load costs h2load more than a GET). h2load is pinned to CPU 0
# and every server to CPU 1 (one core each), with the same h2load settings (-c 8 -m 32 -t 1).
# The PairDB coordinator runs twice: on the h2 crate (line "pairdb") and on its own HTTP/2 layer
# (line "native"). Rounds are interleaved; each line gives the rate and the server's CPU time per request (from
# /proc/PID/task/*/schedstat). Only replies with grpc-status 0 count: a real client call checks
# the reply before the load.
# Needs: release builds of pairdb, examples/h2_floor and benches/reference/tonic-kv,
# nghttp2-client, nghttp2-server. BASE=path/to/another/pairdb adds a "base" line per round: the
# same load on that build (for example the previous commit's), for before/after comparisons in
# one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
N=${N:-400000}
DIR=$(mktemp -d /tmp/pairdb-fe.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
TONIC=${TONIC:-target/reference/release/tonic-kv-reference}
printf '0123456789abcdef' > "$DIR/file16"
taskset -c 1 nghttpd --no-tls -d "$DIR" 58080 > /dev/null 2>&1 & NGHTTPD=$!; PIDS+=($!)
taskset -c 1 "$TONIC" 127.0.0.1:58151 > /dev/null 2>&1 & TONICPID=$!; PIDS+=($!)
taskset -c 1 target/release/examples/h2_floor 127.0.0.1:58251 > /dev/null 2>&1 & FLOOR=$!; PIDS+=($!)
taskset -c 1 env PAIRDB_RPC_HTTP2=h2 target/release/pairdb coordinator --cores 1 --port 57051 \
  --data-dir "$DIR/coord" > /dev/null 2> "$DIR/coord.err" & PAIRDB=$!; PIDS+=($!)
# The same coordinator on PairDB's own HTTP/2 layer (rpc.http2: native).
taskset -c 1 env PAIRDB_RPC_HTTP2=native target/release/pairdb coordinator --cores 1 --port 57054 \
  --data-dir "$DIR/native" --admin-port 9094 > /dev/null 2> "$DIR/native.err" & NATIVE=$!; PIDS+=($!)
BASE=${BASE:-}
if [ -n "$BASE" ]; then
  taskset -c 1 "$BASE" coordinator --cores 1 --port 57052 --data-dir "$DIR/base" --admin-port 9093 \
    > /dev/null 2> "$DIR/base.err" & BASEPID=$!; PIDS+=($!)
fi
sleep 2
if [ -n "$BASE" ]; then
  target/release/pairdb tenant create default --addr 127.0.0.1:57052 > /dev/null
fi
for port in 57051 57054; do
  target/release/pairdb tenant create default --addr 127.0.0.1:$port > /dev/null
  target/release/pairdb tenant get default --addr 127.0.0.1:$port > /dev/null   # a checked reply
done
python3 - "$DIR/body" <<'PY'
import struct, sys
tenant = b"default"
msg = b"\x0a" + bytes([len(tenant)]) + tenant          # GetTenantRequest { tenant_id }
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
GRPC=(-d "$DIR/body" -H 'content-type: application/grpc' -H 'te: trailers')
PATHS="/pairdb.coordinator.v1.CoordinatorService/GetTenant"
run() { # name pid url args...
  local name=$1 pid=$2 url=$3; shift 3
  local before after out
  before=$(cpu_ns "$pid")
  out=$(taskset -c 0 h2load -c 8 -m 32 -t 1 -n "$N" "$@" "$url" 2>&1)
  after=$(cpu_ns "$pid")
  local rate ok
  rate=$(echo "$out" | grep -oE 'finished in [^,]+, [0-9.]+ req/s' | grep -oE '[0-9.]+ req/s')
  ok=$(echo "$out" | grep -oE '[0-9]+ succeeded' | grep -oE '[0-9]+')
  printf '%-8s %12s  ok %7s  server cpu %.2f us/req\n' "$name" "$rate" "$ok" "$(echo "($after - $before) / $N / 1000" | bc -l)"
}
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run nghttpd "$NGHTTPD" http://127.0.0.1:58080/file16
  run ngh-post "$NGHTTPD" http://127.0.0.1:58080/file16 "${GRPC[@]}"
  run tonic "$TONICPID" "http://127.0.0.1:58151$PATHS" "${GRPC[@]}"
  run h2floor "$FLOOR" "http://127.0.0.1:58251$PATHS" "${GRPC[@]}"
  run pairdb "$PAIRDB" "http://127.0.0.1:57051$PATHS" "${GRPC[@]}"
  run native "$NATIVE" "http://127.0.0.1:57054$PATHS" "${GRPC[@]}"
  if [ -n "$BASE" ]; then run base "$BASEPID" "http://127.0.0.1:57052$PATHS" "${GRPC[@]}"; fi
done
