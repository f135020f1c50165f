//! Which replicas a key's reads and writes go to at each stage of a data movement, and the
//! dual-quorum write rule of the stages that write to both the old and the new replicas.
//!
//! For a key with old replicas `O` and new replicas `N` (see [`super`]):
//!
//! ```text
//!   stage                          writes go to   write succeeds when              reads
//!   PLANNED, REVERTING,
//!     CLEANUP_TARGET, CANCELLED    O              q(O) acks                        q(O) of O
//!   DUAL_WRITE, STREAMING          O ∪ N          q(O) acks in O AND q(N) in N     q(O) of O
//!   READ_NEW                       O ∪ N          q(O) acks in O AND q(N) in N     q(N) of N
//!   USE_NEW, CLEANUP, COMPLETED    N              q(N) acks                        q(N) of N
//! ```
//!
//! `q(S)` is the request's level applied to `|S|` (at least 1). The dual rule is what keeps a
//! revert safe: every write acked while both sets are live reached a quorum of `O`, so going
//! back to `O` loses nothing; and every write reached a quorum of `N`, so once `N` also holds
//! what was streamed, reads can move to `N`. Adding a node at rf 3, two shared replicas plus the
//! new one satisfy both sets.

use std::time::Instant;

use crate::core::ids::NodeId;
use crate::core::quorum::{Level, QuorumError, QuorumWrite, ReplicaState, WriteOutcome};

use super::Stage;

/// Which replica set, old or new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// `O`: the replicas under the old ring and factor.
    Old,
    /// `N`: the replicas under the new ring and factor.
    New,
}

/// How a key's write is counted at one stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRule {
    /// A quorum of one set.
    Single { replicas: Vec<NodeId>, required: usize },
    /// A quorum of each set; the write is sent to their union.
    Dual { old: Vec<NodeId>, old_required: usize, new: Vec<NodeId>, new_required: usize },
}

impl WriteRule {
    /// Every replica the write is sent to: `O` then `N \ O` for a dual write.
    pub fn replicas(&self) -> Vec<NodeId> {
        match self {
            WriteRule::Single { replicas, .. } => replicas.clone(),
            WriteRule::Dual { old, new, .. } => union(old, new),
        }
    }
}

/// Where one key's requests go at one stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySets {
    /// The set reads are sent to.
    pub read_side: Side,
    /// The replicas reads are sent to.
    pub read: Vec<NodeId>,
    /// Replies a read needs.
    pub read_required: usize,
    /// How writes are sent and counted.
    pub write: WriteRule,
}

/// Answers a request at `level` needs out of `set`: never zero, so an empty set fails at once.
pub fn required(level: Level, set: &[NodeId]) -> usize {
    level.required(set.len()).max(1)
}

/// Which side reads use at `stage`.
pub fn read_side(stage: Stage) -> Side {
    match stage {
        Stage::ReadNew | Stage::UseNew | Stage::Cleanup | Stage::Completed => Side::New,
        Stage::Planned
        | Stage::DualWrite
        | Stage::Streaming
        | Stage::Reverting
        | Stage::CleanupTarget
        | Stage::Cancelled => Side::Old,
    }
}

/// Which sides writes need a quorum of at `stage`: `(old, new)`.
pub fn write_sides(stage: Stage) -> (bool, bool) {
    match stage {
        Stage::DualWrite | Stage::Streaming | Stage::ReadNew => (true, true),
        Stage::UseNew | Stage::Cleanup | Stage::Completed => (false, true),
        Stage::Planned | Stage::Reverting | Stage::CleanupTarget | Stage::Cancelled => {
            (true, false)
        }
    }
}

/// The read and write sets of a key with old replicas `old` and new replicas `new`, at `stage`
/// and `level`.
pub fn key_sets(stage: Stage, old: &[NodeId], new: &[NodeId], level: Level) -> KeySets {
    let read_side = read_side(stage);
    let read = match read_side {
        Side::Old => old.to_vec(),
        Side::New => new.to_vec(),
    };
    let read_required = required(level, &read);
    let write = match write_sides(stage) {
        (true, true) => WriteRule::Dual {
            old: old.to_vec(),
            old_required: required(level, old),
            new: new.to_vec(),
            new_required: required(level, new),
        },
        (false, _) => WriteRule::Single { replicas: new.to_vec(), required: required(level, new) },
        (true, false) => {
            WriteRule::Single { replicas: old.to_vec(), required: required(level, old) }
        }
    };
    KeySets { read_side, read, read_required, write }
}

fn answered<'a>(states: impl Iterator<Item = (&'a NodeId, ReplicaState)>) -> usize {
    states.filter(|(_, s)| *s == ReplicaState::Answered).count()
}

fn union(old: &[NodeId], new: &[NodeId]) -> Vec<NodeId> {
    let mut all = old.to_vec();
    all.extend(new.iter().filter(|n| !old.contains(n)).cloned());
    all
}

/// A successful dual write: acks in each set when the second quorum was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DualWriteOutcome {
    /// Acks from `O` when the write succeeded (at least `q(O)`).
    pub old_acks: usize,
    /// Acks from `N` when the write succeeded (at least `q(N)`).
    pub new_acks: usize,
}

/// A failed dual write: the set that could no longer reach its quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{side:?} replicas: {error}")]
pub struct DualQuorumError {
    /// The set that failed first.
    pub side: Side,
    /// Its count when it failed.
    pub error: QuorumError,
}

/// One write during a data movement that needs a quorum of the old replicas AND a quorum of the
/// new ones; sent to their union, an ack from a node in both sets counts for both.
///
/// ```text
///              old quorum and new quorum reached
///   Waiting ------------------------------------> Succeeded
///      |
///      |     either set can no longer reach its quorum
///      +------------------------------------------> Failed (that side)
/// ```
///
/// Same API and drain order as [`QuorumWrite`]: after `new` and every `handle_*`, first
/// [`poll_outcome`](DualQuorumWrite::poll_outcome) (`Some` exactly once), then
/// [`poll_timeout`](DualQuorumWrite::poll_timeout). Built on one [`QuorumWrite`] per set.
#[derive(Clone, Debug)]
pub struct DualQuorumWrite {
    old: QuorumWrite,
    new: QuorumWrite,
    old_result: Option<Result<WriteOutcome, QuorumError>>,
    new_result: Option<Result<WriteOutcome, QuorumError>>,
    replicas: Vec<NodeId>,
    /// `Some` until handed out by `poll_outcome`, once decided.
    outcome: Option<Result<DualWriteOutcome, DualQuorumError>>,
    decided: bool,
}

impl DualQuorumWrite {
    /// A write to `old ∪ new` that succeeds once `old_required` of `old` and `new_required` of
    /// `new` acked; replicas that have not answered by `deadline` count as failed.
    ///
    /// # Panics
    ///
    /// When a required count is zero or a set lists a replica twice.
    pub fn new(
        old: Vec<NodeId>,
        old_required: usize,
        new: Vec<NodeId>,
        new_required: usize,
        deadline: Instant,
    ) -> Self {
        let replicas = union(&old, &new);
        let mut write = Self {
            old: QuorumWrite::new(old, old_required, deadline),
            new: QuorumWrite::new(new, new_required, deadline),
            old_result: None,
            new_result: None,
            replicas,
            outcome: None,
            decided: false,
        };
        write.decide();
        write
    }

    /// A dual write from a [`WriteRule::Dual`]; `None` for a single-set rule.
    pub fn from_rule(rule: &WriteRule, deadline: Instant) -> Option<Self> {
        match rule {
            WriteRule::Dual { old, old_required, new, new_required } => {
                Some(Self::new(old.clone(), *old_required, new.clone(), *new_required, deadline))
            }
            WriteRule::Single { .. } => None,
        }
    }

    /// Every replica to send the write to: `O`, then `N \ O`.
    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    /// `from` stored the write; it counts in each set it belongs to.
    pub fn handle_ack(&mut self, from: &NodeId) {
        self.old.handle_ack(from);
        self.new.handle_ack(from);
        self.decide();
    }

    /// `from` refused the write or could not be reached.
    pub fn handle_failure(&mut self, from: &NodeId) {
        self.old.handle_failure(from);
        self.new.handle_failure(from);
        self.decide();
    }

    /// The timer fired; see [`QuorumWrite::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.old.handle_timeout(now);
        self.new.handle_timeout(now);
        self.decide();
    }

    /// When to call [`handle_timeout`](DualQuorumWrite::handle_timeout); `None` once settled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.old.poll_timeout(), self.new.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The outcome, exactly once.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<DualWriteOutcome, DualQuorumError>> {
        self.outcome.take()
    }

    /// Replicas of either set that failed or timed out and have not acked since, each once.
    pub fn missed(&self) -> Vec<NodeId> {
        let old: Vec<NodeId> = self.old.missed().cloned().collect();
        let new: Vec<NodeId> = self.new.missed().cloned().collect();
        union(&old, &new)
    }

    /// True when every replica has answered or timed out.
    pub fn is_settled(&self) -> bool {
        self.old.is_settled() && self.new.is_settled()
    }

    /// Every replica, `O` then `N \ O`, with where it stands.
    pub fn states(&self) -> Vec<(NodeId, ReplicaState)> {
        let mut states: Vec<(NodeId, ReplicaState)> =
            self.old.states().map(|(id, s)| (id.clone(), s)).collect();
        for (id, s) in self.new.states() {
            if !states.iter().any(|(seen, _)| seen == id) {
                states.push((id.clone(), s));
            }
        }
        states
    }

    fn decide(&mut self) {
        if self.old_result.is_none() {
            self.old_result = self.old.poll_outcome();
        }
        if self.new_result.is_none() {
            self.new_result = self.new.poll_outcome();
        }
        if self.decided {
            return;
        }
        let verdict = match (&self.old_result, &self.new_result) {
            (Some(Err(error)), _) => Err(DualQuorumError { side: Side::Old, error: *error }),
            (_, Some(Err(error))) => Err(DualQuorumError { side: Side::New, error: *error }),
            (Some(Ok(_)), Some(Ok(_))) => Ok(DualWriteOutcome {
                old_acks: answered(self.old.states()),
                new_acks: answered(self.new.states()),
            }),
            _ => return,
        };
        self.decided = true;
        self.outcome = Some(verdict);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids(names: &str) -> Vec<NodeId> {
        names.split_whitespace().map(NodeId::from).collect()
    }

    fn names(nodes: &[NodeId]) -> String {
        nodes.iter().map(NodeId::as_str).collect::<Vec<_>>().join(" ")
    }

    /// `(q(O), q(N))` of a dual rule.
    type Dual = Option<(usize, usize)>;

    #[test]
    fn sets_per_stage() {
        // Adding d at rf 3: O = a b c, N = a b d.
        let (old, new) = (ids("a b c"), ids("a b d"));
        #[rustfmt::skip]
        let cases: &[(Stage, &str, &str, usize, Dual)] = &[
            // stage,             reads,   writes,    read q, dual (q(O), q(N))
            (Stage::Planned,       "a b c", "a b c",   2,      None),
            (Stage::DualWrite,     "a b c", "a b c d", 2,      Some((2, 2))),
            (Stage::Streaming,     "a b c", "a b c d", 2,      Some((2, 2))),
            (Stage::ReadNew,       "a b d", "a b c d", 2,      Some((2, 2))),
            (Stage::UseNew,        "a b d", "a b d",   2,      None),
            (Stage::Cleanup,       "a b d", "a b d",   2,      None),
            (Stage::Completed,     "a b d", "a b d",   2,      None),
            (Stage::Reverting,     "a b c", "a b c",   2,      None),
            (Stage::CleanupTarget, "a b c", "a b c",   2,      None),
            (Stage::Cancelled,     "a b c", "a b c",   2,      None),
        ];
        for &(stage, reads, writes, read_q, dual) in cases {
            let sets = key_sets(stage, &old, &new, Level::Quorum);
            assert_eq!(names(&sets.read), reads, "{stage:?} reads");
            assert_eq!(names(&sets.write.replicas()), writes, "{stage:?} writes");
            assert_eq!(sets.read_required, read_q, "{stage:?}");
            let got = match &sets.write {
                WriteRule::Dual { old_required, new_required, .. } => {
                    Some((*old_required, *new_required))
                }
                WriteRule::Single { .. } => None,
            };
            assert_eq!(got, dual, "{stage:?} rule");
        }
    }

    #[test]
    fn required_per_level_and_set_size() {
        #[rustfmt::skip]
        let cases: &[(Level, &str, usize)] = &[
            (Level::One,    "a b c", 1),
            (Level::Quorum, "a b c", 2),
            (Level::Quorum, "a b",   2),
            (Level::Quorum, "a",     1),
            (Level::All,    "a b c", 3),
            (Level::All,    "",      1), // an empty set can never answer: fails at once
        ];
        for &(level, set, want) in cases {
            assert_eq!(required(level, &ids(set)), want, "{level:?} of {set:?}");
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Event {
        Ack(&'static str),
        Fail(&'static str),
        Timeout,
    }

    #[test]
    fn dual_quorum_outcomes() {
        use Event::*;
        type Want = Option<Result<(usize, usize), Side>>;
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &[Event], Want)] = &[
            // old,   new,     level q, events,                            outcome
            ("a b c", "a b d", "q", &[Ack("a"), Ack("b")],                 Some(Ok((2, 2)))),
            ("a b c", "a b d", "q", &[Ack("a"), Ack("d")],                 None),
            ("a b c", "a b d", "q", &[Ack("a"), Ack("d"), Ack("c")],       Some(Ok((2, 2)))),
            // Acked only by old nodes: the new set has one ack of two.
            ("a b c", "a b d", "q", &[Ack("a"), Ack("c")],                 None),
            ("a b c", "a b d", "q", &[Ack("a"), Ack("c"), Fail("b")],      None),
            ("a b c", "a b d", "q", &[Ack("a"), Ack("c"), Fail("b"), Fail("d")],
                                                                            Some(Err(Side::New))),
            ("a b c", "a b d", "q", &[Fail("a"), Fail("c")],               Some(Err(Side::Old))),
            ("a b c", "a b d", "q", &[Fail("d"), Fail("a")],               Some(Err(Side::New))),
            ("a b c", "a b d", "q", &[Ack("a"), Timeout],                  Some(Err(Side::Old))),
            ("a b c", "a b d", "a", &[Ack("a"), Ack("b"), Ack("c")],       None),
            ("a b c", "a b d", "a", &[Ack("a"), Ack("b"), Ack("c"), Ack("d")],
                                                                            Some(Ok((3, 3)))),
            ("a b c", "a b d", "1", &[Ack("c")],                           None),
            ("a b c", "a b d", "1", &[Ack("c"), Ack("d")],                 Some(Ok((1, 1)))),
            // rf 3 -> 1: N = a is inside O.
            ("a b c", "a",     "q", &[Ack("b"), Ack("c")],                 None),
            ("a b c", "a",     "q", &[Ack("b"), Ack("a")],                 Some(Ok((2, 1)))),
            // Strangers and duplicates change nothing.
            ("a b c", "a b d", "q", &[Ack("x"), Ack("a"), Ack("a")],       None),
        ];
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(1);
        for (old, new, level, events, want) in cases {
            let level = match *level {
                "1" => Level::One,
                "q" => Level::Quorum,
                _ => Level::All,
            };
            let rule = key_sets(Stage::DualWrite, &ids(old), &ids(new), level).write;
            let mut w = DualQuorumWrite::from_rule(&rule, deadline).unwrap();
            let mut got = w.poll_outcome();
            for event in *events {
                match event {
                    Ack(n) => w.handle_ack(&NodeId::from(*n)),
                    Fail(n) => w.handle_failure(&NodeId::from(*n)),
                    Timeout => w.handle_timeout(deadline),
                }
                if let Some(outcome) = w.poll_outcome() {
                    assert!(got.is_none(), "{events:?}: two outcomes");
                    got = Some(outcome);
                }
            }
            let got = got.map(|r| r.map(|o| (o.old_acks, o.new_acks)).map_err(|e| e.side));
            assert_eq!(got, *want, "{old} / {new} {level:?} {events:?}");
        }
    }

    #[test]
    fn late_answers_are_still_recorded() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(1);
        let mut w = DualQuorumWrite::new(ids("a b c"), 2, ids("a b d"), 2, deadline);
        assert_eq!(names(w.replicas()), "a b c d");
        assert_eq!(w.poll_timeout(), Some(deadline));
        w.handle_ack(&NodeId::from("a"));
        w.handle_ack(&NodeId::from("b"));
        assert!(matches!(w.poll_outcome(), Some(Ok(_))));
        assert!(!w.is_settled());
        w.handle_failure(&NodeId::from("c"));
        w.handle_timeout(deadline);
        assert!(w.is_settled());
        assert_eq!(w.poll_timeout(), None);
        assert_eq!(w.poll_outcome(), None);
        assert_eq!(names(&w.missed()), "c d");
        let states: Vec<ReplicaState> = w.states().into_iter().map(|(_, s)| s).collect();
        use ReplicaState::*;
        assert_eq!(states, vec![Answered, Answered, Failed, TimedOut]);
        assert!(DualQuorumWrite::from_rule(
            &key_sets(Stage::UseNew, &ids("a"), &ids("b"), Level::One).write,
            deadline
        )
        .is_none());
    }

    #[test]
    fn an_empty_new_set_fails_at_once() {
        let deadline = Instant::now();
        let mut w = DualQuorumWrite::new(ids("a"), 1, Vec::new(), 1, deadline);
        let err = w.poll_outcome().unwrap().unwrap_err();
        assert_eq!(err.side, Side::New);
    }
}
