#!/usr/bin/env bash
# Regenerates the committed gRPC stubs of the coordinator service from proto/ with grpcio-tools
# (the version pinned in tests/python/requirements.txt):
#
#   clients/python/generate.sh            # writes clients/python/pairdb_client/_proto/
#   clients/python/generate.sh OUT_DIR    # writes OUT_DIR instead (the staleness test uses this)
#
# The generated service module imports its messages as `pairdb.coordinator.v1.coordinator_pb2`,
# a top-level package this client does not own; it is rewritten to a relative import so the stubs
# live inside `pairdb_client._proto`. The descriptor keeps its file name
# (`pairdb/coordinator/v1/coordinator.proto`), the same as the server's reflection serves.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/pairdb_client/_proto}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m grpc_tools.protoc -I"$root/proto" \
    --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
    pairdb/coordinator/v1/coordinator.proto
gen="$tmp/pairdb/coordinator/v1"
mkdir -p "$out"
cp "$gen/coordinator_pb2.py" "$gen/coordinator_pb2.pyi" "$out/"
sed 's/^from pairdb\.coordinator\.v1 import coordinator_pb2 as /from . import coordinator_pb2 as /' \
    "$gen/coordinator_pb2_grpc.py" >"$out/coordinator_pb2_grpc.py"
if grep -q '^from pairdb\.' "$out/coordinator_pb2_grpc.py"; then
    echo "generate.sh: the import rewrite did not apply; grpcio-tools changed its output" >&2
    exit 1
fi
