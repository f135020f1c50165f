//! Idempotency records: what makes a retried write or delete apply once and answer the same.
//!
//! A request that carries an idempotency key first claims the record of `(tenant_id, key,
//! idempotency key)` ([`IdempotencyKey`]) with the request's fingerprint
//! ([`crate::core::idempotency::fingerprint`]); the [`Claim`] says what the caller does next.
//! The rules (the state diagram, the expiry of claims and responses, what a completion or a
//! release may replace) are pure functions in [`crate::core::idempotency`]; this module keeps
//! the records:
//!
//! - [`embedded`]: a lock-free table in this process's memory, shared by its cores (default).
//! - [`redis`]: Redis, shared by several coordinators (`idempotency.backend: redis`).
//!
//! [`IdempotencyBackend`] is what the coordinator holds: either store behind one async `claim`.
//! `tests/idempotency_contract.rs` is the one contract suite both pass.
//!
//! This is a request-path table, not metadata: it is never used from the blocking pool that
//! [`crate::meta`]'s stores run on, and nothing here depends on `meta`.

use std::time::{Duration, Instant};

use bytes::Bytes;

pub mod embedded;
pub mod redis;

pub use crate::core::idempotency::Claim;
pub use embedded::{Completion, EmbeddedIdempotencyStore};

use redis::RedisIdempotencyStore;

/// How long a completed request's response is kept: 24 hours, so that a client retrying through
/// a day-long outage of its own still gets the original answer, not a second write.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a claim may stay in progress before a new claim may take it over: 30 seconds. A
/// claim is released or completed within one request's deadline (seconds); one still pending
/// after 30 s belongs to a request whose core died or hung, and must not block its retries
/// forever.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(30);

/// Most records kept by the embedded table: 1,000,000. A record costs about 300 bytes with
/// typical ids (a 36-byte idempotency key, short tenant and key) and a ~100-byte encoded
/// response: 16 (key pointer) + 64 (record) + ~32 (map slot and entry header) inline, plus the
/// key's and the response's heap allocations. The default therefore bounds the table near 300 MB.
///
/// Every claimed triple stays for `ttl`, so the table holds about `rate × ttl` records: the
/// default covers ~11 idempotent writes per second at the 24 h ttl. Size `max_records` (or the
/// ttl) for the expected rate. Past the limit, [`Claim::Unavailable`] lets the write go ahead
/// without protection rather than fail it; the coordinator counts those.
pub const DEFAULT_MAX_RECORDS: usize = 1_000_000;

/// Settings of an [`EmbeddedIdempotencyStore`]; see each default's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// How long a completed response is kept ([`DEFAULT_TTL`]).
    pub ttl: Duration,
    /// Age after which a pending claim may be taken over ([`DEFAULT_PENDING_TIMEOUT`]).
    pub pending_timeout: Duration,
    /// Most records kept ([`DEFAULT_MAX_RECORDS`]).
    pub max_records: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            pending_timeout: DEFAULT_PENDING_TIMEOUT,
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

/// The identity of one idempotent request: `(tenant_id, key, idempotency key)`.
///
/// Packed into one allocation (`len(tenant_id) u32, tenant_id, len(key) u32, key, idempotency
/// key`) so that a record's key costs 16 bytes inline and the length prefixes keep
/// `("a", "bc", …)` and `("ab", "c", …)` apart.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Box<[u8]>);

impl IdempotencyKey {
    /// The key of a request on `tenant_id`'s `key` carrying `idempotency_key`.
    pub fn new(tenant_id: &str, key: &str, idempotency_key: &str) -> Self {
        let mut packed =
            Vec::with_capacity(8 + tenant_id.len() + key.len() + idempotency_key.len());
        for part in [tenant_id, key] {
            // A tenant id or key above 4 GiB cannot arrive: messages are capped far below that.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            packed.extend_from_slice(&len.to_le_bytes());
            packed.extend_from_slice(part.as_bytes());
        }
        packed.extend_from_slice(idempotency_key.as_bytes());
        Self(packed.into_boxed_slice())
    }

    /// The three parts, as given to [`IdempotencyKey::new`].
    pub fn parts(&self) -> (&str, &str, &str) {
        let (tenant_id, rest) = split_part(&self.0);
        let (key, rest) = split_part(rest);
        (tenant_id, key, as_str(rest))
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (tenant_id, key, idempotency_key) = self.parts();
        f.debug_struct("IdempotencyKey")
            .field("tenant_id", &tenant_id)
            .field("key", &key)
            .field("idempotency_key", &idempotency_key)
            .finish()
    }
}

fn split_part(bytes: &[u8]) -> (&str, &[u8]) {
    // Invariant: `bytes` was written by `IdempotencyKey::new`, so the prefix and the part are
    // there; `get` keeps a broken invariant from becoming an out-of-bounds panic.
    let len = bytes.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let rest = bytes.get(4..).unwrap_or_default();
    let (part, rest) = rest.split_at(len.min(rest.len()));
    (as_str(part), rest)
}

fn as_str(bytes: &[u8]) -> &str {
    // Invariant: every part was a `&str` and is split at the boundaries it was joined at.
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The idempotency store a coordinator uses, as configured (`idempotency.backend`): this
/// process's table, or Redis shared with other coordinators. An enum rather than a trait object:
/// two variants, one of them async, and the request path pays no dynamic dispatch.
#[derive(Debug)]
pub enum IdempotencyBackend {
    /// [`EmbeddedIdempotencyStore`]: lock-free, in this process.
    Embedded(EmbeddedIdempotencyStore),
    /// [`RedisIdempotencyStore`]: shared.
    Redis(RedisIdempotencyStore),
}

impl IdempotencyBackend {
    /// Claims `key` for a body with `fingerprint`; see [`Claim`]. Never blocks the caller: the
    /// embedded table answers at once, Redis through its client thread.
    pub async fn claim(&self, key: &IdempotencyKey, fingerprint: u64, now: Instant) -> Claim {
        match self {
            IdempotencyBackend::Embedded(store) => store.claim(key, fingerprint, now),
            IdempotencyBackend::Redis(store) => store.claim(key, fingerprint).await,
        }
    }

    /// Stores the response of a claimed request; with Redis, sent without waiting.
    pub fn complete(&self, key: &IdempotencyKey, fingerprint: u64, response: Bytes, now: Instant) {
        match self {
            IdempotencyBackend::Embedded(store) => {
                store.complete(key, fingerprint, response, now);
            }
            IdempotencyBackend::Redis(store) => store.complete(key, fingerprint, &response),
        }
    }

    /// Stores the response of an unkeyed request under its generated key; with Redis, sent
    /// without waiting. See [`EmbeddedIdempotencyStore::store_generated`]. Returns false when the
    /// embedded table had no room for it (with Redis, true: the outcome is not awaited).
    pub fn store_generated(
        &self,
        key: &IdempotencyKey,
        fingerprint: u64,
        response: Bytes,
        now: Instant,
    ) -> bool {
        match self {
            IdempotencyBackend::Embedded(store) => {
                store.store_generated(key, fingerprint, response, now) == Completion::Stored
            }
            IdempotencyBackend::Redis(store) => {
                store.complete(key, fingerprint, &response);
                true
            }
        }
    }

    /// Forgets this body's pending claim after a failed attempt; with Redis, sent without waiting.
    pub fn release(&self, key: &IdempotencyKey, fingerprint: u64) {
        match self {
            IdempotencyBackend::Embedded(store) => {
                store.release(key, fingerprint);
            }
            IdempotencyBackend::Redis(store) => store.release(key, fingerprint),
        }
    }

    /// Removes expired records from the embedded table; Redis expires its records itself (0).
    pub fn sweep(&self, now: Instant) -> usize {
        match self {
            IdempotencyBackend::Embedded(store) => store.sweep(now),
            IdempotencyBackend::Redis(_) => 0,
        }
    }

    /// True when [`Claim::Unavailable`] means the store could not be reached (Redis), rather than
    /// a full table: the case `idempotency.on_unavailable` decides.
    pub fn is_remote(&self) -> bool {
        matches!(self, IdempotencyBackend::Redis(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_round_trip_and_do_not_alias() {
        let k = IdempotencyKey::new("a", "bc", "d");
        assert_eq!(k.parts(), ("a", "bc", "d"));
        assert_ne!(k, IdempotencyKey::new("ab", "c", "d"));
        assert_ne!(IdempotencyKey::new("", "", "x"), IdempotencyKey::new("", "x", ""));
        assert_eq!(IdempotencyKey::new("", "", "").parts(), ("", "", ""));
        assert_eq!(std::mem::size_of::<IdempotencyKey>(), 16, "DEFAULT_MAX_RECORDS assumes it");
    }
}
