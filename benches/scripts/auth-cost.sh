#!/usr/bin/env bash
# The cost of authentication per request (docs/PERFORMANCE.md): GetTenant served from a
# coordinator core's cache, as in front-end.sh, by three coordinators of the same build under the
# same h2load load (-c 8 -m 32 -t 1; h2load pinned to CPU 0, every server to CPU 1):
#   open     auth.mode: off, no authorization header
#   tenant   auth.mode: required, a tenant-ro token (a token lookup and a SHA-256 per request)
#   boot     auth.mode: required, the bootstrap admin token (a constant-time compare)
# Rounds are interleaved; each line gives the rate and the server's CPU time per request (from
# /proc/PID/task/*/schedstat). Needs a release build of pairdb and nghttp2-client. Every process
# it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
N=${N:-400000}
BIN=${BIN:-target/release/pairdb}
DIR=$(mktemp -d /tmp/pairdb-auth.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/boot.token"
BOOT=$(cat "$DIR/boot.token")
printf 'auth:\n  mode: required\n  bootstrap_token_file: %s\n' "$DIR/boot.token" > "$DIR/auth.yaml"
taskset -c 1 "$BIN" coordinator --cores 1 --port 57071 --admin-port 9171 --data-dir "$DIR/open" \
  > /dev/null 2> "$DIR/open.err" & OPEN=$!; PIDS+=($!)
taskset -c 1 "$BIN" coordinator --config "$DIR/auth.yaml" --cores 1 --port 57072 --admin-port 9172 \
  --data-dir "$DIR/auth" > /dev/null 2> "$DIR/auth.err" & AUTH=$!; PIDS+=($!)
sleep 2
"$BIN" tenant create default --addr 127.0.0.1:57071 > /dev/null
"$BIN" tenant create default --addr 127.0.0.1:57072 --token "$BOOT" > /dev/null
TENANT=$("$BIN" token create --tenant default --role tenant-ro --addr 127.0.0.1:57072 --token "$BOOT" | head -1)
# h2load counts any HTTP 200 as a success, a gRPC error too: one real call checks that the
# tenant token is answered OK (a refusal would make the CLI fail and stop the script).
"$BIN" tenant get default --addr 127.0.0.1:57072 --token "$TENANT" > /dev/null
python3 - "$DIR/body" <<'PY'
import struct, sys
tenant = b"default"
msg = b"\x0a" + bytes([len(tenant)]) + tenant          # GetTenantRequest { tenant_id }
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
GRPC=(-d "$DIR/body" -H 'content-type: application/grpc' -H 'te: trailers')
P="/pairdb.coordinator.v1.CoordinatorService/GetTenant"
run() { # name pid url args...
  local name=$1 pid=$2 url=$3; shift 3
  local before after out rate
  before=$(cpu_ns "$pid")
  out=$(taskset -c 0 h2load -c 8 -m 32 -t 1 -n "$N" "$@" "$url" 2>&1)
  after=$(cpu_ns "$pid")
  rate=$(echo "$out" | grep -oE 'finished in [^,]+, [0-9.]+ req/s' | grep -oE '[0-9.]+ req/s')
  printf '%-7s %12s  server cpu %.2f us/req\n' "$name" "$rate" "$(echo "($after - $before) / $N / 1000" | bc -l)"
}
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run open "$OPEN" "http://127.0.0.1:57071$P" "${GRPC[@]}"
  run tenant "$AUTH" "http://127.0.0.1:57072$P" "${GRPC[@]}" -H "authorization: Bearer $TENANT"
  run boot "$AUTH" "http://127.0.0.1:57072$P" "${GRPC[@]}" -H "authorization: Bearer $BOOT"
done
# A refused call costs too: the same load without a token on the auth coordinator.
echo "refused (no token, answered UNAUTHENTICATED):"
run refused "$AUTH" "http://127.0.0.1:57072$P" "${GRPC[@]}"
