"""The PairDB client: failover across coordinators, deadlines, bounded retries, idempotency keys,
typed errors and the causal :meth:`Client.update` helper."""

from __future__ import annotations

import enum
import hashlib
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import grpc

from . import errors
from ._proto import coordinator_pb2 as pb
from ._proto import coordinator_pb2_grpc as pb_grpc

Bytesish = Union[bytes, bytearray, memoryview, str]


class Consistency(enum.IntEnum):
    """How many replicas must answer before the coordinator does."""

    ONE = pb.ONE
    QUORUM = pb.QUORUM
    ALL = pb.ALL


@dataclass(frozen=True)
class VectorClock:
    """A version's causal history: ``(actor, counter)`` pairs, sorted by actor.

    Pass the clock you read as ``context`` to :meth:`Client.put` or :meth:`Client.delete` to make
    the write supersede that version."""

    entries: Tuple[Tuple[str, int], ...] = ()

    @staticmethod
    def from_proto(clock: Optional[pb.VectorClock]) -> "VectorClock":
        if clock is None:
            return VectorClock()
        return VectorClock(
            tuple(sorted((e.coordinator_node_id, e.logical_timestamp) for e in clock.entries))
        )

    def to_proto(self) -> pb.VectorClock:
        return pb.VectorClock(
            entries=[
                pb.VectorClockEntry(coordinator_node_id=a, logical_timestamp=c)
                for a, c in self.entries
            ]
        )

    def digest(self) -> str:
        """A stable hex digest of the clock (the same clock gives the same digest everywhere)."""
        h = hashlib.sha256()
        for actor, counter in sorted(self.entries):
            a = actor.encode()
            h.update(len(a).to_bytes(4, "big") + a + counter.to_bytes(8, "big", signed=True))
        return h.hexdigest()


@dataclass(frozen=True)
class Value:
    """What :meth:`Client.get` returns."""

    key: str
    value: bytes
    vector_clock: VectorClock
    replica_count: int


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`Client.put`, :meth:`Client.delete` and :meth:`Client.update` return."""

    key: str
    idempotency_key: str
    vector_clock: VectorClock
    replica_count: int
    #: True when the coordinator answered with the stored answer of an earlier attempt that
    #: carried the same idempotency key (this call's own earlier attempt, for this client).
    is_duplicate: bool


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    replication_factor: int
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Token:
    """A bearer token's description (never its secret)."""

    token_id: str
    tenant_id: str
    role: str
    created_at_us: int
    #: 0 while the token is valid.
    revoked_at_us: int

    @staticmethod
    def _from_proto(t: "pb.TokenInfo") -> "Token":
        return Token(t.token_id, t.tenant_id, t.role, t.created_at_us, t.revoked_at_us)


@dataclass(frozen=True)
class StorageNode:
    node_id: str
    host: str
    port: int
    status: str
    virtual_nodes: int
    keys_count: int
    disk_usage_percent: float


# What a retry of a method may do, which decides what is retried.
_READ = "read"  # no effect: UNAVAILABLE and DEADLINE_EXCEEDED are retried
_KEYED = "keyed"  # a write/delete with an idempotency key: the same, plus IDEMPOTENCY_IN_PROGRESS
_UNSAFE = "unsafe"  # an admin change without a key: only UNAVAILABLE is retried


def _to_bytes(value: Bytesish) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a value must be bytes or str, not {type(value).__name__}")


def _new_idempotency_key() -> str:
    return uuid.uuid4().hex


class Client:
    """A client of one PairDB cluster, safe to share between threads.

    Args:
        addresses: coordinator addresses (``"host:port"``). Calls go to one of them; a call that
            fails with ``UNAVAILABLE`` or a client-side deadline moves the client to the next
            one, for this call's retry and for later calls.
        timeout: the deadline of each attempt, in seconds (sent to the coordinator as
            ``grpc-timeout``). Every method takes ``timeout=`` to override it for one call.
        retries: how many times a call is retried after its first attempt (so at most
            ``retries + 1`` attempts), when the failure is safe to retry (see README).
        backoff: the first retry's backoff in seconds; it doubles per retry up to
            ``max_backoff``, with jitter. Moving to an address this call has not tried yet
            does not wait.
        max_backoff: the cap of the backoff, in seconds.
        deadline: optional bound, in seconds, on a whole call including its retries (each
            attempt gets the smaller of ``timeout`` and what is left). ``None``: only the
            attempt count bounds a call.
        consistency: the default consistency level of reads, writes and deletes.
        interceptors: gRPC client interceptors put on every channel.
        options: gRPC channel options.
        token: a bearer token (``pdb_<id>_<secret>`` from ``create_token`` or ``pairdb token
            create``, or the bootstrap admin token), sent as ``authorization: Bearer <token>``
            on every call; needed when the coordinators run with ``auth.mode: required``.
        root_certificates: PEM bytes of the root certificate(s) that sign the coordinators'
            certificates: the client then speaks TLS. ``None``: plaintext.
        private_key, certificate_chain: PEM bytes of a client certificate, for coordinators
            that require mutual TLS.
        tls_server_name: the name the coordinators' certificates must carry, when it is not
            the host of the address (for example when addresses are IP addresses).
    """

    def __init__(
        self,
        addresses: Union[str, Sequence[str]] = ("127.0.0.1:50051",),
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        deadline: Optional[float] = None,
        consistency: Consistency = Consistency.QUORUM,
        interceptors: Iterable[grpc.UnaryUnaryClientInterceptor] = (),
        options: Sequence[Tuple[str, object]] = (),
        token: Optional[str] = None,
        root_certificates: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        tls_server_name: Optional[str] = None,
    ) -> None:
        if isinstance(addresses, str):
            addresses = [addresses]
        self._addresses: List[str] = list(addresses)
        if not self._addresses:
            raise ValueError("at least one coordinator address is needed")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.deadline = deadline
        self.consistency = Consistency(consistency)
        self._interceptors = list(interceptors)
        self._options = list(options)
        if tls_server_name:
            self._options.append(("grpc.ssl_target_name_override", tls_server_name))
        if token is not None and (
            not token.strip() or any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in token.strip())
        ):
            raise ValueError("token must be printable ASCII without spaces")
        self._metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {token.strip()}"),) if token is not None else ()
        )
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("private_key and certificate_chain go together")
        if root_certificates is None and private_key is not None:
            raise ValueError("a client certificate needs root_certificates (TLS)")
        self._credentials: Optional[grpc.ChannelCredentials] = (
            grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            if root_certificates is not None
            else None
        )
        self._lock = threading.Lock()
        self._current = 0
        self._channels: List[Optional[grpc.Channel]] = [None] * len(self._addresses)
        self._stubs: List[Optional[pb_grpc.CoordinatorServiceStub]] = [None] * len(
            self._addresses
        )

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    @property
    def addresses(self) -> List[str]:
        return list(self._addresses)

    @property
    def current_address(self) -> str:
        """The address the next call goes to first."""
        with self._lock:
            return self._addresses[self._current]

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, [None] * len(self._addresses)
            self._stubs = [None] * len(self._addresses)
        for channel in channels:
            if channel is not None:
                channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # Keys and values.

    def put(
        self,
        tenant: str,
        key: str,
        value: Bytesish,
        *,
        consistency: Optional[Consistency] = None,
        context: Optional[VectorClock] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> WriteResult:
        """Stores ``value`` under ``(tenant, key)``.

        ``context`` is the clock of the version you read: the write then supersedes it. Without
        it the write is blind and concurrent versions are ordered by the server's winner rule.
        ``idempotency_key`` is generated (once per call, reused by its retries) when not given.
        """
        request = pb.WriteKeyValueRequest(
            tenant_id=tenant,
            key=key,
            value=_to_bytes(value),
            consistency=int(consistency or self.consistency),
            idempotency_key=idempotency_key or _new_idempotency_key(),
            vector_clock=context.to_proto() if context is not None else None,
        )
        response, _ = self._invoke("WriteKeyValue", request, _KEYED, timeout)
        return self._write_result(response)

    def get(
        self,
        tenant: str,
        key: str,
        *,
        consistency: Optional[Consistency] = None,
        timeout: Optional[float] = None,
    ) -> Value:
        """The newest version of ``(tenant, key)``; raises :class:`~pairdb_client.KeyNotFound`
        when it is absent or deleted."""
        request = pb.ReadKeyValueRequest(
            tenant_id=tenant, key=key, consistency=int(consistency or self.consistency)
        )
        response, _ = self._invoke("ReadKeyValue", request, _READ, timeout)
        return Value(
            key=response.key,
            value=bytes(response.value),
            vector_clock=VectorClock.from_proto(response.vector_clock),
            replica_count=response.replica_count,
        )

    def get_or_none(
        self,
        tenant: str,
        key: str,
        *,
        consistency: Optional[Consistency] = None,
        timeout: Optional[float] = None,
    ) -> Optional[Value]:
        """As :meth:`get`, with ``None`` for an absent or deleted key."""
        try:
            return self.get(tenant, key, consistency=consistency, timeout=timeout)
        except errors.KeyNotFound:
            return None

    def delete(
        self,
        tenant: str,
        key: str,
        *,
        consistency: Optional[Consistency] = None,
        context: Optional[VectorClock] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> WriteResult:
        """Writes a tombstone for ``(tenant, key)`` (deleting an absent key succeeds)."""
        request = pb.DeleteKeyValueRequest(
            tenant_id=tenant,
            key=key,
            consistency=int(consistency or self.consistency),
            idempotency_key=idempotency_key or _new_idempotency_key(),
            vector_clock=context.to_proto() if context is not None else None,
        )
        response, _ = self._invoke("DeleteKeyValue", request, _KEYED, timeout)
        return self._write_result(response)

    def update(
        self,
        tenant: str,
        key: str,
        fn: Callable[[Optional[bytes]], Bytesish],
        *,
        consistency: Optional[Consistency] = None,
        timeout: Optional[float] = None,
        max_rounds: int = 100,
    ) -> WriteResult:
        """Read-modify-write: reads ``(tenant, key)`` with its vector clock, calls
        ``fn(old_value)`` (``None`` when the key is absent or deleted) and writes the result
        with the clock as its causal context.

        Concurrent ``update`` calls of one key do not lose each other's changes: of the calls
        that read the same version, exactly one write is applied; the others learn they lost
        and start over from a fresh read, calling ``fn`` again (so ``fn`` must be a pure
        function of the old value). The write's idempotency key is derived from the clock that
        was read, which makes the coordinator's idempotency record of that key a
        compare-and-set on the version. README.md lists what this relies on.

        Raises :class:`~pairdb_client.UpdateConflict` after ``max_rounds`` lost races,
        :class:`~pairdb_client.UpdateOutcomeUnknown` when a failed attempt leaves it unknowable
        whether this call's write was applied, and the errors of :meth:`get` and :meth:`put`.
        """
        absent_generation = 0
        for round_ in range(max_rounds):
            if round_:
                self._sleep_backoff(round_, cap=0.2)
            current = self.get_or_none(tenant, key, consistency=consistency, timeout=timeout)
            old = current.value if current is not None else None
            context = current.vector_clock if current is not None else None
            new = _to_bytes(fn(old))
            if context is not None:
                idempotency_key = f"pairdb-update/v1/{context.digest()}"
            else:
                idempotency_key = f"pairdb-update/v1/absent/{absent_generation}"
            request = pb.WriteKeyValueRequest(
                tenant_id=tenant,
                key=key,
                value=new,
                consistency=int(consistency or self.consistency),
                idempotency_key=idempotency_key,
                vector_clock=context.to_proto() if context is not None else None,
            )
            try:
                response, ambiguous = self._invoke("WriteKeyValue", request, _KEYED, timeout)
            except errors.IdempotencyKeyConflict:
                # Another update of the version we read was (or is being) applied with another
                # value: ours never was, since the first claim of the key is exclusive.
                response, ambiguous = None, False
            except errors.IdempotencyInProgress as e:
                # The same request (same old version, same new value) is running: another
                # updater's, unless an earlier attempt of ours may still be running.
                if getattr(e, "_ambiguous", False):
                    raise errors.UpdateOutcomeUnknown(
                        f"update of {key!r}: an attempt failed ambiguously and the same write "
                        "is still in progress"
                    ) from e
                response, ambiguous = None, False
            if response is not None and not response.is_duplicate:
                return self._write_result(response)
            if response is not None and ambiguous:
                raise errors.UpdateOutcomeUnknown(
                    f"update of {key!r}: an attempt failed ambiguously and its retry found the "
                    "stored answer of an identical write, ours or another updater's"
                )
            # Lost the race for this version.
            if context is None and self._still_absent(tenant, key, consistency, timeout):
                # The creation key was used before and the key is absent still: it was created
                # and deleted since (an earlier lifetime), so move to the next creation key.
                absent_generation += 1
        raise errors.UpdateConflict(
            f"update of {key!r} lost the race {max_rounds} times; nothing was written"
        )

    def _still_absent(
        self, tenant: str, key: str, consistency: Optional[Consistency], timeout: Optional[float]
    ) -> bool:
        """After losing the creation of an absent key: waits up to one attempt timeout for the
        winner's write to show; True when the key is absent still."""
        end = time.monotonic() + (timeout or self.timeout)
        while True:
            if self.get_or_none(tenant, key, consistency=consistency, timeout=timeout):
                return False
            if time.monotonic() >= end:
                return True
            time.sleep(0.02)

    # ------------------------------------------------------------------------------------------
    # Tenants and the cluster.

    def create_tenant(
        self, tenant_id: str, replication_factor: int = 0, *, timeout: Optional[float] = None
    ) -> Tenant:
        """Creates a tenant; ``replication_factor`` 0 means the server's default (3)."""
        request = pb.CreateTenantRequest(
            tenant_id=tenant_id, replication_factor=replication_factor
        )
        r, _ = self._invoke("CreateTenant", request, _UNSAFE, timeout)
        return Tenant(r.tenant_id, r.replication_factor, r.created_at, r.created_at)

    def update_tenant_limits(
        self,
        tenant_id: str,
        *,
        requests_per_second: int = 0,
        bytes_per_second: int = 0,
        max_key_bytes: int = 0,
        max_value_bytes: int = 0,
        timeout: Optional[float] = None,
    ) -> pb.UpdateTenantLimitsResponse:
        """Replaces a tenant's limits (admin only); 0 means the coordinators' default (see
        docs/SECURITY.md, "Per-tenant limits"). The answer has ``limits`` as stored and
        ``effective_limits`` as this coordinator enforces them. Setting the same limits twice
        is harmless, so the call is retried like a read."""
        request = pb.UpdateTenantLimitsRequest(
            tenant_id=tenant_id,
            limits=pb.TenantLimits(
                requests_per_second=requests_per_second,
                bytes_per_second=bytes_per_second,
                max_key_bytes=max_key_bytes,
                max_value_bytes=max_value_bytes,
            ),
        )
        r, _ = self._invoke("UpdateTenantLimits", request, _READ, timeout)
        return r

    def get_tenant(self, tenant_id: str, *, timeout: Optional[float] = None) -> Tenant:
        r, _ = self._invoke("GetTenant", pb.GetTenantRequest(tenant_id=tenant_id), _READ, timeout)
        return Tenant(r.tenant_id, r.replication_factor, r.created_at, r.updated_at)

    def update_replication_factor(
        self, tenant_id: str, replication_factor: int, *, timeout: Optional[float] = None
    ) -> pb.UpdateReplicationFactorResponse:
        request = pb.UpdateReplicationFactorRequest(
            tenant_id=tenant_id, new_replication_factor=replication_factor
        )
        r, _ = self._invoke("UpdateReplicationFactor", request, _UNSAFE, timeout)
        return r

    def list_storage_nodes(self, *, timeout: Optional[float] = None) -> List[StorageNode]:
        r, _ = self._invoke("ListStorageNodes", pb.ListStorageNodesRequest(), _READ, timeout)
        return [
            StorageNode(
                n.node_id,
                n.host,
                n.port,
                n.status,
                n.virtual_nodes,
                n.keys_count,
                n.disk_usage_percent,
            )
            for n in r.nodes
        ]

    def add_storage_node(
        self,
        node_id: str,
        host: str,
        port: int,
        virtual_nodes: int = 0,
        *,
        timeout: Optional[float] = None,
    ) -> pb.AddStorageNodeResponse:
        request = pb.AddStorageNodeRequest(
            node_id=node_id, host=host, port=port, virtual_nodes=virtual_nodes
        )
        r, _ = self._invoke("AddStorageNode", request, _UNSAFE, timeout)
        return r

    def remove_storage_node(
        self, node_id: str, *, force: bool = False, timeout: Optional[float] = None
    ) -> pb.RemoveStorageNodeResponse:
        request = pb.RemoveStorageNodeRequest(node_id=node_id, force=force)
        r, _ = self._invoke("RemoveStorageNode", request, _UNSAFE, timeout)
        return r

    def create_token(
        self, role: str, tenant_id: str = "", *, timeout: Optional[float] = None
    ) -> Tuple[str, Token]:
        """Creates a bearer token (admin only): ``role`` is ``admin``, ``tenant-rw`` or
        ``tenant-ro``; ``tenant_id`` names the tenant of a tenant token. Returns the token (shown
        this once: keep it) and its description. Not retried on timeouts (a retry would make a
        second token)."""
        request = pb.CreateTokenRequest(tenant_id=tenant_id, role=role)
        r, _ = self._invoke("CreateToken", request, _UNSAFE, timeout)
        return r.token, Token._from_proto(r.info)

    def list_tokens(self, tenant_id: str = "", *, timeout: Optional[float] = None) -> List[Token]:
        """The tokens (never their secrets) of one tenant, or all with an empty ``tenant_id``."""
        r, _ = self._invoke("ListTokens", pb.ListTokensRequest(tenant_id=tenant_id), _READ, timeout)
        return [Token._from_proto(t) for t in r.tokens]

    def revoke_token(self, token_id: str, *, timeout: Optional[float] = None) -> Token:
        """Revokes a token by id; every coordinator refuses it within a second or two.
        Idempotent, so retried like a read."""
        r, _ = self._invoke("RevokeToken", pb.RevokeTokenRequest(token_id=token_id), _READ, timeout)
        return Token._from_proto(r.info)

    def get_migration_status(
        self, migration_id: str, *, timeout: Optional[float] = None
    ) -> pb.GetMigrationStatusResponse:
        request = pb.GetMigrationStatusRequest(migration_id=migration_id)
        r, _ = self._invoke("GetMigrationStatus", request, _READ, timeout)
        return r

    # ------------------------------------------------------------------------------------------
    # The call loop.

    @staticmethod
    def _write_result(r: Union[pb.WriteKeyValueResponse, pb.DeleteKeyValueResponse]) -> WriteResult:
        return WriteResult(
            key=r.key,
            idempotency_key=r.idempotency_key,
            vector_clock=VectorClock.from_proto(r.vector_clock),
            replica_count=r.replica_count,
            is_duplicate=r.is_duplicate,
        )

    def _stub(self, index: int) -> pb_grpc.CoordinatorServiceStub:
        with self._lock:
            stub = self._stubs[index]
            if stub is None:
                if self._credentials is not None:
                    channel = grpc.secure_channel(
                        self._addresses[index], self._credentials, options=self._options
                    )
                else:
                    channel = grpc.insecure_channel(self._addresses[index], options=self._options)
                if self._interceptors:
                    channel = grpc.intercept_channel(channel, *self._interceptors)
                self._channels[index] = channel
                stub = pb_grpc.CoordinatorServiceStub(channel)
                self._stubs[index] = stub
            return stub

    def _fail_over(self, index: int) -> None:
        """Moves the client past `index`, unless another call already did."""
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self._addresses)

    def _sleep_backoff(self, retry: int, cap: Optional[float] = None) -> None:
        ceiling = min(cap if cap is not None else self.max_backoff, self.max_backoff)
        delay = min(ceiling, self.backoff * (2 ** min(retry - 1, 16)))
        time.sleep(random.uniform(delay / 2, delay))

    @staticmethod
    def _may_retry(err: errors.PairDBError, safety: str) -> bool:
        if err.error_code == "IDEMPOTENCY_IN_PROGRESS":
            return safety == _KEYED
        if err.code == grpc.StatusCode.UNAVAILABLE:
            return True
        if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return safety in (_READ, _KEYED)
        return False

    def _invoke(self, method: str, request: object, safety: str, timeout: Optional[float]):
        """Runs one logical call: returns (response, ambiguous), where `ambiguous` says that an
        earlier attempt failed in a way that may have left it applied. Raises the typed error of
        the last attempt."""
        per_attempt = timeout if timeout is not None else self.timeout
        end = time.monotonic() + self.deadline if self.deadline is not None else None
        tried = set()
        ambiguous = False
        last: Optional[errors.PairDBError] = None
        for attempt in range(self.retries + 1):
            with self._lock:
                index = self._current
            if attempt and index in tried:
                self._sleep_backoff(attempt)
            attempt_timeout = per_attempt
            if end is not None:
                attempt_timeout = min(attempt_timeout, end - time.monotonic())
                if attempt_timeout <= 0:
                    break
            tried.add(index)
            try:
                call = getattr(self._stub(index), method)
                return call(request, timeout=attempt_timeout, metadata=self._metadata), ambiguous
            except grpc.RpcError as rpc_error:
                err = errors.from_rpc_error(rpc_error)
            last = err
            err._ambiguous = ambiguous  # type: ignore[attr-defined]
            if not self._may_retry(err, safety):
                raise err
            if err.code == grpc.StatusCode.DEADLINE_EXCEEDED or (
                err.code == grpc.StatusCode.UNAVAILABLE and err.error_code is None
            ):
                # The request may have reached the coordinator and been applied.
                ambiguous = True
            if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self._fail_over(index)
        if last is None:
            last = errors.DeadlineExceeded(
                f"{method}: the call's deadline of {self.deadline}s passed before an attempt",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        last._ambiguous = ambiguous  # type: ignore[attr-defined]
        raise last
