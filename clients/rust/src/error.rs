//! [`Error`]: one variant per `pairdb-error-code`, plus transport, deadline and other failures.

use std::{error::Error as StdError, fmt};

/// The trailer in which a PairDB server names its error.
pub const ERROR_CODE_TRAILER: &str = "pairdb-error-code";

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! pair_errors {
    ($($(#[doc = $doc:literal])* $variant:ident => $code:literal,)*) => {
        /// Everything a call can fail with.
        ///
        /// A server's error becomes the variant named by its `pairdb-error-code` trailer (read
        /// from the tonic [`Status`](tonic::Status) metadata), carrying the server's message. A
        /// status without a known trailer (an older or newer server, a proxy) becomes
        /// [`Error::Other`]; a failure to reach a coordinator at all becomes
        /// [`Error::Transport`].
        ///
        /// [`Error::is_retryable`] says whether repeating the call is safe whatever the call is;
        /// the client's own retry rule is in the crate documentation.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Error {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("`pairdb-error-code: ", $code, "`.")]
                $variant {
                    /// The server's message.
                    message: String,
                },
            )*
            /// The call's deadline passed: the server answered `DEADLINE_EXCEEDED`, or no answer
            /// came in time (then `message` says so and names the address).
            ///
            /// `pairdb-error-code: DEADLINE_EXCEEDED`.
            DeadlineExceeded {
                /// The server's message, or the client's account of the timeout.
                message: String,
            },
            /// No coordinator could be reached, or the connection broke during the call
            /// (connection refused, reset, HTTP/2 handshake failure).
            Transport {
                /// What failed, with the address.
                message: String,
            },
            /// A gRPC status that carries no `pairdb-error-code` this client knows.
            Other {
                /// The gRPC status code.
                code: tonic::Code,
                /// The status message.
                message: String,
                /// The `pairdb-error-code` trailer, when there was one this client does not know.
                error_code: Option<String>,
            },
            /// The client was configured wrongly (no address, an unparsable address).
            Config {
                /// What is wrong.
                message: String,
            },
        }

        impl Error {
            /// The PairDB error name (`TENANT_NOT_FOUND`, ...), for the variants that have one;
            /// [`Error::Other`] gives the trailer it carried, if any.
            pub fn error_code(&self) -> Option<&str> {
                match self {
                    $(Error::$variant { .. } => Some($code),)*
                    Error::DeadlineExceeded { .. } => Some("DEADLINE_EXCEEDED"),
                    Error::Other { error_code, .. } => error_code.as_deref(),
                    Error::Transport { .. } | Error::Config { .. } => None,
                }
            }

            /// The message: the server's, or the client's account of the failure.
            pub fn message(&self) -> &str {
                match self {
                    $(Error::$variant { message })|* => message,
                    Error::DeadlineExceeded { message }
                    | Error::Transport { message }
                    | Error::Other { message, .. }
                    | Error::Config { message } => message,
                }
            }

            /// The variant for a PairDB error name, or `None` for a name this client does not
            /// know.
            fn from_code(code: &str, message: String) -> Option<Error> {
                Some(match code {
                    $($code => Error::$variant { message },)*
                    "DEADLINE_EXCEEDED" => Error::DeadlineExceeded { message },
                    _ => return None,
                })
            }
        }
    };
}

pair_errors! {
    /// A malformed request: a field missing, out of range or unparsable.
    InvalidRequest => "INVALID_REQUEST",
    /// The key is longer than the server's limit.
    KeyTooLarge => "KEY_TOO_LARGE",
    /// The value is longer than the server's limit.
    ValueTooLarge => "VALUE_TOO_LARGE",
    /// A replication factor outside 1 to 10, or above the storage nodes registered.
    InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
    /// The tenant does not exist.
    TenantNotFound => "TENANT_NOT_FOUND",
    /// The key has no live version (never written, or deleted).
    KeyNotFound => "KEY_NOT_FOUND",
    /// The storage node is not registered.
    NodeNotFound => "NODE_NOT_FOUND",
    /// The migration does not exist.
    MigrationNotFound => "MIGRATION_NOT_FOUND",
    /// A tenant with this id exists already.
    TenantExists => "TENANT_EXISTS",
    /// A storage node with this id exists already.
    NodeExists => "NODE_EXISTS",
    /// The node still holds data, and removing it would lose copies.
    NodeInUse => "NODE_IN_USE",
    /// Another ring or replication-factor change is running; one runs at a time.
    MigrationInProgress => "MIGRATION_IN_PROGRESS",
    /// The migration moved reads and writes to the new placement already, or has ended.
    MigrationNotCancellable => "MIGRATION_NOT_CANCELLABLE",
    /// The coordinator lost its metadata store during a migration (gRPC `UNAVAILABLE`):
    /// retry on another coordinator or later.
    PlacementStale => "PLACEMENT_STALE",
    /// Too few replicas answered (gRPC `UNAVAILABLE`); the message says what each did. A
    /// write that fails so may still have reached some replicas.
    QuorumNotReached => "QUORUM_NOT_REACHED",
    /// The idempotency key was used for a different request on this key.
    IdempotencyKeyConflict => "IDEMPOTENCY_KEY_CONFLICT",
    /// An identical request with this idempotency key is still running (gRPC `ABORTED`).
    IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
    /// The server's idempotency store is unreachable and it is configured to reject writes.
    IdempotencyUnavailable => "IDEMPOTENCY_UNAVAILABLE",
    /// The server's metadata store does not answer.
    MetadataUnavailable => "METADATA_UNAVAILABLE",
    /// The server's metadata store holds something it cannot decode.
    MetadataCorrupt => "METADATA_CORRUPT",
    /// A storage engine cannot serve.
    StorageUnavailable => "STORAGE_UNAVAILABLE",
    /// A storage engine holds something it cannot decode.
    StorageCorrupt => "STORAGE_CORRUPT",
    /// A storage batch carries more operations than allowed.
    BatchTooLarge => "BATCH_TOO_LARGE",
    /// A message over the server's size limit.
    MessageTooLarge => "MESSAGE_TOO_LARGE",
    /// The method is not served there.
    UnknownMethod => "UNKNOWN_METHOD",
    /// The request uses a compression or encoding the server does not support.
    UnsupportedEncoding => "UNSUPPORTED_ENCODING",
    /// The health service was asked about a service it does not know.
    ServiceNotFound => "SERVICE_NOT_FOUND",
    /// A broken invariant on the server.
    Internal => "INTERNAL",
    /// No valid token (none, malformed, unknown or revoked; gRPC `UNAUTHENTICATED`), or a
    /// storage node refusing a caller without the cluster secret.
    Unauthorized => "UNAUTHORIZED",
    /// A valid token outside its rights (gRPC `PERMISSION_DENIED`).
    Forbidden => "FORBIDDEN",
    /// The tenant is over its requests or bytes per second on this coordinator (gRPC
    /// `RESOURCE_EXHAUSTED`); the request was not started. The server's retry hint is in the
    /// message and in the `pairdb-retry-after-ms` trailer.
    RateLimited => "RATE_LIMITED",
}

impl Error {
    /// True when repeating the call is safe whatever the call is, and may succeed: the
    /// coordinator or the replicas were unavailable (gRPC `UNAVAILABLE`, transport failures), or
    /// an identical request is still in progress.
    ///
    /// [`Error::DeadlineExceeded`] is not in this set: a timed-out write may have been applied,
    /// so repeating it is safe only when it carries an idempotency key (the client does retry
    /// it then, and always for reads; see [`Error::is_timeout`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::QuorumNotReached { .. }
            | Error::IdempotencyInProgress { .. }
            | Error::IdempotencyUnavailable { .. }
            | Error::MetadataUnavailable { .. }
            | Error::StorageUnavailable { .. }
            | Error::PlacementStale { .. }
            | Error::Transport { .. } => true,
            Error::Other { code, .. } => *code == tonic::Code::Unavailable,
            _ => false,
        }
    }

    /// True for [`Error::DeadlineExceeded`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::DeadlineExceeded { .. })
    }

    /// True when the coordinator itself was unreachable or unavailable (transport failure or
    /// gRPC `UNAVAILABLE`): the client then moves to its next address.
    pub(crate) fn moves_to_next_address(&self) -> bool {
        self.is_retryable() && !matches!(self, Error::IdempotencyInProgress { .. })
    }

    /// The client's error for a tonic status, `addr` being the coordinator that answered.
    pub(crate) fn from_status(status: &tonic::Status, addr: &str) -> Error {
        let message = status.message().to_owned();
        let trailer = status
            .metadata()
            .get(ERROR_CODE_TRAILER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(code) = &trailer {
            if let Some(e) = Error::from_code(code, message.clone()) {
                return e;
            }
        }
        if trailer.is_none() && is_client_timeout(status) {
            return Error::DeadlineExceeded {
                message: format!("no answer from {addr} before the deadline"),
            };
        }
        if trailer.is_none() && is_transport(status) {
            return Error::Transport { message: transport_message(status, addr) };
        }
        if trailer.is_none() && status.code() == tonic::Code::DeadlineExceeded {
            return Error::DeadlineExceeded { message };
        }
        Error::Other { code: status.code(), message, error_code: trailer }
    }
}

/// True when tonic gave up waiting itself: the `grpc-timeout` the request carried passed.
pub(crate) fn is_client_timeout(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// True when tonic made this status itself from a connection failure (no server answered).
fn is_transport(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn transport_message(status: &tonic::Status, addr: &str) -> String {
    let mut message = format!("{addr}: {}", status.message());
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport { message } => write!(f, "transport error: {message}"),
            Error::Config { message } => write!(f, "client configuration: {message}"),
            Error::Other { code, message, error_code: Some(pc) } => {
                write!(f, "{code:?} [{pc}]: {message}")
            }
            Error::Other { code, message, error_code: None } => write!(f, "{code:?}: {message}"),
            other => {
                write!(f, "{}: {}", other.error_code().unwrap_or("ERROR"), other.message())
            }
        }
    }
}

impl StdError for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, trailer: Option<&'static str>) -> tonic::Status {
        let mut s = tonic::Status::new(code, "msg");
        if let Some(t) = trailer {
            s.metadata_mut().insert(ERROR_CODE_TRAILER, t.parse().unwrap());
        }
        s
    }

    #[test]
    fn trailer_picks_the_variant() {
        let e = Error::from_status(&status(tonic::Code::NotFound, Some("TENANT_NOT_FOUND")), "a:1");
        assert_eq!(e, Error::TenantNotFound { message: "msg".into() });
        assert_eq!(e.error_code(), Some("TENANT_NOT_FOUND"));
        assert!(!e.is_retryable());
        let e = Error::from_status(
            &status(tonic::Code::Unavailable, Some("QUORUM_NOT_REACHED")),
            "a:1",
        );
        assert!(matches!(e, Error::QuorumNotReached { .. }));
        assert!(e.is_retryable() && e.moves_to_next_address());
        let e = Error::from_status(
            &status(tonic::Code::Aborted, Some("IDEMPOTENCY_IN_PROGRESS")),
            "a:1",
        );
        assert!(e.is_retryable() && !e.moves_to_next_address());
    }

    #[test]
    fn unknown_trailer_and_no_trailer_are_other() {
        let e = Error::from_status(&status(tonic::Code::Unavailable, Some("NEW_THING")), "a:1");
        assert_eq!(
            e,
            Error::Other {
                code: tonic::Code::Unavailable,
                message: "msg".into(),
                error_code: Some("NEW_THING".into())
            }
        );
        assert!(e.is_retryable());
        let e = Error::from_status(&status(tonic::Code::PermissionDenied, None), "a:1");
        assert!(matches!(e, Error::Other { error_code: None, .. }) && !e.is_retryable());
        let e = Error::from_status(&status(tonic::Code::DeadlineExceeded, None), "a:1");
        assert!(e.is_timeout() && !e.is_retryable());
    }
}
