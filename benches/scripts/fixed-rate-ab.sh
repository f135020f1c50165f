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
# A variant's BIN=DIR entry is not set in the environment: it runs that variant's server from
# DIR (a copy of target/release of another commit), to compare builds.
# With JOURNALS=1, a poller notes when each storage engine's next journal file (`N.jnl`) appears,
# and each run also prints, over the load generator's seconds within one second of a journal
# rotation, the median and the highest per-second max latency, against the same for the other
# seconds (the rotation's stall; vendor/README.md).
# VALUE_SIZE (default 100 bytes) sets the size of the values written, in the burst and the mix.
# DEV_ARGS adds arguments to every `pairdb dev`. The load generator's environment is never changed.
# Needs release builds of pairdb and pairdb-loadtest. Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
RATES=${RATES:-"4300 10600"}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-"fence:GLOMMIO_PARK_MEMBARRIER=0 membarrier:GLOMMIO_PARK_MEMBARRIER=1"}
VALUE_SIZE=${VALUE_SIZE:-100}
MIX=(--keys 1000000 --value-size "$VALUE_SIZE" --read-pct 50 --write-pct 50 --distribution zipfian)
P=
DIR=
JP=
cleanup() {
  if [ -n "$JP" ]; then kill "$JP" 2>/dev/null || true; wait "$JP" 2>/dev/null || true; fi
  if [ -n "$P" ]; then kill "$P" 2>/dev/null || true; wait "$P" 2>/dev/null || true; fi
  if [ -n "$DIR" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
for round in $(seq "$ROUNDS"); do
  for variant in $VARIANTS; do
    name=${variant%%:*}
    envs=()
    sbin=$BIN
    if [ "$variant" != "$name" ]; then
      IFS=, read -r -a all <<< "${variant#*:}"
      for e in "${all[@]}"; do
        case $e in BIN=*) sbin=${e#BIN=} ;; *) envs+=("$e") ;; esac
      done
    fi
    DIR=$(mktemp -d /tmp/pairdb-ab.XXXXXX)
    env "${envs[@]}" "$sbin"/pairdb dev --data-dir "$DIR/dev" --port 56651 --admin-port 56690 ${DEV_ARGS:-} \
      > "$DIR/out" 2> "$DIR/err" &
    P=$!
    sleep 2
    $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys 1000000 --value-size "$VALUE_SIZE" --quiet --connections 8 \
      --inflight 32 --write-pct 100 --read-pct 0 --duration 4s --no-pin > /dev/null
    REP=()
    if [ "${JOURNALS:-0}" = 1 ]; then
      REP=(--report "$DIR/rep")
      # Every 50 ms: each journal file not seen before, with the time it was first seen (ns).
      python3 - "$DIR/dev" > "$DIR/journals" <<'PY' &
import os, sys, time
seen = set()
while True:
    for root, _, files in os.walk(sys.argv[1]):
        for f in files:
            if f.endswith(".jnl") and (root, f) not in seen:
                seen.add((root, f))
                print(time.time_ns(), os.path.join(root, f), flush=True)
    time.sleep(0.05)
PY
      JP=$!
    fi
    for rate in $RATES; do
      before=$(cpu_ns "$P"); t0=$(date +%s%N)
      $BIN/pairdb-loadtest --addr 127.0.0.1:56651 "${MIX[@]}" --rate "$rate" --connections 8 \
        --duration "${SECS}s" --warmup 0s --quiet --json --no-pin "${REP[@]}" > "$DIR/r.json"
      after=$(cpu_ns "$P"); t1=$(date +%s%N)
      python3 - "$DIR/r.json" "$((after - before))" "$((t1 - t0))" "$round" "$name" "$rate" \
        "$t0" "$DIR/journals" <<'PY'
import json, os, statistics, sys
r = json.load(open(sys.argv[1]))
cpu, wall = int(sys.argv[2]), int(sys.argv[3])
n = max(r["completed"], 1)
rd = r["operations"]["read"]["latency"]
print(f"round {sys.argv[4]} {sys.argv[5]:12} {sys.argv[6]:>6}/s: completed {r['completed'] / (wall / 1e9):7.0f}/s"
      f"  server CPU {cpu / 1000 / n:6.1f} us/op ({cpu / wall:.2f} cores)  read p50 {rd['p50_us'] / 1000:.2f}"
      f"  p99 {rd['p99_us'] / 1000:.2f}  p99.9 {rd['p999_us'] / 1000:.2f}  max {rd['max_us'] / 1000:.1f} ms")
if os.path.exists(sys.argv[8]):
    t0 = int(sys.argv[7])
    timeline = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), "rep", "report.json")))["timeline"]
    secs = [s for s in timeline if not s["warmup"] and s["completed"]]
    # A journal seen during the run, other than each engine's first: a rotation.
    first = {}
    for line in open(sys.argv[8]):
        t, path = line.split()
        first.setdefault(os.path.dirname(path), []).append(int(t))
    rot = [(t - t0) / 1e9 for ts in first.values() for t in ts[1:] if t > t0]
    near = {s["second"] for s in secs for x in rot if abs(s["second"] + 0.5 - x) <= 1.5}
    a = [s["latency"]["max_us"] / 1000 for s in secs if s["second"] in near]
    b = [s["latency"]["max_us"] / 1000 for s in secs if s["second"] not in near]
    if a and b:
        print(f"       {len(rot)} rotations; per-second max near them: median {statistics.median(a):.1f},"
              f" highest {max(a):.1f} ms ({len(a)} s); elsewhere: median {statistics.median(b):.1f},"
              f" highest {max(b):.1f} ms ({len(b)} s)")
    else:
        print(f"       {len(rot)} rotations during the run")
PY
    done
    if [ -n "$JP" ]; then kill "$JP"; wait "$JP" 2>/dev/null || true; JP=; fi
    kill "$P"; wait "$P" 2>/dev/null || true; P=
    rm -rf "$DIR"; DIR=
  done
done
