"""PairDB's Python client over gRPC. See README.md."""

from .client import (
    Client,
    Consistency,
    StorageNode,
    Tenant,
    Token,
    Value,
    VectorClock,
    WriteResult,
)
from .errors import *  # noqa: F401,F403  (PairDBError and one class per pairdb-error-code)
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Consistency",
    "StorageNode",
    "Tenant",
    "Token",
    "Value",
    "VectorClock",
    "WriteResult",
    *_errors_all,
]
