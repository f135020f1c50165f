//! An async client for PairDB, a Dynamo-style multi-tenant key-value store, on tokio and
//! tonic.
//!
//! ```no_run
//! use std::time::Duration;
//! use pairdb_client::{Client, Error, WriteOptions, Consistency};
//!
//! # async fn run() -> Result<(), Error> {
//! // Several coordinators: a call that finds one down moves to the next.
//! let client = Client::builder()
//!     .addresses(["127.0.0.1:50051", "127.0.0.1:50052"])
//!     .tenant("default")
//!     .timeout(Duration::from_secs(2))
//!     .build()?;
//!
//! client.put("greeting", "hello").await?;
//! let v = client.get("greeting").await?;
//! assert_eq!(v.value, b"hello");
//!
//! // Per-call options: consistency, deadline, your own idempotency key, causal context.
//! let w = client
//!     .put_with("greeting", "hi", WriteOptions::new().consistency(Consistency::All).context(v.clock))
//!     .await?;
//! println!("written to {} replicas", w.replica_count);
//!
//! // Read-modify-write: the write carries the clock it read, so it supersedes that version.
//! client
//!     .update("visits", |current| {
//!         let n: u64 = current.map_or(0, |b| String::from_utf8_lossy(b).parse().unwrap_or(0));
//!         Some((n + 1).to_string().into_bytes())
//!     })
//!     .await?;
//!
//! match client.get("missing").await {
//!     Err(Error::KeyNotFound { .. }) => println!("absent"),
//!     other => println!("{other:?}"),
//! }
//! client.delete("greeting").await?;
//!
//! // Tenants and nodes.
//! client.create_tenant("orders", 3).await?;
//! let orders = client.with_tenant("orders");
//! orders.put("o-1", vec![1, 2, 3]).await?;
//! for node in client.list_storage_nodes().await? {
//!     println!("{} {}:{} {}", node.node_id, node.host, node.port, node.status);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Addresses and failover
//!
//! A [`Client`] holds one lazily connected HTTP/2 channel per coordinator address. A call starts
//! at the address that last answered; when an attempt fails with a transport error (refused,
//! reset, unreachable), with gRPC `UNAVAILABLE` (including [`Error::QuorumNotReached`]), or gets
//! no answer within its attempt deadline, the next attempt goes to the next address, at once if
//! this call has not tried that address yet, after a backoff otherwise.
//!
//! # Deadlines
//!
//! [`ClientBuilder::timeout`] (default 5 s) bounds a whole logical call: every attempt and every
//! backoff. Override it per call with [`ReadOptions::timeout`] / [`WriteOptions::timeout`], or
//! for a clone with [`Client::with_timeout`]. [`ClientBuilder::attempt_timeout`] bounds each
//! attempt within it. Each attempt sends its remaining time as `grpc-timeout`, so the server stops
//! when the client stops waiting.
//!
//! # Retries and idempotency
//!
//! A call makes at most [`ClientBuilder::max_attempts`] attempts (default 4), with exponential
//! backoff (50 ms doubling to 1 s, jittered). It retries only what is safe:
//!
//! - gRPC `UNAVAILABLE` and transport errors ([`Error::is_retryable`]), and
//!   [`Error::IdempotencyInProgress`] (an identical request is still running: its retry gets its
//!   answer);
//! - [`Error::DeadlineExceeded`] only when the call cannot apply twice: reads and the other
//!   read-only calls, and writes and deletes, which always carry an idempotency key. Admin changes
//!   (create tenant, replication factor, nodes) are not retried after a timeout.
//!
//! Every write and delete gets an idempotency key, 128 random bits in hex, generated once per
//! logical call and sent on each of its retries, so a write whose answer was lost applies once and
//! its retry answers with the first answer ([`Written::is_duplicate`] set). Pass your own with
//! [`WriteOptions::idempotency_key`] to extend that beyond one call (a retry after a crash). The
//! server recognises a retry on the coordinator that holds the record: across coordinators
//! only when they share an idempotency store (`idempotency.backend: redis`); with the default
//! in-process store, a retry that fails over to another coordinator is applied again (for a
//! put, the same value once more).
//!
//! # Errors
//!
//! [`Error`] has one variant per `pairdb-error-code` the server sends (read from the status'
//! trailer), plus [`Error::Transport`], [`Error::Other`] (a status without a known code) and
//! [`Error::Config`].
//!
//! # Read-modify-write
//!
//! [`Client::update`] reads a key with its vector clock, calls your closure and writes its result
//! with that clock as causal context; [`Client::update_with`] documents exactly what that
//! guarantees (no lost updates among the clones of one client at QUORUM) and what it does not
//! (PairDB has no compare-and-set: concurrent updates from other clients can still lose one).

#![warn(missing_docs)]

mod client;
mod error;

/// The generated protobuf messages and tonic client of `pairdb.coordinator.v1`, for what this
/// crate does not wrap.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("pairdb.coordinator.v1");
}

pub use client::{
    new_idempotency_key, Client, ClientBuilder, ReadOptions, Versioned, WriteOptions, Written,
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TIMEOUT,
};
pub use error::{Error, Result, ERROR_CODE_TRAILER};
pub use proto::{VectorClock, VectorClockEntry};

/// How many replicas must answer before the coordinator does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// One replica.
    One,
    /// A majority of the tenant's replicas (the default).
    #[default]
    Quorum,
    /// Every replica.
    All,
}

impl Consistency {
    fn to_proto(self) -> i32 {
        match self {
            Consistency::One => proto::Consistency::One as i32,
            Consistency::Quorum => proto::Consistency::Quorum as i32,
            Consistency::All => proto::Consistency::All as i32,
        }
    }
}
