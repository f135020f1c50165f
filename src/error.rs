//! [`PairError`]: every error PairDB answers a client with, one variant per `pairdb-error-code`
//! (a variant may map to two gRPC codes where the same PairDB error has two causes, as
//! `INVALID_REPLICATION_FACTOR` does: out of range is the caller's mistake, above the registered
//! nodes is the cluster's state).
//!
//! This module names errors and formats their messages; it knows nothing of gRPC. The one
//! `match` that turns a `PairError` into a gRPC status and its `pairdb-error-code` trailer is
//! `From<&PairError> for Status` in `rpc::status`. Errors from lower layers (metadata store,
//! storage engine) become `PairError`s where they are defined, so that no other place picks a
//! status code.

use std::fmt;

/// Every error a PairDB server answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// A malformed request: a field missing, out of range or unparsable.
    #[error("{0}")]
    InvalidRequest(String),
    /// The key is longer than the configured limit.
    #[error("key is {len} bytes, over the {max}-byte limit")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit (`max_key_bytes`).
        max: usize,
    },
    /// The value is longer than the configured limit.
    #[error("value is {len} bytes, over the {max}-byte limit")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit (`max_value_bytes`).
        max: usize,
    },
    /// A replication factor outside 1 to 10, or above the storage nodes registered.
    #[error("{}", rf_message(*rf, *registered))]
    InvalidReplicationFactor {
        /// The factor asked for.
        rf: i32,
        /// The storage nodes registered, when that is what the factor exceeds.
        registered: Option<usize>,
    },
    /// The tenant does not exist.
    #[error("tenant {tenant_id:?} does not exist")]
    TenantNotFound {
        /// The tenant asked for.
        tenant_id: String,
    },
    /// The key has no live version (never written, or deleted).
    #[error("key {key:?} not found in tenant {tenant_id:?}")]
    KeyNotFound {
        /// The tenant.
        tenant_id: String,
        /// The key.
        key: String,
    },
    /// The storage node is not registered.
    #[error("storage node {node_id:?} is not registered")]
    NodeNotFound {
        /// The node asked for.
        node_id: String,
    },
    /// The migration does not exist.
    #[error("migration {migration_id:?} not found")]
    MigrationNotFound {
        /// The migration asked for.
        migration_id: String,
    },
    /// A tenant with this id exists already.
    #[error("{0}")]
    TenantExists(String),
    /// A storage node with this id exists already.
    #[error("{0}")]
    NodeExists(String),
    /// The node still holds data (or cannot be shown not to) and removing it would lose copies.
    #[error("{0}")]
    NodeInUse(String),
    /// Another change of the ring or of a replication factor is running; one runs at a time.
    #[error("{0}")]
    MigrationInProgress(String),
    /// The migration has moved reads and writes to the new placement (or ended): going back
    /// would lose writes the old replicas no longer get.
    #[error("{0}")]
    MigrationNotCancellable(String),
    /// This coordinator lost contact with the cluster's migration barrier and refuses key-value
    /// traffic until it has caught up, so that it never writes to a placement the others left.
    #[error("{0}")]
    PlacementStale(String),
    /// Too few replicas answered; `tried` says which were asked and what each did.
    #[error("quorum not reached: {acks} of {required} required replicas answered ({tried})")]
    QuorumNotReached {
        /// Replicas that answered in time.
        acks: usize,
        /// Replicas that had to answer.
        required: usize,
        /// What was tried, replica by replica, for the client and the logs.
        tried: String,
    },
    /// The idempotency key was used for a different request on this key.
    #[error("idempotency key {idempotency_key:?} was used for a different request on this key")]
    IdempotencyKeyConflict {
        /// The client's idempotency key.
        idempotency_key: String,
    },
    /// An identical request with this idempotency key is still running.
    #[error("an identical request with this idempotency key is still in progress")]
    IdempotencyInProgress,
    /// The remote idempotency store is unreachable and `idempotency.on_unavailable` is `reject`.
    #[error(
        "the idempotency store (redis) is unreachable and idempotency.on_unavailable is reject; \
         retry later"
    )]
    IdempotencyUnavailable,
    /// The metadata store does not answer.
    #[error("metadata store unavailable: {0}")]
    MetadataUnavailable(String),
    /// The metadata store holds something it cannot decode.
    #[error("{0}")]
    MetadataCorrupt(String),
    /// The storage engine cannot serve (I/O error, backend failure).
    #[error("{0}")]
    StorageUnavailable(String),
    /// The storage engine holds something it cannot decode.
    #[error("{0}")]
    StorageCorrupt(String),
    /// A storage `Batch` carries more operations than allowed.
    #[error("{0}")]
    BatchTooLarge(String),
    /// A message over the configured size limit.
    #[error("{0}")]
    MessageTooLarge(String),
    /// The method is not served here.
    #[error("{0}")]
    UnknownMethod(String),
    /// The request uses a compression or encoding the server does not support.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// The health service was asked about a service it does not know.
    #[error("{0}")]
    ServiceNotFound(String),
    /// The client's deadline (`grpc-timeout`) passed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The call carries no valid credential (a storage node's cluster secret, a client token).
    #[error("{0}")]
    Unauthorized(String),
    /// The call's token is valid but does not allow this call (another tenant's keys, an admin
    /// call with a tenant token, a write with a read-only token).
    #[error("{0}")]
    Forbidden(String),
    /// The tenant is over its rate limit on this coordinator (`requests_per_second` or
    /// `bytes_per_second`); the request was not started. Retry after `retry_after_ms`.
    #[error(
        "tenant {tenant_id:?} is over its {reason} per second limit on this coordinator; \
         retry in {retry_after_ms} ms"
    )]
    RateLimited {
        /// The tenant.
        tenant_id: String,
        /// Which limit: `requests` or `bytes`.
        reason: &'static str,
        /// When the same request would be let through, milliseconds (sent in the
        /// `pairdb-retry-after-ms` trailer).
        retry_after_ms: u64,
    },
    /// A broken invariant or an unexpected reply: our bug or a corrupt record, never the
    /// caller's; logged where it is raised.
    #[error("{0}")]
    Internal(String),
}

impl PairError {
    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }
}

fn rf_message(rf: i32, registered: Option<usize>) -> String {
    match registered {
        None => format!("replication factor {rf} is not between 1 and 10"),
        Some(n) => format!(
            "replication factor {rf} is above the {n} storage node{} registered: \
             add storage nodes first",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// A one-line account of one replica's part in a request, for [`PairError::QuorumNotReached`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaReport {
    /// It answered in time.
    Answered,
    /// It answered after the deadline.
    Late,
    /// It failed, for this reason.
    Failed(String),
    /// It had not answered by the deadline.
    TimedOut,
    /// It was still pending when the request was decided.
    Pending,
}

impl fmt::Display for ReplicaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaReport::Answered => f.write_str("ok"),
            ReplicaReport::Late => f.write_str("answered late"),
            ReplicaReport::Failed(reason) => write!(f, "failed: {reason}"),
            ReplicaReport::TimedOut => f.write_str("timed out"),
            ReplicaReport::Pending => f.write_str("pending"),
        }
    }
}
