#!/usr/bin/env bash
# The cost of TLS per request (rpc.tls): GetTenant served from a coordinator core's cache, as in
# auth-cost.sh, by four coordinators of the same build under the same h2load load (-c 8 -m 32
# -t 1; h2load pinned to CPU 0, every server to CPU 1):
#   plain      rpc.http2: native, plaintext (http://)
#   tls        rpc.http2: native, rpc.tls.cert_file/key_file (https://, TLS 1.3, ALPN h2)
#   plain-h2   rpc.http2: h2, plaintext
#   tls-h2     rpc.http2: h2, TLS
#   token      rpc.http2: native, plaintext, auth.mode: required, a tenant-ro token per request
#   tls-token  rpc.http2: native, TLS and auth.mode: required with the same kind of token
# so that one run gives the open plaintext front end, the cost of auth, of TLS and of both.
# Connections are reused (8 for the whole run), so this is the steady-state cost of record
# encryption; the handshake is paid once per connection. Rounds are interleaved; each line gives
# the rate and the server's CPU time per request (from /proc/PID/task/*/schedstat). Certificates
# are made with openssl into a temporary folder. Needs a release build of pairdb, openssl and
# nghttp2-client (h2load). Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
N=${N:-400000}
BIN=${BIN:-target/release/pairdb}
DIR=$(mktemp -d /tmp/pairdb-tls.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
# A CA and a server certificate for 127.0.0.1 (P-256 keys, as docs/SECURITY.md shows).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=tls-cost CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=tls-cost" \
  -keyout "$DIR/server.key" -out "$DIR/server.csr" 2> /dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$DIR/san.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
  -days 2 -extfile "$DIR/san.ext" -out "$DIR/server.pem" 2> /dev/null
for layer in native h2; do
  printf 'rpc:\n  http2: %s\n' "$layer" > "$DIR/plain-$layer.yaml"
  printf 'rpc:\n  http2: %s\n  tls:\n    cert_file: %s\n    key_file: %s\n' \
    "$layer" "$DIR/server.pem" "$DIR/server.key" > "$DIR/tls-$layer.yaml"
done
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/boot.token"
BOOT=$(cat "$DIR/boot.token")
AUTH_YAML=$(printf 'auth:\n  mode: required\n  bootstrap_token_file: %s\n' "$DIR/boot.token")
printf '%s\n' "$AUTH_YAML" > "$DIR/token.yaml"
{ cat "$DIR/tls-native.yaml"; printf '%s\n' "$AUTH_YAML"; } > "$DIR/tls-token.yaml"
start() { # name port admin-port
  taskset -c 1 "$BIN" coordinator --config "$DIR/$1.yaml" --cores 1 --port "$2" --admin-port "$3" \
    --data-dir "$DIR/$1" > /dev/null 2> "$DIR/$1.err" &
  PIDS+=($!)
}
start plain-native 57081 9181; PLAIN=${PIDS[-1]}
start tls-native 57082 9182; TLS=${PIDS[-1]}
start plain-h2 57083 9183; PLAIN_H2=${PIDS[-1]}
start tls-h2 57084 9184; TLS_H2=${PIDS[-1]}
start token 57085 9185; TOKEN=${PIDS[-1]}
start tls-token 57086 9186; TLS_TOKEN=${PIDS[-1]}
sleep 2
for port in 57081 57083; do "$BIN" tenant create default --addr "127.0.0.1:$port" > /dev/null; done
# The TLS ports through the CLI's TLS (certificate checked against 127.0.0.1): a failed
# handshake would stop the script here.
for port in 57082 57084; do
  "$BIN" tenant create default --addr "127.0.0.1:$port" --tls-ca "$DIR/ca.pem" > /dev/null
  "$BIN" tenant get default --addr "127.0.0.1:$port" --tls-ca "$DIR/ca.pem" > /dev/null
done
# A tenant-ro token on each auth coordinator; a refused call would make the CLI fail here.
"$BIN" tenant create default --addr 127.0.0.1:57085 --token "$BOOT" > /dev/null
T1=$("$BIN" token create --tenant default --role tenant-ro --addr 127.0.0.1:57085 --token "$BOOT" | head -1)
"$BIN" tenant get default --addr 127.0.0.1:57085 --token "$T1" > /dev/null
TA=(--addr 127.0.0.1:57086 --tls-ca "$DIR/ca.pem")
"$BIN" tenant create default "${TA[@]}" --token "$BOOT" > /dev/null
T2=$("$BIN" token create --tenant default --role tenant-ro "${TA[@]}" --token "$BOOT" | head -1)
"$BIN" tenant get default "${TA[@]}" --token "$T2" > /dev/null
python3 - "$DIR/body" <<'PY'
import struct, sys
tenant = b"default"
msg = b"\x0a" + bytes([len(tenant)]) + tenant          # GetTenantRequest { tenant_id }
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
GRPC=(-d "$DIR/body" -H 'content-type: application/grpc' -H 'te: trailers')
P="/pairdb.coordinator.v1.CoordinatorService/GetTenant"
run() { # name pid url [extra h2load arguments]
  local name=$1 pid=$2 url=$3
  shift 3
  local before after out rate
  before=$(cpu_ns "$pid")
  out=$(taskset -c 0 h2load -c 8 -m 32 -t 1 -n "$N" "${GRPC[@]}" "$@" "$url" 2>&1)
  after=$(cpu_ns "$pid")
  rate=$(echo "$out" | grep -oE 'finished in [^,]+, [0-9.]+ req/s' | grep -oE '[0-9.]+ req/s')
  if ! echo "$out" | grep -qE "[0-9]+ succeeded" || echo "$out" | grep -qE " 0 succeeded"; then
    echo "$name: h2load failed:"; echo "$out" | tail -5; exit 1
  fi
  printf '%-9s %12s  server cpu %.2f us/req\n' "$name" "$rate" "$(echo "($after - $before) / $N / 1000" | bc -l)"
}
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run plain "$PLAIN" "http://127.0.0.1:57081$P"
  run tls "$TLS" "https://127.0.0.1:57082$P"
  run plain-h2 "$PLAIN_H2" "http://127.0.0.1:57083$P"
  run tls-h2 "$TLS_H2" "https://127.0.0.1:57084$P"
  run token "$TOKEN" "http://127.0.0.1:57085$P" -H "authorization: Bearer $T1"
  run tls-token "$TLS_TOKEN" "https://127.0.0.1:57086$P" -H "authorization: Bearer $T2"
done
