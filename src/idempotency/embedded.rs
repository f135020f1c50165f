//! The embedded idempotency table: the records of one coordinator process, in its memory.
//!
//! The rules (what a claim, a completion, a release and time do to a record) are
//! [`crate::core::idempotency`]'s pure functions; this table applies them:
//!
//! ```text
//!                 claim (absent or expired)
//!   (no record) ───────────────────────────> InProgress ── complete ──> Completed
//!        ^                                       │                          │
//!        │  release (the attempt failed)         │                          │
//!        ├───────────────────────────────────────┘                          │
//!        │  sweep, or replaced by a claim, once expired                     │
//!        └──────────────────────────────────────────────────────────────────┘
//!
//!   claim of a new triple when full  -> Unavailable  proceed without idempotency, count it
//! ```
//!
//! The table is used on the request cores, so it must never block a core: it is a `papaya`
//! lock-free hash map (compare-and-swap per entry, incremental resizing, epoch-based reclamation),
//! shared by every core of the process through an `Arc`, since a client's retry may arrive on
//! another core's connection. Each transition is a single compare-and-swap on the key's entry,
//! whose closure calls the rule, which is what makes "of two concurrent claims exactly one is
//! `Claimed`" hold. A per-core table reached through the mesh would avoid sharing, but would put
//! a cross-core round trip on every idempotent write.
//!
//! Nothing here reads a clock: callers pass `now`, so tests choose their instants.
//!
//! Scope: records live in this process's memory. A coordinator restart forgets them, and two
//! coordinators do not see each other's; for that, `idempotency.backend: redis` puts them in
//! Redis ([`crate::idempotency::redis`]).

use std::time::Instant;

use bytes::Bytes;
use papaya::{Compute, Operation};

use super::{IdempotencyConfig, IdempotencyKey};
use crate::core::idempotency::{
    decide_claim, decide_complete, decide_release, Claim, Expiry, RecordState,
};

/// What [`EmbeddedIdempotencyStore::complete`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The response is stored; retries get it until the ttl passes.
    Stored,
    /// Not stored: the claim was taken over by a different body, or another attempt completed
    /// first (its answer stands), or the table is full.
    NotStored,
}

/// The process-wide idempotency table; share it between cores as `Arc<EmbeddedIdempotencyStore>`.
/// No method blocks or takes a lock.
pub struct EmbeddedIdempotencyStore {
    records: papaya::HashMap<IdempotencyKey, RecordState, ahash::RandomState>,
    config: IdempotencyConfig,
    expiry: Expiry,
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
        let expiry = Expiry { claim: config.pending_timeout, response: config.ttl };
        Self { records: papaya::HashMap::with_hasher(ahash::RandomState::new()), config, expiry }
    }

    /// The settings it was built with.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// How many records it holds (in progress and completed, expired ones until swept).
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
        if let Some(record) = records.get(key) {
            if let (answer, None) = decide_claim(Some(record), fingerprint, now, &self.expiry) {
                return answer;
            }
        }
        let outcome = records.compute(key.clone(), |entry| {
            let existing = entry.map(|(_, record)| record);
            match decide_claim(existing, fingerprint, now, &self.expiry) {
                (answer, None) => Operation::Abort(answer),
                // The limit is checked against a sum of per-thread counters, so concurrent
                // claims may overshoot it by about one record per core; it is a memory bound,
                // not exact. An expired record is replaced in place: the count does not grow.
                (_, Some(_)) if existing.is_none() && records.len() >= self.config.max_records => {
                    Operation::Abort(Claim::Unavailable)
                }
                (_, Some(claimed)) => Operation::Insert(claimed),
            }
        });
        match outcome {
            Compute::Aborted(answer) => answer,
            Compute::Inserted(..) | Compute::Updated { .. } => Claim::Claimed,
            // Invariant: the closure above never returns `Operation::Remove`.
            Compute::Removed(..) => unreachable!("claim never removes a record"),
        }
    }

    /// Stores the response of a claimed request, to be answered to retries until `now + ttl`.
    /// Stored when the record is still this body's claim (or was swept meanwhile); see
    /// [`decide_complete`].
    pub fn complete(
        &self,
        key: &IdempotencyKey,
        fingerprint: u64,
        response: Bytes,
        now: Instant,
    ) -> Completion {
        let records = self.records.pin();
        let outcome = records.compute(key.clone(), |entry| {
            let existing = entry.map(|(_, record)| record);
            match decide_complete(existing, fingerprint, response.clone(), now, &self.expiry) {
                None => Operation::Abort(()),
                Some(_) if existing.is_none() && records.len() >= self.config.max_records => {
                    Operation::Abort(())
                }
                Some(done) => Operation::Insert(done),
            }
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
        let done = RecordState::completed(fingerprint, response, now, &self.expiry);
        match records.try_insert(key.clone(), done) {
            Ok(_) => Completion::Stored,
            Err(_) => Completion::NotStored,
        }
    }

    /// Forgets a failed attempt so that a retry can claim again. Only this body's claim is
    /// removed, never a completed record or another body's claim; returns whether it was.
    pub fn release(&self, key: &IdempotencyKey, fingerprint: u64) -> bool {
        let records = self.records.pin();
        let mine = |_: &IdempotencyKey, r: &RecordState| decide_release(Some(r), fingerprint);
        matches!(records.remove_if(key, mine), Ok(Some(_)))
    }

    /// Removes expired responses and claims; returns how many.
    ///
    /// It visits every record (tens of milliseconds per million), so the coordinator calls it
    /// every few minutes from a background task rather than between requests.
    pub fn sweep(&self, now: Instant) -> usize {
        let records = self.records.pin();
        let mut removed = 0;
        for (key, record) in records.iter() {
            if !record.is_expired(now) {
                continue;
            }
            // Re-checked by the removal itself: a record claimed anew since is kept.
            if let Ok(Some(_)) = records.remove_if(key, |_, r| r.is_expired(now)) {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    use super::*;
    use crate::idempotency::{DEFAULT_PENDING_TIMEOUT, DEFAULT_TTL};

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
    fn record_stays_small() {
        // The memory estimate of DEFAULT_MAX_RECORDS assumes these sizes.
        assert_eq!(std::mem::size_of::<IdempotencyKey>(), 16);
        let record = std::mem::size_of::<RecordState>();
        assert!(record <= 64, "{record}");
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
