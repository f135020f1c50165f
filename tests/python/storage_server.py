"""A standard gRPC server (grpcio) implementing part of StorageService, for our client to call.

Run by tests/interop.rs:

    storage_server.py --stubs DIR

Binds 127.0.0.1 on a free port and prints `listening on PORT` once serving. What it does:

- HealthCheck: SERVING, node_id "python-interop".
- Write: echoes the request's version back as `current`, applied=true.
- Read: key "missing" fails NOT_FOUND with message "no such key: missing" and the trailing
  metadata pairdb-error-code=KEY_NOT_FOUND (a Trailers-Only reply); any other key is found with
  value = the key's UTF-8 bytes, except "huge", whose value is 5 MiB. Key "big-metadata" is
  answered with about 40 KiB of initial and of trailing metadata, so that both header blocks
  span CONTINUATION frames.
- Stats: sleeps 3 s before answering, to outlast the caller's deadline.
- Every other method: UNIMPLEMENTED (the generated servicer's default).

Runs until killed.
"""

import argparse
import os
import sys
import time
from concurrent import futures

import grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)

    from pairdb.storage.v1 import storage_pb2 as pb
    from pairdb.storage.v1 import storage_pb2_grpc as pb_grpc

    class Servicer(pb_grpc.StorageServiceServicer):
        def HealthCheck(self, request, context):
            return pb.HealthCheckResponse(status="SERVING", node_id="python-interop")

        def Write(self, request, context):
            return pb.WriteResponse(applied=True, current=request.version)

        def Read(self, request, context):
            if request.key == "missing":
                context.set_trailing_metadata((("pairdb-error-code", "KEY_NOT_FOUND"),))
                context.abort(grpc.StatusCode.NOT_FOUND, f"no such key: {request.key}")
            if request.key == "big-metadata":
                # Hex of random bytes: HPACK cannot shrink it below the 16 KiB frame size.
                big = tuple((f"x-big-{i}", os.urandom(1000).hex()) for i in range(20))
                context.send_initial_metadata(big)
                context.set_trailing_metadata(big)
            if request.key == "huge":
                # Over the 4 MiB default limit of the caller.
                return pb.ReadResponse(found=True, version=pb.Version(value=bytes(5 << 20)))
            return pb.ReadResponse(found=True, version=pb.Version(value=request.key.encode()))

        def Stats(self, request, context):
            time.sleep(3)
            return pb.StatsResponse(node_id="python-interop")

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ],
    )
    pb_grpc.add_StorageServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
