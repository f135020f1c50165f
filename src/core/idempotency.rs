//! The idempotency rules, sans-IO: what one record's state becomes on a claim, a completion, a
//! release and the passage of time, and THE fingerprint of a keyed request.
//!
//! A request carrying an idempotency key is identified by `(tenant_id, key, idempotency key)`
//! (the record's key, [`crate::idempotency::IdempotencyKey`]) and described by its
//! [`fingerprint`]. The record under that key goes through these states:
//!
//! ```text
//!           claim: Claimed                          complete (same fingerprint)
//!   Absent ────────────────> InProgress ─────────────────────────────────> Completed
//!     ^                      fingerprint,                                   fingerprint, response,
//!     │                      expires_at = now + claim ttl                   expires_at = now + ttl
//!     │  release (same fingerprint)  │                                              │
//!     ├──────────────────────────────┤                                              │
//!     │  expires_at passed           │                                              │
//!     ├──────────────────────────────┘ (its owner died or hung)                     │
//!     │  expires_at passed                                                          │
//!     └─────────────────────────────────────────────────────────────────────────────┘
//!
//!   claim on a live record, same fingerprint:   InProgress -> Claim::InProgress
//!                                               Completed  -> Claim::Duplicate(response)
//!   claim on a live record, other fingerprint:  Claim::Conflict
//!   claim on Absent or an expired record:       Claim::Claimed, the record becomes InProgress
//! ```
//!
//! A completion is stored only over this fingerprint's claim, or over nothing (the record was
//! swept meanwhile); never over a completed record (the first answer stands) or over a claim
//! another body took over. A release removes only this fingerprint's claim.
//!
//! The functions here decide; the stores ([`crate::idempotency`]'s embedded table, which calls
//! them inside one compare-and-swap per record, and Redis, which runs the same rules as Lua
//! scripts) apply. Nothing here reads a clock: callers pass `now`, so tests make up instants.

use std::time::{Duration, Instant};

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::core::{quorum::Level, vclock::VClock};

/// The kind of keyed request a fingerprint describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// WriteKeyValue.
    Write,
    /// DeleteKeyValue.
    Delete,
}

/// THE fingerprint of a keyed request: what a retry must repeat for it to be the same request.
///
/// It covers what changes the effect of the request: the operation, the consistency level, the
/// value (empty for a delete) and the client's causal context (the vector clock it sent, `None`
/// and an empty clock being the same context). The idempotency key, tenant and key are not in
/// it: they are the record's key. Pass the level after defaulting (UNSPECIFIED read as
/// [`Level::Quorum`]), so that the two spellings of one request match.
///
/// Every part is length-prefixed, so no two different requests share an encoding. The encoding
/// is also what records stored in Redis were written with: changing it makes the retries of
/// requests made before the change conflict, so it changes only with a reason.
///
/// xxh3 is not collision-resistant against a deliberate attacker, but a collision can only make a
/// client's own retry, under its own idempotency key, receive its own earlier answer.
pub fn fingerprint(op: Operation, level: Level, value: &[u8], context: Option<&VClock>) -> u64 {
    let mut h = Xxh3::new();
    h.update(&[match op {
        Operation::Write => b'W',
        Operation::Delete => b'D',
    }]);
    h.update(&[match level {
        Level::One => 1,
        Level::Quorum => 2,
        Level::All => 3,
    }]);
    h.update(&(value.len() as u64).to_le_bytes());
    h.update(value);
    let entries = context.map_or(&[][..], VClock::entries);
    h.update(&(entries.len() as u64).to_le_bytes());
    for (actor, counter) in entries {
        h.update(&(actor.len() as u64).to_le_bytes());
        h.update(actor.as_bytes());
        h.update(&counter.to_le_bytes());
    }
    h.digest()
}

/// How long records live: a claim for `claim`, a completed response for `response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Life of an `InProgress` claim: a claim still there after it belongs to a request whose
    /// core died or hung, and must not block that request's retries forever.
    pub claim: Duration,
    /// Life of a `Completed` record: how long retries get the stored response.
    pub response: Duration,
}

/// The answer to a claim: what the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the request: it runs it, then completes the record on success or
    /// releases it on failure.
    Claimed,
    /// The same request is being processed elsewhere: wait briefly and claim again.
    InProgress,
    /// The same request already completed: answer this stored response, with `is_duplicate`.
    Duplicate(Bytes),
    /// The idempotency key was used with a different body: FAILED_PRECONDITION,
    /// IDEMPOTENCY_KEY_CONFLICT.
    Conflict,
    /// Not a rule's answer but a store's: the table is full, or Redis is unreachable. The caller
    /// runs the request without idempotency (and counts it), or rejects it, as configured.
    Unavailable,
}

/// One record's state, as a store keeps it. Absent is "no record".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// Claimed by a request that has not finished.
    InProgress {
        /// The claiming request's [`fingerprint`].
        fingerprint: u64,
        /// When the claim may be taken over: claimed at + [`Expiry::claim`].
        expires_at: Instant,
    },
    /// Finished: retries with the same fingerprint are answered `response`.
    Completed {
        /// The completed request's [`fingerprint`].
        fingerprint: u64,
        /// When the record dies: completed at + [`Expiry::response`].
        expires_at: Instant,
        /// The encoded response.
        response: Bytes,
    },
}

impl RecordState {
    /// A fresh claim made at `now`.
    pub fn in_progress(fingerprint: u64, now: Instant, expiry: &Expiry) -> Self {
        RecordState::InProgress { fingerprint, expires_at: deadline(now, expiry.claim) }
    }

    /// A response stored at `now`.
    pub fn completed(fingerprint: u64, response: Bytes, now: Instant, expiry: &Expiry) -> Self {
        RecordState::Completed { fingerprint, expires_at: deadline(now, expiry.response), response }
    }

    /// The fingerprint of the request that made the record.
    pub fn fingerprint(&self) -> u64 {
        match self {
            RecordState::InProgress { fingerprint, .. }
            | RecordState::Completed { fingerprint, .. } => *fingerprint,
        }
    }

    /// True once the record counts as absent: it may be replaced by a claim, and swept.
    pub fn is_expired(&self, now: Instant) -> bool {
        match self {
            RecordState::InProgress { expires_at, .. }
            | RecordState::Completed { expires_at, .. } => now >= *expires_at,
        }
    }
}

/// `now + ttl`; a ttl so long that the clock would overflow counts as ending now (the
/// configuration refuses durations over 10 years, far from the overflow).
fn deadline(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl).unwrap_or(now)
}

/// A claim of `fingerprint` at `now` on the record `existing`: the answer, and the state to
/// store (`Some`) or `None` to leave the record as it is.
///
/// Only [`Claim::Claimed`] comes with a new state (a fresh [`RecordState::InProgress`]), and
/// only when there was no live record. A store that cannot take a new record (full) answers
/// [`Claim::Unavailable`] instead of storing it.
pub fn decide_claim(
    existing: Option<&RecordState>,
    fingerprint: u64,
    now: Instant,
    expiry: &Expiry,
) -> (Claim, Option<RecordState>) {
    match existing.filter(|r| !r.is_expired(now)) {
        None => (Claim::Claimed, Some(RecordState::in_progress(fingerprint, now, expiry))),
        Some(record) => (answer(record, fingerprint), None),
    }
}

/// What a claim of `fingerprint` meets in a live record.
fn answer(record: &RecordState, fingerprint: u64) -> Claim {
    match record {
        r if r.fingerprint() != fingerprint => Claim::Conflict,
        RecordState::InProgress { .. } => Claim::InProgress,
        RecordState::Completed { response, .. } => Claim::Duplicate(response.clone()),
    }
}

/// The completion of a request with `fingerprint` at `now`: the state to store, or `None` when
/// the response is not stored.
///
/// Stored over this fingerprint's claim (even past its expiry: nobody took it over), or over no
/// record (swept meanwhile). Not stored over a completed record (another attempt completed first
/// and its answer stands) nor over a claim by another body (the claim was taken over).
pub fn decide_complete(
    existing: Option<&RecordState>,
    fingerprint: u64,
    response: Bytes,
    now: Instant,
    expiry: &Expiry,
) -> Option<RecordState> {
    match existing {
        None => Some(RecordState::completed(fingerprint, response, now, expiry)),
        Some(RecordState::InProgress { fingerprint: f, .. }) if *f == fingerprint => {
            Some(RecordState::completed(fingerprint, response, now, expiry))
        }
        Some(_) => None,
    }
}

/// Whether releasing `fingerprint`'s failed attempt removes `existing`: only its own claim, never
/// a completed record or another body's claim.
pub fn decide_release(existing: Option<&RecordState>, fingerprint: u64) -> bool {
    matches!(existing, Some(RecordState::InProgress { fingerprint: f, .. }) if *f == fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const EXPIRY: Expiry =
        Expiry { claim: Duration::from_secs(30), response: Duration::from_secs(3600) };

    fn resp(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn clock(pairs: &[(&str, u64)]) -> VClock {
        VClock::from_entries(pairs.iter().map(|(a, c)| ((*a).to_owned(), *c)))
    }

    #[test]
    fn fingerprint_covers_every_part_of_the_request() {
        let ctx = clock(&[("c-1/2", 3)]);
        let base = fingerprint(Operation::Write, Level::Quorum, b"v", Some(&ctx));
        assert_eq!(base, fingerprint(Operation::Write, Level::Quorum, b"v", Some(&ctx)));
        let (counter, actor) = (clock(&[("c-1/2", 4)]), clock(&[("c-1/3", 3)]));
        #[rustfmt::skip]
        let others = [
            ("operation", fingerprint(Operation::Delete, Level::Quorum, b"v", Some(&ctx))),
            ("level one", fingerprint(Operation::Write, Level::One, b"v", Some(&ctx))),
            ("level all", fingerprint(Operation::Write, Level::All, b"v", Some(&ctx))),
            ("value", fingerprint(Operation::Write, Level::Quorum, b"w", Some(&ctx))),
            ("no context", fingerprint(Operation::Write, Level::Quorum, b"v", None)),
            ("counter", fingerprint(Operation::Write, Level::Quorum, b"v", Some(&counter))),
            ("actor", fingerprint(Operation::Write, Level::Quorum, b"v", Some(&actor))),
        ];
        for (what, other) in others {
            assert_ne!(base, other, "{what}");
        }
        assert_ne!(
            fingerprint(Operation::Write, Level::One, b"", None),
            fingerprint(Operation::Delete, Level::One, b"", None)
        );
    }

    #[test]
    fn fingerprint_is_of_the_meaning_not_the_spelling() {
        // No context and an empty one are the same context (the coordinator writes both alike).
        let empty = VClock::new();
        assert_eq!(
            fingerprint(Operation::Write, Level::Quorum, b"v", None),
            fingerprint(Operation::Write, Level::Quorum, b"v", Some(&empty))
        );
        // A clock is canonical whatever order the client sent its entries in.
        assert_eq!(
            fingerprint(Operation::Delete, Level::All, b"", Some(&clock(&[("a", 1), ("b", 2)]))),
            fingerprint(Operation::Delete, Level::All, b"", Some(&clock(&[("b", 2), ("a", 1)])))
        );
    }

    #[test]
    fn fingerprint_parts_do_not_run_into_each_other() {
        // Length prefixes: moving bytes between the actor, the counter and the next entry, or
        // between the value and the context, makes another fingerprint.
        let fp = |value: &[u8], pairs: &[(&str, u64)]| {
            fingerprint(Operation::Write, Level::One, value, Some(&clock(pairs)))
        };
        assert_ne!(fp(b"", &[("ab", 1)]), fp(b"", &[("a", 1), ("b", 1)]));
        assert_ne!(fp(b"a", &[("b", 1)]), fp(b"", &[("ab", 1)]));
        assert_ne!(fp(b"", &[("a", 0x62)]), fp(b"", &[("ab", 1)]));
    }

    #[test]
    fn fingerprint_encoding_is_pinned() {
        // Records in Redis outlive a coordinator version: a changed encoding turns the retries
        // of earlier requests into conflicts. Change these values only on purpose.
        let ctx = clock(&[("coord-1/2", 7)]);
        let write = fingerprint(Operation::Write, Level::Quorum, b"v", Some(&ctx));
        assert_eq!(write, 5_935_991_540_606_335_563);
        assert_eq!(
            fingerprint(Operation::Delete, Level::One, b"", None),
            13_020_012_690_956_260_737
        );
    }

    #[test]
    fn claims_walk_the_state_diagram() {
        let t0 = Instant::now();
        let claim = |existing: Option<&RecordState>, fp: u64, at: u64| {
            decide_claim(existing, fp, t0 + at as u32 * SEC, &EXPIRY)
        };
        // Absent -> InProgress.
        let (answer, pending) = claim(None, 1, 0);
        assert_eq!(answer, Claim::Claimed);
        let pending = pending.expect("a claim stores a record");
        assert_eq!(pending, RecordState::InProgress { fingerprint: 1, expires_at: t0 + 30 * SEC });
        // While InProgress: same body waits, another conflicts, nothing is stored.
        assert_eq!(claim(Some(&pending), 1, 29), (Claim::InProgress, None));
        assert_eq!(claim(Some(&pending), 2, 29), (Claim::Conflict, None));
        // InProgress -> Completed.
        let done = decide_complete(Some(&pending), 1, resp("ok"), t0 + 10 * SEC, &EXPIRY)
            .expect("the owner's completion is stored");
        assert_eq!(
            done,
            RecordState::Completed {
                fingerprint: 1,
                expires_at: t0 + 3610 * SEC,
                response: resp("ok")
            }
        );
        assert_eq!(claim(Some(&done), 1, 3609), (Claim::Duplicate(resp("ok")), None));
        assert_eq!(claim(Some(&done), 2, 3609), (Claim::Conflict, None));
        // Completed, past its ttl: as absent, any body claims.
        let (answer, fresh) = claim(Some(&done), 2, 3610);
        assert_eq!(answer, Claim::Claimed);
        assert_eq!(fresh.map(|r| r.fingerprint()), Some(2));
    }

    #[test]
    fn an_abandoned_claim_is_taken_over_when_its_ttl_passes() {
        let t0 = Instant::now();
        let pending = RecordState::in_progress(1, t0, &EXPIRY);
        assert!(!pending.is_expired(t0 + 29 * SEC));
        assert!(pending.is_expired(t0 + 30 * SEC));
        let (answer, taken) = decide_claim(Some(&pending), 2, t0 + 30 * SEC, &EXPIRY);
        assert_eq!(answer, Claim::Claimed, "another body takes the dead claim over");
        let taken = taken.expect("stored");
        // The first owner wakes up: its completion no longer lands, its release removes nothing.
        assert_eq!(decide_complete(Some(&taken), 1, resp("old"), t0 + 31 * SEC, &EXPIRY), None);
        assert!(!decide_release(Some(&taken), 1));
        assert!(decide_release(Some(&taken), 2));
    }

    #[test]
    fn completion_lands_only_on_its_own_claim_or_nothing() {
        let t0 = Instant::now();
        let mine = RecordState::in_progress(1, t0, &EXPIRY);
        let done = RecordState::completed(1, resp("first"), t0, &EXPIRY);
        let complete =
            |existing: Option<&RecordState>| decide_complete(existing, 1, resp("x"), t0, &EXPIRY);
        assert!(complete(Some(&mine)).is_some());
        let late = decide_complete(Some(&mine), 1, resp("x"), t0 + 60 * SEC, &EXPIRY);
        assert!(late.is_some(), "own claim past its ttl, not taken over: still stored");
        assert!(complete(None).is_some(), "swept meanwhile: stored");
        assert_eq!(complete(Some(&done)), None, "the first answer stands");
        assert_eq!(complete(Some(&RecordState::in_progress(2, t0, &EXPIRY))), None);
    }

    #[test]
    fn release_removes_only_its_own_claim() {
        let t0 = Instant::now();
        assert!(decide_release(Some(&RecordState::in_progress(1, t0, &EXPIRY)), 1));
        assert!(!decide_release(Some(&RecordState::in_progress(2, t0, &EXPIRY)), 1));
        assert!(!decide_release(Some(&RecordState::completed(1, resp("ok"), t0, &EXPIRY)), 1));
        assert!(!decide_release(None, 1));
        // Released: Absent again, so the retry claims.
        assert_eq!(decide_claim(None, 1, t0, &EXPIRY).0, Claim::Claimed);
    }

    #[test]
    fn a_ttl_past_the_clock_range_ends_at_once_rather_than_panic() {
        let t0 = Instant::now();
        let forever = Expiry { claim: Duration::MAX, response: Duration::MAX };
        assert!(RecordState::in_progress(1, t0, &forever).is_expired(t0));
    }
}
