//! A stored version of one key and the rule that picks between two versions.
//!
//! The same rule runs on storage nodes (applying an incoming write) and on coordinators (picking
//! the newest replica reply), so that whatever order writes arrive in, every replica and every
//! reader ends with the same winner:
//!
//! ```text
//!   incoming vs stored     | result
//!   -----------------------+-------------------------------------------------------------
//!   After (dominates)      | incoming replaces stored
//!   Before                 | stored stays (and is answered back)
//!   Equal, same content    | stored stays
//!   Equal, other content   | the winner by (timestamp, writer)
//!   Concurrent             | the winner by (timestamp, writer), under the merged clock
//! ```
//!
//! Why equal clocks can carry different content: merging concurrent versions in different orders
//! can end with the same merged clock but different winners when timestamps run against
//! causality (a version that causally follows another but was stamped by a coordinator whose
//! wall clock is behind). Without the tie-break, two replicas in that state would each keep their
//! own value forever; with it, the first exchange (read repair, hint) makes them agree.
//!
//! For concurrent versions the winner is the one with the higher `timestamp_us`, then the higher
//! `writer` (actor id), then, for full determinism, tombstone over value and the larger value.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::core::vclock::{Causality, VClock};

/// One version of a key: what a storage node stores and a read returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Version {
    /// The user's value; empty for tombstones.
    pub value: Bytes,
    /// The version's causal history.
    pub clock: VClock,
    /// Coordinator wall-clock time of the write, unix microseconds; orders concurrent versions.
    pub timestamp_us: i64,
    /// The actor (coordinator core) that made this version; breaks timestamp ties.
    pub writer: String,
    /// True for a delete.
    pub tombstone: bool,
}

/// What applying an incoming version to a stored one does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Store the incoming version as it is.
    TakeIncoming,
    /// Keep what is stored; the incoming version adds nothing.
    KeepStored,
    /// Concurrent versions: store `0`, the deterministic winner under the merged clock.
    Merged(Version),
}

impl Version {
    /// Orders two concurrent versions by the winner rule: `Greater` means `self` wins.
    pub fn winner_order(&self, other: &Version) -> Ordering {
        self.timestamp_us
            .cmp(&other.timestamp_us)
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| self.tombstone.cmp(&other.tombstone))
            .then_with(|| self.value.cmp(&other.value))
    }
}

/// Decides what a node holding `stored` keeps when `incoming` arrives.
pub fn resolve(stored: &Version, incoming: &Version) -> Resolution {
    match incoming.clock.compare(&stored.clock) {
        Causality::After => Resolution::TakeIncoming,
        Causality::Before => Resolution::KeepStored,
        Causality::Equal
            if incoming != stored && incoming.winner_order(stored) == Ordering::Greater =>
        {
            Resolution::TakeIncoming
        }
        Causality::Equal => Resolution::KeepStored,
        Causality::Concurrent => {
            let mut winner = if incoming.winner_order(stored) == Ordering::Greater {
                incoming.clone()
            } else {
                stored.clone()
            };
            let other =
                if incoming.winner_order(stored) == Ordering::Greater { stored } else { incoming };
            winner.clock.merge(&other.clock);
            Resolution::Merged(winner)
        }
    }
}

/// The version every replica converges to from `a` and `b`, in either order: what a coordinator
/// answers when two replicas disagree.
pub fn newest(a: &Version, b: &Version) -> Version {
    match resolve(a, b) {
        Resolution::TakeIncoming => b.clone(),
        Resolution::KeepStored => a.clone(),
        Resolution::Merged(v) => v,
    }
}

/// A live version with the clock `pairs`, for tests here and in the storage engine.
#[cfg(test)]
pub(crate) fn test_version(pairs: &[(&str, u64)], ts: i64, writer: &str, value: &str) -> Version {
    Version {
        value: Bytes::copy_from_slice(value.as_bytes()),
        clock: VClock::from_entries(pairs.iter().map(|(a, c)| (a.to_string(), *c))),
        timestamp_us: ts,
        writer: writer.into(),
        tombstone: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_version as v;

    #[test]
    fn dominating_version_replaces() {
        let old = v(&[("a", 1)], 10, "a", "old");
        let new = v(&[("a", 2)], 5, "a", "new");
        assert_eq!(resolve(&old, &new), Resolution::TakeIncoming);
        assert_eq!(resolve(&new, &old), Resolution::KeepStored);
    }

    #[test]
    fn equal_clocks_with_different_content_converge() {
        // a={x:1}@30, b={y:1}@20, c={x:1,z:1}@10 (c read a, but was stamped by a lagging clock).
        let a = v(&[("x", 1)], 30, "x", "a");
        let b = v(&[("y", 1)], 20, "y", "b");
        let c = v(&[("x", 1), ("z", 1)], 10, "z", "c");
        let abc = newest(&newest(&a, &b), &c);
        let acb = newest(&newest(&a, &c), &b);
        assert_eq!(abc.clock, acb.clock);
        // Two replicas that ended in these states agree after one exchange, in either direction.
        assert_eq!(newest(&abc, &acb), newest(&acb, &abc));
    }

    #[test]
    fn concurrent_versions_converge_in_either_order() {
        let x = v(&[("a", 1)], 10, "a", "x");
        let y = v(&[("b", 1)], 10, "b", "y");
        let xy = newest(&x, &y);
        let yx = newest(&y, &x);
        assert_eq!(xy, yx);
        assert_eq!(xy.value, Bytes::from_static(b"y"));
        assert_eq!(xy.clock.counter("a"), 1);
        assert_eq!(xy.clock.counter("b"), 1);
    }
}
