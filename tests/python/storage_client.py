"""A standard gRPC client (grpcio) against a real `pairdb storage` process.

Run by tests/interop.rs:

    storage_client.py --target 127.0.0.1:PORT --stubs DIR --node-id ID

where DIR holds stubs that the test generated from proto/ with grpc_tools.protoc. Exercises all
eight StorageService methods, gRPC health checking, server reflection (v1alpha and v1), error
statuses with PairDB's `pairdb-error-code` trailer and deadlines. Exits non-zero with a traceback
on the first failed assertion; prints one line per passed check.
"""

import argparse
import concurrent.futures
import sys

import grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--node-id", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)

    # Imported after the stubs directory is on the path.
    from pairdb.storage.v1 import storage_pb2 as pb
    from pairdb.storage.v1 import storage_pb2_grpc as pb_grpc

    options = [
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ("grpc.max_send_message_length", 8 * 1024 * 1024),
    ]
    with grpc.insecure_channel(args.target, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pb_grpc.StorageServiceStub(channel)
        StorageChecks(pb, stub, args.node_id).run()
        check_health(channel)
        check_reflection(channel)
    print("ALL CHECKS PASSED")


def passed(what: str) -> None:
    print(f"ok: {what}", flush=True)


def expect_error(call, code: grpc.StatusCode, error_code: str) -> grpc.RpcError:
    """Runs `call`, which must fail with `code` and the `pairdb-error-code` trailer."""
    try:
        reply = call()
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        trailers = dict(e.trailing_metadata() or ())
        assert trailers.get("pairdb-error-code") == error_code, (
            f"expected pairdb-error-code {error_code!r} in the trailing metadata, got {trailers}"
        )
        return e
    raise AssertionError(f"expected {code}, got a reply: {reply}")


class StorageChecks:
    """Every StorageService method, tracking what the node must hold for ScanRange and Stats."""

    TIMEOUT = 10

    def __init__(self, pb, stub, node_id: str) -> None:
        self.pb = pb
        self.stub = stub
        self.node_id = node_id
        # (tenant_id, key) -> the Version the node must hold.
        self.expected = {}

    def version(self, value: bytes, clock, timestamp: int, writer: str = "coord-1/0"):
        """A Version; `clock` is a list of (actor, counter), given sorted by actor, which is the
        order the node stores and returns them in."""
        pb = self.pb
        return pb.Version(
            value=value,
            vector_clock=pb.VectorClock(
                entries=[
                    pb.VectorClockEntry(coordinator_node_id=a, logical_timestamp=c)
                    for a, c in clock
                ]
            ),
            timestamp=timestamp,
            writer=writer,
        )

    def write(self, tenant, key, version):
        return self.stub.Write(
            self.pb.WriteRequest(tenant_id=tenant, key=key, version=version),
            timeout=self.TIMEOUT,
        )

    def read(self, tenant, key):
        return self.stub.Read(self.pb.ReadRequest(tenant_id=tenant, key=key), timeout=self.TIMEOUT)

    def run(self) -> None:
        self.health_check()
        self.write_read()
        self.dominated_and_concurrent_writes()
        self.delete()
        self.repair()
        self.batch()
        self.large_value()
        self.concurrent_calls()
        self.errors()
        self.deadline()
        self.scan_range()
        self.stats()

    def health_check(self) -> None:
        reply = self.stub.HealthCheck(self.pb.HealthCheckRequest(), timeout=self.TIMEOUT)
        assert reply.status == "SERVING", reply
        assert reply.node_id == self.node_id, reply
        passed("HealthCheck: SERVING with our node id")

    def write_read(self) -> None:
        v = self.version(b"hello", [("coord-1/0", 1)], 1_000)
        reply = self.write("t1", "k1", v)
        assert reply.applied, reply
        assert reply.current == v, f"stored {reply.current}, wrote {v}"
        self.expected[("t1", "k1")] = v
        got = self.read("t1", "k1")
        assert got.found and got.version == v, got
        # Same key, another tenant: tenants never see each other's keys.
        missing = self.read("t2", "k1")
        assert not missing.found and not missing.HasField("version"), missing
        passed("Write then Read returns the same value and clock; tenants are separate")

    def dominated_and_concurrent_writes(self) -> None:
        newer = self.version(b"v2", [("coord-1/0", 2)], 2_000)
        assert self.write("t1", "k2", newer).applied
        older = self.version(b"v1", [("coord-1/0", 1)], 3_000)
        reply = self.write("t1", "k2", older)
        assert not reply.applied, reply
        assert reply.current == newer, reply
        assert self.read("t1", "k2").version == newer
        passed("dominated Write: applied=false, the stored version comes back")

        # Concurrent with `newer` (neither clock dominates) and with a later timestamp: it wins
        # the value, under the merged clock.
        concurrent = self.version(b"v3", [("coord-2/0", 1)], 4_000, writer="coord-2/0")
        reply = self.write("t1", "k2", concurrent)
        assert reply.applied, reply
        merged = self.version(b"v3", [("coord-1/0", 2), ("coord-2/0", 1)], 4_000, "coord-2/0")
        assert reply.current == merged, reply
        assert self.read("t1", "k2").version == merged
        self.expected[("t1", "k2")] = merged
        passed("concurrent Write: later timestamp wins under the merged clock")

    def delete(self) -> None:
        live = self.version(b"doomed", [("coord-1/0", 1)], 5_000)
        assert self.write("t1", "k3", live).applied
        tomb = self.version(b"ignored", [("coord-1/0", 2)], 6_000)
        reply = self.stub.Delete(
            self.pb.DeleteRequest(tenant_id="t1", key="k3", version=tomb), timeout=self.TIMEOUT
        )
        assert reply.applied, reply
        assert reply.current.tombstone and reply.current.value == b"", reply
        got = self.read("t1", "k3")
        assert got.found, got
        assert got.version.tombstone, got
        assert got.version.value == b"", got
        assert list(got.version.vector_clock.entries) == list(tomb.vector_clock.entries), got
        self.expected[("t1", "k3")] = got.version
        passed("Delete then Read: found, tombstone=true, no value")

    def repair(self) -> None:
        v = self.version(b"from-a-replica", [("coord-3/1", 7)], 7_000, "coord-3/1")
        req = self.pb.RepairRequest(tenant_id="t1", key="k4", version=v)
        reply = self.stub.Repair(req, timeout=self.TIMEOUT)
        assert reply.applied and reply.current == v, reply
        assert self.read("t1", "k4").version == v
        again = self.stub.Repair(req, timeout=self.TIMEOUT)
        assert not again.applied and again.current == v, again
        self.expected[("t1", "k4")] = v
        passed("Repair applies once, then is a no-op")

    def batch(self) -> None:
        pb = self.pb
        w = self.version(b"batched", [("coord-1/0", 1)], 8_000)
        tomb = self.version(b"", [("coord-1/0", 1)], 8_000)
        rep = self.version(b"repaired", [("coord-4/0", 3)], 8_000, "coord-4/0")
        ops = [
            pb.BatchOperation(write=pb.WriteRequest(tenant_id="t1", key="b1", version=w)),
            pb.BatchOperation(read=pb.ReadRequest(tenant_id="t1", key="k1")),
            pb.BatchOperation(delete=pb.DeleteRequest(tenant_id="t1", key="b2", version=tomb)),
            pb.BatchOperation(write=pb.WriteRequest(tenant_id="", key="bad", version=w)),
            pb.BatchOperation(repair=pb.RepairRequest(tenant_id="t1", key="b3", version=rep)),
            pb.BatchOperation(read=pb.ReadRequest(tenant_id="t1", key="absent")),
            pb.BatchOperation(),
        ]
        reply = self.stub.Batch(pb.BatchRequest(operations=ops), timeout=self.TIMEOUT)
        kinds = [r.WhichOneof("result") for r in reply.results]
        assert kinds == ["write", "read", "delete", "error", "repair", "read", "error"], kinds
        r = reply.results
        assert r[0].write.applied and r[0].write.current == w, r[0]
        assert r[1].read.found and r[1].read.version == self.expected[("t1", "k1")], r[1]
        assert r[2].delete.applied and r[2].delete.current.tombstone, r[2]
        assert r[3].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], r[3]
        assert r[4].repair.applied and r[4].repair.current == rep, r[4]
        assert not r[5].read.found, r[5]
        assert r[6].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], r[6]
        # The others are stored.
        assert self.read("t1", "b1").version == w
        b2 = self.read("t1", "b2")
        assert b2.found and b2.version.tombstone
        assert self.read("t1", "b3").version == rep
        self.expected[("t1", "b1")] = w
        self.expected[("t1", "b2")] = b2.version
        self.expected[("t1", "b3")] = rep
        passed("Batch: mixed operations, results in request order, failures isolated")

    def large_value(self) -> None:
        value = bytes(range(256)) * (3 * 4096)  # 3 MiB
        v = self.version(value, [("coord-1/0", 1)], 9_000)
        assert self.write("t1", "large", v).applied
        got = self.read("t1", "large")
        assert got.found and got.version.value == value, len(got.version.value)
        self.expected[("t1", "large")] = v
        passed("3 MiB value round trip")

    def concurrent_calls(self) -> None:
        # Many calls in flight on one HTTP/2 connection at once.
        futures = []
        for i in range(64):
            v = self.version(f"value-{i}".encode(), [("coord-5/0", i + 1)], 10_000 + i)
            req = self.pb.WriteRequest(tenant_id="scan", key=f"key-{i:03}", version=v)
            futures.append((i, v, self.stub.Write.future(req, timeout=self.TIMEOUT)))
        for i, v, f in futures:
            reply = f.result()
            assert reply.applied and reply.current == v, (i, reply)
            self.expected[("scan", f"key-{i:03}")] = v
        reads = [
            (key, self.stub.Read.future(self.pb.ReadRequest(tenant_id=t, key=key)))
            for (t, key) in self.expected
            if t == "scan"
        ]
        for key, f in reads:
            assert f.result().version == self.expected[("scan", key)], key
        passed("64 concurrent Writes and Reads on one connection")

    def errors(self) -> None:
        v = self.version(b"x", [("coord-1/0", 1)], 1)
        e = expect_error(
            lambda: self.write("", "k", v), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
        )
        assert "tenant_id" in e.details(), e.details()
        expect_error(
            lambda: self.write("t1", "", v), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
        )
        expect_error(
            lambda: self.stub.Write(self.pb.WriteRequest(tenant_id="t1", key="k"), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        )
        no_clock = self.pb.Version(value=b"x", timestamp=1, writer="w")
        expect_error(
            lambda: self.write("t1", "k", no_clock),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        )
        expect_error(
            lambda: self.stub.ScanRange(self.pb.ScanRangeRequest(cursor=b"junk"), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        )
        assert not self.read("t1", "k").found
        passed("invalid requests: INVALID_ARGUMENT with pairdb-error-code INVALID_REQUEST")

    def deadline(self) -> None:
        reply = self.stub.HealthCheck(self.pb.HealthCheckRequest(), timeout=0.5)
        assert reply.status == "SERVING"
        got = self.stub.Read(self.pb.ReadRequest(tenant_id="t1", key="k1"), timeout=2.0)
        assert got.found
        passed("calls with a deadline (grpc-timeout) succeed")

    def scan_range(self) -> None:
        pb = self.pb
        live = {k: v for k, v in self.expected.items() if not v.tombstone}
        for include_tombstones, want in ((False, live), (True, self.expected)):
            seen = {}
            cursor = b""
            pages = 0
            last_token = None
            while True:
                # start_token == end_token: the range wraps around, the whole ring.
                req = pb.ScanRangeRequest(
                    start_token=12345,
                    end_token=12345,
                    cursor=cursor,
                    limit=7,
                    include_tombstones=include_tombstones,
                )
                page = self.stub.ScanRange(req, timeout=self.TIMEOUT)
                pages += 1
                assert len(page.entries) <= 7, len(page.entries)
                for e in page.entries:
                    ident = (e.tenant_id, e.key)
                    assert ident not in seen, f"{ident} returned twice"
                    seen[ident] = e.version
                    # Token order from just after the start, wrapping once past u64::MAX.
                    rotated = (e.token - 12345 - 1) % (1 << 64)
                    assert last_token is None or rotated >= last_token, "tokens out of order"
                    last_token = rotated
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
                assert pages < 1000, "ScanRange never ends"
            assert pages >= len(want) // 7, pages
            assert set(seen) == set(want), (
                f"missing {set(want) - set(seen)}, unexpected {set(seen) - set(want)}"
            )
            for ident, v in want.items():
                assert seen[ident] == v, ident
        passed(f"ScanRange over the whole ring, limit 7: every key exactly once ({len(live)} live)")

    def stats(self) -> None:
        reply = self.stub.Stats(self.pb.StatsRequest(), timeout=self.TIMEOUT)
        tombstones = sum(1 for v in self.expected.values() if v.tombstone)
        assert reply.node_id == self.node_id, reply
        assert reply.key_count == len(self.expected), (reply.key_count, len(self.expected))
        assert reply.tombstone_count == tombstones, (reply.tombstone_count, tombstones)
        assert reply.disk_bytes > 0, reply
        assert 0.0 <= reply.disk_usage_percent <= 100.0, reply
        passed(f"Stats: key_count {reply.key_count}, tombstone_count {tombstones}")


def check_health(channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "pairdb.storage.v1.StorageService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, (service, reply)
    try:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        raise AssertionError("Check of an unknown service succeeded")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
    # Watch: the first message is the current status; unknown services are SERVICE_UNKNOWN.
    for service, want in (
        ("", health_pb2.HealthCheckResponse.SERVING),
        ("no.such.Service", health_pb2.HealthCheckResponse.SERVICE_UNKNOWN),
    ):
        stream = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=5)
        first = next(stream)
        assert first.status == want, (service, first)
        stream.cancel()
    passed("grpc.health.v1.Health: Check and Watch")


def check_reflection(channel) -> None:
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    import reflection_v1_pb2_grpc

    v1alpha = ProtoReflectionDescriptorDatabase(channel)
    v1 = ProtoReflectionDescriptorDatabase(channel)
    # grpcio-reflection's client speaks only v1alpha. v1 has the same messages under another
    # package, so the same client drives v1 through a v1 stub (generated from proto/ by the test).
    v1._stub = reflection_v1_pb2_grpc.ServerReflectionStub(channel)
    methods = ["Write", "Read", "Delete", "Repair", "HealthCheck", "Batch", "ScanRange", "Stats",
               "Evict", "RangeDigest"]
    for name, db in (("v1alpha", v1alpha), ("v1", v1)):
        services = set(db.get_services())
        for want in (
            "pairdb.storage.v1.StorageService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ):
            assert want in services, (name, want, services)
        fdp = db.FindFileContainingSymbol("pairdb.storage.v1.StorageService")
        assert fdp.package == "pairdb.storage.v1", fdp.package
        (svc,) = [s for s in fdp.service if s.name == "StorageService"]
        assert [m.name for m in svc.method] == methods, [m.name for m in svc.method]
        # A DescriptorPool over the database resolves types as grpcurl would.
        pool = DescriptorPool(db)
        sd = pool.FindServiceByName("pairdb.storage.v1.StorageService")
        write = sd.FindMethodByName("Write")
        assert write.input_type.full_name == "pairdb.storage.v1.WriteRequest"
        assert [f.name for f in write.input_type.fields] == ["tenant_id", "key", "version"]
        health = pool.FindServiceByName("grpc.health.v1.Health")
        assert [m.name for m in health.methods] == ["Check", "Watch"], health.methods
        try:
            db.FindFileContainingSymbol("no.such.Symbol")
            raise AssertionError("reflection found a symbol that does not exist")
        except KeyError:
            pass
        passed(f"server reflection {name}: services, file by symbol, method names")


if __name__ == "__main__":
    main()
