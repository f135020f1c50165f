//! The plan a migration runs: `core::migration::plan`'s plan for each factor group of a stored
//! [`State`], merged into one, with a forced removal's dead node taken out.

use crate::{
    coordinator::{migrate::State, placement::ring_of},
    core::{
        ids::NodeId,
        migration::plan::{Plan, RfChange, Segment, SegmentId},
    },
};

/// Arcs of the merged ring boundaries per segment: small enough that a crash re-streams
/// little, large enough that a plan has a few hundred segments at most.
pub const ARCS_PER_SEGMENT: usize = 16;

/// The plan of a stored state: one plan per factor group, merged, with the dead node of a
/// forced removal taken out of the sources and the cleanups. Also returns each segment's group.
pub fn plan_of(state: &State) -> Result<(Plan, Vec<RfChange>), String> {
    let r0 = ring_of(&state.old_members)?;
    let r1 = ring_of(&state.new_members)?;
    let mut gained = Vec::new();
    let mut lost = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut groups: Vec<RfChange> = Vec::new();
    for &(rf0, rf1) in &state.groups {
        let group = RfChange { rf0, rf1 };
        let plan = Plan::new(&r0, &r1, group, ARCS_PER_SEGMENT);
        gained.extend(plan.gained);
        lost.extend(plan.lost);
        for mut s in plan.segments {
            s.id = SegmentId(segments.len() as u32);
            groups.push(group);
            segments.push(s);
        }
    }
    if let Some(dead) = &state.dead {
        let dead = NodeId::new(dead.clone());
        lost.retain(|l| l.node != dead);
        for g in &mut gained {
            g.sources.retain(|n| *n != dead);
        }
        for s in &mut segments {
            s.sources.retain(|n| *n != dead);
        }
        // A range whose only old replica was the dead node has nothing left to copy (counted
        // in `thin_ranges`); keeping it would leave a segment no source can finish.
        let mut kept = Vec::with_capacity(segments.len());
        let mut kept_groups = Vec::with_capacity(groups.len());
        for (s, g) in segments.into_iter().zip(groups) {
            if !s.sources.is_empty() {
                kept.push(Segment { id: SegmentId(kept.len() as u32), ..s });
                kept_groups.push(g);
            }
        }
        segments = kept;
        groups = kept_groups;
        gained.retain(|g| !g.sources.is_empty());
    }
    // `Plan::targets` and `losers` expect ranges grouped by node.
    gained.sort_by(|a, b| a.target.cmp(&b.target));
    lost.sort_by(|a, b| a.node.cmp(&b.node));
    let rf = groups.first().copied().unwrap_or(RfChange::same(1));
    Ok((Plan { rf, gained, lost, segments }, groups))
}

/// Ranges of a forced removal's plan left with fewer than a quorum of the old replicas.
pub fn thin_ranges(state: &State) -> Result<u64, String> {
    let Some(dead) = &state.dead else { return Ok(0) };
    let r0 = ring_of(&state.old_members)?;
    let r1 = ring_of(&state.new_members)?;
    let dead = NodeId::new(dead.clone());
    let mut thin = 0;
    for &(rf0, rf1) in &state.groups {
        let plan = Plan::new(&r0, &r1, RfChange { rf0, rf1 }, ARCS_PER_SEGMENT);
        for s in &plan.segments {
            let all = s.sources.len();
            let alive = s.sources.iter().filter(|n| **n != dead).count();
            if alive < all / 2 + 1 {
                thin += 1;
            }
        }
    }
    Ok(thin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::NodeId;

    fn members(names: &[&str]) -> Vec<(String, u32)> {
        names.iter().map(|n| (n.to_string(), 16)).collect()
    }

    #[test]
    fn one_plan_for_every_factor_group_with_each_node_once() {
        let state = State {
            old_members: members(&["a", "b", "c"]),
            new_members: members(&["a", "b", "c", "d"]),
            groups: vec![(1, 1), (2, 2), (3, 3)],
            ..Default::default()
        };
        let (plan, groups) = plan_of(&state).unwrap();
        assert_eq!(plan.segments.len(), groups.len());
        for (i, s) in plan.segments.iter().enumerate() {
            assert_eq!(s.id, SegmentId(i as u32), "segments numbered in order");
        }
        assert_eq!(plan.targets(), vec![NodeId::new("d")], "the new node is the only target");
        let losers = plan.losers();
        let mut sorted = losers.clone();
        sorted.dedup();
        assert_eq!(losers, sorted, "each loser cleans once");
        assert!(groups.contains(&RfChange::same(1)) && groups.contains(&RfChange::same(3)));
    }

    #[test]
    fn a_forced_removal_never_streams_from_or_cleans_the_dead_node() {
        let state = State {
            old_members: members(&["a", "b", "c", "d"]),
            new_members: members(&["a", "b", "c"]),
            groups: vec![(2, 2)],
            dead: Some("d".into()),
            ..Default::default()
        };
        let (plan, _) = plan_of(&state).unwrap();
        let dead = NodeId::new("d");
        assert!(plan.segments.iter().all(|s| !s.sources.contains(&dead)));
        assert!(plan.lost.iter().all(|l| l.node != dead));
        assert!(!plan.segments.is_empty());
        // At rf 2 every range d held has one survivor: fewer than a quorum of two.
        assert!(thin_ranges(&state).unwrap() > 0);
        let rf3 = State { groups: vec![(3, 3)], ..state };
        assert_eq!(thin_ranges(&rf3).unwrap(), 0, "two of three survive at rf 3");
    }
}
