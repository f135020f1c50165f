#!/usr/bin/env bash
# The write benchmark of docs/PERFORMANCE.md: `pairdb dev` (RF 3, QUORUM, 100-byte values) against
# a three-member etcd cluster on loopback, under the same pairdb-loadtest settings, interleaved
# ROUNDS times so that both see the same machine. Each round also runs `pairdb dev --http2 h2`
# (line "h2"): the cluster on the h2 crate instead of PairDB's own HTTP/2 layer. Needs release
# builds of pairdb and pairdb-loadtest and Debian's etcd-server. Every process it starts is stopped by PID.
# BASE=path/to/another/pairdb adds a "base" line per round: `pairdb dev` of that build under the
# same load (for example the previous commit's), for before/after comparisons in one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
LOAD=(--connections 8 --inflight 32 --write-pct 100 --read-pct 0 --value-size 100 --keys 1000000
      --duration "${SECS}s" --warmup 2s --quiet)
BIN=target/release
DEVDIR=$(mktemp -d /tmp/pairdb-bench.XXXXXX)
DURATION=$(( (SECS + 8) * ROUNDS * 2 + 60 )) ./benches/scripts/etcd-cluster.sh > "$DEVDIR/etcd.out" 2>&1 &
ETCD=$!
cleanup() { kill "$ETCD" 2>/dev/null || true; [ -n "${DEV:-}" ] && kill "$DEV" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DEVDIR"; }
trap cleanup EXIT INT TERM
sleep 4
for round in $(seq "$ROUNDS"); do
  echo "round $round etcd:   $($BIN/pairdb-loadtest --target etcd --addr 127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 "${LOAD[@]}" | grep '^write')"
  rm -rf "$DEVDIR/dev"
  $BIN/pairdb dev --data-dir "$DEVDIR/dev" --port 56051 "$@" > "$DEVDIR/dev.out" 2> "$DEVDIR/dev.err" &
  DEV=$!
  sleep 2
  echo "round $round pairdb: $($BIN/pairdb-loadtest --target coordinator --addr 127.0.0.1:56051 "${LOAD[@]}" | grep '^write')"
  kill -TERM "$DEV"; wait "$DEV" || true; DEV=
  # The same cluster on the h2 crate's HTTP/2 (rpc.http2: h2), the layer native replaced.
  rm -rf "$DEVDIR/dev"
  $BIN/pairdb dev --data-dir "$DEVDIR/dev" --port 56051 --http2 h2 "$@" > "$DEVDIR/dev.out" 2> "$DEVDIR/dev.err" &
  DEV=$!
  sleep 2
  echo "round $round h2:     $($BIN/pairdb-loadtest --target coordinator --addr 127.0.0.1:56051 "${LOAD[@]}" | grep '^write')"
  kill -TERM "$DEV"; wait "$DEV" || true; DEV=
  if [ -n "${BASE:-}" ]; then
    rm -rf "$DEVDIR/dev"
    "$BASE" dev --data-dir "$DEVDIR/dev" --port 56051 "$@" > "$DEVDIR/dev.out" 2> "$DEVDIR/dev.err" &
    DEV=$!
    sleep 2
    echo "round $round base:   $($BIN/pairdb-loadtest --target coordinator --addr 127.0.0.1:56051 "${LOAD[@]}" | grep '^write')"
    kill -TERM "$DEV"; wait "$DEV" || true; DEV=
  fi
done
