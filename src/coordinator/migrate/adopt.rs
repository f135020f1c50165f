//! Which coordinator drives a migration: the one that started it, the same one after its
//! restart, or another once the owner stopped beating.

use std::{rc::Rc, time::Duration};

use crate::{
    coordinator::{
        migrate::{run::Runner, State},
        shard::{blocking, unix_now_us, Shard},
    },
    meta::{MetaError, MigrationRecord},
};

impl MigrationRecord {
    /// True when the stored state names another owner than `me`.
    pub fn owner_changed(&self, me: &str) -> bool {
        State::decode(&self.state).map(|s| s.owner != me).unwrap_or(false)
    }
}

/// Starts the driver of `record` on this core, unless this process already drives one.
pub fn start(shard: Rc<Shard>, record: MigrationRecord) {
    if shard.shared.placement.driving.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    glommio::spawn_local(async move {
        let id = record.migration_id.clone();
        match Runner::new(shard.clone(), record) {
            Ok(runner) => runner.run().await,
            Err(e) => tracing::error!(migration = %id, error = %e, "cannot run migration"),
        }
        shard.shared.placement.driving.store(false, std::sync::atomic::Ordering::SeqCst);
    })
    .detach();
}

/// Core 0's watch for migrations to run: one left by this coordinator before a restart, or one
/// whose owner stopped beating for a while (it crashed or lost the store), taken over.
pub async fn adopt(shard: Rc<Shard>, shutdown: crate::runtime::shutdown::Shutdown) {
    let me = shard.shared.config.node_id.clone();
    let orphan_after = 3 * shard.shared.config.migration.coordinator_lease_ms as i64 + 2000;
    while !shutdown.is_triggered() {
        let running = shard.shared.placement.driving.load(std::sync::atomic::Ordering::SeqCst);
        if !running {
            let meta = shard.shared.meta.clone();
            let found = blocking(move || {
                let newest = meta.migrations(1)?.into_iter().next().filter(|m| m.is_active());
                Ok::<_, MetaError>((newest, meta.beats()?))
            })
            .await;
            if let Ok((Some(mut record), beats)) = found {
                if let Ok(mut state) = State::decode(&record.state) {
                    let now_ms = unix_now_us() / 1000;
                    let owner_alive = beats.iter().any(|b| {
                        b.coordinator_id == state.owner && b.at_ms >= now_ms - orphan_after
                    });
                    if state.owner == me || !owner_alive {
                        if state.owner != me {
                            tracing::warn!(migration = %record.migration_id, owner = %state.owner, "taking over a migration whose coordinator stopped");
                            state.owner = me.clone();
                            record.state = state.encode();
                            let meta = shard.shared.meta.clone();
                            let r = record.clone();
                            if blocking(move || meta.put_migration(&r)).await.is_err() {
                                continue;
                            }
                        }
                        start(shard.clone(), record);
                    }
                }
            }
        }
        futures_lite::future::or(glommio::timer::sleep(Duration::from_secs(1)), shutdown.wait())
            .await;
    }
}
