//! The embedded idempotency table: makes a retried write or delete apply once and answer the
//! same, within one coordinator process.
//!
//! A request that carries an idempotency key first [claims](EmbeddedIdempotencyStore::claim) the
//! triple `(tenant_id, key, idempotency key)`; the record says what the caller does next:
//!
//! ```text
//!                 claim (vacant, expired, or Pending older than pending_timeout)
//!   (no record) ─────────────────────────────────────────────────────────────> Pending
//!        ^                                                                      │  │
//!        │  release (the attempt failed; a retry may try again)                 │  │ complete
//!        ├──────────────────────────────────────────────────────────────────────┘  v
//!        │  sweep, once expires_at (= completed + ttl) has passed                  Done
//!        └─────────────────────────────────────────────────────────────────────────┘
//!
//!   claim on Pending, same body      -> InProgress   wait a little, claim again
//!   claim on Done, same body         -> Duplicate    answer the stored response, is_duplicate
//!   claim on either, other body      -> Conflict     FAILED_PRECONDITION IDEMPOTENCY_KEY_CONFLICT
//!   claim of a new triple when full  -> Unavailable  proceed without idempotency, count it
//! ```
//!
//! "Same body" means the same [`fingerprint`]: xxh3 of whether it is a delete, the consistency
//! level and the value.
//!
//! The table is used on the request cores, so it must never block a core: it is a `papaya`
//! lock-free hash map (compare-and-swap per entry, incremental resizing, epoch-based reclamation),
//! shared by every core of the process through an `Arc`, since a client's retry may arrive on
//! another core's connection. Each transition above is a single compare-and-swap on the key's
//! entry, which is what makes "of two concurrent claims exactly one is `Claimed`" hold. A
//! per-core table reached through the mesh would avoid sharing, but would put a cross-core
//! round trip on every idempotent write.
//!
//! Nothing here reads a clock: callers pass `now`, so tests choose their instants.
//!
//! Scope: records live in this process's memory. A coordinator restart forgets them, and two
//! coordinators do not see each other's; for that, `idempotency.backend: redis` puts them in
//! Redis ([`crate::meta::redis`]). [`IdempotencyBackend`] is what the coordinator holds: either
//! store behind one async `claim`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use papaya::{Compute, Operation};
use xxhash_rust::xxh3::Xxh3;

/// How long a completed request's response is kept: 24 hours, so that a client retrying through
/// a day-long outage of its own still gets the original answer, not a second write.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a claim may stay `Pending` before a new claim may take it over: 30 seconds. A claim
/// is released or completed within one request's deadline (seconds); one still pending after 30 s
/// belongs to a request whose core died or hung, and must not block its retries forever.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(30);

/// Most records kept: 1,000,000. A record costs about 300 bytes with typical ids (a 36-byte
/// idempotency key, short tenant and key) and a ~100-byte encoded response: 16 (key pointer) +
/// 64 (record) + ~32 (map slot and entry header) inline, plus the key's and the response's heap
/// allocations. The default therefore bounds the table near 300 MB.
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

/// The fingerprint of a request body: xxh3 of (delete, consistency, value). Pass the
/// consistency after defaulting (UNSPECIFIED read as QUORUM), so that the two spellings of one
/// request match.
///
/// xxh3 is not collision-resistant against a deliberate attacker, but a collision can only make a
/// client's own retry, under its own idempotency key, receive its own earlier answer.
pub fn fingerprint(delete: bool, consistency: i32, value: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&[u8::from(delete)]);
    h.update(&consistency.to_le_bytes());
    h.update(value);
    h.digest()
}

/// The answer to [`EmbeddedIdempotencyStore::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the request: it runs it, then calls
    /// [`complete`](EmbeddedIdempotencyStore::complete) on success or
    /// [`release`](EmbeddedIdempotencyStore::release) on failure.
    Claimed,
    /// The same request is being processed elsewhere: wait briefly and claim again.
    InProgress,
    /// The same request already completed: answer this stored response, with `is_duplicate`.
    Duplicate(Bytes),
    /// The idempotency key was used with a different body: FAILED_PRECONDITION,
    /// IDEMPOTENCY_KEY_CONFLICT.
    Conflict,
    /// The table is full (or, for a remote backend, unreachable): run the request without
    /// idempotency, and count it.
    Unavailable,
}

/// What [`EmbeddedIdempotencyStore::complete`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The response is stored; retries get it until the ttl passes.
    Stored,
    /// Not stored: the claim was taken over by a different body, or another attempt completed
    /// first (its answer stands), or the table is full.
    NotStored,
}

#[derive(Clone, Debug)]
enum Record {
    Pending { fingerprint: u64, claimed_at: Instant },
    Done { fingerprint: u64, response: Bytes, expires_at: Instant },
}

/// The process-wide idempotency table; share it between cores as `Arc<EmbeddedIdempotencyStore>`.
/// No method blocks or takes a lock.
pub struct EmbeddedIdempotencyStore {
    records: papaya::HashMap<IdempotencyKey, Record, ahash::RandomState>,
    config: IdempotencyConfig,
}

impl std::fmt::Debug for EmbeddedIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedIdempotencyStore")
            .field("len", &self.len())
            .field("config", &self.config)
            .finish()
    }
}

impl EmbeddedIdempotencyStore {
    /// An empty table. The hasher is randomly seeded, since tenants choose the keys.
    pub fn new(config: IdempotencyConfig) -> Self {
        Self { records: papaya::HashMap::with_hasher(ahash::RandomState::new()), config }
    }

    /// The settings it was built with.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// How many records it holds (pending and done, expired ones until swept).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Claims `key` for a request whose body has `fingerprint`; see [`Claim`] for what to do
    /// with each answer. Atomic: of concurrent claims of one key, exactly one is `Claimed`.
    pub fn claim(&self, key: &IdempotencyKey, fingerprint: u64, now: Instant) -> Claim {
        let records = self.records.pin();
        // Fast path for retries: a live record answers without copying the key.
        if let Some(answer) = records.get(key).and_then(|r| self.answer(r, fingerprint, now)) {
            return answer;
        }
        let pending = Record::Pending { fingerprint, claimed_at: now };
        let outcome = records.compute(key.clone(), |entry| match entry {
            Some((_, record)) => match self.answer(record, fingerprint, now) {
                Some(answer) => Operation::Abort(answer),
                // Expired, or pending past the timeout: replace it, the count does not grow.
                None => Operation::Insert(pending.clone()),
            },
            // The limit is checked against a sum of per-thread counters, so concurrent claims
            // may overshoot it by about one record per core; it is a memory bound, not exact.
            None if records.len() >= self.config.max_records => {
                Operation::Abort(Claim::Unavailable)
            }
            None => Operation::Insert(pending.clone()),
        });
        match outcome {
            Compute::Aborted(answer) => answer,
            Compute::Inserted(..) | Compute::Updated { .. } => Claim::Claimed,
            // Invariant: the closure above never returns `Operation::Remove`.
            Compute::Removed(..) => unreachable!("claim never removes a record"),
        }
    }

    /// Stores the response of a claimed request, to be answered to retries until `now + ttl`.
    /// Stored when the record is still this body's pending claim (or was swept meanwhile).
    pub fn complete(
        &self,
        key: &IdempotencyKey,
        fingerprint: u64,
        response: Bytes,
        now: Instant,
    ) -> Completion {
        let records = self.records.pin();
        let done = self.done(fingerprint, response, now);
        let outcome = records.compute(key.clone(), |entry| match entry {
            Some((_, Record::Pending { fingerprint: f, .. })) if *f == fingerprint => {
                Operation::Insert(done.clone())
            }
            Some(_) => Operation::Abort(()),
            None if records.len() >= self.config.max_records => Operation::Abort(()),
            None => Operation::Insert(done.clone()),
        });
        match outcome {
            Compute::Inserted(..) | Compute::Updated { .. } => Completion::Stored,
            Compute::Aborted(()) | Compute::Removed(..) => Completion::NotStored,
        }
    }

    /// Stores the response of a request that came without an idempotency key under the key the
    /// coordinator generated for it (no claim came first: nobody else knows that key yet). Such
    /// records fill the table only up to three quarters of `max_records`, so that unkeyed writes
    /// never crowd out the requests that brought their own key.
    pub fn store_generated(
        &self,
        key: &IdempotencyKey,
        fingerprint: u64,
        response: Bytes,
        now: Instant,
    ) -> Completion {
        let records = self.records.pin();
        if records.len() >= self.config.max_records / 4 * 3 {
            return Completion::NotStored;
        }
        match records.try_insert(key.clone(), self.done(fingerprint, response, now)) {
            Ok(_) => Completion::Stored,
            Err(_) => Completion::NotStored,
        }
    }

    /// A completed record, answered to retries until `now + ttl`.
    fn done(&self, fingerprint: u64, response: Bytes, now: Instant) -> Record {
        let expires_at = now.checked_add(self.config.ttl).unwrap_or(now);
        Record::Done { fingerprint, response, expires_at }
    }

    /// Forgets a failed attempt so that a retry can claim again. Only this body's pending claim
    /// is removed, never a completed record or another body's claim; returns whether it was.
    pub fn release(&self, key: &IdempotencyKey, fingerprint: u64) -> bool {
        let records = self.records.pin();
        let mine = |_: &IdempotencyKey, r: &Record| match r {
            Record::Pending { fingerprint: f, .. } => *f == fingerprint,
            Record::Done { .. } => false,
        };
        matches!(records.remove_if(key, mine), Ok(Some(_)))
    }

    /// Removes responses past their ttl and pending claims past the timeout; returns how many.
    ///
    /// It visits every record (tens of milliseconds per million), so the coordinator calls it
    /// every few minutes from a background task rather than between requests.
    pub fn sweep(&self, now: Instant) -> usize {
        let records = self.records.pin();
        let mut removed = 0;
        for (key, record) in records.iter() {
            if !self.expired(record, now) {
                continue;
            }
            // Re-checked by the removal itself: a record claimed anew since is kept.
            if let Ok(Some(_)) = records.remove_if(key, |_, r| self.expired(r, now)) {
                removed += 1;
            }
        }
        removed
    }

    /// What a claim of `fingerprint` meets in `record`; `None` when the record is dead (expired
    /// or abandoned) and the claim replaces it.
    fn answer(&self, record: &Record, fingerprint: u64, now: Instant) -> Option<Claim> {
        if self.expired(record, now) {
            return None;
        }
        Some(match record {
            Record::Pending { fingerprint: f, .. } if *f == fingerprint => Claim::InProgress,
            Record::Done { fingerprint: f, response, .. } if *f == fingerprint => {
                Claim::Duplicate(response.clone())
            }
            _ => Claim::Conflict,
        })
    }

    fn expired(&self, record: &Record, now: Instant) -> bool {
        match record {
            Record::Pending { claimed_at, .. } => {
                now.saturating_duration_since(*claimed_at) >= self.config.pending_timeout
            }
            Record::Done { expires_at, .. } => now >= *expires_at,
        }
    }
}

/// The idempotency store a coordinator uses, as configured (`idempotency.backend`): this
/// process's table, or Redis shared with other coordinators. An enum rather than a trait object:
/// two variants, one of them async, and the request path pays no dynamic dispatch.
#[derive(Debug)]
pub enum IdempotencyBackend {
    /// [`EmbeddedIdempotencyStore`]: lock-free, in this process.
    Embedded(EmbeddedIdempotencyStore),
    /// [`RedisIdempotencyStore`](crate::meta::redis::RedisIdempotencyStore): shared.
    Redis(crate::meta::redis::RedisIdempotencyStore),
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Barrier;

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn store() -> EmbeddedIdempotencyStore {
        EmbeddedIdempotencyStore::new(IdempotencyConfig::default())
    }

    fn key(idempotency_key: &str) -> IdempotencyKey {
        IdempotencyKey::new("tenant", "user:1", idempotency_key)
    }

    fn resp(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn key_parts_round_trip_and_do_not_alias() {
        let k = IdempotencyKey::new("a", "bc", "d");
        assert_eq!(k.parts(), ("a", "bc", "d"));
        assert_ne!(k, IdempotencyKey::new("ab", "c", "d"));
        assert_ne!(IdempotencyKey::new("", "", "x"), IdempotencyKey::new("", "x", ""));
        assert_eq!(IdempotencyKey::new("", "", "").parts(), ("", "", ""));
    }

    #[test]
    fn fingerprint_covers_every_part_of_the_body() {
        let base = fingerprint(false, 2, b"v");
        assert_eq!(base, fingerprint(false, 2, b"v"));
        assert_ne!(base, fingerprint(true, 2, b"v"));
        assert_ne!(base, fingerprint(false, 3, b"v"));
        assert_ne!(base, fingerprint(false, 2, b"w"));
        assert_ne!(fingerprint(false, 2, b""), fingerprint(true, 2, b""));
    }

    #[test]
    fn record_stays_small() {
        // The memory estimate of DEFAULT_MAX_RECORDS assumes these sizes.
        assert_eq!(std::mem::size_of::<IdempotencyKey>(), 16);
        assert!(std::mem::size_of::<Record>() <= 64, "{}", std::mem::size_of::<Record>());
    }

    #[test]
    fn claim_answers_by_state_and_body() {
        let s = store();
        let t0 = Instant::now();
        let k = key("r1");
        #[rustfmt::skip]
        let steps: &[(&str, u64, u32, Claim)] = &[
            ("first claim",              1, 0, Claim::Claimed),
            ("same body while pending",  1, 1, Claim::InProgress),
            ("other body while pending", 2, 1, Claim::Conflict),
        ];
        for (what, fp, at_secs, want) in steps {
            assert_eq!(&s.claim(&k, *fp, t0 + *at_secs * SEC), want, "{what}");
        }
        assert_eq!(s.complete(&k, 1, resp("ok"), t0 + 2 * SEC), Completion::Stored);
        #[rustfmt::skip]
        let steps: &[(&str, u64, u32, Claim)] = &[
            ("same body once done",      1, 3, Claim::Duplicate(resp("ok"))),
            ("other body once done",     2, 3, Claim::Conflict),
        ];
        for (what, fp, at_secs, want) in steps {
            assert_eq!(&s.claim(&k, *fp, t0 + *at_secs * SEC), want, "{what}");
        }
        assert_eq!(s.claim(&key("r2"), 2, t0), Claim::Claimed, "another idempotency key");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn response_expires_after_ttl() {
        let s = store();
        let t0 = Instant::now();
        let k = key("r1");
        assert_eq!(s.claim(&k, 1, t0), Claim::Claimed);
        s.complete(&k, 1, resp("ok"), t0);
        let just_before = t0 + DEFAULT_TTL - SEC;
        assert_eq!(s.claim(&k, 1, just_before), Claim::Duplicate(resp("ok")));
        assert_eq!(s.claim(&k, 2, t0 + DEFAULT_TTL), Claim::Claimed, "expired: a new request");
    }

    #[test]
    fn release_lets_a_retry_claim_again() {
        let s = store();
        let t0 = Instant::now();
        let k = key("r1");
        assert_eq!(s.claim(&k, 1, t0), Claim::Claimed);
        assert!(!s.release(&k, 2), "another body's release removes nothing");
        assert!(s.release(&k, 1));
        assert!(!s.release(&k, 1), "nothing left to release");
        assert_eq!(s.claim(&k, 1, t0), Claim::Claimed);
        s.complete(&k, 1, resp("ok"), t0);
        assert!(!s.release(&k, 1), "a completed record is never released");
        assert_eq!(s.claim(&k, 1, t0), Claim::Duplicate(resp("ok")));
    }

    #[test]
    fn abandoned_claim_is_taken_over_after_the_timeout() {
        let s = store();
        let t0 = Instant::now();
        let k = key("r1");
        assert_eq!(s.claim(&k, 1, t0), Claim::Claimed);
        let late = t0 + DEFAULT_PENDING_TIMEOUT;
        assert_eq!(s.claim(&k, 1, late - SEC), Claim::InProgress);
        assert_eq!(s.claim(&k, 2, late), Claim::Claimed, "the dead claim is replaced");
        // The first owner wakes up: its different body no longer owns the record.
        assert_eq!(s.complete(&k, 1, resp("old"), late), Completion::NotStored);
        assert_eq!(s.complete(&k, 2, resp("new"), late), Completion::Stored);
        assert_eq!(s.complete(&k, 2, resp("again"), late), Completion::NotStored, "first wins");
        assert_eq!(s.claim(&k, 2, late), Claim::Duplicate(resp("new")));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn sweep_removes_only_dead_records() {
        let s = store();
        let t0 = Instant::now();
        s.claim(&key("done-old"), 1, t0);
        s.complete(&key("done-old"), 1, resp("a"), t0);
        s.claim(&key("pending-old"), 1, t0);
        let later = t0 + DEFAULT_TTL;
        s.claim(&key("done-new"), 1, later);
        s.complete(&key("done-new"), 1, resp("b"), later);
        s.claim(&key("pending-new"), 1, later);
        assert_eq!(s.sweep(later), 2);
        assert_eq!(s.len(), 2);
        assert_eq!(s.claim(&key("done-new"), 1, later), Claim::Duplicate(resp("b")));
        assert_eq!(s.claim(&key("pending-new"), 1, later), Claim::InProgress);
        assert_eq!(s.sweep(later), 0);
    }

    #[test]
    fn full_table_answers_unavailable_but_serves_existing_records() {
        let config = IdempotencyConfig { max_records: 2, ..IdempotencyConfig::default() };
        let s = EmbeddedIdempotencyStore::new(config);
        let t0 = Instant::now();
        assert_eq!(s.claim(&key("a"), 1, t0), Claim::Claimed);
        assert_eq!(s.claim(&key("b"), 1, t0), Claim::Claimed);
        assert_eq!(s.claim(&key("c"), 1, t0), Claim::Unavailable);
        assert_eq!(s.claim(&key("a"), 1, t0), Claim::InProgress);
        assert_eq!(s.complete(&key("a"), 1, resp("ok"), t0), Completion::Stored);
        assert_eq!(s.complete(&key("c"), 1, resp("ok"), t0), Completion::NotStored);
        // Space frees once records die and are swept (or replaced in place).
        assert_eq!(s.claim(&key("b"), 2, t0 + DEFAULT_PENDING_TIMEOUT), Claim::Claimed);
        assert_eq!(s.sweep(t0 + DEFAULT_TTL), 2);
        assert_eq!(s.claim(&key("c"), 1, t0 + DEFAULT_TTL), Claim::Claimed);
    }

    #[test]
    fn generated_keys_are_answered_as_duplicates_and_leave_room_for_claims() {
        let config = IdempotencyConfig { max_records: 4, ..IdempotencyConfig::default() };
        let s = EmbeddedIdempotencyStore::new(config);
        let t0 = Instant::now();
        assert_eq!(s.store_generated(&key("g1"), 1, resp("one"), t0), Completion::Stored);
        // A retry with the generated key gets the stored answer; another body conflicts.
        assert_eq!(s.claim(&key("g1"), 1, t0), Claim::Duplicate(resp("one")));
        assert_eq!(s.claim(&key("g1"), 2, t0), Claim::Conflict);
        // Never overwrites an existing record.
        assert_eq!(s.store_generated(&key("g1"), 1, resp("two"), t0), Completion::NotStored);
        assert_eq!(s.store_generated(&key("g2"), 1, resp("ok"), t0), Completion::Stored);
        assert_eq!(s.store_generated(&key("g3"), 1, resp("ok"), t0), Completion::Stored);
        // Three quarters of 4 reached: generated records stop, client keys still get a claim.
        assert_eq!(s.store_generated(&key("g4"), 1, resp("ok"), t0), Completion::NotStored);
        assert_eq!(s.claim(&key("c"), 1, t0), Claim::Claimed);
    }

    #[test]
    fn concurrent_claims_of_one_key_have_one_winner() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 200;
        let s = store();
        let t0 = Instant::now();
        let barrier = Barrier::new(THREADS);
        let claimed = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (s, barrier, claimed) = (&s, &barrier, &claimed);
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        barrier.wait();
                        // Half the rounds with one body, half with a body per thread.
                        let fp = if round % 2 == 0 { 7 } else { thread as u64 };
                        let k = key(&format!("round-{round}"));
                        match s.claim(&k, fp, t0) {
                            Claim::Claimed => {
                                claimed.fetch_add(1, Ordering::Relaxed);
                            }
                            Claim::InProgress => assert_eq!(round % 2, 0),
                            Claim::Conflict => assert_eq!(round % 2, 1),
                            other => panic!("round {round}: {other:?}"),
                        }
                    }
                });
            }
        });
        assert_eq!(claimed.load(Ordering::Relaxed), ROUNDS, "one winner per round");
    }

    #[test]
    fn concurrent_claims_never_give_two_owners_at_once() {
        const THREADS: usize = 4;
        const KEYS: usize = 3;
        const OPS: usize = 5_000;
        let s = store();
        let t0 = Instant::now();
        let owned: Vec<AtomicBool> = (0..KEYS).map(|_| AtomicBool::new(false)).collect();
        let completed = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (s, owned, completed) = (&s, &owned, &completed);
                scope.spawn(move || {
                    let mut seed = thread as u64 + 1;
                    for _ in 0..OPS {
                        // xorshift: a fixed sequence per thread, no RNG dependency.
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let i = (seed % KEYS as u64) as usize;
                        let k = key(&format!("k{i}"));
                        if s.claim(&k, 1, t0) != Claim::Claimed {
                            continue;
                        }
                        assert!(!owned[i].swap(true, Ordering::SeqCst), "two owners of k{i}");
                        // Give up ownership before the store can hand it to someone else.
                        owned[i].store(false, Ordering::SeqCst);
                        if seed.is_multiple_of(64) {
                            assert_eq!(s.complete(&k, 1, resp("ok"), t0), Completion::Stored);
                            completed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            assert!(s.release(&k, 1));
                        }
                    }
                });
            }
        });
        assert!(completed.load(Ordering::Relaxed) <= KEYS, "a completed key is never reclaimed");
    }
}
