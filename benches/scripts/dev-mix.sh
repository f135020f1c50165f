#!/usr/bin/env bash
# The mixed-load latency benchmark against `pairdb dev` (docs/PERFORMANCE.md): a fresh dev
# cluster, a 4 s write burst over the 1M keys (closed loop 8x32, so that reads find data), then
# 50% reads / 50% writes, zipfian keys over 1M, open loop at RATE ops/s for SECS seconds after a
# 2 s warm-up. Prints the dev process's CPU (cores used, and µs per operation) and the latency
# percentiles of reads and writes, then of both counted from each call's actual send (without the
# load generator's own lateness; its late sends are printed too), ROUNDS times. With FIFO=1 (root only) the dev executor threads
# (pairdb-dev-*) run at SCHED_FIFO priority 1, an experiment on how much of the tail is executors
# waiting for a CPU. Needs release builds of pairdb and pairdb-loadtest. Every process it starts
# is stopped by PID; every run is bounded. DEV_ARGS adds arguments to `pairdb dev` (for example
# `--no-local-calls`, to compare with the coordinator's storage calls over loopback TCP).
# SERVER_CPUS and GEN_CPUS (taskset lists) pin `pairdb dev` and the load generator, as in tail.sh.
# READ_PCT (default 50) sets the share of reads, the rest writes: READ_PCT=100 and READ_PCT=0 split
# the mix's tail into its read and write parts. Where /usr/bin/time exists, the load generator's
# own CPU (cores) is printed too.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
READ_PCT=${READ_PCT:-50}
SECS=${SECS:-10}
FIFO=${FIFO:-0}
BIN=target/release
SERVER_PIN=()
GEN_PIN=()
if [ -n "${SERVER_CPUS:-}" ]; then SERVER_PIN=(taskset -c "$SERVER_CPUS"); fi
if [ -n "${GEN_CPUS:-}" ]; then GEN_PIN=(taskset -c "$GEN_CPUS"); fi
# The generator's executor floats over the CPUs it may use (`--no-pin`): pinned, it would share
# the first CPU with the server's core 0 while the other CPU idles (docs/PERFORMANCE.md).
# LOADTEST_ARGS replaces that default.
read -r -a GEN_ARGS <<< "${LOADTEST_ARGS---no-pin}"
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
DEV=
DIR=
cleanup() {
  if [ -n "$DEV" ]; then kill "$DEV" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [ -n "$DIR" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT INT TERM
one() {
  local b a t0 t1
  DIR=$(mktemp -d /tmp/pairdb-devmix.XXXXXX)
  "${SERVER_PIN[@]}" $BIN/pairdb dev --data-dir "$DIR/dev" --port 56551 --admin-port 56590 ${DEV_ARGS:-} > "$DIR/out" 2> "$DIR/err" &
  DEV=$!
  sleep 2
  if [ "$FIFO" = 1 ]; then
    for t in /proc/$DEV/task/*; do
      case "$(cat "$t/comm")" in pairdb-dev*) chrt -f -p 1 "$(basename "$t")" ;; esac
    done
  fi
  "${GEN_PIN[@]}" $BIN/pairdb-loadtest --addr 127.0.0.1:56551 --keys 1000000 --value-size 100 --quiet \
    --connections 8 --inflight 32 --write-pct 100 --read-pct 0 --duration 4s "${GEN_ARGS[@]}" > /dev/null
  b=$(cpu_ns "$DEV"); t0=$(date +%s%N)
  local timed=()
  if [ -x /usr/bin/time ]; then timed=(/usr/bin/time -f "%U %S %e" -o "$DIR/gentime"); fi
  "${timed[@]}" "${GEN_PIN[@]}" $BIN/pairdb-loadtest --addr 127.0.0.1:56551 --keys 1000000 --value-size 100 \
    --rate "$RATE" --connections 8 --read-pct "$READ_PCT" --write-pct $((100 - READ_PCT)) --distribution zipfian \
    --duration "${SECS}s" --warmup 2s --quiet --json "${GEN_ARGS[@]}" > "$DIR/report.json"
  a=$(cpu_ns "$DEV"); t1=$(date +%s%N)
  python3 - "$DIR/report.json" $((a - b)) $((t1 - t0)) "$DIR/gentime" <<'PY'
import json, os, sys
path, cpu, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if os.path.exists(sys.argv[4]):
    user, system, elapsed = map(float, open(sys.argv[4]).read().split()[-3:])
    print(f"generator {(user + system) / elapsed:.2f} cores; ", end="")
r = json.load(open(path))
s = r.get("schedule") or {}
print(f"ok/s {r['ok_per_sec']:.0f}, errors {r['errors']}, dev CPU {cpu / wall:.2f} cores "
      f"({cpu / r['completed'] / 1000:.0f} us/op), late sends {s.get('late')} (max lag {s.get('max_lag_us')} us)")
for name, op in r["operations"].items():
    if op["count"]:
        l = op["latency"]
        print(f"   {name:6} p50 {l['p50_us'] / 1000:.3f}  p95 {l['p95_us'] / 1000:.3f}  p99 {l['p99_us'] / 1000:.3f}"
              f"  p99.9 {l['p999_us'] / 1000:.3f}  max {l['max_us'] / 1000:.3f} ms")
l = s.get("latency_from_send")
if l:
    print(f"   both, from the actual send: p50 {l['p50_us'] / 1000:.3f}  p95 {l['p95_us'] / 1000:.3f}"
          f"  p99 {l['p99_us'] / 1000:.3f}  p99.9 {l['p999_us'] / 1000:.3f}  max {l['max_us'] / 1000:.3f} ms")
PY
  kill "$DEV"; wait "$DEV" || true; DEV=
  rm -rf "$DIR"; DIR=
}
for round in $(seq "$ROUNDS"); do
  echo -n "round $round: "
  one
done
