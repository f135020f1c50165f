#!/usr/bin/env bash
# How a server's CPU per request grows as the load falls, on this machine (docs/PERFORMANCE.md,
# "The floor of CPU per request at light load"): the tail-latency issue asks that PairDB's CPU per
# operation at 10% of saturation stay within 1.5x of its cost at saturation. This measures the same
# ratio for the simplest requests there are, so that what belongs to the host (a wake-up, a
# system call and a loopback TCP delivery per lone request) can be told from what belongs to
# PairDB:
# - nghttpd (nghttp2's C server) answering GET of a 16-byte file;
# - a PairDB coordinator (native HTTP/2 layer, one core) answering GetTenant from its cache (no
#   storage node involved);
# - `pairdb dev` (the whole cluster in one process, two cores) serving the storage path's cheapest
#   call, a QUORUM read of one key, driven by pairdb-loadtest.
# Each server is pinned to CPU 1 and h2load to CPU 0 (one core each; pairdb dev runs on both and
# its load generator shares them). Each line: requests per second, the server's CPU per request
# (from /proc/PID/task/*/schedstat), and its ratio to the saturation line of the same server.
# h2load's `--rps` (per client, 8 clients, one request in flight each) sets the light rates.
# RATES lists requests per second, or percentages of each server's own saturation rate as `pN`
# (`RATES="p10 p30 p50"`: the issue's "10% of saturation" for every server alike).
# Needs: release builds of pairdb and pairdb-loadtest, nghttp2-client (h2load) and nghttp2-server
# (nghttpd). Every process it starts is stopped by PID; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-10}
RATES=${RATES:-"500 2000 5000 10000"}
DIR=$(mktemp -d /tmp/pairdb-floor.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
printf '0123456789abcdef' > "$DIR/file16"
taskset -c 1 nghttpd --no-tls -d "$DIR" 58380 > /dev/null 2>&1 & NGHTTPD=$!; PIDS+=($!)
taskset -c 1 target/release/pairdb coordinator --cores 1 --port 57351 --admin-port 0 \
  --data-dir "$DIR/coord" > /dev/null 2> "$DIR/coord.err" & COORD=$!; PIDS+=($!)
sleep 2
target/release/pairdb tenant create default --addr 127.0.0.1:57351 > /dev/null
python3 - "$DIR/body" <<'PY'
import struct, sys
tenant = b"default"
msg = b"\x0a" + bytes([len(tenant)]) + tenant          # GetTenantRequest { tenant_id }
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
GRPC=(-d "$DIR/body" -H 'content-type: application/grpc' -H 'te: trailers')
SAT_US=0
SAT_RATE=0
# rate_of SPEC: requests per second for SPEC (a number, or pN: N% of the last saturation rate);
# `sat` stays `sat`.
rate_of() {
  case "$1" in
    p*) echo $(( ${SAT_RATE%.*} * ${1#p} / 100 )) ;;
    *) echo "$1" ;;
  esac
}
# h2 NAME PID URL RATE|sat ARGS...: one h2load run; prints rate, CPU per request, ratio.
h2() {
  local name=$1 pid=$2 url=$3 spec=$4; shift 4
  local n load before after out done_rate us rate
  rate=$(rate_of "$spec")
  if [ "$rate" = sat ]; then
    n=400000; load=(-c 8 -m 32 -t 1 -n "$n")
  else
    n=$((rate * SECS)); load=(-c 8 -m 1 -t 1 --rps $((rate / 8)) -n "$n")
  fi
  before=$(cpu_ns "$pid")
  out=$(taskset -c 0 h2load "${load[@]}" "$@" "$url" 2>&1)
  after=$(cpu_ns "$pid")
  done_rate=$(echo "$out" | grep -oE '[0-9.]+ req/s' | head -1 | grep -oE '^[0-9.]+')
  us=$(echo "($after - $before) / $n / 1000" | bc -l)
  [ "$rate" = sat ] && SAT_US=$us && SAT_RATE=$done_rate
  printf '%-9s %-5s %10.0f req/s  server CPU %6.1f us/req  %5.2fx saturation\n' \
    "$name" "$spec" "$done_rate" "$us" "$(echo "$us / $SAT_US" | bc -l)"
}
for rate in sat $RATES; do h2 nghttpd "$NGHTTPD" http://127.0.0.1:58380/file16 "$rate"; done
for rate in sat $RATES; do
  h2 GetTenant "$COORD" "http://127.0.0.1:57351/pairdb.coordinator.v1.CoordinatorService/GetTenant" \
    "$rate" "${GRPC[@]}"
done
# pairdb dev: QUORUM reads of one written key (the storage path's cheapest call), from
# pairdb-loadtest (h2load cannot build the request body per call); CPU per completed call.
target/release/pairdb dev --data-dir "$DIR/dev" --port 57451 --admin-port 0 ${DEV_ARGS:-} \
  > /dev/null 2> "$DIR/dev.err" & DEV=$!; PIDS+=($!)
sleep 2
LT=(target/release/pairdb-loadtest --addr 127.0.0.1:57451 --keys 1 --value-size 100 --quiet --json)
"${LT[@]}" --connections 1 --inflight 1 --write-pct 100 --read-pct 0 --duration 1s > /dev/null
for spec in sat $RATES; do
  rate=$(rate_of "$spec")
  if [ "$rate" = sat ]; then load=(--connections 8 --inflight 32); else load=(--rate "$rate" --connections 8); fi
  before=$(cpu_ns "$DEV"); t0=$(date +%s%N)
  "${LT[@]}" "${load[@]}" --read-pct 100 --write-pct 0 --duration "${SECS}s" --warmup 0s > "$DIR/r.json"
  after=$(cpu_ns "$DEV"); t1=$(date +%s%N)
  python3 - "$DIR/r.json" "$((after - before))" "$((t1 - t0))" "$rate" "$SAT_US" <<'PY' > "$DIR/line"
import json, sys
r = json.load(open(sys.argv[1])); cpu, wall, rate, sat = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
per_sec = r["completed"] / (wall / 1e9)
us = cpu / 1000 / max(r["completed"], 1)
print(f"{us:.6f} {per_sec:.0f} {r['errors']}")
PY
  read -r us done_rate errors < "$DIR/line"
  [ "$rate" = sat ] && SAT_US=$us && SAT_RATE=$done_rate
  printf '%-9s %-5s %10.0f req/s  server CPU %6.1f us/req  %5.2fx saturation  (errors %s)\n' \
    "dev-read" "$spec" "$done_rate" "$us" "$(echo "$us / $SAT_US" | bc -l)" "$errors"
done
