#!/usr/bin/env bash
# Noisy neighbour (docs/PERFORMANCE.md): does a tenant over its rate limit hurt another tenant?
# A fresh `pairdb dev` cluster with two tenants: A limited to LIMIT_A requests/s, B unlimited.
# B's keys are written first (closed loop, 2 s) so that its reads find data. Then, ROUNDS
# times, interleaved:
#   alone     B: 50% reads / 50% writes, zipfian over KEYS keys, open loop at RATE_B ops/s for
#             SECS seconds after a 1 s warm-up
#   with A    the same B load while A sends open loop at FACTOR x LIMIT_A ops/s (same mix) over
#             the whole window
# and prints, per round and as medians over the rounds: B's p99 alone and with A (and their
# ratio), B's errors, A's admitted ops/s (ok or KEY_NOT_FOUND: about LIMIT_A) and how many of A's calls got
# RESOURCE_EXHAUSTED (RATE_LIMITED). The done-when: B's p99 with A within 1.5x of alone, A refused
# for the excess. Needs builds of pairdb and pairdb-loadtest (release by default; BIN=target/debug
# for a smoke run). Every process it starts is stopped by PID; every run is bounded.
#
# A_NICE (default 0) runs A's load generator at that nice level. On a 2-core machine the noisy
# tenant's own load generator competes with the server and with B's generator for the same two
# CPUs (about 0.2 cores at 5,000 calls/s), which a real noisy client on its own host does not;
# A_NICE=19 takes most of that client-side CPU out of B's way while A still sends at its full
# rate (the report shows the rate A actually sent at). docs/PERFORMANCE.md gives both.
#
#   benches/scripts/noisy-neighbour.sh                  # ROUNDS=3 SECS=10
#   ROUNDS=1 SECS=2 BIN=target/debug benches/scripts/noisy-neighbour.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
RATE_B=${RATE_B:-5000}
LIMIT_A=${LIMIT_A:-500}
FACTOR=${FACTOR:-10}
KEYS=${KEYS:-100000}
BIN=${BIN:-target/release}
PORT=${PORT:-56651}
ADMIN_PORT=${ADMIN_PORT:-56690}
A_NICE=${A_NICE:-0}
ADDR=127.0.0.1:$PORT
for b in pairdb pairdb-loadtest; do
  [ -x "$BIN/$b" ] || { echo "noisy-neighbour.sh: $BIN/$b not built (cargo build --release -p ...)" >&2; exit 1; }
done
DIR=$(mktemp -d /tmp/pairdb-noisy.XXXXXX)
DEV=
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$DEV" ] && kill "$DEV" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

"$BIN/pairdb" dev --data-dir "$DIR/dev" --port "$PORT" --admin-port "$ADMIN_PORT" > "$DIR/dev.out" 2> "$DIR/dev.err" &
DEV=$!
# Ready when the dev cluster's tenant answers (at most 30 s).
for _ in $(seq 60); do
  "$BIN/pairdb" tenant get default --addr "$ADDR" > /dev/null 2>&1 && break
  kill -0 "$DEV" 2>/dev/null || { echo "pairdb dev exited:" >&2; tail -20 "$DIR/dev.err" >&2; exit 1; }
  sleep 0.5
done
"$BIN/pairdb" tenant create a --addr "$ADDR" --requests-per-second "$LIMIT_A" > /dev/null
"$BIN/pairdb" tenant create b --addr "$ADDR" > /dev/null
"$BIN/pairdb" tenant get a --addr "$ADDR" | sed 's/^/  /'

LT=("$BIN/pairdb-loadtest" --addr "$ADDR" --keys "$KEYS" --value-size 100 --quiet)
# B's keys, so that its reads find data.
"${LT[@]}" --tenant b --connections 8 --inflight 32 --write-pct 100 --read-pct 0 --duration 2s > /dev/null

b_load() { # json-out
  "${LT[@]}" --tenant b --rate "$RATE_B" --connections 8 --read-pct 50 --write-pct 50 \
    --distribution zipfian --duration "${SECS}s" --warmup 1s --json > "$1"
}
a_load() { # json-out: covers B's warm-up and window, and a little more
  nice -n "$A_NICE" "${LT[@]}" --tenant a --rate $((LIMIT_A * FACTOR)) --connections 4 --read-pct 50 \
    --write-pct 50 --duration "$((SECS + 2))s" --json > "$1"
}

for round in $(seq "$ROUNDS"); do
  b_load "$DIR/alone-$round.json"
  a_load "$DIR/a-$round.json" &
  A=$!; PIDS+=("$A")
  sleep 0.2
  b_load "$DIR/with-$round.json"
  # A's calls are mostly refused, so all_failed never trips; a failing A still must not stop us.
  wait "$A" || echo "round $round: the load of tenant A exited with an error" >&2
done

python3 - "$DIR" "$ROUNDS" "$LIMIT_A" "$FACTOR" <<'PY'
import json, statistics, sys
d, rounds, limit, factor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(name):
    return json.load(open(f"{d}/{name}.json"))
rows = []
for r in range(1, rounds + 1):
    alone, with_a, a = load(f"alone-{r}"), load(f"with-{r}"), load(f"a-{r}")
    p_alone = alone["latency_all"]["p99_us"] / 1000
    p_with = with_a["latency_all"]["p99_us"] / 1000
    exhausted = a["errors_by_status"].get("RESOURCE_EXHAUSTED", 0)
    other = a["errors"] - exhausted
    row = dict(p_alone=p_alone, p_with=p_with, ratio=p_with / max(p_alone, 1e-9),
               b_ok=with_a["ok_per_sec"], b_err=alone["errors"] + with_a["errors"],
               a_ok=(a["ok"] + a["misses"]) / max(a["measured_secs"], 1e-9), a_sent=a["completed_per_sec"], a_exhausted=exhausted,
               a_other=other)
    rows.append(row)
    print(f"round {r}: B p99 alone {p_alone:.3f} ms, with A {p_with:.3f} ms (x{row['ratio']:.2f}); "
          f"B {row['b_ok']:.0f} ok/s, {row['b_err']} errors; A {row['a_ok']:.0f} admitted/s (ok or KEY_NOT_FOUND) of "
          f"{row['a_sent']:.0f}/s sent, {exhausted} RESOURCE_EXHAUSTED, {other} other errors")
med = lambda k: statistics.median(x[k] for x in rows)
print(f"median of {rounds}: B p99 alone {med('p_alone'):.3f} ms, with A {med('p_with'):.3f} ms "
      f"(x{med('ratio'):.2f}, done-when <= 1.5); A {med('a_ok'):.0f} admitted/s (limit {limit}/s, "
      f"sent at {limit * factor}/s), {med('a_exhausted'):.0f} RESOURCE_EXHAUSTED per run")
PY
