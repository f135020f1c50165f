//! The end of a migration: the membership (or replication factor) rewritten for the end it
//! reached, and the record closed.

use std::time::Duration;

use crate::{
    coordinator::{
        migrate::{State, METRICS},
        shard::{blocking, unix_now_secs},
    },
    core::migration::Stage,
    meta::{MetaError, MigrationRecord, NodeState},
};

use super::Runner;

impl Runner {
    /// Rewrites membership or factor for the end the migration reached, then closes the record.
    pub(super) async fn finish(&self, stage: Stage) {
        self.refresh_progress();
        for stop in self.stops.borrow().values() {
            stop.set(true);
        }
        let completed = stage == Stage::Completed;
        let mut record = self.record.borrow().clone();
        {
            let mut st = self.state.borrow_mut();
            st.blocked_on.clear();
            st.eta = 0;
            if completed {
                st.percentage = 100;
            }
            record.state = st.encode();
        }
        record.keys_migrated =
            record.keys_migrated.max(self.driver.borrow().keys_migrated() as i64);
        record.total_keys = record.total_keys.max(record.keys_migrated);
        record.completed_at = unix_now_secs();
        record.status =
            if completed { MigrationRecord::COMPLETED } else { MigrationRecord::CANCELLED }.into();
        let error = self.driver.borrow().error().map(str::to_owned);
        let thin = self.state.borrow().thin_ranges;
        record.error_message = match (completed, error) {
            (true, _) if thin > 0 => format!(
                "{thin} ranges had fewer than a quorum of surviving replicas when the dead node was removed; writes acknowledged only by it may be lost"
            ),
            (true, _) if !self.state.borrow().uncleaned.is_empty() => format!(
                "could not evict moved keys from {:?} (did not answer); they may hold stray copies",
                self.state.borrow().uncleaned
            ),
            (true, _) => String::new(),
            (false, Some(e)) => e,
            (false, None) => "cancelled by request".into(),
        };
        // First the membership or factor the end stands for, and every core of this process
        // told; only then the record: whoever sees it ended sees the new membership here.
        let mut in_progress = record.clone();
        in_progress.status = MigrationRecord::IN_PROGRESS.into();
        in_progress.completed_at = 0;
        loop {
            let meta = self.shard.shared.meta.clone();
            let (r, state) = (in_progress.clone(), self.state.borrow().clone());
            let outcome = blocking(move || {
                rewrite_membership(&*meta, &r, &state, completed)?;
                let nodes = crate::coordinator::resolve_nodes(meta.nodes()?);
                Ok::<_, MetaError>((nodes, meta.tenants()?))
            })
            .await;
            match outcome {
                Ok((nodes, tenants)) => {
                    let shared = &self.shard.shared;
                    for t in tenants {
                        shared.broadcast(crate::coordinator::Update::Tenant(t));
                    }
                    let epoch = shared.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    shared.broadcast(crate::coordinator::Update::Nodes { epoch, nodes });
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot rewrite the membership; retrying");
                    glommio::timer::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        self.put(record.clone()).await;
        self.shard.shared.publish_placement(None);
        METRICS
            .percentage
            .store(if completed { 100 } else { 0 }, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(migration = %record.migration_id, status = %record.status, "migration ended");
    }
}

/// The membership and factor writes that end a migration (`record` goes with a factor change).
fn rewrite_membership(
    meta: &dyn crate::meta::MetadataStore,
    record: &MigrationRecord,
    state: &State,
    completed: bool,
) -> Result<(), MetaError> {
    let old: Vec<&String> = state.old_members.iter().map(|m| &m.0).collect();
    let new: Vec<&String> = state.new_members.iter().map(|m| &m.0).collect();
    let nodes = meta.nodes()?;
    for n in nodes {
        let in_old = old.contains(&&n.node_id);
        let in_new = new.contains(&&n.node_id);
        let keep = if completed { in_new } else { in_old };
        if (in_old || in_new) && !keep {
            meta.remove_node(&n.node_id)?;
        } else if keep && n.state != NodeState::Active {
            meta.upsert_node(&crate::meta::NodeRecord { state: NodeState::Active, ..n })?;
        }
    }
    if let (Some(c), true) = (&state.rf_change, completed) {
        meta.update_replication_factor(&c.tenant_id, c.rf1 as u32, unix_now_secs(), record)?;
    }
    Ok(())
}
