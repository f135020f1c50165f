#!/usr/bin/env bash
# A/B of server settings at fixed rates (docs/PERFORMANCE.md): for each round and each variant, a
# fresh `pairdb dev` started with that variant's environment, a 4 s write burst (8 x 32, so that
# reads find data), then the 50/50 zipfian mix over 1M keys of 100 B at each of RATES calls/s,
# open loop, SECS seconds each. Per run it prints the server's CPU per completed call (every
# thread of `pairdb dev`, from /proc/PID/task/*/schedstat) and the reads' latencies. Variants
# alternate inside each round, so that a drift of this shared machine hits both alike.
# VARIANTS lists NAME:ENV pairs (ENV: comma-separated VAR=VALUE set for the server only), for
# example the default, which compares the parking executor's fence with upstream glommio's
# `sys_membarrier` (vendor/README.md): "fence:GLOMMIO_PARK_MEMBARRIER=0 membarrier:GLOMMIO_PARK_MEMBARRIER=1".
# DEV_ARGS adds arguments to every `pairdb dev`. The load generator's environment is never changed.
# Needs release builds of pairdb and pairdb-loadtest. Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
RATES=${RATES:-"4300 10600"}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-"fence:GLOMMIO_PARK_MEMBARRIER=0 membarrier:GLOMMIO_PARK_MEMBARRIER=1"}
MIX=(--keys 1000000 --value-size 100 --read-pct 50 --write-pct 50 --distribution zipfian)
P=
DIR=
cleanup() {
  if [ -n "$P" ]; then kill "$P" 2>/dev/null || true; wait "$P" 2>/dev/null || true; fi
  if [ -n "$DIR" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
for round in $(seq "$ROUNDS"); do
  for variant in $VARIANTS; do
    name=${variant%%:*}
    envs=()
    if [ "$variant" != "$name" ]; then IFS=, read -r -a envs <<< "${variant#*:}"; fi
    DIR=$(mktemp -d /tmp/pairdb-ab.XXXXXX)
    env "${envs[@]}" $BIN/pairdb dev --data-dir "$DIR/dev" --port 56651 --admin-port 56690 ${DEV_ARGS:-} \
      > "$DIR/out" 2> "$DIR/err" &
    P=$!
    sleep 2
    $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys 1000000 --value-size 100 --quiet --connections 8 \
      --inflight 32 --write-pct 100 --read-pct 0 --duration 4s --no-pin > /dev/null
    for rate in $RATES; do
      before=$(cpu_ns "$P"); t0=$(date +%s%N)
      $BIN/pairdb-loadtest --addr 127.0.0.1:56651 "${MIX[@]}" --rate "$rate" --connections 8 \
        --duration "${SECS}s" --warmup 0s --quiet --json --no-pin > "$DIR/r.json"
      after=$(cpu_ns "$P"); t1=$(date +%s%N)
      python3 - "$DIR/r.json" "$((after - before))" "$((t1 - t0))" "$round" "$name" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu, wall = int(sys.argv[2]), int(sys.argv[3])
n = max(r["completed"], 1)
rd = r["operations"]["read"]["latency"]
print(f"round {sys.argv[4]} {sys.argv[5]:12} {sys.argv[6]:>6}/s: completed {r['completed'] / (wall / 1e9):7.0f}/s"
      f"  server CPU {cpu / 1000 / n:6.1f} us/op ({cpu / wall:.2f} cores)  read p50 {rd['p50_us'] / 1000:.2f}"
      f"  p99 {rd['p99_us'] / 1000:.2f}  p99.9 {rd['p999_us'] / 1000:.2f}  max {rd['max_us'] / 1000:.1f} ms")
PY
    done
    kill "$P"; wait "$P" 2>/dev/null || true; P=
    rm -rf "$DIR"; DIR=
  done
done
