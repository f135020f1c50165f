//! The group-commit syncer: the thread that, in `GroupCommit` mode, makes acknowledged writes
//! durable every interval without taking fjall's journal mutex (see the module doc of
//! [`super`], # Durability).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, RecvTimeoutError};
use fjall::{Database, PersistMode};

/// The group-commit loop: every `interval`, `fdatasync` the active journal if anything was written
/// since the last sync, through the syncer's own descriptor (see the engine's module doc: this
/// keeps fjall's journal mutex, and so the request cores, out of the disk wait). Exits when the
/// engine drops its stop sender, or after a failed sync (the journal can no longer be trusted to be
/// durable, so the engine is poisoned through fjall and later writes fail unacknowledged).
pub(super) fn run_syncer(
    db: Database,
    dir: PathBuf,
    writes: Arc<AtomicU64>,
    stop: Receiver<()>,
    interval: Duration,
) {
    let mut synced = 0;
    let mut active: Option<(u64, std::fs::File)> = None;
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // Read the counter before the journal id: every write counted here reached the OS in
        // the journal fjall names now or in an older one, and an older one was made durable
        // when it was sealed, before fjall published the newer id (`Database::active_journal_id`,
        // vendor/README.md).
        let seen = writes.load(Ordering::Acquire);
        if seen == synced {
            continue;
        }
        if let Err(e) = sync_active_journal(&dir, db.active_journal_id(), &mut active) {
            tracing::warn!(error = %e, "journal fdatasync through our descriptor failed; asking fjall");
            if let Err(e) = db.persist(PersistMode::SyncData) {
                tracing::error!(error = %e, "group-commit fsync failed; writes will now fail");
                return;
            }
        }
        synced = seen;
    }
}

/// `fdatasync`s `{id}.jnl` in `dir`, the journal fjall names as the one receiving writes,
/// through a descriptor kept open until fjall names another.
///
/// The id comes from fjall, not from the directory: fjall creates `N+1.jnl` before it switches
/// to it (vendor/README.md), so the newest file may not receive writes yet.
pub(super) fn sync_active_journal(
    dir: &Path,
    id: u64,
    active: &mut Option<(u64, std::fs::File)>,
) -> std::io::Result<()> {
    match active {
        Some((open, file)) if *open == id => file.sync_data(),
        _ => {
            let file = std::fs::File::open(dir.join(format!("{id}.jnl")))?;
            file.sync_data()?;
            *active = Some((id, file));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::engine::{Engine, EngineConfig};

    #[test]
    fn syncer_finds_and_syncs_the_active_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
        let id = engine.db.active_journal_id();
        let mut active = None;
        sync_active_journal(dir.path(), id, &mut active).expect("the active journal syncs");
        assert_eq!(active.as_ref().map(|(open, _)| *open), Some(id));
        assert!(sync_active_journal(dir.path(), id + 1, &mut None).is_err(), "no such journal");
    }

    #[test]
    fn syncer_follows_the_journal_fjall_names_not_the_newest_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("3.jnl"), b"").unwrap();
        // fjall prepares 4.jnl before it switches to it: still 3.jnl receives the writes.
        std::fs::write(dir.path().join("4.jnl"), b"").unwrap();
        let mut active = None;
        sync_active_journal(dir.path(), 3, &mut active).unwrap();
        assert_eq!(active.as_ref().map(|(id, _)| *id), Some(3));
        // The switch: the next sync must sync 4.jnl, not the sealed 3.jnl.
        sync_active_journal(dir.path(), 4, &mut active).unwrap();
        assert_eq!(active.as_ref().map(|(id, _)| *id), Some(4));
    }
}
