//! Storage-node health as the coordinator sees it, from periodic probes, with flap damping.
//!
//! One failed probe does not mark a node down: a busy node (or a busy coordinator core) misses
//! one now and then, and marking it down fails every operation to it until the next probe.
//! Operations to a node that really died fail on their own meanwhile (connection refused or
//! reset), so waiting for `down_after` misses costs little.
//!
//! Coming back is damped by the node's recent history: a node that went down once comes back on
//! its first good probe (hint replay starts at once), but each further fall within `flap_window`
//! asks for one more consecutive good probe, up to `max_up_after`. A node that flaps is then
//! held down (its writes become hints) instead of taking every request through a failure per
//! flap.
//!
//! ```text
//!             misses >= down_after
//!      Up ─────────────────────────▶ Down (a fall, remembered for flap_window)
//!      ▲                               │
//!      └───────────────────────────────┘
//!        successes >= up_after + falls in window - 1 (at most max_up_after)
//! ```
//!
//! Nodes no longer in the membership are forgotten ([`NodeHealth::retain`]).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use ahash::AHashMap;

use crate::core::ids::NodeId;

/// How probes turn into up and down.
#[derive(Clone, Copy, Debug)]
pub struct HealthPolicy {
    /// Consecutive failed probes before a node is down.
    pub down_after: u32,
    /// Consecutive good probes before a node that fell once is up again.
    pub up_after: u32,
    /// How long a fall counts towards damping.
    pub flap_window: Duration,
    /// The most consecutive good probes ever asked for.
    pub max_up_after: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self { down_after: 2, up_after: 1, flap_window: Duration::from_secs(60), max_up_after: 5 }
    }
}

#[derive(Debug)]
struct NodeState {
    up: bool,
    misses: u32,
    successes: u32,
    /// When the node fell, within the window; at most `max_up_after` kept.
    falls: VecDeque<Instant>,
}

/// The health of every member, and the changes not yet broadcast.
#[derive(Debug)]
pub struct NodeHealth {
    policy: HealthPolicy,
    nodes: AHashMap<NodeId, NodeState>,
    changes: VecDeque<(NodeId, bool)>,
}

impl NodeHealth {
    /// Every node starts up.
    pub fn new(policy: HealthPolicy) -> Self {
        Self { policy, nodes: AHashMap::new(), changes: VecDeque::new() }
    }

    /// A probe of `node` at `now` answered (`ok`) or not.
    pub fn handle_probe(&mut self, now: Instant, node: &NodeId, ok: bool) {
        let policy = self.policy;
        let state = self.nodes.entry(node.clone()).or_insert_with(|| NodeState {
            up: true,
            misses: 0,
            successes: 0,
            falls: VecDeque::new(),
        });
        while state
            .falls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > policy.flap_window)
        {
            state.falls.pop_front();
        }
        if ok {
            state.misses = 0;
            state.successes = state.successes.saturating_add(1);
            let falls = state.falls.len() as u32;
            let needed =
                (policy.up_after + falls.saturating_sub(1)).clamp(1, policy.max_up_after.max(1));
            if !state.up && state.successes >= needed {
                state.up = true;
                self.changes.push_back((node.clone(), true));
            }
        } else {
            state.successes = 0;
            state.misses = state.misses.saturating_add(1);
            if state.up && state.misses >= policy.down_after.max(1) {
                state.up = false;
                if state.falls.len() >= policy.max_up_after as usize {
                    state.falls.pop_front();
                }
                state.falls.push_back(now);
                self.changes.push_back((node.clone(), false));
            }
        }
    }

    /// The next change to broadcast: `(node, up)`.
    #[must_use]
    pub fn poll_change(&mut self) -> Option<(NodeId, bool)> {
        self.changes.pop_front()
    }

    /// True unless `node` is known to be down.
    pub fn is_up(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_none_or(|s| s.up)
    }

    /// Forgets every node for which `keep` is false (nodes that left the membership).
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        self.nodes.retain(|id, _| keep(id));
        self.changes.retain(|(id, _)| keep(id));
    }

    /// Nodes tracked.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is tracked.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_miss_is_not_down_and_a_flapping_node_is_held_down() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let n = NodeId::new("n");
        let mut h = NodeHealth::new(HealthPolicy::default());
        // probe | ok    | change
        let script: &[(u64, bool, Option<bool>)] = &[
            (0, false, None),         // one miss: still up
            (1, true, None),          //
            (2, false, None),         //
            (3, false, Some(false)),  // second miss in a row: down (fall 1)
            (4, true, Some(true)),    // first fall: back at the first good probe
            (5, false, None),         //
            (6, false, Some(false)),  // fall 2
            (7, true, None),          // now two good probes are needed
            (8, true, Some(true)),    //
            (9, false, None),         //
            (10, false, Some(false)), // fall 3: three good probes
            (11, true, None),         //
            (12, true, None),         //
            (13, true, Some(true)),   //
            (80, false, None),        // the window has passed: falls forgotten
            (81, false, Some(false)), //
            (82, true, Some(true)),   //
        ];
        for &(at, ok, change) in script {
            h.handle_probe(t0 + s * at as u32, &n, ok);
            assert_eq!(h.poll_change().map(|(_, up)| up), change, "at {at}s");
            assert_eq!(h.poll_change(), None);
        }
    }

    #[test]
    fn removed_nodes_are_forgotten() {
        let t0 = Instant::now();
        let mut h = NodeHealth::new(HealthPolicy::default());
        for name in ["a", "b"] {
            h.handle_probe(t0, &NodeId::new(name), false);
            h.handle_probe(t0, &NodeId::new(name), false);
        }
        h.retain(|id| id.as_str() == "a");
        assert_eq!(h.len(), 1);
        assert_eq!(h.poll_change(), Some((NodeId::new("a"), false)));
        assert_eq!(h.poll_change(), None);
        assert!(!h.is_up(&NodeId::new("a")));
        assert!(h.is_up(&NodeId::new("b")));
    }
}
