//! Hint policy: which missed operations become hints, and the bounded, per-key coalescing buffer
//! a coordinator core keeps them in until they are moved to the hint store.
//!
//! A write-type operation (write, delete, repair) that a replica did not apply owes that replica
//! a hint, unless the replica refused it as invalid (then replaying it would be refused again).
//! Reads never owe hints.
//!
//! The buffer keeps at most one hint per `(target node, tenant, key)`: a newer write of the same
//! key to the same down node replaces the older hint (by the version rule of
//! [`crate::core::version`], which storage nodes apply anyway), so a hot key costs one hint, not
//! one per write. Past `capacity` distinct keys, new keys are dropped and counted; read repair
//! and the next write still cover them.

use std::hash::Hash;

use ahash::AHashMap;

use crate::core::quorum::Reconcile;

/// Whether a missed operation owes its replica a hint.
pub fn owes_hint(is_read: bool, refused_as_invalid: bool) -> bool {
    !is_read && !refused_as_invalid
}

/// What [`HintBuffer::handle_missed`] did with a hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// A new key: buffered.
    Buffered,
    /// The key had a hint: the two were merged into one.
    Coalesced,
    /// The buffer was full: dropped.
    Dropped,
}

/// Counters of one buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintBufferStats {
    /// Hints buffered under a new key.
    pub buffered: u64,
    /// Hints merged into a buffered hint of the same key.
    pub coalesced: u64,
    /// Hints dropped because the buffer was full.
    pub dropped: u64,
}

/// Hints waiting to be stored, at most one per key `K`, holding the newest version `V`.
#[derive(Debug)]
pub struct HintBuffer<K, V> {
    capacity: usize,
    entries: AHashMap<K, V>,
    stats: HintBufferStats,
}

impl<K: Hash + Eq, V: Reconcile> HintBuffer<K, V> {
    /// An empty buffer of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, entries: AHashMap::new(), stats: HintBufferStats::default() }
    }

    /// A replica missed `version` of `key`.
    pub fn handle_missed(&mut self, key: K, version: V) -> Admitted {
        if let Some(held) = self.entries.get_mut(&key) {
            *held = held.reconcile(&version);
            self.stats.coalesced += 1;
            return Admitted::Coalesced;
        }
        if self.entries.len() >= self.capacity {
            self.stats.dropped += 1;
            return Admitted::Dropped;
        }
        self.entries.insert(key, version);
        self.stats.buffered += 1;
        Admitted::Buffered
    }

    /// Takes every buffered hint.
    pub fn take(&mut self) -> Vec<(K, V)> {
        self.entries.drain().collect()
    }

    /// Keys buffered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> HintBufferStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Max(u32);

    impl Reconcile for Max {
        fn reconcile(&self, other: &Self) -> Self {
            Max(self.0.max(other.0))
        }
    }

    #[test]
    fn policy() {
        // is_read | invalid | owes
        let cases = [(false, false, true), (false, true, false), (true, false, false)];
        for (is_read, invalid, owes) in cases {
            assert_eq!(owes_hint(is_read, invalid), owes, "{is_read} {invalid}");
        }
    }

    #[test]
    fn coalesces_per_key_keeping_the_newest_and_drops_past_capacity() {
        let mut b = HintBuffer::new(2);
        assert_eq!(b.handle_missed("k1", Max(2)), Admitted::Buffered);
        assert_eq!(b.handle_missed("k1", Max(1)), Admitted::Coalesced);
        assert_eq!(b.handle_missed("k2", Max(5)), Admitted::Buffered);
        assert_eq!(b.handle_missed("k3", Max(9)), Admitted::Dropped);
        assert_eq!(b.handle_missed("k2", Max(7)), Admitted::Coalesced, "a full buffer coalesces");
        let mut held = b.take();
        held.sort_by_key(|(k, _)| *k);
        assert_eq!(held, vec![("k1", Max(2)), ("k2", Max(7))]);
        assert_eq!(b.stats(), HintBufferStats { buffered: 2, coalesced: 2, dropped: 1 });
        assert!(b.is_empty());
        assert_eq!(b.handle_missed("k3", Max(9)), Admitted::Buffered);
    }
}
