//! Vector clocks: one counter per actor, where an actor is one coordinator core (`coord-1/3`).
//!
//! Entries are kept sorted by actor so that compare and merge are a single linear walk over two
//! sorted lists, with no hashing and no allocation for compare. Clocks are small (one entry per
//! coordinator core that ever wrote the key, bounded by [`MAX_ENTRIES`]), so a sorted `Vec` beats
//! any map.
//!
//! Pruning rule: when a clock would exceed [`MAX_ENTRIES`] entries, the entries with the smallest
//! counters are dropped (ties: smaller actor first) until it fits. Dropping history can only make
//! two versions look concurrent that were in fact ordered; concurrent versions are then ordered by
//! the deterministic winner rule (`core::version`), so pruning never makes replicas diverge, it
//! can at worst let a causally newer write lose to an older one with a later timestamp.

use std::cmp::Ordering;

/// Most entries a clock keeps; see the module doc for the pruning rule. 64 covers, for example,
/// 8 coordinators of 8 cores each writing the same key.
pub const MAX_ENTRIES: usize = 64;

/// How two clocks relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// Same history.
    Equal,
    /// `self` happened before `other`: `other` dominates.
    Before,
    /// `self` happened after `other`: `self` dominates.
    After,
    /// Neither dominates.
    Concurrent,
}

/// A vector clock: sorted `(actor, counter)` pairs with counters above zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VClock {
    entries: Vec<(String, u64)>,
}

impl VClock {
    /// The empty clock: before every non-empty clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a clock from pairs in any order; duplicate actors keep their largest counter and
    /// zero counters are dropped.
    pub fn from_entries<I: IntoIterator<Item = (String, u64)>>(pairs: I) -> Self {
        let mut entries: Vec<(String, u64)> = pairs.into_iter().filter(|(_, c)| *c > 0).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut clock = Self { entries };
        clock.prune(MAX_ENTRIES);
        clock
    }

    /// The `(actor, counter)` pairs, sorted by actor.
    pub fn entries(&self) -> &[(String, u64)] {
        &self.entries
    }

    /// True for the clock of no write at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// This actor's counter, 0 when absent.
    pub fn counter(&self, actor: &str) -> u64 {
        match self.entries.binary_search_by(|(a, _)| a.as_str().cmp(actor)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Sets `actor`'s counter to `max(current, at_least)`, then adds one. The floor lets an actor
    /// that restarted without memory of its counter still move forward past what it wrote before.
    pub fn increment(&mut self, actor: &str, at_least: u64) -> u64 {
        let value = match self.entries.binary_search_by(|(a, _)| a.as_str().cmp(actor)) {
            Ok(i) => {
                let e = &mut self.entries[i].1;
                *e = (*e).max(at_least).saturating_add(1);
                *e
            }
            Err(i) => {
                let v = at_least.saturating_add(1);
                self.entries.insert(i, (actor.to_owned(), v));
                v
            }
        };
        if self.entries.len() > MAX_ENTRIES {
            self.prune_keeping(MAX_ENTRIES, Some(actor));
        }
        value
    }

    /// Entry-wise maximum of both clocks: the smallest clock that dominates or equals both.
    pub fn merge(&mut self, other: &VClock) {
        if other.entries.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.entries, &other.entries);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    merged.push(a[i].clone());
                    i += 1;
                }
                Ordering::Greater => {
                    merged.push(b[j].clone());
                    j += 1;
                }
                Ordering::Equal => {
                    merged.push((a[i].0.clone(), a[i].1.max(b[j].1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        merged.extend_from_slice(&a[i..]);
        merged.extend_from_slice(&b[j..]);
        self.entries = merged;
        self.prune(MAX_ENTRIES);
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VClock) -> Causality {
        let (mut self_ahead, mut other_ahead) = (false, false);
        let (a, b) = (&self.entries, &other.entries);
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    self_ahead = true;
                    i += 1;
                }
                Ordering::Greater => {
                    other_ahead = true;
                    j += 1;
                }
                Ordering::Equal => {
                    match a[i].1.cmp(&b[j].1) {
                        Ordering::Greater => self_ahead = true,
                        Ordering::Less => other_ahead = true,
                        Ordering::Equal => {}
                    }
                    i += 1;
                    j += 1;
                }
            }
            if self_ahead && other_ahead {
                return Causality::Concurrent;
            }
        }
        self_ahead |= i < a.len();
        other_ahead |= j < b.len();
        match (self_ahead, other_ahead) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (true, true) => Causality::Concurrent,
        }
    }

    /// True when `self` equals or dominates `other`.
    pub fn descends(&self, other: &VClock) -> bool {
        matches!(self.compare(other), Causality::Equal | Causality::After)
    }

    /// Applies the pruning rule of the module doc so that at most `max` entries remain.
    pub fn prune(&mut self, max: usize) {
        self.prune_keeping(max, None);
    }

    fn prune_keeping(&mut self, max: usize, keep: Option<&str>) {
        if self.entries.len() <= max {
            return;
        }
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        // Drop smallest counters first; the actor just incremented is never dropped.
        order.sort_by(|&x, &y| {
            let (ax, cx) = &self.entries[x];
            let (ay, cy) = &self.entries[y];
            let kx = keep == Some(ax.as_str());
            let ky = keep == Some(ay.as_str());
            kx.cmp(&ky).then(cx.cmp(cy)).then(ax.cmp(ay))
        });
        let mut drop = vec![false; self.entries.len()];
        for &i in order.iter().take(self.entries.len() - max) {
            drop[i] = true;
        }
        let mut idx = 0;
        self.entries.retain(|_| {
            let keep_it = !drop[idx];
            idx += 1;
            keep_it
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(pairs: &[(&str, u64)]) -> VClock {
        VClock::from_entries(pairs.iter().map(|(a, c)| (a.to_string(), *c)))
    }

    type Pairs = &'static [(&'static str, u64)];

    #[test]
    fn compare_table() {
        use Causality::*;
        #[rustfmt::skip]
        let cases: &[(Pairs, Pairs, Causality)] = &[
            (&[],                   &[],                   Equal),
            (&[("a", 1)],           &[],                   After),
            (&[],                   &[("a", 1)],           Before),
            (&[("a", 1)],           &[("a", 1)],           Equal),
            (&[("a", 2)],           &[("a", 1)],           After),
            (&[("a", 1)],           &[("b", 1)],           Concurrent),
            (&[("a", 1), ("b", 1)], &[("a", 1)],           After),
            (&[("a", 1), ("b", 1)], &[("a", 2)],           Concurrent),
            (&[("a", 2), ("b", 1)], &[("a", 2), ("b", 3)], Before),
        ];
        for (a, b, want) in cases {
            assert_eq!(vc(a).compare(&vc(b)), *want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn merge_is_entrywise_max() {
        let mut a = vc(&[("a", 3), ("c", 1)]);
        a.merge(&vc(&[("a", 1), ("b", 2)]));
        assert_eq!(a, vc(&[("a", 3), ("b", 2), ("c", 1)]));
    }

    #[test]
    fn increment_honours_floor() {
        let mut a = VClock::new();
        assert_eq!(a.increment("x", 0), 1);
        assert_eq!(a.increment("x", 10), 11);
        assert_eq!(a.increment("x", 0), 12);
    }

    #[test]
    fn prune_drops_smallest_counters_and_keeps_incremented_actor() {
        let mut a =
            VClock::from_entries((0..MAX_ENTRIES as u64).map(|i| (format!("n{i:03}"), i + 10)));
        a.increment("zz-new", 0);
        assert_eq!(a.entries().len(), MAX_ENTRIES);
        assert_eq!(a.counter("zz-new"), 1);
        assert_eq!(a.counter("n000"), 0);
        assert_eq!(a.counter("n001"), 11);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Clocks over five actors with counters below 4, so that generated pairs often share actors
    /// and relate in every way, not only as `Concurrent`. They stay far below `MAX_ENTRIES`:
    /// pruning forgets history on purpose and is not a lattice operation.
    fn clock() -> impl Strategy<Value = VClock> {
        proptest::collection::vec((0..5u8, 0..4u64), 0..6).prop_map(|pairs| {
            VClock::from_entries(pairs.into_iter().map(|(a, c)| (format!("coord-{a}/0"), c)))
        })
    }

    fn merged(a: &VClock, b: &VClock) -> VClock {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    fn mirror(c: Causality) -> Causality {
        match c {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            other => other,
        }
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in clock(), b in clock()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in clock(), b in clock(), c in clock()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in clock(), b in clock()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab);
        }

        #[test]
        fn merge_descends_both(a in clock(), b in clock()) {
            let ab = merged(&a, &b);
            prop_assert!(ab.descends(&a) && ab.descends(&b));
            // And it is the least such clock: merging changes nothing exactly when it descends.
            prop_assert_eq!(a.descends(&b), merged(&a, &b) == a);
        }

        #[test]
        fn compare_is_antisymmetric(a in clock(), b in clock()) {
            prop_assert_eq!(b.compare(&a), mirror(a.compare(&b)));
            prop_assert_eq!(a.compare(&b) == Causality::Equal, a == b);
        }

        #[test]
        fn increment_moves_forward(a in clock(), actor in 0..6u8, floor in 0..5u64) {
            let mut next = a.clone();
            next.increment(&format!("coord-{actor}/0"), floor);
            prop_assert_eq!(next.compare(&a), Causality::After);
            prop_assert_eq!(a.compare(&next), Causality::Before);
        }
    }
}
