"""Typed exceptions: one class per PairDB error code.

Every error the coordinator sends is a gRPC status with a ``pairdb-error-code`` trailer (see
``src/rpc/status.rs`` in the server). :func:`from_rpc_error` reads that trailer from the call's
trailing metadata and raises the matching subclass of :class:`PairDBError`. A status without the
trailer (a transport failure, a client-side deadline, a proxy's answer) becomes
:class:`Unavailable`, :class:`DeadlineExceeded` or plain :class:`PairDBError` by its gRPC code.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "PairDBError",
    "Unavailable",
    "DeadlineExceeded",
    "InvalidRequest",
    "KeyTooLarge",
    "ValueTooLarge",
    "InvalidReplicationFactor",
    "TenantNotFound",
    "KeyNotFound",
    "NodeNotFound",
    "MigrationNotFound",
    "TenantExists",
    "NodeExists",
    "NodeInUse",
    "MigrationInProgress",
    "MigrationNotCancellable",
    "PlacementStale",
    "QuorumNotReached",
    "IdempotencyKeyConflict",
    "IdempotencyInProgress",
    "IdempotencyUnavailable",
    "MetadataUnavailable",
    "MetadataCorrupt",
    "StorageUnavailable",
    "StorageCorrupt",
    "BatchTooLarge",
    "MessageTooLarge",
    "UnknownMethod",
    "UnsupportedEncoding",
    "ServiceNotFound",
    "ServerDeadlineExceeded",
    "Internal",
    "Unauthorized",
    "Forbidden",
    "RateLimited",
    "UpdateConflict",
    "UpdateOutcomeUnknown",
    "BY_ERROR_CODE",
    "ERROR_CODE_TRAILER",
    "from_rpc_error",
]

#: The trailer that names the PairDB error next to the gRPC status.
ERROR_CODE_TRAILER = "pairdb-error-code"

#: The trailer that carries a retry hint, in milliseconds, next to ``RATE_LIMITED``.
RETRY_AFTER_TRAILER = "pairdb-retry-after-ms"


class PairDBError(Exception):
    """Base of every error this client raises.

    Attributes:
        code: the gRPC status code (a :class:`grpc.StatusCode`), or ``None`` for errors that
            this client raises itself without a call failing (see :class:`UpdateConflict`).
        error_code: the ``pairdb-error-code`` trailer (``"KEY_NOT_FOUND"``, ...), or ``None``
            when the status carried none (transport failures, client-side deadlines).
        message: the status message (``grpc-message``).
        retryable: whether this kind of failure can be retried safely *in some call*: every
            ``UNAVAILABLE`` status (the coordinator, or a quorum, could not be reached),
            ``IDEMPOTENCY_IN_PROGRESS`` (the same request is still running), and
            ``DEADLINE_EXCEEDED`` (only for reads and for writes/deletes that carry an
            idempotency key, which this client always sends). The client has already retried
            what it could before raising, so this tells a caller whether trying again later
            makes sense, not that it should loop.
    """

    #: The ``pairdb-error-code`` this class stands for (``None`` for the generic classes).
    ERROR_CODE: Optional[str] = None

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        error_code: Optional[str] = None,
        retryable: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error_code = error_code if error_code is not None else self.ERROR_CODE
        self.message = message
        self.retryable = _retryable(code, self.error_code) if retryable is None else retryable

    def __str__(self) -> str:
        code = self.code.name if self.code is not None else "CLIENT"
        tag = f" [{self.error_code}]" if self.error_code else ""
        return f"{code}{tag}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, error_code={self.error_code!r}, "
            f"message={self.message!r}, retryable={self.retryable!r})"
        )


def _retryable(code: Optional[grpc.StatusCode], error_code: Optional[str]) -> bool:
    if error_code == "IDEMPOTENCY_IN_PROGRESS":
        return True
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# Generic classes, for statuses without a pairdb-error-code trailer.


class Unavailable(PairDBError):
    """``UNAVAILABLE``: no coordinator answered (connection refused, reset, ...), or a
    coordinator could not reach what it needed. The PairDB-coded unavailability errors
    (:class:`QuorumNotReached`, :class:`StorageUnavailable`, ...) are subclasses."""


class DeadlineExceeded(PairDBError):
    """``DEADLINE_EXCEEDED``: the call's deadline passed, on the client or on the coordinator
    (then ``error_code`` is ``"DEADLINE_EXCEEDED"``). A write or delete may or may not have been
    applied; its idempotency key makes a retry safe."""

    ERROR_CODE = None


# One class per pairdb-error-code (src/rpc/status.rs, `From<&PairError> for Status`).


class InvalidRequest(PairDBError):
    ERROR_CODE = "INVALID_REQUEST"


class KeyTooLarge(InvalidRequest):
    ERROR_CODE = "KEY_TOO_LARGE"


class ValueTooLarge(InvalidRequest):
    ERROR_CODE = "VALUE_TOO_LARGE"


class InvalidReplicationFactor(PairDBError):
    ERROR_CODE = "INVALID_REPLICATION_FACTOR"


class TenantNotFound(PairDBError):
    ERROR_CODE = "TENANT_NOT_FOUND"


class KeyNotFound(PairDBError):
    """The key is absent or deleted."""

    ERROR_CODE = "KEY_NOT_FOUND"


class NodeNotFound(PairDBError):
    ERROR_CODE = "NODE_NOT_FOUND"


class MigrationNotFound(PairDBError):
    ERROR_CODE = "MIGRATION_NOT_FOUND"


class TenantExists(PairDBError):
    ERROR_CODE = "TENANT_EXISTS"


class NodeExists(PairDBError):
    ERROR_CODE = "NODE_EXISTS"


class NodeInUse(PairDBError):
    ERROR_CODE = "NODE_IN_USE"


class MigrationInProgress(PairDBError):
    """Another ring or replication-factor change is running; one runs at a time."""

    ERROR_CODE = "MIGRATION_IN_PROGRESS"


class MigrationNotCancellable(PairDBError):
    """The migration already moved reads and writes to the new placement, or has ended."""

    ERROR_CODE = "MIGRATION_NOT_CANCELLABLE"


class PlacementStale(Unavailable):
    """The coordinator lost the metadata store during a migration; retry elsewhere or later."""

    ERROR_CODE = "PLACEMENT_STALE"


class QuorumNotReached(Unavailable):
    """Fewer replicas than the consistency level needs acknowledged in time."""

    ERROR_CODE = "QUORUM_NOT_REACHED"


class IdempotencyKeyConflict(PairDBError):
    """The idempotency key was already used by a different request (another value, context,
    consistency level or operation) on the same key."""

    ERROR_CODE = "IDEMPOTENCY_KEY_CONFLICT"


class IdempotencyInProgress(PairDBError):
    """An earlier request with the same idempotency key is still running."""

    ERROR_CODE = "IDEMPOTENCY_IN_PROGRESS"


class IdempotencyUnavailable(Unavailable):
    ERROR_CODE = "IDEMPOTENCY_UNAVAILABLE"


class MetadataUnavailable(Unavailable):
    ERROR_CODE = "METADATA_UNAVAILABLE"


class MetadataCorrupt(PairDBError):
    ERROR_CODE = "METADATA_CORRUPT"


class StorageUnavailable(Unavailable):
    ERROR_CODE = "STORAGE_UNAVAILABLE"


class StorageCorrupt(PairDBError):
    ERROR_CODE = "STORAGE_CORRUPT"


class BatchTooLarge(InvalidRequest):
    ERROR_CODE = "BATCH_TOO_LARGE"


class MessageTooLarge(PairDBError):
    ERROR_CODE = "MESSAGE_TOO_LARGE"


class UnknownMethod(PairDBError):
    ERROR_CODE = "UNKNOWN_METHOD"


class UnsupportedEncoding(PairDBError):
    ERROR_CODE = "UNSUPPORTED_ENCODING"


class ServiceNotFound(PairDBError):
    ERROR_CODE = "SERVICE_NOT_FOUND"


class ServerDeadlineExceeded(DeadlineExceeded):
    """The coordinator's own deadline passed (``DEADLINE_EXCEEDED`` with the trailer)."""

    ERROR_CODE = "DEADLINE_EXCEEDED"


class Internal(PairDBError):
    ERROR_CODE = "INTERNAL"


class Unauthorized(PairDBError):
    """No valid token: none sent, malformed, unknown or revoked (``UNAUTHENTICATED``); also a
    storage node's refusal of a caller without the cluster secret."""

    ERROR_CODE = "UNAUTHORIZED"


class Forbidden(PairDBError):
    """A valid token outside its rights: another tenant's keys, a write with a read-only token,
    an admin call with a tenant token (``PERMISSION_DENIED``)."""

    ERROR_CODE = "FORBIDDEN"


class RateLimited(PairDBError):
    """The tenant is over its requests or bytes per second on this coordinator
    (``RESOURCE_EXHAUSTED``); the request was not started. ``retry_after_ms`` is the
    coordinator's hint (the ``pairdb-retry-after-ms`` trailer), ``None`` if it sent none."""

    ERROR_CODE = "RATE_LIMITED"
    retry_after_ms: Optional[int] = None


# Raised by the client itself.


class UpdateConflict(PairDBError):
    """:meth:`pairdb_client.Client.update` lost the race for the key more times than its
    ``max_rounds`` allow; nothing of this call was written."""

    ERROR_CODE = None


class UpdateOutcomeUnknown(PairDBError):
    """:meth:`pairdb_client.Client.update` cannot tell whether its write or an identical
    concurrent one was applied: an attempt of its write failed ambiguously (deadline, lost
    connection) and its retry found a stored answer for the same request. The key holds
    ``fn(old)`` of one updater; whether this call's update is counted is unknown."""

    ERROR_CODE = None


#: Every class by the ``pairdb-error-code`` it stands for.
BY_ERROR_CODE: Dict[str, Type[PairDBError]] = {
    cls.ERROR_CODE: cls
    for cls in [
        InvalidRequest,
        KeyTooLarge,
        ValueTooLarge,
        InvalidReplicationFactor,
        TenantNotFound,
        KeyNotFound,
        NodeNotFound,
        MigrationNotFound,
        TenantExists,
        NodeExists,
        NodeInUse,
        MigrationInProgress,
        MigrationNotCancellable,
        PlacementStale,
        QuorumNotReached,
        IdempotencyKeyConflict,
        IdempotencyInProgress,
        IdempotencyUnavailable,
        MetadataUnavailable,
        MetadataCorrupt,
        StorageUnavailable,
        StorageCorrupt,
        BatchTooLarge,
        MessageTooLarge,
        UnknownMethod,
        UnsupportedEncoding,
        ServiceNotFound,
        ServerDeadlineExceeded,
        Internal,
        Unauthorized,
        Forbidden,
        RateLimited,
    ]
    if cls.ERROR_CODE is not None
}


def _trailer(err: grpc.RpcError, trailer: str = ERROR_CODE_TRAILER) -> Optional[str]:
    try:
        metadata = err.trailing_metadata()  # type: ignore[attr-defined]
    except Exception:  # an RpcError that is not a Call (raised before the call started)
        return None
    for name, value in metadata or ():
        if name == trailer:
            return value.decode() if isinstance(value, bytes) else value
    return None


def from_rpc_error(err: grpc.RpcError) -> PairDBError:
    """The typed exception for a failed gRPC call."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    message = message or ""
    error_code = _trailer(err)
    cls: Type[PairDBError]
    if error_code is not None and error_code in BY_ERROR_CODE:
        cls = BY_ERROR_CODE[error_code]
    elif code == grpc.StatusCode.UNAVAILABLE:
        cls = Unavailable
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        cls = DeadlineExceeded
    else:
        cls = PairDBError
    exc = cls(message, code=code, error_code=error_code)
    if isinstance(exc, RateLimited):
        hint = _trailer(err, RETRY_AFTER_TRAILER)
        exc.retry_after_ms = int(hint) if hint is not None and hint.isdigit() else None
    return exc
