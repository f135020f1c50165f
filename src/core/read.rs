//! One read as the coordinator runs it: ask every replica, answer with the newest version once
//! the level is met, and owe a read repair to every replica that answered with something older.
//!
//! [`ReadRequest`] wraps [`QuorumRead`]. Its repairs are decided once the request has settled
//! (every replica answered, failed or timed out): replies that arrive after the client's answer
//! still count, so a replica that was merely slow is repaired too, and the version a repair
//! writes is the newest of all replies, not only of the first `required`.

use std::time::Instant;

use crate::{
    core::{
        ids::NodeId,
        quorum::{Level, QuorumRead, ReadOutcome},
        version::Version,
        write::tried,
    },
    error::PairError,
};

/// A read repair owed: write `version` to `node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The stale replica.
    pub node: NodeId,
    /// The newest version among all replies.
    pub version: Version,
}

/// One read of one key from its replicas.
///
/// ```text
///   new ──poll_send()*──▶ Waiting ──replies / failures / timeout──▶ outcome (once)
///                                                                      │ later replies
///                                                                      ▼
///                                               settled ──poll_repair()*──▶ done
/// ```
///
/// Drain order after `new` and after every `handle_*`: [`poll_send`](Self::poll_send) until
/// `None`, [`poll_outcome`](Self::poll_outcome), [`poll_repair`](Self::poll_repair) until `None`,
/// then [`poll_timeout`](Self::poll_timeout).
#[derive(Clone, Debug)]
pub struct ReadRequest {
    quorum: QuorumRead<Version>,
    unsent: Vec<NodeId>,
    reasons: Vec<(NodeId, String)>,
    rf: usize,
    /// Repairs not handed out yet; filled once, when the request settles.
    repairs: Option<Vec<Repair>>,
}

impl ReadRequest {
    /// A read from `replicas` at `level` for a tenant of replication factor `rf`.
    pub fn new(replicas: Vec<NodeId>, level: Level, rf: usize, deadline: Instant) -> Self {
        let required = level.required(rf).max(1);
        let quorum = QuorumRead::new(replicas.clone(), required, deadline);
        let unsent = if required > replicas.len() {
            Vec::new()
        } else {
            replicas.into_iter().rev().collect()
        };
        Self { quorum, unsent, reasons: Vec::new(), rf, repairs: None }
    }

    /// The next replica to ask.
    #[must_use]
    pub fn poll_send(&mut self) -> Option<NodeId> {
        self.unsent.pop()
    }

    /// `from` answered with its version of the key (`None`: it has none).
    pub fn handle_reply(&mut self, from: &NodeId, version: Option<Version>) {
        self.quorum.handle_reply(from, version);
    }

    /// `from` failed, for `reason`.
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

    /// When to call [`handle_timeout`](Self::handle_timeout); `None` once settled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.quorum.poll_timeout()
    }

    /// The outcome, exactly once: the newest version (which may be a tombstone) or why not.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<ReadOutcome<Version>, PairError>> {
        let outcome = self.quorum.poll_outcome()?;
        Some(outcome.map_err(|e| PairError::QuorumNotReached {
            acks: e.acks,
            required: e.required,
            tried: tried(self.quorum.states(), &self.reasons, self.rf),
        }))
    }

    /// The next read repair owed; `None` until the request has settled, then each repair once.
    #[must_use]
    pub fn poll_repair(&mut self) -> Option<Repair> {
        if self.repairs.is_none() {
            if !self.quorum.is_settled() {
                return None;
            }
            let owed = match self.quorum.newest() {
                Some(newest) => self
                    .quorum
                    .repairs()
                    .map(|node| Repair { node: node.clone(), version: newest.clone() })
                    .collect(),
                None => Vec::new(),
            };
            self.repairs = Some(owed);
        }
        self.repairs.as_mut().and_then(Vec::pop)
    }

    /// True once every replica has replied, failed or timed out.
    pub fn is_settled(&self) -> bool {
        self.quorum.is_settled()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::core::vclock::VClock;

    fn version(counter: u64) -> Version {
        let mut clock = VClock::default();
        clock.increment("c/0", counter);
        Version {
            value: Bytes::from(counter.to_string()),
            clock,
            timestamp_us: counter as i64,
            writer: "c/0".into(),
            tombstone: false,
        }
    }

    #[test]
    fn answers_at_quorum_and_repairs_late_stale_replicas() {
        let t0 = Instant::now();
        let (a, b, c) = (NodeId::new("a"), NodeId::new("b"), NodeId::new("c"));
        let mut r = ReadRequest::new(
            vec![a.clone(), b.clone(), c.clone()],
            Level::Quorum,
            3,
            t0 + Duration::from_secs(1),
        );
        assert_eq!(std::iter::from_fn(|| r.poll_send()).count(), 3);
        r.handle_reply(&a, Some(version(2)));
        r.handle_reply(&b, Some(version(2)));
        let outcome = r.poll_outcome().unwrap().unwrap();
        assert_eq!(outcome.newest, Some(version(2)));
        assert_eq!(r.poll_repair(), None, "no repair before the read settles");
        r.handle_reply(&c, Some(version(1)));
        assert_eq!(r.poll_repair(), Some(Repair { node: c.clone(), version: version(2) }));
        assert_eq!(r.poll_repair(), None);
    }

    #[test]
    fn a_newer_late_reply_repairs_the_quorum_that_answered() {
        let t0 = Instant::now();
        let (a, b, c) = (NodeId::new("a"), NodeId::new("b"), NodeId::new("c"));
        let mut r = ReadRequest::new(
            vec![a.clone(), b.clone(), c.clone()],
            Level::Quorum,
            3,
            t0 + Duration::from_secs(1),
        );
        while r.poll_send().is_some() {}
        r.handle_reply(&a, None);
        r.handle_reply(&b, Some(version(1)));
        assert_eq!(r.poll_outcome().unwrap().unwrap().newest, Some(version(1)));
        r.handle_reply(&c, Some(version(3)));
        let mut repaired: Vec<_> = std::iter::from_fn(|| r.poll_repair()).collect();
        repaired.sort_by(|x, y| x.node.as_str().cmp(y.node.as_str()));
        assert_eq!(
            repaired,
            vec![Repair { node: a, version: version(3) }, Repair { node: b, version: version(3) }]
        );
    }

    #[test]
    fn timeout_settles_and_failure_message_names_replicas() {
        let t0 = Instant::now();
        let (a, b) = (NodeId::new("a"), NodeId::new("b"));
        let mut r = ReadRequest::new(vec![a.clone(), b.clone()], Level::All, 2, t0);
        while r.poll_send().is_some() {}
        r.handle_reply(&a, Some(version(1)));
        r.handle_timeout(t0);
        let Some(Err(e)) = r.poll_outcome() else { panic!("expected failure") };
        assert!(e.to_string().contains("a ok, b timed out"), "{e}");
        assert!(r.is_settled());
        assert_eq!(r.poll_repair(), None);
    }
}
