//! The quorum decision of one request: how many replicas must answer, and when the request has
//! succeeded, failed, or can stop waiting.
//!
//! [`QuorumWrite`] and [`QuorumRead`] are sans-IO state machines in the style of quinn-proto. The
//! driver sends the request to every replica itself, then feeds what happens back in through the
//! `handle_*` methods (an ack, a reply, a failed RPC, a timer firing) and drains the `poll_*`
//! methods to learn what to do next. They never read a clock: the caller passes the deadline in
//! and `Instant`s to `handle_timeout`, so tests make up time and never sleep.
//!
//! The outcome is decided as early as possible, in both directions: success the moment the
//! `required`th answer arrives, failure the moment too few replicas are left to reach `required`.
//! Deciding does not end the bookkeeping. Answers that come after the outcome are still recorded,
//! because the caller needs them: a write's [`QuorumWrite::missed`] replicas need hinted handoff,
//! and a read's [`QuorumRead::repairs`] should cover every stale replica that answered, not only
//! the first `required`.
//!
//! A replica's first answer counts and later ones are ignored (a duplicate ack is one ack). A
//! timeout is not an answer: a replica that times out and then answers is recorded as answered,
//! since it did store the write or did send its version; the outcome, already decided by then,
//! stays as it was. Answers from nodes outside the replica set are ignored.

use std::time::Instant;

use crate::core::ids::NodeId;
use crate::core::version::{self, Version};

/// How many replicas must answer a request, as chosen by the client per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// One replica: fastest, and the read may miss the latest write.
    One,
    /// A majority: a quorum read overlaps every quorum write, so it sees the latest one.
    Quorum,
    /// Every replica: fails as soon as one replica fails.
    All,
}

impl Level {
    /// Answers needed out of `replication_factor` replicas: One = 1, Quorum = rf/2 + 1, All = rf.
    pub fn required(self, replication_factor: usize) -> usize {
        match self {
            Level::One => 1,
            Level::Quorum => replication_factor / 2 + 1,
            Level::All => replication_factor,
        }
    }
}

/// Too few replicas answered: `acks` had answered when success became impossible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{acks} of {required} required replicas answered")]
pub struct QuorumError {
    /// Replicas that had answered when the request failed.
    pub acks: usize,
    /// Replicas that had to answer.
    pub required: usize,
}

/// A successful write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Acks when the write succeeded; this is exactly `required`.
    pub acks: usize,
}

/// A successful read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome<V> {
    /// The newest version among the replies when the read succeeded; `None` when no replica that
    /// answered had a version of the key.
    pub newest: Option<V>,
    /// Replies when the read succeeded; this is exactly `required`.
    pub replies: usize,
}

/// How a read reconciles two replies into the one every replica should converge to.
///
/// For the fold over replies to be independent of arrival order, `reconcile` must be commutative
/// and associative on the values replicas can hold.
pub trait Reconcile: Clone + PartialEq {
    /// The newest of `self` (what we have so far) and `other` (a reply that just arrived).
    fn reconcile(&self, other: &Self) -> Self;
}

impl Reconcile for Version {
    /// The winner rule of `core::version`, which storage nodes also apply to incoming writes.
    fn reconcile(&self, other: &Self) -> Self {
        version::newest(self, other)
    }
}

/// One replicated write: counts acks until the write has succeeded or cannot succeed.
///
/// ```text
///   request                                 per replica
///
///              acks reach required              Pending --ack------> Acked
///   Waiting -----------------------> Succeeded  Pending --failure--> Failed
///      |                                        Pending --deadline-> TimedOut --late ack--> Acked
///      |     failures and timeouts
///      +---------------------------> Failed     settled: no replica Pending
///            leave < required possible
/// ```
///
/// Drain order: after `new` and after every `handle_*` call, first [`poll_outcome`], which yields
/// `Some` exactly once in the request's life, then [`poll_timeout`] to re-arm the one timer. To
/// learn which replicas need hints, keep feeding answers after the outcome until [`is_settled`]
/// (when `poll_timeout` returns `None`), then read [`missed`].
///
/// [`poll_outcome`]: QuorumWrite::poll_outcome
/// [`poll_timeout`]: QuorumWrite::poll_timeout
/// [`is_settled`]: QuorumWrite::is_settled
/// [`missed`]: QuorumWrite::missed
#[derive(Clone, Debug)]
pub struct QuorumWrite {
    round: Round<()>,
    outcome: Outcome<WriteOutcome>,
}

impl QuorumWrite {
    /// A write sent to `replicas` (distinct nodes, usually a preference list) that succeeds once
    /// `required` of them ack; replicas that have not answered by `deadline` count as failed.
    ///
    /// When `required` exceeds the replicas (too few nodes are up), the write fails at once.
    ///
    /// # Panics
    ///
    /// When `required` is zero or a replica is listed twice: both are our bugs.
    pub fn new(replicas: Vec<NodeId>, required: usize, deadline: Instant) -> Self {
        let mut write =
            Self { round: Round::new(replicas, required, deadline), outcome: Outcome::Waiting };
        write.decide();
        write
    }

    /// `from` stored the write.
    pub fn handle_ack(&mut self, from: &NodeId) {
        self.round.answer(from, ());
        self.decide();
    }

    /// `from` refused the write or could not be reached.
    pub fn handle_failure(&mut self, from: &NodeId) {
        self.round.fail(from);
        self.decide();
    }

    /// The timer fired: if `now` is at or past the deadline, every replica still pending has
    /// timed out. Earlier calls (a spurious wakeup) change nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.round.timeout(now);
        self.decide();
    }

    /// When to call [`handle_timeout`](QuorumWrite::handle_timeout); `None` once settled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.round.poll_timeout()
    }

    /// The outcome, exactly once: `Some` on the first call after it was decided, `None` before
    /// and after.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<WriteOutcome, QuorumError>> {
        self.outcome.take()
    }

    /// Replicas that failed or timed out and have not acked since: the ones that need a hint.
    pub fn missed(&self) -> impl Iterator<Item = &NodeId> {
        self.round.missed()
    }

    /// True when every replica has answered or timed out.
    pub fn is_settled(&self) -> bool {
        self.round.pending() == 0
    }

    /// Every replica, in the order given to `new`, with where it stands.
    pub fn states(&self) -> impl Iterator<Item = (&NodeId, ReplicaState)> {
        self.round.states()
    }

    fn decide(&mut self) {
        if let Outcome::Waiting = self.outcome {
            if let Some(verdict) = self.round.verdict() {
                self.outcome = Outcome::Ready(verdict.map(|acks| WriteOutcome { acks }));
            }
        }
    }
}

/// One replicated read: collects replies until `required` have arrived, then yields the newest;
/// later replies are still folded in so that read repair covers them.
///
/// ```text
///   request                                   per replica
///
///              replies reach required             Pending --reply----> Replied(version or none)
///   Waiting -------------------------> Succeeded  Pending --failure--> Failed
///      |                                          Pending --deadline-> TimedOut --late--> Replied
///      |     failures and timeouts
///      +-----------------------------> Failed     settled: no replica Pending
///            leave < required possible
/// ```
///
/// Drain order: after `new` and after every `handle_*` call, first [`poll_outcome`] (`Some`
/// exactly once), then [`poll_timeout`]. After the outcome, [`repairs`] lists the replicas to
/// send [`newest`] to; call it again after late replies, or once [`is_settled`], to cover them.
///
/// [`poll_outcome`]: QuorumRead::poll_outcome
/// [`poll_timeout`]: QuorumRead::poll_timeout
/// [`repairs`]: QuorumRead::repairs
/// [`newest`]: QuorumRead::newest
/// [`is_settled`]: QuorumRead::is_settled
#[derive(Clone, Debug)]
pub struct QuorumRead<V> {
    round: Round<Option<V>>,
    /// The reconciliation of every reply so far, kept as replies arrive so that the outcome and
    /// the repair list each cost one pass at most.
    newest: Option<V>,
    outcome: Outcome<ReadOutcome<V>>,
}

impl<V: Reconcile> QuorumRead<V> {
    /// A read sent to `replicas` (distinct nodes) that succeeds once `required` of them reply;
    /// replicas that have not answered by `deadline` count as failed.
    ///
    /// When `required` exceeds the replicas, the read fails at once.
    ///
    /// # Panics
    ///
    /// When `required` is zero or a replica is listed twice: both are our bugs.
    pub fn new(replicas: Vec<NodeId>, required: usize, deadline: Instant) -> Self {
        let round = Round::new(replicas, required, deadline);
        let mut read = Self { round, newest: None, outcome: Outcome::Waiting };
        read.decide();
        read
    }

    /// `from` replied with its version of the key, or `None` when it has none.
    pub fn handle_reply(&mut self, from: &NodeId, version: Option<V>) {
        if !self.round.accepts(from) {
            return;
        }
        if let Some(reply) = &version {
            self.newest = Some(match &self.newest {
                Some(newest) => newest.reconcile(reply),
                None => reply.clone(),
            });
        }
        self.round.answer(from, version);
        self.decide();
    }

    /// `from` could not answer.
    pub fn handle_failure(&mut self, from: &NodeId) {
        self.round.fail(from);
        self.decide();
    }

    /// The timer fired: if `now` is at or past the deadline, every replica still pending has
    /// timed out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.round.timeout(now);
        self.decide();
    }

    /// When to call [`handle_timeout`](QuorumRead::handle_timeout); `None` once settled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.round.poll_timeout()
    }

    /// The outcome, exactly once.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<ReadOutcome<V>, QuorumError>> {
        self.outcome.take()
    }

    /// The newest version among all replies so far, late ones included: what read repair writes.
    pub fn newest(&self) -> Option<&V> {
        self.newest.as_ref()
    }

    /// Replicas that replied with something other than [`newest`](QuorumRead::newest), or with
    /// nothing while another replica had a version: the read repair targets. Replicas that
    /// failed or timed out are not listed; nothing is known about what they hold.
    pub fn repairs(&self) -> impl Iterator<Item = &NodeId> {
        let newest = self.newest.as_ref();
        self.round.replicas.iter().filter_map(move |(id, answer)| match (answer, newest) {
            (Answer::Answered(reply), Some(newest)) if reply.as_ref() != Some(newest) => Some(id),
            _ => None,
        })
    }

    /// Replicas that failed or timed out and have not replied since.
    pub fn missed(&self) -> impl Iterator<Item = &NodeId> {
        self.round.missed()
    }

    /// True when every replica has replied, failed or timed out.
    pub fn is_settled(&self) -> bool {
        self.round.pending() == 0
    }

    /// Every replica, in the order given to `new`, with where it stands.
    pub fn states(&self) -> impl Iterator<Item = (&NodeId, ReplicaState)> {
        self.round.states()
    }

    fn decide(&mut self) {
        if let Outcome::Waiting = self.outcome {
            if let Some(verdict) = self.round.verdict() {
                let newest = &self.newest;
                let verdict =
                    verdict.map(|replies| ReadOutcome { newest: newest.clone(), replies });
                self.outcome = Outcome::Ready(verdict);
            }
        }
    }
}

/// Where a replica stands in one request, as reported to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Neither answered nor failed, and the deadline has not passed.
    Pending,
    /// It answered (possibly after the deadline).
    Answered,
    /// Its call failed.
    Failed,
    /// The deadline passed without an answer.
    TimedOut,
}

/// Where a replica stands in one request.
#[derive(Clone, Debug)]
enum Answer<A> {
    Pending,
    Answered(A),
    Failed,
    TimedOut,
}

/// The outcome slot: decided once, then handed out once.
#[derive(Clone, Debug)]
enum Outcome<T> {
    Waiting,
    Ready(Result<T, QuorumError>),
    Yielded,
}

impl<T> Outcome<T> {
    fn take(&mut self) -> Option<Result<T, QuorumError>> {
        match std::mem::replace(self, Outcome::Yielded) {
            Outcome::Ready(result) => Some(result),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// The counting shared by reads and writes; `A` is what an answer carries.
#[derive(Clone, Debug)]
struct Round<A> {
    /// In the caller's order. A linear scan finds a replica: there are at most a handful.
    replicas: Vec<(NodeId, Answer<A>)>,
    required: usize,
    deadline: Instant,
    answered: usize,
    /// Failed plus timed out.
    missed: usize,
}

impl<A> Round<A> {
    fn new(replicas: Vec<NodeId>, required: usize, deadline: Instant) -> Self {
        assert!(required > 0, "a request that needs no answer");
        for (i, id) in replicas.iter().enumerate() {
            assert!(!replicas[..i].contains(id), "replica {id} listed twice");
        }
        let replicas = replicas.into_iter().map(|id| (id, Answer::Pending)).collect();
        Self { replicas, required, deadline, answered: 0, missed: 0 }
    }

    /// True when an answer from `from` would be recorded: it is a replica and has not answered.
    fn accepts(&self, from: &NodeId) -> bool {
        self.replicas
            .iter()
            .any(|(id, answer)| id == from && matches!(answer, Answer::Pending | Answer::TimedOut))
    }

    /// Records `from`'s answer unless it is a stranger or already answered.
    fn answer(&mut self, from: &NodeId, answer: A) {
        let Some((_, slot)) = self.replicas.iter_mut().find(|(id, _)| id == from) else {
            return;
        };
        match slot {
            Answer::Pending => {}
            Answer::TimedOut => self.missed -= 1,
            Answer::Answered(_) | Answer::Failed => return,
        }
        *slot = Answer::Answered(answer);
        self.answered += 1;
    }

    fn fail(&mut self, from: &NodeId) {
        if let Some((_, slot @ Answer::Pending)) =
            self.replicas.iter_mut().find(|(id, _)| id == from)
        {
            *slot = Answer::Failed;
            self.missed += 1;
        }
    }

    fn timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        for (_, slot) in &mut self.replicas {
            if let Answer::Pending = slot {
                *slot = Answer::TimedOut;
                self.missed += 1;
            }
        }
    }

    fn pending(&self) -> usize {
        self.replicas.len() - self.answered - self.missed
    }

    fn states(&self) -> impl Iterator<Item = (&NodeId, ReplicaState)> {
        self.replicas.iter().map(|(id, answer)| {
            let state = match answer {
                Answer::Pending => ReplicaState::Pending,
                Answer::Answered(_) => ReplicaState::Answered,
                Answer::Failed => ReplicaState::Failed,
                Answer::TimedOut => ReplicaState::TimedOut,
            };
            (id, state)
        })
    }

    /// `Ok(answered)` once enough answered, `Err` once that became impossible, else `None`.
    fn verdict(&self) -> Option<Result<usize, QuorumError>> {
        if self.answered >= self.required {
            Some(Ok(self.answered))
        } else if self.answered + self.pending() < self.required {
            Some(Err(QuorumError { acks: self.answered, required: self.required }))
        } else {
            None
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (self.pending() > 0).then_some(self.deadline)
    }

    fn missed(&self) -> impl Iterator<Item = &NodeId> {
        self.replicas.iter().filter_map(|(id, answer)| match answer {
            Answer::Failed | Answer::TimedOut => Some(id),
            Answer::Pending | Answer::Answered(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::core::vclock::VClock;

    use Level::{All, One, Quorum};

    /// Replicas are named `a`, `b`, ... in order; the deadline is 10 ms after the start.
    const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
    const DEADLINE_MS: u64 = 10;

    impl Reconcile for u64 {
        fn reconcile(&self, other: &Self) -> Self {
            *self.max(other)
        }
    }

    /// One input, written as in the tables: `a+` ack, `a-` failure, `a=5` reply with 5, `a=_`
    /// reply without a version, `T10` timer at start + 10 ms.
    enum Event {
        Ack(NodeId),
        Failure(NodeId),
        Reply(NodeId, Option<u64>),
        Timeout(Duration),
    }

    fn parse(events: &str) -> Vec<Event> {
        events
            .split_whitespace()
            .map(|e| {
                if let Some(ms) = e.strip_prefix('T') {
                    return Event::Timeout(Duration::from_millis(ms.parse().unwrap()));
                }
                let (node, rest) = e.split_at(1);
                let node = NodeId::from(node);
                match rest {
                    "+" => Event::Ack(node),
                    "-" => Event::Failure(node),
                    "=_" => Event::Reply(node, None),
                    _ => Event::Reply(node, Some(rest[1..].parse().unwrap())),
                }
            })
            .collect()
    }

    fn replicas(rf: usize) -> Vec<NodeId> {
        NAMES[..rf].iter().map(|n| NodeId::from(*n)).collect()
    }

    fn names<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
        ids.map(NodeId::as_str).collect::<Vec<_>>().join(" ")
    }

    /// When the outcome appears (index of the event after which it was polled) and what it is:
    /// `Ok(acks or replies)` or `Err(acks)`.
    type Want = Option<(usize, Result<usize, usize>)>;

    #[test]
    fn write_table() {
        #[rustfmt::skip]
        let cases: &[(usize, Level, &str, Want, &str, bool)] = &[
            // rf, level, events, outcome (after which event, acks), missed, settled
            (1, One,    "a+",              Some((0, Ok(1))),  "",        true),
            (1, One,    "a-",              Some((0, Err(0))), "a",       true),
            (1, All,    "T10",             Some((0, Err(0))), "a",       true),
            (2, One,    "a- b+",           Some((1, Ok(1))),  "a",       true),
            (2, Quorum, "a+ b+",           Some((1, Ok(2))),  "",        true),
            (2, Quorum, "a+ b-",           Some((1, Err(1))), "b",       true),
            (2, All,    "a+ a+",           None,              "",        false), // duplicate
            (3, One,    "c+",              Some((0, Ok(1))),  "",        false),
            (3, Quorum, "a+ b+ c+",        Some((1, Ok(2))),  "",        true),
            (3, Quorum, "a- b-",           Some((1, Err(0))), "a b",     false), // early
            (3, Quorum, "a+ b- c-",        Some((2, Err(1))), "b c",     true),
            (3, Quorum, "a+ x+ a+",        None,              "",        false), // stranger
            (3, Quorum, "a+ a- b+",        Some((2, Ok(2))),  "",        false), // first counts
            (3, Quorum, "a+ T5",           None,              "",        false), // too early
            (3, Quorum, "a+ T10",          Some((1, Err(1))), "b c",     true),
            (3, Quorum, "a+ b+ T10",       Some((1, Ok(2))),  "c",       true),
            (3, Quorum, "a+ b+ T10 c+",    Some((1, Ok(2))),  "",        true),  // late ack
            (3, Quorum, "T10 a+ b+",       Some((0, Err(0))), "c",       true),
            (3, All,    "a+ b+ c-",        Some((2, Err(2))), "c",       true),
            (3, All,    "a- b+ c+",        Some((0, Err(0))), "a",       true),
            (5, One,    "a- b- c- d- e+",  Some((4, Ok(1))),  "a b c d", true),
            (5, Quorum, "a+ b+ c+",        Some((2, Ok(3))),  "",        false),
            (5, Quorum, "a- b- c-",        Some((2, Err(0))), "a b c",   false),
            (5, Quorum, "a+ b- c- d+ e+",  Some((4, Ok(3))),  "b c",     true),
            (5, All,    "a+ b+ c+ d+ e+",  Some((4, Ok(5))),  "",        true),
            (5, All,    "a+ b+ c+ d+ T10", Some((4, Err(4))), "e",       true),
        ];
        let start = Instant::now();
        let deadline = start + Duration::from_millis(DEADLINE_MS);
        for (rf, level, events, want, want_missed, want_settled) in cases {
            let case = format!("rf {rf} {level:?} {events:?}");
            let mut write = QuorumWrite::new(replicas(*rf), level.required(*rf), deadline);
            assert_eq!(write.poll_outcome(), None, "{case}");
            let mut got: Want = None;
            for (i, event) in parse(events).into_iter().enumerate() {
                match event {
                    Event::Ack(node) => write.handle_ack(&node),
                    Event::Failure(node) => write.handle_failure(&node),
                    Event::Timeout(after) => write.handle_timeout(start + after),
                    Event::Reply(..) => unreachable!("no replies in write cases"),
                }
                if let Some(outcome) = write.poll_outcome() {
                    assert_eq!(got, None, "{case}: second outcome at event {i}");
                    got = Some((i, outcome.map(|o| o.acks).map_err(|e| e.acks)));
                }
                assert_eq!(write.poll_outcome(), None, "{case}: outcome yielded twice");
                let want_timeout = (!write.is_settled()).then_some(deadline);
                assert_eq!(write.poll_timeout(), want_timeout, "{case}");
            }
            assert_eq!(got, *want, "{case}");
            assert_eq!(names(write.missed()), *want_missed, "{case}");
            assert_eq!(write.is_settled(), *want_settled, "{case}");
        }
    }

    /// rf, level, events, outcome, newest in the outcome, newest of all replies, repairs.
    type ReadCase = (usize, Level, &'static str, Want, Option<u64>, Option<u64>, &'static str);

    #[test]
    fn read_table() {
        #[rustfmt::skip]
        let cases: &[ReadCase] = &[
            // rf, level, events, outcome, newest in the outcome, newest of all replies, repairs
            (1, One,    "a=5",                Some((0, Ok(1))),  Some(5),    Some(5), ""),
            (1, One,    "a=_",                Some((0, Ok(1))),  None,       None,    ""),
            (1, One,    "a-",                 Some((0, Err(0))), None,       None,    ""),
            (2, One,    "T10 a=3",            Some((0, Err(0))), None,       Some(3), ""),
            (2, Quorum, "a=1 b=_",            Some((1, Ok(2))),  Some(1),    Some(1), "b"),
            (3, Quorum, "a=5 b=7",            Some((1, Ok(2))),  Some(7),    Some(7), "a"),
            (3, Quorum, "a=5 b=7 c=_",        Some((1, Ok(2))),  Some(7),    Some(7), "a c"),
            (3, Quorum, "a=5 b=5 c=9",        Some((1, Ok(2))),  Some(5),    Some(9), "a b"),
            (3, Quorum, "a=_ b=4",            Some((1, Ok(2))),  Some(4),    Some(4), "a"),
            (3, Quorum, "a=_ b=_ c=_",        Some((1, Ok(2))),  None,       None,    ""),
            (3, Quorum, "a- b-",              Some((1, Err(0))), None,       None,    ""),
            (3, Quorum, "a=1 a=9 b=1",        Some((2, Ok(2))),  Some(1),    Some(1), ""),
            (3, Quorum, "x=9 a=1 b=1",        Some((2, Ok(2))),  Some(1),    Some(1), ""),
            (3, Quorum, "a=2 T5 b=1",         Some((2, Ok(2))),  Some(2),    Some(2), "b"),
            (3, Quorum, "a=2 T10",            Some((1, Err(1))), None,       Some(2), ""),
            (3, All,    "a=1 b=2 c=3",        Some((2, Ok(3))),  Some(3),    Some(3), "a b"),
            (3, All,    "a=1 b=1 T10",        Some((2, Err(2))), None,       Some(1), ""),
            (5, One,    "a- b=2",             Some((1, Ok(1))),  Some(2),    Some(2), ""),
            (5, Quorum, "a=1 b=2 c- d=3",     Some((3, Ok(3))),  Some(3),    Some(3), "a b"),
            (5, Quorum, "a=1 b- c- d-",       Some((3, Err(1))), None,       Some(1), ""),
            (5, All,    "a=1 b=1 c=1 d=1 e-", Some((4, Err(4))), None,       Some(1), ""),
        ];
        let start = Instant::now();
        let deadline = start + Duration::from_millis(DEADLINE_MS);
        for (rf, level, events, want, want_outcome_newest, want_newest, want_repairs) in cases {
            let case = format!("rf {rf} {level:?} {events:?}");
            let mut read = QuorumRead::<u64>::new(replicas(*rf), level.required(*rf), deadline);
            let mut got: Want = None;
            let mut outcome_newest = None;
            for (i, event) in parse(events).into_iter().enumerate() {
                match event {
                    Event::Reply(node, version) => read.handle_reply(&node, version),
                    Event::Failure(node) => read.handle_failure(&node),
                    Event::Timeout(after) => read.handle_timeout(start + after),
                    Event::Ack(_) => unreachable!("no acks in read cases"),
                }
                if let Some(outcome) = read.poll_outcome() {
                    assert_eq!(got, None, "{case}: second outcome at event {i}");
                    outcome_newest = outcome.as_ref().ok().and_then(|o| o.newest);
                    got = Some((i, outcome.map(|o| o.replies).map_err(|e| e.acks)));
                }
                assert_eq!(read.poll_outcome(), None, "{case}: outcome yielded twice");
            }
            assert_eq!(got, *want, "{case}");
            assert_eq!(outcome_newest, *want_outcome_newest, "{case}");
            assert_eq!(read.newest().copied(), *want_newest, "{case}");
            assert_eq!(names(read.repairs()), *want_repairs, "{case}");
        }
    }

    #[test]
    fn level_required() {
        #[rustfmt::skip]
        let cases: &[(usize, usize, usize, usize)] = &[
            // rf, one, quorum, all
            (1,    1,   1,      1),
            (2,    1,   2,      2),
            (3,    1,   2,      3),
            (4,    1,   3,      4),
            (5,    1,   3,      5),
        ];
        for &(rf, one, quorum, all) in cases {
            assert_eq!(
                (One.required(rf), Quorum.required(rf), All.required(rf)),
                (one, quorum, all)
            );
        }
    }

    #[test]
    fn too_few_replicas_fail_at_once() {
        let deadline = Instant::now();
        let mut write = QuorumWrite::new(replicas(2), Quorum.required(5), deadline);
        assert_eq!(write.poll_outcome(), Some(Err(QuorumError { acks: 0, required: 3 })));
        let mut read = QuorumRead::<u64>::new(Vec::new(), 1, deadline);
        assert_eq!(read.poll_outcome(), Some(Err(QuorumError { acks: 0, required: 1 })));
        assert!(read.is_settled());
        assert_eq!(read.poll_timeout(), None);
    }

    #[test]
    #[should_panic(expected = "listed twice")]
    fn duplicate_replicas_are_a_bug() {
        let _ = QuorumWrite::new(vec!["a".into(), "a".into()], 1, Instant::now());
    }

    #[test]
    fn read_of_versions_returns_newest_and_lists_stale_replicas() {
        let version = |pairs: &[(&str, u64)], ts: i64, writer: &str, value: &'static str| Version {
            value: Bytes::from_static(value.as_bytes()),
            clock: VClock::from_entries(pairs.iter().map(|(a, c)| (a.to_string(), *c))),
            timestamp_us: ts,
            writer: writer.into(),
            tombstone: false,
        };
        let old = version(&[("x", 1)], 10, "x", "old");
        let new = version(&[("x", 2)], 20, "x", "new");
        let concurrent = version(&[("x", 1), ("y", 1)], 15, "y", "other");
        let (a, b, c) = (NodeId::from("a"), NodeId::from("b"), NodeId::from("c"));
        let deadline = Instant::now() + Duration::from_millis(DEADLINE_MS);

        let mut read = QuorumRead::new(replicas(3), 2, deadline);
        read.handle_reply(&a, Some(old.clone()));
        read.handle_reply(&b, Some(new.clone()));
        let outcome = read.poll_outcome().unwrap().unwrap();
        assert_eq!(outcome, ReadOutcome { newest: Some(new.clone()), replies: 2 });
        assert_eq!(names(read.repairs()), "a");

        // A late concurrent reply: the merged winner is newer than every reply, so all three
        // replicas need it.
        read.handle_reply(&c, Some(concurrent.clone()));
        let merged = read.newest().unwrap();
        assert_eq!(merged.value, new.value);
        assert_eq!((merged.clock.counter("x"), merged.clock.counter("y")), (2, 1));
        assert_eq!(names(read.repairs()), "a b c");
        assert!(read.is_settled());
    }
}
