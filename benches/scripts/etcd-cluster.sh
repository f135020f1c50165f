#!/usr/bin/env bash
# A three-member etcd cluster on loopback, the reference for the write benchmark
# (docs/PERFORMANCE.md). Needs Debian's etcd-server. Members listen for clients on
# 127.0.0.1:23791-23793; data goes to a temp dir removed on exit. Runs until interrupted or
# until DURATION seconds (default 600) have passed.
set -euo pipefail
DURATION=${DURATION:-600}
DIR=$(mktemp -d /tmp/etcd-bench.XXXXXX)
CLUSTER="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$DIR/e$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token pairdb-bench \
    --log-level error > "$DIR/e$i.log" 2>&1 &
  PIDS+=($!)
done
echo "etcd cluster: clients on 127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 (data in $DIR)"
sleep "$DURATION"
