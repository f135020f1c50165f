//! One write or delete as the coordinator runs it: stamp a new version, send it to every
//! replica, count acks into an outcome that says what was tried when it fails.
//!
//! [`Stamper`] turns a client's causal context into a new version: it increments this core's
//! actor in the clock with a counter that never goes backwards (the wall clock in microseconds,
//! floored by the last counter issued, so two writes on one core in the same microsecond still
//! order), and stamps it no earlier than the versions the context descends from, whatever this
//! core's wall clock says (a hybrid logical clock; see [`Stamper::stamp`]). [`WriteRequest`] wraps [`QuorumWrite`] with the sends it owes and the per-replica
//! reasons a failure message reports.
//!
//! Hints are not decided here. A write's slow replicas may settle long after the client was
//! answered, or after the client went away and the request was dropped; the link to each storage
//! node owns every operation until it settles, so the link turns a missed write into a hint, by
//! the policy of [`crate::core::hints`].

use std::time::Instant;

use bytes::Bytes;

use crate::{
    core::{
        ids::NodeId,
        migration::sets::{DualQuorumWrite, WriteRule},
        quorum::{Level, QuorumWrite, ReplicaState, WriteOutcome},
        vclock::VClock,
        version::Version,
    },
    error::{PairError, ReplicaReport},
};

/// How far [`Stamper::stamp`] lets a context move a timestamp past the wall clock: 1 s, far above
/// the clock skew between healthy coordinators (milliseconds), far below a broken clock's.
pub const MAX_CLOCK_LEAD_US: i64 = 1_000_000;

/// Issues versions for one actor (one coordinator core).
#[derive(Clone, Debug)]
pub struct Stamper {
    actor: String,
    last_counter: u64,
}

impl Stamper {
    /// A stamper for `actor` (`{node_id}/{core}`), unique per coordinator core.
    pub fn new(actor: impl Into<String>) -> Self {
        Self { actor: actor.into(), last_counter: 0 }
    }

    /// The actor this stamper writes as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// A new version of a key whose client last saw `context` (empty for a blind write):
    /// `context` with this actor's entry moved past both the last counter issued and `now_us`.
    ///
    /// Its `timestamp_us` is `now_us`, raised to the largest counter in `context` when that is
    /// higher: a hybrid logical clock, so that a version is never stamped earlier than the
    /// versions it descends from, even when this core's wall clock is behind the one that
    /// stamped them. Every counter is floored by its stamper's `now_us` and moved past it, so the
    /// largest counter of a context exceeds the timestamp of every version in it. Without that,
    /// a write that follows another but was stamped by a lagging clock loses the timestamp
    /// tie-break to its own predecessor against any concurrent third version (a failed write's
    /// leftover copy), and an acked write is lost.
    ///
    /// The raise is capped at [`MAX_CLOCK_LEAD_US`] past `now_us`: contexts come from clients,
    /// and a counter far in the future (a broken clock, or a made-up context) must not carry
    /// every later timestamp of the key, and this core's counters, along with it.
    pub fn stamp(
        &mut self,
        context: Option<VClock>,
        value: Bytes,
        tombstone: bool,
        now_us: i64,
    ) -> Version {
        let mut clock = context.unwrap_or_default();
        let causal = clock.entries().iter().map(|&(_, counter)| counter).max().unwrap_or(0);
        let lead_limit = now_us.saturating_add(MAX_CLOCK_LEAD_US);
        let timestamp_us = now_us.max(i64::try_from(causal).unwrap_or(i64::MAX).min(lead_limit));
        let floor = self.last_counter.max(u64::try_from(timestamp_us).unwrap_or(0));
        self.last_counter = clock.increment(&self.actor, floor);
        Version { value, clock, timestamp_us, writer: self.actor.clone(), tombstone }
    }
}

/// One write (or delete) of one version to its replicas.
///
/// ```text
///   new ──poll_send()* (one per replica)──▶ Waiting ──handle_ack / handle_failure /
///                                              │       handle_timeout──▶ decided
///                                              ▼
///                              poll_outcome(): Some exactly once
/// ```
///
/// Drain order after `new` and after every `handle_*`: [`poll_send`](Self::poll_send) until
/// `None`, then [`poll_outcome`](Self::poll_outcome), then [`poll_timeout`](Self::poll_timeout)
/// to re-arm the one timer.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    version: Version,
    quorum: Quorum,
    /// Replicas not sent to yet, in reverse preference order (popped from the back).
    unsent: Vec<NodeId>,
    /// Why each failed replica failed, for the error message.
    reasons: Vec<(NodeId, String)>,
    rf: usize,
}

impl WriteRequest {
    /// A write of `version` to `replicas` (the key's preference list) at `level` for a tenant
    /// of replication factor `rf`. Replicas that have not acked by `deadline` have missed it.
    ///
    /// With fewer replicas than `level` needs (fewer nodes on the ring than `rf`), the outcome
    /// is a failure at once and nothing is sent.
    pub fn new(
        replicas: Vec<NodeId>,
        level: Level,
        rf: usize,
        version: Version,
        deadline: Instant,
    ) -> Self {
        let required = level.required(rf).max(1);
        let quorum = Quorum::Single(QuorumWrite::new(replicas.clone(), required, deadline));
        let unsent = if required > replicas.len() {
            Vec::new()
        } else {
            replicas.into_iter().rev().collect()
        };
        Self { version, quorum, unsent, reasons: Vec::new(), rf }
    }

    /// A write during a data movement, counted by `rule` (see `core::migration::sets`): a
    /// dual rule needs a quorum of the old replicas AND of the new ones. `rf` is the larger of
    /// the two factors, for the error message.
    pub fn with_rule(rule: &WriteRule, rf: usize, version: Version, deadline: Instant) -> Self {
        match rule {
            WriteRule::Single { replicas, required } => {
                let quorum =
                    Quorum::Single(QuorumWrite::new(replicas.clone(), *required, deadline));
                let unsent = if *required > replicas.len() {
                    Vec::new()
                } else {
                    replicas.iter().rev().cloned().collect()
                };
                Self { version, quorum, unsent, reasons: Vec::new(), rf }
            }
            WriteRule::Dual { old, old_required, new, new_required } => {
                let short = *old_required > old.len() || *new_required > new.len();
                let dual = DualQuorumWrite::new(
                    old.clone(),
                    *old_required,
                    new.clone(),
                    *new_required,
                    deadline,
                );
                let unsent = if short {
                    Vec::new()
                } else {
                    dual.replicas().iter().rev().cloned().collect()
                };
                Self { version, quorum: Quorum::Dual(dual), unsent, reasons: Vec::new(), rf }
            }
        }
    }

    /// The version being written.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The next replica to send the version to.
    #[must_use]
    pub fn poll_send(&mut self) -> Option<NodeId> {
        self.unsent.pop()
    }

    /// `from` stored the version.
    pub fn handle_ack(&mut self, from: &NodeId) {
        self.quorum.handle_ack(from);
    }

    /// `from` failed, for `reason` (a short text for the error message).
    pub fn handle_failure(&mut self, from: &NodeId, reason: impl Into<String>) {
        if !self.reasons.iter().any(|(n, _)| n == from) {
            self.reasons.push((from.clone(), reason.into()));
        }
        self.quorum.handle_failure(from);
    }

    /// The timer fired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.quorum.handle_timeout(now);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout); `None` once every replica settled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.quorum.poll_timeout()
    }

    /// The outcome, exactly once.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<WriteOutcome, PairError>> {
        let outcome = match &mut self.quorum {
            Quorum::Single(q) => q.poll_outcome()?,
            Quorum::Dual(d) => match d.poll_outcome()? {
                Ok(o) => Ok(WriteOutcome { acks: o.old_acks.min(o.new_acks) }),
                Err(e) => Err(e.error),
            },
        };
        Some(outcome.map_err(|e| PairError::QuorumNotReached {
            acks: e.acks,
            required: e.required,
            tried: tried(self.quorum.states().iter().map(|(n, s)| (n, *s)), &self.reasons, self.rf),
        }))
    }

    /// True once every replica has acked, failed or timed out.
    pub fn is_settled(&self) -> bool {
        self.quorum.is_settled()
    }
}

/// One set's quorum, or both sets' during a data movement.
#[derive(Clone, Debug)]
enum Quorum {
    Single(QuorumWrite),
    Dual(DualQuorumWrite),
}

impl Quorum {
    fn handle_ack(&mut self, from: &NodeId) {
        match self {
            Quorum::Single(q) => q.handle_ack(from),
            Quorum::Dual(d) => d.handle_ack(from),
        }
    }

    fn handle_failure(&mut self, from: &NodeId) {
        match self {
            Quorum::Single(q) => q.handle_failure(from),
            Quorum::Dual(d) => d.handle_failure(from),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Quorum::Single(q) => q.handle_timeout(now),
            Quorum::Dual(d) => d.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Quorum::Single(q) => q.poll_timeout(),
            Quorum::Dual(d) => d.poll_timeout(),
        }
    }

    fn is_settled(&self) -> bool {
        match self {
            Quorum::Single(q) => q.is_settled(),
            Quorum::Dual(d) => d.is_settled(),
        }
    }

    fn states(&self) -> Vec<(NodeId, ReplicaState)> {
        match self {
            Quorum::Single(q) => q.states().map(|(n, s)| (n.clone(), s)).collect(),
            Quorum::Dual(d) => d.states(),
        }
    }
}

/// What a request tried, replica by replica: `"asked 3 of rf 3: s1 ok, s2 failed: ..., s3 timed
/// out"`, or why it asked nobody.
pub(crate) fn tried<'a>(
    states: impl Iterator<Item = (&'a NodeId, ReplicaState)>,
    reasons: &[(NodeId, String)],
    rf: usize,
) -> String {
    let parts: Vec<String> = states
        .map(|(node, state)| {
            let report = match state {
                ReplicaState::Answered => ReplicaReport::Answered,
                ReplicaState::Pending => ReplicaReport::Pending,
                ReplicaState::TimedOut => ReplicaReport::TimedOut,
                ReplicaState::Failed => ReplicaReport::Failed(
                    reasons
                        .iter()
                        .find(|(n, _)| n == node)
                        .map(|(_, r)| r.clone())
                        .unwrap_or_else(|| "unknown".into()),
                ),
            };
            format!("{node} {report}")
        })
        .collect();
    // Too few nodes for the level: the machine sent nothing, and that is what to say.
    if parts.len() < rf && parts.iter().all(|p| p.ends_with("pending")) {
        let have = parts.len();
        return format!(
            "the ring holds only {have} storage node{} for replication factor {rf}; nothing was sent",
            if have == 1 { "" } else { "s" }
        );
    }
    format!("asked {} of rf {rf}: {}", parts.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::version::newest;

    fn nodes(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(*n)).collect()
    }

    #[test]
    fn stamper_counters_never_go_backwards() {
        let mut s = Stamper::new("c/0");
        let a = s.stamp(None, Bytes::from_static(b"a"), false, 1_000);
        let b = s.stamp(None, Bytes::from_static(b"b"), false, 1_000);
        let c = s.stamp(None, Bytes::from_static(b"c"), false, 500); // wall clock stepped back
        let counter = |v: &Version| v.clock.entries().iter().find(|(a, _)| a == "c/0").unwrap().1;
        assert!(counter(&a) < counter(&b) && counter(&b) < counter(&c));
        assert_eq!(c.timestamp_us, 500);
        assert_eq!(c.writer, "c/0");
    }

    #[test]
    fn stamp_extends_the_client_context() {
        let mut s = Stamper::new("c/1");
        let mut ctx = VClock::default();
        ctx.increment("other/0", 7);
        let v = s.stamp(Some(ctx.clone()), Bytes::new(), true, 10);
        assert!(v.tombstone);
        assert!(v.clock.entries().iter().any(|(a, n)| a == "other/0" && *n == 8));
        assert!(v.clock.entries().iter().any(|(a, _)| a == "c/1"));
    }

    #[test]
    fn a_version_is_never_stamped_before_what_it_descends_from() {
        // Core a's wall clock runs ahead of core b's; a client writes through a, then through b.
        let (mut a, mut b, mut c) = (Stamper::new("c/a"), Stamper::new("c/b"), Stamper::new("c/c"));
        let first = a.stamp(None, Bytes::from_static(b"first"), false, 2_000);
        let second =
            b.stamp(Some(first.clock.clone()), Bytes::from_static(b"second"), false, 1_000);
        assert!(second.timestamp_us > first.timestamp_us, "{second:?}");
        // A version concurrent with both (a failed write's copy on one replica), merged with the
        // first, must not beat the second, which follows the first.
        let stray = c.stamp(None, Bytes::from_static(b"stray"), false, 1_500);
        let merged = newest(&first, &stray);
        assert_eq!(merged.value, first.value);
        assert_eq!(newest(&merged, &second).value, second.value);
        assert_eq!(newest(&second, &merged).value, second.value);
        // Without a context the wall clock stands, even behind.
        assert_eq!(b.stamp(None, Bytes::new(), false, 900).timestamp_us, 900);
    }

    #[test]
    fn a_context_from_the_far_future_moves_the_timestamp_by_at_most_the_lead_limit() {
        let mut s = Stamper::new("c/0");
        let far = VClock::from_entries([("x".to_string(), u64::MAX)]);
        let v = s.stamp(Some(far), Bytes::new(), false, 5_000);
        assert_eq!(v.timestamp_us, 5_000 + MAX_CLOCK_LEAD_US);
        let counter = |v: &Version| v.clock.counter("c/0");
        assert_eq!(counter(&v), 5_001 + MAX_CLOCK_LEAD_US as u64);
        // The next write on this core, blind, is back on the wall clock.
        let next = s.stamp(None, Bytes::new(), false, 6_000);
        assert_eq!(next.timestamp_us, 6_000);
        assert_eq!(counter(&next), counter(&v) + 1);
    }

    #[test]
    fn sends_to_every_replica_then_succeeds_at_quorum() {
        let t0 = Instant::now();
        let mut w = WriteRequest::new(
            nodes(&["a", "b", "c"]),
            Level::Quorum,
            3,
            Version::default(),
            t0 + Duration::from_secs(1),
        );
        let sent: Vec<_> = std::iter::from_fn(|| w.poll_send()).collect();
        assert_eq!(sent, nodes(&["a", "b", "c"]));
        w.handle_ack(&sent[0]);
        assert!(w.poll_outcome().is_none());
        w.handle_ack(&sent[2]);
        assert_eq!(w.poll_outcome(), Some(Ok(WriteOutcome { acks: 2 })));
        assert!(w.poll_outcome().is_none());
        assert!(!w.is_settled());
        w.handle_timeout(t0 + Duration::from_secs(1));
        assert!(w.is_settled());
    }

    #[test]
    fn failure_says_what_was_tried() {
        let t0 = Instant::now();
        let mut w = WriteRequest::new(
            nodes(&["a", "b", "c"]),
            Level::All,
            3,
            Version::default(),
            t0 + Duration::from_secs(1),
        );
        while w.poll_send().is_some() {}
        w.handle_ack(&NodeId::new("a"));
        w.handle_failure(&NodeId::new("b"), "UNAVAILABLE: storage node b is down");
        let Some(Err(PairError::QuorumNotReached { acks, required, tried })) = w.poll_outcome()
        else {
            panic!("expected a quorum failure");
        };
        assert_eq!((acks, required), (1, 3));
        assert_eq!(
            tried,
            "asked 3 of rf 3: a ok, b failed: UNAVAILABLE: storage node b is down, c pending"
        );
    }

    #[test]
    fn too_few_nodes_on_the_ring_fails_at_once_and_sends_nothing() {
        let t0 = Instant::now();
        let mut w = WriteRequest::new(nodes(&["a", "b"]), Level::All, 3, Version::default(), t0);
        assert_eq!(w.poll_send(), None);
        let Some(Err(e)) = w.poll_outcome() else { panic!("expected a failure") };
        assert_eq!(
            e.to_string(),
            "quorum not reached: 0 of 3 required replicas answered (the ring holds only 2 \
             storage nodes for replication factor 3; nothing was sent)"
        );
    }
}
