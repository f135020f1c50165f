#!/usr/bin/env bash
# The mixed, write and cost benchmarks of docs/PERFORMANCE.md, on separate processes: three
# `pairdb storage` nodes and one `pairdb coordinator` (all on loopback, sharing the machine's
# cores), driven by pairdb-loadtest. For each batching mode (on, then off):
#   1. prefill the 1M-key space (writes, closed loop)
#   2. mixed: 50% reads / 50% writes, zipfian keys over 1M, open loop at RATE ops/s
#   3. mixed at saturation (closed loop 8 connections x 32 in flight)
#   4. writes at saturation (closed loop 8 x 32, RF 3, QUORUM, 100-byte values)
# and the coordinator's CPU time per operation (from /proc/PID/task/*/schedstat) and resident
# memory (VmRSS) after each run. Every process it starts is stopped by PID; runs are bounded.
# MODES="on" runs only the batching-on half. The processes follow PAIRDB_RPC_HTTP2 (native, the
# default, or h2); pairdb-loadtest's own client is native either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-10}
RATE=${RATE:-10000}
BIN=target/release
DIR=$(mktemp -d /tmp/pairdb-load.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/"$1"/status; }
for i in 1 2 3; do
  $BIN/pairdb storage --node-id "storage-$i" --port $((56160 + i)) --admin-port $((56170 + i)) --cores 1 --data-dir "$DIR/s$i" > /dev/null 2> "$DIR/s$i.err" &
  PIDS+=($!)
done
sleep 1
COMMON=(--keys 1000000 --value-size 100 --quiet)
LT=$BIN/pairdb-loadtest
for mode in ${MODES:-on off}; do
  flag=(); [ "$mode" = off ] && flag=(--no-batching)
  rm -rf "$DIR/coord"
  $BIN/pairdb coordinator --port 56151 --admin-port 56180 --data-dir "$DIR/coord" "${flag[@]}" \
    --storage-node storage-1=127.0.0.1:56161 --storage-node storage-2=127.0.0.1:56162 \
    --storage-node storage-3=127.0.0.1:56163 > /dev/null 2> "$DIR/coord.err" &
  COORD=$!; PIDS+=($COORD)
  sleep 2
  $BIN/pairdb tenant create default --addr 127.0.0.1:56151 > /dev/null 2>&1 || true
  echo "== batching $mode"
  measure() { # label, loadtest args...
    local label=$1; shift
    local before after ops out
    before=$(cpu_ns "$COORD")
    out=$($LT --addr 127.0.0.1:56151 "${COMMON[@]}" --json "$@")
    after=$(cpu_ns "$COORD")
    echo "$out" | python3 benches/scripts/loadtest_line.py "$label" "$((after - before))" "$(rss_mb "$COORD")"
  }
  measure "prefill" --connections 8 --inflight 32 --write-pct 100 --read-pct 0 --duration 5s
  measure "mixed open loop ${RATE}/s" --rate "$RATE" --threads 1 --connections 8 --read-pct 50 --write-pct 50 \
    --distribution zipfian --duration "${SECS}s" --warmup 2s
  measure "mixed saturation" --connections 8 --inflight 32 --read-pct 50 --write-pct 50 \
    --distribution zipfian --duration "${SECS}s" --warmup 2s
  measure "writes saturation" --connections 8 --inflight 32 --read-pct 0 --write-pct 100 \
    --duration "${SECS}s" --warmup 2s
  kill -TERM "$COORD"; wait "$COORD" || true
done
