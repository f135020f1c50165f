"""The client against a real `pairdb dev` cluster (PAIRDB_ADDR), plus offline checks."""

import filecmp
import os
import pathlib
import subprocess
import tempfile
import threading
import time
import uuid

import grpc
import pytest

import pairdb_client
from pairdb_client import (
    Client,
    Consistency,
    DeadlineExceeded,
    IdempotencyKeyConflict,
    KeyNotFound,
    PairDBError,
    QuorumNotReached,
    TenantExists,
    TenantNotFound,
    Unavailable,
    VectorClock,
)
from pairdb_client.errors import from_rpc_error

from conftest import Faults, FakeRpcError

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = HERE.parent


# ----------------------------------------------------------------------------------------------
# Offline.


def test_generated_stubs_are_fresh():
    """The committed stubs are what generate.sh makes from proto/ now: rerun it after a proto
    change (clients/python/generate.sh) and commit the result."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(PACKAGE / "generate.sh"), out], check=True)
        committed = PACKAGE / "pairdb_client" / "_proto"
        names = ["coordinator_pb2.py", "coordinator_pb2.pyi", "coordinator_pb2_grpc.py"]
        match, mismatch, errors = filecmp.cmpfiles(out, committed, names, shallow=False)
        assert not mismatch and not errors, (
            f"stale generated stubs {mismatch + errors}: run clients/python/generate.sh"
        )


def test_error_mapping_reads_the_trailer():
    err = from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.UNAVAILABLE, "2 of 3", [("pairdb-error-code", "QUORUM_NOT_REACHED")]
        )
    )
    assert type(err) is QuorumNotReached
    assert isinstance(err, Unavailable) and isinstance(err, PairDBError)
    assert (err.code, err.error_code, err.message, err.retryable) == (
        grpc.StatusCode.UNAVAILABLE,
        "QUORUM_NOT_REACHED",
        "2 of 3",
        True,
    )
    plain = from_rpc_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "late"))
    assert type(plain) is DeadlineExceeded and plain.error_code is None and plain.retryable
    unknown = from_rpc_error(
        FakeRpcError(grpc.StatusCode.INTERNAL, "?", [("pairdb-error-code", "SOMETHING_NEW")])
    )
    assert type(unknown) is PairDBError and unknown.error_code == "SOMETHING_NEW"
    assert not unknown.retryable


def test_every_server_error_code_has_a_class():
    """Each pairdb-error-code in the server's status mapping has its class."""
    status_rs = PACKAGE.parent.parent / "src" / "rpc" / "status.rs"
    text = status_rs.read_text()
    body = text.split("impl From<&PairError> for Status", 1)[1].split("Status::new(code", 1)[0]
    import re

    codes = set(re.findall(r'Code::[A-Z_]+, "([A-Z_]+)"\)', body))
    assert len(codes) > 20, codes
    missing = codes - set(pairdb_client.BY_ERROR_CODE)
    assert not missing, f"no exception class for {sorted(missing)}"


# ----------------------------------------------------------------------------------------------
# Keys and values.


def test_put_get_delete(client, key):
    written = client.put("default", key, b"v1")
    assert written.key == key and written.replica_count >= 2 and not written.is_duplicate
    assert written.idempotency_key, "the client sends a generated idempotency key"
    assert written.vector_clock.entries
    got = client.get("default", key)
    assert got.value == b"v1" and got.vector_clock == written.vector_clock
    client.put("default", key, "v2 ✓", context=got.vector_clock, consistency=Consistency.ALL)
    assert client.get("default", key, consistency=Consistency.ALL).value == "v2 ✓".encode()
    deleted = client.delete("default", key)
    assert deleted.key == key and not deleted.is_duplicate
    with pytest.raises(KeyNotFound):
        client.get("default", key)
    assert client.get_or_none("default", key) is None


def test_typed_exceptions(client, key):
    with pytest.raises(KeyNotFound) as e:
        client.get("default", key)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert e.value.error_code == "KEY_NOT_FOUND"
    assert e.value.message and not e.value.retryable
    missing = f"no-such-tenant-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TenantNotFound) as e:
        client.put(missing, key, b"x")
    assert (e.value.code, e.value.error_code) == (grpc.StatusCode.NOT_FOUND, "TENANT_NOT_FOUND")
    with pytest.raises(TenantNotFound):
        client.get_tenant(missing)
    with pytest.raises(pairdb_client.InvalidRequest):
        client.put("default", "", b"x")


def test_tenants_and_nodes(client, key):
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    created = client.create_tenant(tenant, replication_factor=2)
    assert (created.tenant_id, created.replication_factor) == (tenant, 2)
    got = client.get_tenant(tenant)
    assert (got.tenant_id, got.replication_factor) == (tenant, 2)
    with pytest.raises(TenantExists) as e:
        client.create_tenant(tenant)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    client.put(tenant, key, b"in the new tenant")
    assert client.get(tenant, key).value == b"in the new tenant"
    with pytest.raises(KeyNotFound):
        client.get("default", key)
    nodes = client.list_storage_nodes()
    assert sorted(n.node_id for n in nodes) == ["storage-1", "storage-2", "storage-3"]
    assert all(n.status == "ACTIVE" and n.port > 0 for n in nodes)


# ----------------------------------------------------------------------------------------------
# Retries and idempotency.


def test_write_retry_after_lost_response_applies_once(addr, key):
    """The first attempt reaches the server but its answer is lost: the retry carries the same
    idempotency key and gets the stored answer, so the write applied once."""
    faults = Faults({"WriteKeyValue": ["lose_response"]})
    with Client([addr], timeout=10.0, retries=2, backoff=0.01, interceptors=[faults]) as c:
        result = c.put("default", key, b"once")
        sent = faults.requests("WriteKeyValue")
        assert len(sent) == 2
        assert sent[0].idempotency_key == sent[1].idempotency_key == result.idempotency_key
        assert result.is_duplicate, "the retry got the first attempt's stored answer"
        assert c.get("default", key).vector_clock == result.vector_clock
        # A second logical call gets a key of its own.
        again = c.put("default", key, b"twice")
        assert again.idempotency_key != result.idempotency_key and not again.is_duplicate


def test_delete_retry_after_lost_response_applies_once(addr, key):
    faults = Faults({"DeleteKeyValue": ["lose_response"]})
    with Client([addr], timeout=10.0, retries=2, backoff=0.01, interceptors=[faults]) as c:
        c.put("default", key, b"x")
        result = c.delete("default", key)
        sent = faults.requests("DeleteKeyValue")
        assert len(sent) == 2 and sent[0].idempotency_key == sent[1].idempotency_key
        assert result.is_duplicate
        assert c.get_or_none("default", key) is None


def test_reused_idempotency_key_with_another_value_conflicts(client, key):
    client.put("default", key, b"a", idempotency_key=f"k-{key}")
    assert client.put("default", key, b"a", idempotency_key=f"k-{key}").is_duplicate
    with pytest.raises(IdempotencyKeyConflict) as e:
        client.put("default", key, b"b", idempotency_key=f"k-{key}")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and not e.value.retryable


def test_reads_retry_deadlines_admin_changes_do_not(addr, key):
    faults = Faults({"ReadKeyValue": ["deadline"], "CreateTenant": ["deadline"]})
    with Client([addr], timeout=10.0, retries=3, backoff=0.01, interceptors=[faults]) as c:
        c.put("default", key, b"r")
        assert c.get("default", key).value == b"r"
        assert faults.count("ReadKeyValue") == 2
        # CreateTenant has no idempotency key: a deadline may hide an applied change.
        with pytest.raises(DeadlineExceeded):
            c.create_tenant(f"t-{uuid.uuid4().hex[:12]}")
        assert faults.count("CreateTenant") == 1


def test_non_retryable_errors_are_not_retried(addr, key):
    faults = Faults({})
    with Client([addr], timeout=10.0, retries=3, interceptors=[faults]) as c:
        with pytest.raises(KeyNotFound):
            c.get("default", key)
        assert faults.count("ReadKeyValue") == 1


# ----------------------------------------------------------------------------------------------
# Failover and deadlines.


def test_failover_when_the_first_address_is_dead(addr, dead_addr, key):
    with Client([dead_addr, addr], timeout=5.0, retries=2, backoff=0.01) as c:
        c.put("default", key, b"failed over")
        assert c.current_address == addr, "the client stays on the address that answered"
        assert c.get("default", key).value == b"failed over"
        assert c.get_tenant("default").tenant_id == "default"


def test_all_addresses_dead_raises_unavailable(dead_addr):
    with Client([dead_addr], timeout=2.0, retries=2, backoff=0.01) as c:
        start = time.monotonic()
        with pytest.raises(Unavailable) as e:
            c.get("default", "k")
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.retryable
        assert time.monotonic() - start < 10


def test_deadline_on_a_coordinator_that_never_answers(black_hole):
    with Client([black_hole], timeout=0.3, retries=1, backoff=0.01) as c:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as e:
            c.get("default", "k")
        elapsed = time.monotonic() - start
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.5 <= elapsed < 5, f"two attempts of 0.3 s took {elapsed:.2f} s"


def test_overall_deadline_bounds_the_retries(black_hole):
    with Client([black_hole], timeout=0.3, retries=50, backoff=0.01, deadline=1.0) as c:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            c.put("default", "k", b"v")
        assert time.monotonic() - start < 3


def test_deadline_then_failover_to_a_live_coordinator(black_hole, addr, key):
    with Client([black_hole, addr], timeout=0.5, retries=2, backoff=0.01) as c:
        c.put("default", key, b"after a hung coordinator")
        assert c.current_address == addr
        assert c.get("default", key).value == b"after a hung coordinator"


# ----------------------------------------------------------------------------------------------
# The causal helper.


def _increment(old):
    return str(int(old or b"0") + 1)


def test_update_reads_fn_writes_with_context(client, key):
    seen = []

    def fn(old):
        seen.append(old)
        return b"first" if old is None else old + b"+"

    first = client.update("default", key, fn)
    second = client.update("default", key, fn)
    assert seen == [None, b"first"]
    assert client.get("default", key).value == b"first+"
    assert first.vector_clock != second.vector_clock


def test_concurrent_updates_lose_no_increment(addr, key):
    """Threads, each with its own client (no shared lock), increment one counter: every
    increment counts."""
    threads_n, per_thread = 6, 8
    failures = []

    def worker():
        try:
            with Client([addr], timeout=10.0, retries=3) as c:
                for _ in range(per_thread):
                    c.update("default", key, _increment)
        except Exception as e:  # reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    with Client([addr], timeout=10.0) as c:
        assert int(c.get("default", key, consistency=Consistency.ALL).value) == (
            threads_n * per_thread
        )


@pytest.mark.parametrize("racer_value", [None, b"100"])
def test_update_that_loses_the_race_reads_again(addr, key, racer_value):
    """Another updater commits between this update's read and its write: with the same new
    value (a duplicate answer) or another one (an idempotency-key conflict), this update reads
    again and applies `fn` to the racer's value."""
    with Client([addr], timeout=10.0) as a, Client([addr], timeout=10.0) as b:
        a.put("default", key, b"10")
        seen = []

        def fn(old):
            seen.append(old)
            if len(seen) == 1:
                b.update("default", key, racer_value and (lambda _: racer_value) or _increment)
            return _increment(old)

        result = a.update("default", key, fn)
        racer = racer_value or b"11"
        assert seen == [b"10", racer]
        assert not result.is_duplicate
        assert a.get("default", key).value == _increment(racer).encode()

        # Out of rounds: only the racer's increment is written.
        def racing_increment(old):
            b.update("default", key, _increment)
            return _increment(old)

        before = int(a.get("default", key).value)
        with pytest.raises(pairdb_client.UpdateConflict) as e:
            a.update("default", key, racing_increment, max_rounds=1)
        assert e.value.code is None and not e.value.retryable
        assert int(a.get("default", key).value) == before + 1


def test_update_after_delete_starts_over(addr, key):
    # The creation after the delete waits up to one timeout: keep it short, not tight.
    with Client([addr], timeout=3.0, retries=3) as c:
        for _ in range(3):
            c.update("default", key, _increment)
        assert c.get("default", key).value == b"3"
        c.delete("default", key)
        c.update("default", key, _increment)
        assert c.get("default", key).value == b"1"
        c.update("default", key, _increment)
        assert c.get("default", key).value == b"2"


def test_vector_clock_round_trips():
    clock = VectorClock((("coord-1/0", 5), ("coord-1/1", 7)))
    assert VectorClock.from_proto(clock.to_proto()) == clock
    assert clock.digest() == VectorClock((("coord-1/0", 5), ("coord-1/1", 7))).digest()
    assert clock.digest() != VectorClock((("coord-1/0", 5),)).digest()


def test_package_installs_with_its_stubs(tmp_path):
    """`pip install ./clients/python` ships the generated stubs: install into a scratch directory
    (no network: the build backend and the dependencies are already installed) and import it."""
    target = tmp_path / "site"
    subprocess.run(
        [
            "python3", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-index", "--no-build-isolation", "--target", str(target),
            str(PACKAGE),
        ],
        check=True,
    )
    code = (
        "import pairdb_client, pairdb_client._proto.coordinator_pb2_grpc as g; "
        "print(pairdb_client.__file__)"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        ["python3", "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.stdout.strip().startswith(str(target)), out.stdout
