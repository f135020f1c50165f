//! Per-call options ([`ReadOptions`], [`WriteOptions`]), the results of key-value calls
//! ([`Versioned`], [`Written`]) and [`new_idempotency_key`].

use std::time::Duration;

use crate::{Consistency, VectorClock};

/// Options of one read. `ReadOptions::default()` reads at QUORUM within the client's deadline.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub(super) consistency: Option<Consistency>,
    pub(super) timeout: Option<Duration>,
}

impl ReadOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many replicas must answer (default: QUORUM).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Options of one write or delete. `WriteOptions::default()` writes at QUORUM, blind (no causal
/// context), with a generated idempotency key, within the client's deadline.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub(super) consistency: Option<Consistency>,
    pub(super) timeout: Option<Duration>,
    pub(super) idempotency_key: Option<String>,
    pub(super) context: Option<VectorClock>,
}

impl WriteOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many replicas must acknowledge (default: QUORUM).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Uses this idempotency key instead of a generated one: to make a retry of your own (after
    /// the client gave up, or from another process) apply once. Sending the same key with a
    /// different request (value, consistency, context) on the same key fails with
    /// [`Error::IdempotencyKeyConflict`].
    ///
    /// [`Error::IdempotencyKeyConflict`]: crate::Error::IdempotencyKeyConflict
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The causal context: the clock of the version this write replaces (from
    /// [`Versioned::clock`]). The write then supersedes that version instead of being ordered
    /// against it by timestamp.
    pub fn context(mut self, clock: VectorClock) -> Self {
        self.context = Some(clock);
        self
    }
}

/// A value read, with its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The version's vector clock: pass it as [`WriteOptions::context`] to supersede it.
    pub clock: VectorClock,
    /// Replicas whose replies were considered.
    pub replica_count: u32,
}

/// The outcome of a write or a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The key.
    pub key: String,
    /// The idempotency key the write was sent with (generated unless given).
    pub idempotency_key: String,
    /// The clock of the new version.
    pub clock: VectorClock,
    /// Replicas that acknowledged before the answer.
    pub replica_count: u32,
    /// True when the server answered with the stored response of an earlier request with the
    /// same idempotency key: this request applied nothing.
    pub is_duplicate: bool,
}

/// A fresh idempotency key: 128 random bits in lower-case hex.
pub fn new_idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_128_bit_hex_and_fresh() {
        let a = new_idempotency_key();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_idempotency_key());
    }
}
