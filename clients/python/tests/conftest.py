"""Fixtures for the client tests. They run against a real cluster whose coordinator address is in
PAIRDB_ADDR (tests/python_client.rs starts `pairdb dev` and sets it); without it the cluster tests
skip, except under CI=true, where they fail."""

import os
import socket
import threading
import uuid

import grpc
import pytest

from pairdb_client import Client


@pytest.fixture(scope="session")
def addr():
    value = os.environ.get("PAIRDB_ADDR")
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail("PAIRDB_ADDR is not set (CI=true: the cluster tests may not skip)")
        pytest.skip("PAIRDB_ADDR is not set: start `pairdb dev` and set it to its address")
    return value


@pytest.fixture(scope="session")
def secured():
    """(address, bootstrap admin token, CA certificate PEM) of a second cluster that runs with
    ``auth.mode: required`` and serves TLS (tests/python_client.rs starts it and sets
    PAIRDB_SECURED_ADDR, PAIRDB_SECURED_TOKEN and PAIRDB_SECURED_CA, the CA file)."""
    names = ("PAIRDB_SECURED_ADDR", "PAIRDB_SECURED_TOKEN", "PAIRDB_SECURED_CA")
    addr, token, ca = (os.environ.get(n) for n in names)
    if not addr or not token or not ca:
        if os.environ.get("CI") == "true":
            pytest.fail("PAIRDB_SECURED_ADDR/TOKEN/CA are not set (CI=true: tests may not skip)")
        pytest.skip("PAIRDB_SECURED_ADDR/TOKEN/CA are not set: start a secured cluster")
    with open(ca, "rb") as f:
        return addr, token, f.read()


@pytest.fixture
def client(addr):
    with Client([addr], timeout=10.0, retries=3) as c:
        yield c


@pytest.fixture
def key():
    """A key no other test uses."""
    return f"py-{uuid.uuid4().hex}"


@pytest.fixture
def dead_addr():
    """A loopback address nobody listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


@pytest.fixture
def black_hole():
    """A loopback address that accepts TCP connections and never answers."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


class FakeRpcError(grpc.RpcError):
    """A failed call, as an interceptor can raise it."""

    def __init__(self, code, details="", trailers=()):
        super().__init__(details)
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


class Faults(grpc.UnaryUnaryClientInterceptor):
    """Injects failures into calls by method name and records every attempt's request.

    `plan` maps a method name (``"WriteKeyValue"``) to a list of actions for its next attempts:
    ``"lose_response"`` sends the call and then fails it with DEADLINE_EXCEEDED (the response was
    lost: the server applied it), ``"deadline"`` fails it with DEADLINE_EXCEEDED without sending,
    ``None`` lets it through."""

    def __init__(self, plan):
        self.plan = {k: list(v) for k, v in plan.items()}
        self.attempts = []
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation, details, request):
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        name = method.rsplit("/", 1)[-1]
        with self._lock:
            self.attempts.append((name, request))
            actions = self.plan.get(name) or [None]
            action = actions.pop(0) if self.plan.get(name) else None
        if action == "lose_response":
            continuation(details, request).result()
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "response lost (injected)")
        if action == "deadline":
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline (injected)")
        return continuation(details, request)

    def count(self, name):
        with self._lock:
            return sum(1 for n, _ in self.attempts if n == name)

    def requests(self, name):
        with self._lock:
            return [r for n, r in self.attempts if n == name]
