#!/usr/bin/env bash
# Idempotent writes through one coordinator, idempotency records in the embedded table against
# Redis (docs/PERFORMANCE.md, "Idempotent writes: embedded table against Redis"). Three
# `pairdb storage` nodes and one `pairdb coordinator` (1 core each, loopback), driven by
# pairdb-loadtest with --idempotency-keys (every write claims and completes a fresh record).
# For each backend: writes without idempotency keys (reference), then with them, closed loop 1x1
# (one call at a time: the latency floor) and 4x8 (throughput), plus the coordinator's CPU per
# write. Every process it starts is stopped by PID.
#   BIN=target/release (default) or target/debug; SECS=10; REDIS_URL=redis://127.0.0.1:6379
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-10}
BIN=${BIN:-target/release}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DIR=$(mktemp -d /tmp/pairdb-idem.XXXXXX)
PIDS=()
# The run's records in Redis (24 h ttl) are deleted at the end: the server is shared.
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"
  redis-cli -u "$REDIS_URL" --scan --pattern 'idempotency:bench:*' | xargs -r -n 500 redis-cli -u "$REDIS_URL" del > /dev/null || true
}
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/"$1"/status; }
for i in 1 2 3; do
  $BIN/pairdb storage --node-id "storage-$i" --port $((56260 + i)) --admin-port $((56270 + i)) \
    --cores 1 --data-dir "$DIR/s$i" > /dev/null 2> "$DIR/s$i.err" &
  PIDS+=($!)
done
sleep 1
LT=$BIN/pairdb-loadtest
COMMON=(--addr 127.0.0.1:56251 --tenant bench --keys 100000 --value-size 100 --read-pct 0
  --write-pct 100 --duration "${SECS}s" --warmup 2s --quiet --json)
for backend in embedded redis; do
  if [ "$backend" = redis ]; then
    printf 'idempotency: { backend: redis, redis_url: "%s" }\n' "$REDIS_URL" > "$DIR/coord.yaml"
  else
    : > "$DIR/coord.yaml"
  fi
  rm -rf "$DIR/coord"
  $BIN/pairdb coordinator --config "$DIR/coord.yaml" --port 56251 --admin-port 56280 --cores 1 \
    --data-dir "$DIR/coord" --storage-node storage-1=127.0.0.1:56261 \
    --storage-node storage-2=127.0.0.1:56262 --storage-node storage-3=127.0.0.1:56263 \
    > /dev/null 2> "$DIR/coord.err" &
  COORD=$!; PIDS+=($COORD)
  sleep 2
  $BIN/pairdb tenant create bench --addr 127.0.0.1:56251 > /dev/null 2>&1 || true
  echo "== idempotency.backend: $backend"
  measure() { # label, loadtest args...
    local label=$1; shift
    local before after out
    before=$(cpu_ns "$COORD")
    out=$($LT "${COMMON[@]}" "$@")
    after=$(cpu_ns "$COORD")
    echo "$out" | python3 benches/scripts/loadtest_line.py "$label" "$((after - before))" "$(rss_mb "$COORD")"
  }
  measure "no idempotency key, 4x8" --connections 4 --inflight 8
  measure "idempotency keys, 1x1" --connections 1 --inflight 1 --idempotency-keys
  measure "idempotency keys, 4x8" --connections 4 --inflight 8 --idempotency-keys
  kill -TERM "$COORD"; wait "$COORD" || true
done
