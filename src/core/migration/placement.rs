//! Where a key's reads and writes go while a data movement runs: the old ring and factor, the
//! new ones, and the stage, turned into [`KeySets`] for one key. Every coordinator core holds one
//! [`Placement`] per running change (or none) and asks it on every request, so that all cores
//! and all coordinators that applied the same stage route a key the same way.

use std::sync::Arc;

use crate::core::ids::NodeId;
use crate::core::quorum::Level;
use crate::core::ring::{key_token, Ring, MAX_PREFERENCE_LIST};

use super::plan::RfChange;
use super::sets::{key_sets, KeySets};
use super::Stage;

/// A tenant whose replication factor the change moves from `rf0` to `rf1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRfChange {
    /// The tenant.
    pub tenant_id: String,
    /// Its factor before.
    pub rf0: usize,
    /// Its factor after.
    pub rf1: usize,
}

/// The placement of every key during one change.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The change's id, as stored.
    pub migration_id: String,
    /// The stage every request routes by.
    pub stage: Stage,
    /// The ring before the change.
    pub r0: Arc<Ring>,
    /// The ring after the change (the same as `r0` for a factor change).
    pub r1: Arc<Ring>,
    /// The tenant whose factor changes, for a factor change.
    pub rf_change: Option<TenantRfChange>,
}

impl Placement {
    /// A tenant's factors before and after: its own `rf` on both sides, unless it is the tenant
    /// whose factor changes.
    pub fn rf_pair(&self, tenant_id: &str, rf: usize) -> RfChange {
        match &self.rf_change {
            Some(c) if c.tenant_id == tenant_id => RfChange { rf0: c.rf0, rf1: c.rf1 },
            _ => RfChange::same(rf),
        }
    }

    /// The old and new replicas of a key of a tenant whose stored factor is `rf`.
    pub fn replicas(&self, tenant_id: &str, key: &str, rf: usize) -> (Vec<NodeId>, Vec<NodeId>) {
        let pair = self.rf_pair(tenant_id, rf);
        let token = key_token(tenant_id, key);
        let old = self.r0.preference_list(token, pair.rf0.min(MAX_PREFERENCE_LIST)).to_vec();
        let new = self.r1.preference_list(token, pair.rf1.min(MAX_PREFERENCE_LIST)).to_vec();
        (old, new)
    }

    /// Where a request at `level` for the key goes at the current stage.
    pub fn key_sets(&self, tenant_id: &str, key: &str, rf: usize, level: Level) -> KeySets {
        let (old, new) = self.replicas(tenant_id, key, rf);
        key_sets(self.stage, &old, &new, level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::migration::sets::{Side, WriteRule};
    use crate::core::ring::Member;

    fn ring(names: &[&str]) -> Arc<Ring> {
        Arc::new(Ring::new(1, names.iter().map(|n| Member::new(*n, 16)).collect()).unwrap())
    }

    #[test]
    fn an_added_node_gets_dual_writes_and_reads_only_from_read_new() {
        let mut p = Placement {
            migration_id: "m".into(),
            stage: Stage::DualWrite,
            r0: ring(&["a", "b", "c"]),
            r1: ring(&["a", "b", "c", "d"]),
            rf_change: None,
        };
        // Find a key the new node gains at rf 3.
        let key = (0..10_000)
            .map(|i| format!("k{i}"))
            .find(|k| p.replicas("t", k, 3).1.contains(&NodeId::new("d")))
            .expect("d owns some key");
        let sets = p.key_sets("t", &key, 3, Level::Quorum);
        assert_eq!(sets.read_side, Side::Old);
        assert!(!sets.read.contains(&NodeId::new("d")));
        let WriteRule::Dual { new, new_required, old_required, .. } = &sets.write else {
            panic!("dual write expected: {:?}", sets.write);
        };
        assert!(new.contains(&NodeId::new("d")));
        assert_eq!((*old_required, *new_required), (2, 2));
        p.stage = Stage::ReadNew;
        assert!(p.key_sets("t", &key, 3, Level::Quorum).read.contains(&NodeId::new("d")));
    }

    #[test]
    fn only_the_changed_tenant_moves_factor() {
        let r = ring(&["a", "b", "c", "d"]);
        let p = Placement {
            migration_id: "m".into(),
            stage: Stage::Streaming,
            r0: r.clone(),
            r1: r,
            rf_change: Some(TenantRfChange { tenant_id: "t".into(), rf0: 2, rf1: 3 }),
        };
        assert_eq!(p.rf_pair("t", 2), RfChange { rf0: 2, rf1: 3 });
        assert_eq!(p.rf_pair("u", 2), RfChange::same(2));
        let (old, new) = p.replicas("t", "k", 2);
        assert_eq!((old.len(), new.len()), (2, 3));
        assert_eq!(&new[..2], &old[..], "a longer preference list extends the shorter one");
    }
}
