//! The plan of one data movement: for each node, the token ranges it gains (with the old
//! replicas to copy them from) and the ranges it loses, cut into segments that are streamed and
//! checkpointed one at a time.
//!
//! How the plan is found. A key's preference list only changes where some token of either ring
//! starts a new primary arc, so the union of the end tokens of both rings' [`Ring::ranges`] cuts
//! the circle into arcs on which `O = pref(R0, rf0)` and `N = pref(R1, rf1)` are both constant.
//! Each arc is evaluated once, at its end token:
//!
//! ```text
//!   R0 ends:      a           b                 c
//!   R1 ends:      a     x     b                 c
//!   arcs:    ...--](----](----](----------------](--...   O and N fixed on each
//!   gaining  g in N \ O           (every g in N when rf1 < rf0: N has no newcomer to copy
//!   losing   l in O \ N            to, yet a write acked on O's other members may miss g)
//! ```
//!
//! Adjacent arcs where a node gains with the same sources are merged into maximal ranges (across
//! the wrap at `u64::MAX` too), then each range is cut into segments of at most
//! `max_arcs_per_segment` arcs: bytes are unknown here, and arcs are what the ring can count.
//!
//! Output order is deterministic: by node id, then ring order from the lowest end token; segment
//! ids number the segments in that order from 0.

use crate::core::ids::{NodeId, Token};
use crate::core::ring::{Ring, TokenRange};

/// The replication factors of the tenants a plan covers: before and after. Equal for a
/// membership change. Tenants with different factors get different plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RfChange {
    /// Replication factor under the old ring.
    pub rf0: usize,
    /// Replication factor under the new ring.
    pub rf1: usize,
}

impl RfChange {
    /// The same factor before and after: a membership change.
    pub fn same(rf: usize) -> Self {
        Self { rf0: rf, rf1: rf }
    }

    /// True when the change lowers the factor: then every new replica counts as gaining.
    pub fn is_decrease(self) -> bool {
        self.rf1 < self.rf0
    }
}

/// The nodes that gain a key with old replicas `old` and new replicas `new`: `new \ old`, or all
/// of `new` when the factor decreases. THE rule the plan and streaming filters share.
pub fn gaining<'a>(old: &'a [NodeId], new: &'a [NodeId], rf: RfChange) -> Vec<&'a NodeId> {
    new.iter().filter(|n| rf.is_decrease() || !old.contains(n)).collect()
}

/// The nodes that lose a key: `old \ new`.
pub fn losing<'a>(old: &'a [NodeId], new: &'a [NodeId]) -> Vec<&'a NodeId> {
    old.iter().filter(|o| !new.contains(o)).collect()
}

/// Identifies a segment within its plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub u32);

/// A maximal range one node gains, with the old replicas that hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GainedRange {
    /// The gaining node.
    pub target: NodeId,
    /// The tokens gained.
    pub range: TokenRange,
    /// The old replicas of every token in the range, sorted by id: what to copy from.
    pub sources: Vec<NodeId>,
    /// Arcs of the merged boundary set the range spans.
    pub arcs: usize,
}

/// A maximal range one node loses; it evicts it in cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRange {
    /// The losing node.
    pub node: NodeId,
    /// The tokens lost.
    pub range: TokenRange,
}

/// The unit of streaming and checkpointing: part of one gained range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its number in the plan.
    pub id: SegmentId,
    /// The gaining node.
    pub target: NodeId,
    /// The tokens to copy.
    pub range: TokenRange,
    /// The old replicas to copy from, sorted by id; a quorum of them must finish.
    pub sources: Vec<NodeId>,
}

/// What one change moves, for the tenants with one [`RfChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The factors planned for.
    pub rf: RfChange,
    /// Gained ranges by target, then ring order.
    pub gained: Vec<GainedRange>,
    /// Lost ranges by node, then ring order.
    pub lost: Vec<LostRange>,
    /// The gained ranges cut into segments, numbered in `gained` order.
    pub segments: Vec<Segment>,
}

/// One arc: `(start, end]` with the old and new replicas on it.
struct Arc {
    range: TokenRange,
    old: Vec<NodeId>,
    new: Vec<NodeId>,
}

impl Plan {
    /// Plans the move from `r0` at `rf.rf0` to `r1` at `rf.rf1`, with segments of at most
    /// `max_arcs_per_segment` arcs.
    ///
    /// # Panics
    ///
    /// When `max_arcs_per_segment` is zero, or a factor exceeds
    /// [`MAX_PREFERENCE_LIST`](crate::core::ring::MAX_PREFERENCE_LIST).
    pub fn new(r0: &Ring, r1: &Ring, rf: RfChange, max_arcs_per_segment: usize) -> Self {
        assert!(max_arcs_per_segment > 0, "segments of zero arcs");
        let arcs = arcs(r0, r1, rf);
        let mut targets: Vec<&NodeId> = Vec::new();
        let mut losers: Vec<&NodeId> = Vec::new();
        for arc in &arcs {
            targets.extend(gaining(&arc.old, &arc.new, rf));
            losers.extend(losing(&arc.old, &arc.new));
        }
        targets.sort_unstable();
        targets.dedup();
        losers.sort_unstable();
        losers.dedup();

        let mut gained = Vec::new();
        let mut segments = Vec::new();
        for target in targets {
            let key = |arc: &Arc| {
                gaining(&arc.old, &arc.new, rf).contains(&target).then(|| sorted(&arc.old))
            };
            for run in runs(&arcs, key) {
                for cut in run.arcs.chunks(max_arcs_per_segment) {
                    segments.push(Segment {
                        id: SegmentId(segments.len() as u32),
                        target: target.clone(),
                        range: span(&arcs, cut),
                        sources: run.value.clone(),
                    });
                }
                gained.push(GainedRange {
                    target: target.clone(),
                    range: span(&arcs, &run.arcs),
                    sources: run.value,
                    arcs: run.arcs.len(),
                });
            }
        }
        let mut lost = Vec::new();
        for node in losers {
            let key = |arc: &Arc| losing(&arc.old, &arc.new).contains(&node).then_some(());
            for run in runs(&arcs, key) {
                lost.push(LostRange { node: node.clone(), range: span(&arcs, &run.arcs) });
            }
        }
        Self { rf, gained, lost, segments }
    }

    /// The nodes that gain anything, sorted.
    pub fn targets(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.gained.iter().map(|g| g.target.clone()).collect();
        nodes.dedup();
        nodes
    }

    /// The nodes that lose anything, sorted: the ones that run cleanup.
    pub fn losers(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.lost.iter().map(|l| l.node.clone()).collect();
        nodes.dedup();
        nodes
    }

    /// The ranges `node` gains, in ring order.
    pub fn gained_by<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = &'a GainedRange> {
        self.gained.iter().filter(move |g| &g.target == node)
    }

    /// The ranges `node` loses, in ring order.
    pub fn lost_by<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = &'a LostRange> {
        self.lost.iter().filter(move |l| &l.node == node)
    }
}

/// The fraction of the circle `range` covers, in tokens (the full ring is `2^64`).
pub fn width(range: &TokenRange) -> u128 {
    if range.is_full() {
        1u128 << 64
    } else {
        u128::from(range.end_inclusive.0.wrapping_sub(range.start_exclusive.0))
    }
}

fn sorted(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes
}

/// The arcs between consecutive boundaries of both rings, sorted by end token.
fn arcs(r0: &Ring, r1: &Ring, rf: RfChange) -> Vec<Arc> {
    let mut ends: Vec<Token> =
        r0.ranges().iter().chain(r1.ranges().iter()).map(|(r, _)| r.end_inclusive).collect();
    ends.sort_unstable();
    ends.dedup();
    let count = ends.len();
    (0..count)
        .map(|i| {
            let end = ends[i];
            let range =
                TokenRange { start_exclusive: ends[(i + count - 1) % count], end_inclusive: end };
            Arc {
                range,
                old: r0.preference_list(end, rf.rf0).to_vec(),
                new: r1.preference_list(end, rf.rf1).to_vec(),
            }
        })
        .collect()
}

/// A maximal run of adjacent arcs with the same `Some` key, as arc indices in ring order.
struct Run<V> {
    arcs: Vec<usize>,
    value: V,
}

/// The maximal runs of adjacent arcs with equal `Some(key)`, joined across the wrap, in order of
/// their first arc from index 0 (a run across the wrap comes first).
fn runs<V: PartialEq>(arcs: &[Arc], key: impl Fn(&Arc) -> Option<V>) -> Vec<Run<V>> {
    let mut runs: Vec<Run<V>> = Vec::new();
    let mut last: Option<usize> = None;
    for (i, arc) in arcs.iter().enumerate() {
        let Some(value) = key(arc) else { continue };
        match runs.last_mut() {
            Some(run) if last == Some(i.wrapping_sub(1)) && run.value == value => run.arcs.push(i),
            _ => runs.push(Run { arcs: vec![i], value }),
        }
        last = Some(i);
    }
    let wraps = runs.len() > 1
        && runs[0].arcs[0] == 0
        && last == Some(arcs.len() - 1)
        && runs[0].value == runs[runs.len() - 1].value;
    if wraps {
        // Invariant: runs.len() > 1.
        let mut tail = runs.pop().expect("two runs");
        tail.arcs.append(&mut runs[0].arcs);
        runs[0].arcs = tail.arcs;
    }
    runs
}

/// The range covered by the adjacent arcs `indices`, in ring order.
fn span(arcs: &[Arc], indices: &[usize]) -> TokenRange {
    let first = &arcs[indices[0]].range;
    let last = &arcs[indices[indices.len() - 1]].range;
    TokenRange { start_exclusive: first.start_exclusive, end_inclusive: last.end_inclusive }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::core::ring::{key_token, Member, DEFAULT_VIRTUAL_NODES};

    fn ring(epoch: u64, names: &[&str], vnodes: u32) -> Ring {
        Ring::new(epoch, names.iter().map(|n| Member::new(*n, vnodes)).collect()).unwrap()
    }

    fn share(ranges: impl Iterator<Item = TokenRange>) -> f64 {
        ranges.map(|r| width(&r)).sum::<u128>() as f64 / (1u128 << 64) as f64
    }

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::from(*n)).collect()
    }

    /// Checks the rule at `token`: `target` gains it in `plan` iff the gaining rule says so.
    fn agrees(plan: &Plan, r0: &Ring, r1: &Ring, token: Token) {
        let old = r0.preference_list(token, plan.rf.rf0).to_vec();
        let new = r1.preference_list(token, plan.rf.rf1).to_vec();
        let want = gaining(&old, &new, plan.rf);
        for target in plan.targets() {
            let holders: Vec<&GainedRange> =
                plan.gained_by(&target).filter(|g| g.range.contains(token)).collect();
            assert!(holders.len() <= 1, "{target} gains {token} twice");
            assert_eq!(!holders.is_empty(), want.contains(&&target), "{target} at {token}");
            if let Some(g) = holders.first() {
                assert_eq!(g.sources, sorted(&old), "sources at {token}");
            }
            let in_segments =
                plan.segments.iter().filter(|s| s.target == target && s.range.contains(token));
            assert_eq!(in_segments.count(), holders.len(), "{target} segments at {token}");
        }
        let lose = losing(&old, &new);
        for node in plan.losers() {
            let lost = plan.lost_by(&node).filter(|l| l.range.contains(token)).count();
            assert_eq!(lost == 1, lose.contains(&&node), "{node} loses {token}");
        }
    }

    #[test]
    fn adding_a_node_at_rf3_only_the_new_node_gains() {
        let r0 = ring(1, &["a", "b", "c"], DEFAULT_VIRTUAL_NODES);
        let r1 = r0.with_member(2, Member::new("d", DEFAULT_VIRTUAL_NODES)).unwrap();
        let plan = Plan::new(&r0, &r1, RfChange::same(3), 64);
        assert_eq!(plan.targets(), ids(&["d"]));
        for g in &plan.gained {
            assert_eq!(g.sources, ids(&["a", "b", "c"]));
        }
        // d is one of 3 replicas on 3/4 of the ring, the primary of 1/4 of it.
        let gained = share(plan.gained.iter().map(|g| g.range));
        assert!((0.70..0.80).contains(&gained), "d gains {gained:.3}");
        let primary = Plan::new(&r0, &r1, RfChange::same(1), 64);
        let gained = share(primary.gained.iter().map(|g| g.range));
        assert!((0.22..0.28).contains(&gained), "d is primary of {gained:.3}");
        // Every old node loses about a quarter; d loses nothing.
        assert_eq!(plan.losers(), ids(&["a", "b", "c"]));
        for node in plan.losers() {
            let lost = share(plan.lost_by(&node).map(|l| l.range));
            assert!((0.20..0.30).contains(&lost), "{node} loses {lost:.3}");
        }
        // Segments cover exactly the gained ranges, with at most 64 arcs each.
        let segments = share(plan.segments.iter().map(|s| s.range));
        assert!((segments - share(plan.gained.iter().map(|g| g.range))).abs() < 1e-12);
        let ids_in_order: Vec<u32> = plan.segments.iter().map(|s| s.id.0).collect();
        assert_eq!(ids_in_order, (0..plan.segments.len() as u32).collect::<Vec<_>>());
        for probe in 0..2_000 {
            agrees(&plan, &r0, &r1, key_token("t", &format!("k{probe}")));
        }
    }

    #[test]
    fn removing_a_node_survivors_gain_from_sources_with_the_leaver() {
        let r0 = ring(1, &["a", "b", "c", "d", "e"], 32);
        let r1 = r0.without_member(2, &NodeId::from("c")).unwrap();
        let plan = Plan::new(&r0, &r1, RfChange::same(3), 16);
        assert_eq!(plan.losers(), ids(&["c"]));
        assert!(!plan.targets().contains(&NodeId::from("c")));
        assert!(plan.gained.iter().all(|g| g.sources.contains(&NodeId::from("c"))));
        // c's 3/5 share goes to the others, one new replica per key it held.
        let gained = share(plan.gained.iter().map(|g| g.range));
        assert!((0.5..0.7).contains(&gained), "gained {gained:.3}");
        let lost = share(plan.lost.iter().map(|l| l.range));
        assert!((lost - gained).abs() < 1e-12, "lost {lost:.3}");
        for probe in 0..2_000 {
            agrees(&plan, &r0, &r1, key_token("t", &format!("k{probe}")));
        }
    }

    #[test]
    fn rf_changes() {
        let r = ring(1, &["a", "b", "c", "d"], 32);
        #[rustfmt::skip]
        let cases: &[(usize, usize, f64, usize, f64)] = &[
            // rf0, rf1, gained by all targets, losers, lost by all
            (2,     3,   1.0,                  0,      0.0),
            (3,     2,   2.0,                  4,      1.0),
            (3,     3,   0.0,                  0,      0.0),
        ];
        for &(rf0, rf1, want_gained, want_losers, want_lost) in cases {
            let plan = Plan::new(&r, &r, RfChange { rf0, rf1 }, 8);
            let gained = share(plan.gained.iter().map(|g| g.range));
            let lost = share(plan.lost.iter().map(|l| l.range));
            assert!((gained - want_gained).abs() < 1e-9, "{rf0}->{rf1} gained {gained}");
            assert!((lost - want_lost).abs() < 1e-9, "{rf0}->{rf1} lost {lost}");
            assert_eq!(plan.losers().len(), want_losers, "{rf0}->{rf1}");
            for probe in 0..500 {
                agrees(&plan, &r, &r, key_token("t", &format!("k{probe}")));
            }
        }
    }

    #[test]
    fn a_single_node_gaining_everything_gets_the_full_ring() {
        let r0 = ring(1, &["a"], 4);
        let r1 = r0.with_member(2, Member::new("b", 4)).unwrap();
        let plan = Plan::new(&r0, &r1, RfChange::same(2), 1_000);
        assert_eq!(plan.gained.len(), 1);
        assert!(plan.gained[0].range.is_full());
        assert_eq!(plan.segments.len(), 1);
        let cut = Plan::new(&r0, &r1, RfChange::same(2), 3);
        let arcs = plan.gained[0].arcs;
        assert_eq!(cut.segments.len(), arcs.div_ceil(3));
        assert_eq!(share(cut.segments.iter().map(|s| s.range)), 1.0);
        assert!(Plan::new(&r0, &r0, RfChange::same(1), 8).segments.is_empty());
    }

    #[test]
    fn plans_are_deterministic() {
        let r0 = ring(1, &["a", "b", "c"], 16);
        let r1 = ring(2, &["d", "c", "a"], 16);
        assert_eq!(
            Plan::new(&r0, &r1, RfChange::same(2), 4),
            Plan::new(&r0, &r1, RfChange::same(2), 4)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn a_key_is_gained_iff_the_rule_says_so(
            before in 1usize..5,
            added in 0usize..3,
            removed in 0usize..2,
            rf0 in 1usize..4,
            rf1 in 1usize..4,
            keys in proptest::collection::vec(any::<u64>(), 50),
        ) {
            let names: Vec<String> = (0..before + added).map(|i| format!("n{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let r0 = ring(1, &refs[..before], 8);
            let removed = removed.min(before.saturating_sub(1));
            let r1 = ring(2, &refs[removed..], 8);
            let plan = Plan::new(&r0, &r1, RfChange { rf0, rf1 }, 5);
            for key in keys {
                agrees(&plan, &r0, &r1, key_token("t", &key.to_string()));
                agrees(&plan, &r0, &r1, Token(key));
            }
        }
    }
}
