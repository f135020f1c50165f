//! The read-repair queue of one coordinator core: bounded, with retries as timers in a table.
//!
//! A job occupies one slot from [`RepairQueue::handle_enqueue`] until it succeeds or is dropped,
//! through every retry: retries wait in the same bounded table as new jobs, so a storage node
//! that keeps failing cannot grow the queue past `capacity` (the old queue let retries bypass
//! its cap). A job that cannot get a slot, or fails `max_attempts` times, is dropped and counted;
//! what it would have fixed is left to the next read or to hinted handoff.
//!
//! ```text
//!   handle_enqueue ──▶ Ready ──poll_send──▶ InFlight ──ok──────────────▶ done (counted)
//!      │ full: dropped    ▲                    │ failed, attempts left
//!      ▼                  └──due──  Waiting ◀──┘ (backoff × attempt)
//!   counted                                    │ failed, no attempts left ──▶ dropped
//! ```
//!
//! Drain order: after any `handle_*`, [`RepairQueue::poll_send`] with the current time until
//! `None`, then [`RepairQueue::poll_timeout`] for when a waiting retry becomes due.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use ahash::AHashMap;

/// Identifies one job inside its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepairId(u64);

/// How a queue behaves.
#[derive(Clone, Copy, Debug)]
pub struct RepairPolicy {
    /// Jobs held at once, retries included (`read_repair_queue`).
    pub capacity: usize,
    /// Sends per job before it is dropped (`read_repair_attempts`).
    pub max_attempts: u32,
    /// Wait before retry `n` is `backoff * n`.
    pub backoff: Duration,
}

/// Counters of one queue, read into metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairStats {
    /// Jobs accepted.
    pub queued: u64,
    /// Jobs whose repair a replica acknowledged.
    pub done: u64,
    /// Jobs refused because the queue was full.
    pub dropped_full: u64,
    /// Jobs dropped after `max_attempts` failed sends.
    pub dropped_attempts: u64,
    /// Sends that failed and were scheduled again.
    pub retries: u64,
}

/// A bounded queue of read repairs with retry timers; `J` is what one repair carries.
#[derive(Debug)]
pub struct RepairQueue<J> {
    policy: RepairPolicy,
    next_id: u64,
    jobs: AHashMap<RepairId, (J, u32)>,
    ready: VecDeque<RepairId>,
    /// Retries by due time; ids break ties so two retries due together both stay.
    waiting: BTreeMap<(Instant, RepairId), ()>,
    stats: RepairStats,
}

impl<J> RepairQueue<J> {
    /// An empty queue.
    pub fn new(policy: RepairPolicy) -> Self {
        Self {
            policy,
            next_id: 0,
            jobs: AHashMap::new(),
            ready: VecDeque::new(),
            waiting: BTreeMap::new(),
            stats: RepairStats::default(),
        }
    }

    /// Queues `job`; false (and counted) when the queue is full.
    pub fn handle_enqueue(&mut self, job: J) -> bool {
        if self.jobs.len() >= self.policy.capacity {
            self.stats.dropped_full += 1;
            return false;
        }
        let id = RepairId(self.next_id);
        self.next_id += 1;
        self.jobs.insert(id, (job, 0));
        self.ready.push_back(id);
        self.stats.queued += 1;
        true
    }

    /// The next job to send now, and its id for [`handle_result`](Self::handle_result).
    #[must_use]
    pub fn poll_send(&mut self, now: Instant) -> Option<(RepairId, &J)> {
        while let Some((&(due, id), _)) = self.waiting.first_key_value() {
            if due > now {
                break;
            }
            self.waiting.remove(&(due, id));
            self.ready.push_back(id);
        }
        let id = self.ready.pop_front()?;
        let (job, attempts) = self.jobs.get_mut(&id)?;
        *attempts += 1;
        Some((id, job))
    }

    /// The send of job `id` ended: `ok` when the replica applied it.
    pub fn handle_result(&mut self, id: RepairId, ok: bool, now: Instant) {
        let Some((_, attempts)) = self.jobs.get(&id) else { return };
        let attempts = *attempts;
        if ok {
            self.jobs.remove(&id);
            self.stats.done += 1;
        } else if attempts >= self.policy.max_attempts {
            self.jobs.remove(&id);
            self.stats.dropped_attempts += 1;
        } else {
            self.stats.retries += 1;
            let due = now + self.policy.backoff * attempts;
            self.waiting.insert((due, id), ());
        }
    }

    /// When the earliest waiting retry becomes due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.first_key_value().map(|(&(due, _), _)| due)
    }

    /// Jobs held: ready, in flight and waiting to retry.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when no job is held.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> RepairStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RepairPolicy =
        RepairPolicy { capacity: 2, max_attempts: 3, backoff: Duration::from_millis(100) };

    #[test]
    fn retries_keep_their_slot_and_wait_with_growing_backoff() {
        let t0 = Instant::now();
        let mut q = RepairQueue::new(POLICY);
        assert!(q.handle_enqueue("a"));
        let (id, _) = q.poll_send(t0).unwrap();
        q.handle_result(id, false, t0);
        assert_eq!(q.len(), 1, "the failed job keeps its slot");
        assert!(q.handle_enqueue("b"));
        assert!(!q.handle_enqueue("c"), "retries count against the capacity");
        // "b" is ready now; "a" waits 100 ms.
        let (idb, job) = q.poll_send(t0).unwrap();
        assert_eq!(*job, "b");
        assert!(q.poll_send(t0).is_none());
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        let (id2, job) = q.poll_send(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!((*job, id2), ("a", id));
        q.handle_result(id2, false, t0 + Duration::from_millis(100));
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_millis(300)), "backoff × 2");
        q.handle_result(idb, true, t0);
        let (id3, _) = q.poll_send(t0 + Duration::from_millis(300)).unwrap();
        q.handle_result(id3, false, t0 + Duration::from_millis(300));
        assert!(q.is_empty(), "third failure drops it");
        assert_eq!(
            q.stats(),
            RepairStats { queued: 2, done: 1, dropped_full: 1, dropped_attempts: 1, retries: 2 }
        );
    }
}
