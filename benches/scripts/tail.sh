#!/usr/bin/env bash
# The tail-latency benchmark (docs/PERFORMANCE.md): the 50/50 zipfian mix over 1M keys of 100 B
# against a fresh `pairdb dev` (rf 3, QUORUM). First a 4 s write burst (so that reads find data),
# then the mix's saturation, closed loop (8 connections x 32 in flight, SAT_SECS), then an open
# loop at each of PCTS percent of that saturation for SECS seconds each (default 180: the stalls
# this hunts come from flushes and compactions that take a while to build up). For each rate it
# prints p50/p99/p99.9/max over the run and the worst second (the highest per-second max and the
# highest per-second p99, from the report's timeline), and keeps the HTML report under OUT/.
# MODE=separate runs the same against separate processes instead (a coordinator and three storage
# nodes, each `pairdb` process on its default cores, the tenant `default` at rf 3), as
# benches/scripts/migration.sh does.
# It also prints the servers' CPU per operation at saturation and at each rate (utime + stime of
# every server process, everything included, over the loadtest's whole run, warm-up too, divided
# by its completed calls per second (hits, misses and errors alike: a read of a key never written
# is served too) times that run's wall time), and each rate's CPU per operation over saturation's:
# the tail-latency issue's "flat cost per operation" figure, and the load generator's own CPU
# (it shares this machine's CPUs with the servers), and the machine's idle CPU over each rate's
# run (`/proc/stat`'s idle + iowait ticks, all CPUs together, sampled every second): its mean,
# and how many seconds had less than 5% of the CPUs idle, so that a rate the machine cannot
# carry with headroom shows as such beside its latencies. DEV_ARGS adds arguments to `pairdb dev` (for
# example `--no-local-calls`). SERVER_CPUS and GEN_CPUS (taskset lists, say `1` and `0`) pin the
# servers and the load generator to CPUs of their own, for example
# `SERVER_CPUS=1 GEN_CPUS=0 DEV_ARGS="--cores 1"`: the server then has one CPU to itself and the
# generator another, as on a machine where the load comes from elsewhere.
# HICCUP=1 runs benches/scripts/hiccup.c beside each rate, as root under `chrt -f 99`: a thread
# that asks to wake every 1 ms and no thread of this machine can keep waiting, so what delays it
# is the hypervisor not running the vCPU (or the kernel with interrupts off). It prints, per rate,
# the seconds in which that thread woke more than 5, 20 and 50 ms late and the steal ticks of
# `/proc/stat`: stalls no server on this machine can avoid.
# Needs release builds of pairdb and pairdb-loadtest. Every process it starts is stopped by PID;
# every run is bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-180}
SAT_SECS=${SAT_SECS:-10}
PCTS=${PCTS:-"10 30 50 70"}
OUT=${OUT:-$(mktemp -d /tmp/pairdb-tail.XXXXXX)}
mkdir -p "$OUT"
BIN=${BIN:-target/release}
MIX=(--keys 1000000 --value-size 100 --read-pct 50 --write-pct 50 --distribution zipfian)
MODE=${MODE:-dev}
SERVER_PIN=()
GEN_PIN=()
if [ -n "${SERVER_CPUS:-}" ]; then SERVER_PIN=(taskset -c "$SERVER_CPUS"); fi
if [ -n "${GEN_CPUS:-}" ]; then GEN_PIN=(taskset -c "$GEN_CPUS"); fi
# The generator's executor floats over the CPUs it may use (`--no-pin`): pinned, it would share
# the first CPU with the server's core 0 while the other CPU idles (docs/PERFORMANCE.md).
# LOADTEST_ARGS replaces that default.
read -r -a GEN_ARGS <<< "${LOADTEST_ARGS---no-pin}"
PIDS=()
SAMPLERS=()
DIR=$(mktemp -d /tmp/pairdb-tail-dev.XXXXXX)
cleanup() {
  for p in "${PIDS[@]}" "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
case "$MODE" in
  dev)
    "${SERVER_PIN[@]}" $BIN/pairdb dev --data-dir "$DIR/dev" --port 56651 --admin-port 56690 ${DEV_ARGS:-} > "$DIR/out" 2> "$DIR/err" &
    PIDS+=($!)
    sleep 2
    ;;
  separate)
    nodes=()
    for i in 1 2 3; do
      "${SERVER_PIN[@]}" $BIN/pairdb storage --node-id "storage-$i" --host 127.0.0.1 --port $((56660 + i)) \
        --admin-port 0 --data-dir "$DIR/s$i" > "$DIR/s$i.out" 2> "$DIR/s$i.err" &
      PIDS+=($!)
      nodes+=(--storage-node "storage-$i=127.0.0.1:$((56660 + i))")
    done
    sleep 1
    "${SERVER_PIN[@]}" $BIN/pairdb coordinator --node-id coord --host 127.0.0.1 --port 56651 --admin-port 0 \
      --data-dir "$DIR/coord" "${nodes[@]}" > "$DIR/c.out" 2> "$DIR/c.err" &
    PIDS+=($!)
    sleep 2
    $BIN/pairdb tenant create default --replication-factor 3 --addr 127.0.0.1:56651 > /dev/null
    ;;
  *) echo "MODE must be dev or separate" >&2; exit 2 ;;
esac
TCK=$(getconf CLK_TCK)
# CPU seconds used so far by every server process of this run.
server_cpu() {
  local t=0 p
  for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "scale=3; $t / $TCK" | bc
}
"${GEN_PIN[@]}" $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys 1000000 --value-size 100 --quiet \
  --connections 8 --inflight 32 --write-pct 100 --read-pct 0 --duration 4s "${GEN_ARGS[@]}" > /dev/null
c0=$(server_cpu); w0=$(date +%s.%N)
SAT=$("${GEN_PIN[@]}" $BIN/pairdb-loadtest --addr 127.0.0.1:56651 "${MIX[@]}" --connections 8 --inflight 32 \
  --duration "${SAT_SECS}s" --warmup 2s --quiet --json "${GEN_ARGS[@]}" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["completed_per_sec"]))')
c1=$(server_cpu); w1=$(date +%s.%N)
SAT_CPU_US=$(echo "($c1 - $c0) * 1000000 / ($SAT * ($w1 - $w0))" | bc -l)
printf '%s: saturation of the mix: %s calls/s completed (closed loop 8x32, %ss), server CPU %.1f us/op; reports under %s\n' \
  "$MODE" "$SAT" "$SAT_SECS" "$SAT_CPU_US" "$OUT"
# Per second, the fraction of all CPUs idle (idle + iowait ticks over all ticks), into $1, until killed.
idle_sampler() {
  python3 -u - "$1" > /dev/null <<'PY' &
import sys, time
def ticks():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[3] + f[4], sum(f)
out = open(sys.argv[1], "w")
prev = ticks()
while True:
    time.sleep(1)
    cur = ticks()
    out.write(f"{(cur[0] - prev[0]) / max(cur[1] - prev[1], 1):.4f}\n")
    out.flush()
    prev = cur
PY
  echo $!
}
if [ "${HICCUP:-0}" = 1 ]; then cc -O2 -o "$OUT/hiccup" benches/scripts/hiccup.c; fi
for pct in $PCTS; do
  rate=$((SAT * pct / 100))
  IDLE_PID=$(idle_sampler "$OUT/$pct.idle")
  SAMPLERS+=("$IDLE_PID")
  : > "$OUT/$pct.hiccup"
  HICCUP_PID=
  if [ "${HICCUP:-0}" = 1 ]; then
    chrt -f 99 "$OUT/hiccup" $((SECS + 10)) > "$OUT/$pct.hiccup" &
    HICCUP_PID=$!
    SAMPLERS+=("$HICCUP_PID")
  fi
  c0=$(server_cpu); w0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$OUT/$pct.time" \
    "${GEN_PIN[@]}" $BIN/pairdb-loadtest --addr 127.0.0.1:56651 "${MIX[@]}" --rate "$rate" --connections 8 \
    --duration "${SECS}s" --warmup 2s --quiet --report "$OUT/$pct" "${GEN_ARGS[@]}" > /dev/null
  c1=$(server_cpu); w1=$(date +%s.%N)
  kill "$IDLE_PID" 2>/dev/null || true
  if [ -n "$HICCUP_PID" ]; then kill "$HICCUP_PID" 2>/dev/null || true; fi
  python3 - "$OUT/$pct/report.json" "$pct" "$rate" "$(echo "$c1 - $c0" | bc)" \
    "$(echo "$w1 - $w0" | bc)" "$SAT_CPU_US" "$(awk '{print $1 + $2}' "$OUT/$pct.time" | tail -1)" \
    "$OUT/$pct.idle" "$OUT/$pct.hiccup" <<'PY'
import json, sys
path, pct, rate = sys.argv[1], sys.argv[2], sys.argv[3]
cpu_s, wall_s, sat_cpu_us = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
gen_s = float(sys.argv[7])
idle = [float(line) for line in open(sys.argv[8]) if line.strip()]
r = json.load(open(path))
ms = lambda us: us / 1000
lat = {}
for name, op in r["operations"].items():
    if op["count"]:
        lat[name] = op["latency"]
run = [s for s in r["timeline"] if not s["warmup"] and s["completed"]]
worst_max = max(run, key=lambda s: s["latency"]["max_us"])
worst_p99 = max(run, key=lambda s: s["latency"]["p99_us"])
over50 = sum(1 for s in run if s["latency"]["max_us"] > 50_000)
print(f"{pct:>3}% = {rate}/s: completed/s {r['completed_per_sec']:.0f} (ok {r['ok_per_sec']:.0f}), errors {r['errors']}; worst second: max "
      f"{ms(worst_max['latency']['max_us']):.1f} ms (s {worst_max['second']}), p99 "
      f"{ms(worst_p99['latency']['p99_us']):.1f} ms (s {worst_p99['second']}); seconds with max > 50 ms: "
      f"{over50} of {len(run)}")
cpu_us = cpu_s * 1e6 / max(r["completed_per_sec"] * wall_s, 1e-9)
print(f"       server CPU {cpu_us:.1f} us/op ({cpu_s:.1f} s over {wall_s:.1f} s), "
      f"{cpu_us / sat_cpu_us:.2f}x saturation's; load generator {gen_s / wall_s:.2f} cores, "
      f"servers {cpu_s / wall_s:.2f} cores")
if idle:
    print(f"       machine idle {100 * sum(idle) / len(idle):.1f}% of its CPUs on average; seconds with "
          f"less than 5% idle: {sum(1 for i in idle if i < 0.05)} of {len(idle)}")
hic = []
for line in open(sys.argv[9]):
    f = line.split()
    if len(f) == 7 and f[0].isdigit():
        hic.append((float(f[1]), int(f[6])))
if hic:
    print(f"       FIFO-99 hiccup thread: late by up to {max(h[0] for h in hic):.1f} ms; seconds late "
          f"over 5 / 20 / 50 ms: {sum(1 for h in hic if h[0] > 5)} / {sum(1 for h in hic if h[0] > 20)} / "
          f"{sum(1 for h in hic if h[0] > 50)} of {len(hic)}; steal {sum(h[1] for h in hic)} ticks")
for name, l in lat.items():
    print(f"       {name:6} p50 {ms(l['p50_us']):.3f}  p99 {ms(l['p99_us']):.3f}  p99.9 {ms(l['p999_us']):.3f}"
          f"  max {ms(l['max_us']):.3f} ms")
PY
done
