"""A gRPC call whose request metadata spans HEADERS and two CONTINUATION frames.

Run by tests/interop.rs against a PairDB server:

    h2_continuation_call.py HOST:PORT

Sends StorageService/HealthCheck with 8 KiB of metadata, its header block cut into three
frames, then the (empty) request message, and prints one JSON line: the reply's :status,
grpc-status and the number of reply message bytes. Exits non-zero if no reply arrives in 10 s.
"""

import json
import os
import socket
import sys

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/pairdb.storage.v1.StorageService/HealthCheck"),
        (":authority", sys.argv[1]),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    # 8 KiB of incompressible metadata: under the server's 16 KiB list limit.
    headers += [(f"x-meta-{i}", os.urandom(100).hex()) for i in range(40)]
    block = hpack.Encoder().encode(headers)
    third = len(block) // 3
    out = PREFACE + SettingsFrame(0).serialize()
    out += HeadersFrame(1, data=block[:third]).serialize()
    out += ContinuationFrame(1, data=block[third : 2 * third]).serialize()
    out += ContinuationFrame(1, data=block[2 * third :], flags=["END_HEADERS"]).serialize()
    out += DataFrame(1, data=b"\x00\x00\x00\x00\x00", flags=["END_STREAM"]).serialize()
    sock.sendall(out)

    decoder = hpack.Decoder()
    buf = b""
    result = {"frames": 0, "message_bytes": 0}
    ended = False
    while not ended:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9 : 9 + length]))
            buf = buf[9 + length :]
            result["frames"] += 1
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            if frame.stream_id != 1:
                continue
            if isinstance(frame, HeadersFrame):
                for name, value in decoder.decode(frame.data):
                    name = name.decode() if isinstance(name, bytes) else name
                    value = value.decode() if isinstance(value, bytes) else value
                    if name in (":status", "grpc-status"):
                        result[name.lstrip(":")] = value
            if isinstance(frame, DataFrame):
                result["message_bytes"] += len(frame.data)
            if "END_STREAM" in frame.flags:
                ended = True
    print(json.dumps(result), flush=True)
    sys.exit(0 if ended else 1)


if __name__ == "__main__":
    main()
