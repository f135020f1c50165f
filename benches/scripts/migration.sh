#!/usr/bin/env bash
# Data movement under load (docs/PERFORMANCE.md, "Data movement"): a fresh cluster of separate
# processes (a coordinator, three storage nodes; the default tenant at rf 3), KEYS keys of 100 B written once (`--prefill`), then the 50/50 zipfian mix
# at RATE ops/s for SECS s as the baseline ("before"), then a fourth storage node (its own
# process) is added and the same mix runs again while the migration streams ("during"). Prints
# the migration's wall time, keys and bytes moved with their rates, and the latency percentiles
# of both runs, ROUNDS times. Extra coordinator settings (for example a lower byte cap) go in
# MIGRATION='{ max_bytes_per_sec: 8000000 }'. Needs release builds of pairdb and
# pairdb-loadtest. Every process it starts is stopped by PID; every run is bounded (a migration
# that has not completed after LIMIT s fails the round).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-1000000}
RATE=${RATE:-5000}
SECS=${SECS:-20}
LIMIT=${LIMIT:-600}
MIGRATION=${MIGRATION:-"{}"}
BIN=target/release
PIDS=()
DIR=
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$DIR" ] && rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
mix() {
  $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys "$KEYS" --value-size 100 \
    --rate "$RATE" --connections 8 --read-pct 50 --write-pct 50 --distribution zipfian \
    --duration "${SECS}s" --warmup 2s --quiet --json > "$1"
}
summary() {
  python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
lat = [op["latency"] for op in r["operations"].values() if op["count"]]
worst = lambda k: max(l[k] for l in lat) / 1000
print(f"   {name:6} ok/s {r['ok_per_sec']:.0f} errors {r['errors']}  p50 {worst('p50_us'):.2f}  "
      f"p99 {worst('p99_us'):.2f}  p99.9 {worst('p999_us'):.2f}  max {worst('max_us'):.2f} ms")
PY
}
one() {
  DIR=$(mktemp -d /tmp/pairdb-migration.XXXXXX)
  printf 'migration: %s\n' "$MIGRATION" > "$DIR/coordinator.yaml"
  local i nodes=()
  for i in 1 2 3 4; do
    $BIN/pairdb storage --node-id "storage-$i" --host 127.0.0.1 --port $((56660 + i)) \
      --admin-port 0 --data-dir "$DIR/s$i" > "$DIR/s$i.out" 2> "$DIR/s$i.err" &
    PIDS+=($!)
    [ "$i" -le 3 ] && nodes+=(--storage-node "storage-$i=127.0.0.1:$((56660 + i))")
  done
  sleep 1
  $BIN/pairdb coordinator --config "$DIR/coordinator.yaml" --node-id coord --host 127.0.0.1 \
    --port 56651 --admin-port 0 --data-dir "$DIR/coord" "${nodes[@]}" > "$DIR/c.out" 2> "$DIR/c.err" &
  PIDS+=($!)
  sleep 2
  $BIN/pairdb tenant create default --replication-factor 3 --addr 127.0.0.1:56651 > /dev/null
  $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys "$KEYS" --value-size 100 --prefill --quiet \
    --connections 8 --inflight 32 --write-pct 100 --read-pct 0 --duration 1s > /dev/null
  mix "$DIR/before.json"
  local t0 id
  t0=$(date +%s%N)
  id=$($BIN/pairdb node add storage-4 --host 127.0.0.1 --port 56664 --addr 127.0.0.1:56651 --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["migration_id"])')
  # "during" starts once the streams move bytes (after the dual-write barrier and the pacer's
  # calibration), and the stage it ended in is printed: a window that outlived the streaming is
  # not a "during" figure.
  local status
  while :; do
    status=$($BIN/pairdb migration status "$id" --addr 127.0.0.1:56651 --json)
    case "$status" in *'"stage":"STREAMING"'*) python3 -c 'import json,sys; sys.exit(0 if int(json.loads(sys.argv[1]).get("bytes_migrated", 0)) > 0 else 1)' "$status" && break ;; esac
    case "$status" in *'"status":"COMPLETED"'*) echo "completed before the load ran"; return 1 ;; esac
    sleep 0.1
  done
  local waited=$(( ($(date +%s%N) - t0) / 1000000 ))
  mix "$DIR/during.json"
  local after
  after=$($BIN/pairdb migration status "$id" --addr 127.0.0.1:56651 --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s.get("stage"), s["progress"]["keys_migrated"], "keys moved")')
  echo "   streaming began ${waited} ms after node add; when the load ended: $after"
  while :; do
    status=$($BIN/pairdb migration status "$id" --addr 127.0.0.1:56651 --json)
    case "$status" in *'"status":"COMPLETED"'*) break ;; *'"status":"CANCELLED"'*|*'"status":"FAILED"'*) echo "$status"; return 1 ;; esac
    if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -ge "$LIMIT" ]; then echo "not completed: $status"; return 1; fi
    sleep 0.2
  done
  python3 - "$status" $(( $(date +%s%N) - t0 )) "$SECS" <<'PY'
import json, sys
s, wall, secs = json.loads(sys.argv[1]), int(sys.argv[2]) / 1e9, int(sys.argv[3])
keys, bytes_ = int(s["progress"]["keys_migrated"]), int(s.get("bytes_migrated", 0))
print(f"migration {wall:.1f} s (load ran the first {secs + 2} s): {keys} keys, {bytes_ / 1e6:.1f} MB; "
      f"{keys / wall:.0f} keys/s, {bytes_ / wall / 1e6:.2f} MB/s")
PY
  summary before "$DIR/before.json"
  summary during "$DIR/during.json"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; PIDS=()
  rm -rf "$DIR"; DIR=
}
for round in $(seq "$ROUNDS"); do
  echo "round $round:"
  one
done
