#!/usr/bin/env bash
# Saturation A/B of builds (docs/PERFORMANCE.md): for each round and each variant, a fresh
# `pairdb dev` from that variant's directory, a 4 s write burst (8 x 32, so that reads find data),
# then the 50/50 zipfian mix over 1M keys of 100 B closed loop (8 connections x 32 in flight) for
# SECS seconds. Prints completed calls/s and the server's CPU per completed call (every thread of
# `pairdb dev`, from /proc/PID/task/*/schedstat). Variants alternate inside each round, so that a
# drift of this shared machine hits both alike; compare medians over rounds.
# VARIANTS lists NAME:DIR pairs, DIR a copy of target/release of the build to run (default: the
# current build alone). The load generator is always $BIN/pairdb-loadtest.
# Every process it starts is stopped by PID; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
VARIANTS=${VARIANTS:-"current:$BIN"}
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
    sbin=${variant#*:}
    DIR=$(mktemp -d /tmp/pairdb-sat.XXXXXX)
    "$sbin"/pairdb dev --data-dir "$DIR/dev" --port 56651 --admin-port 56690 > "$DIR/out" 2> "$DIR/err" &
    P=$!
    sleep 2
    $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys 1000000 --value-size 100 --quiet --connections 8 \
      --inflight 32 --write-pct 100 --read-pct 0 --duration 4s --no-pin > /dev/null
    a=$(cpu_ns "$P")
    $BIN/pairdb-loadtest --addr 127.0.0.1:56651 --keys 1000000 --value-size 100 --read-pct 50 \
      --write-pct 50 --distribution zipfian --connections 8 --inflight 32 --duration "${SECS}s" \
      --no-pin --quiet --json > "$DIR/rep.json" 2> /dev/null
    b=$(cpu_ns "$P")
    python3 - "$DIR/rep.json" "$round" "$name" "$a" "$b" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["completed_per_sec"]
cpu_us = (int(sys.argv[5]) - int(sys.argv[4])) / 1000
print(f"round {sys.argv[2]} {sys.argv[3]:12s} {c:8.0f} calls/s  server CPU {cpu_us / (c * d['measured_secs']):6.1f} us/op")
PY
    kill "$P"; wait "$P" 2>/dev/null || true; P=
    rm -rf "$DIR"; DIR=
  done
done
