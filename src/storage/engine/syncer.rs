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
        // Read before listing the journals: every write counted here reached the OS, in a
        // journal that either is the newest one listed or was sealed (and fsynced) before it.
        let seen = writes.load(Ordering::Acquire);
        if seen == synced {
            continue;
        }
        if let Err(e) = sync_active_journal(&dir, &mut active) {
            tracing::warn!(error = %e, "journal fdatasync through our descriptor failed; asking fjall");
            if let Err(e) = db.persist(PersistMode::SyncData) {
                tracing::error!(error = %e, "group-commit fsync failed; writes will now fail");
                return;
            }
        }
        synced = seen;
    }
}

/// `fdatasync`s the newest `N.jnl` in `dir`, reopening it when a newer journal appeared.
///
/// fjall names the journal that replaces `N.jnl` `N+1.jnl` and creates it before any write
/// lands in it, so while `N+1.jnl` does not exist every counted write is in `N.jnl` (or in an
/// older journal, fsynced when it was sealed): one `statx` per sync instead of listing the
/// directory, which matters at the syncer's 200 syncs a second per node.
pub(super) fn sync_active_journal(
    dir: &Path,
    active: &mut Option<(u64, std::fs::File)>,
) -> std::io::Result<()> {
    if let Some((id, file)) = active {
        if !dir.join(format!("{}.jnl", *id + 1)).try_exists()? {
            return file.sync_data();
        }
    }
    let newest = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".jnl")?.parse::<u64>().ok())
        .max()
        .ok_or_else(|| std::io::Error::other("no journal file in the data directory"))?;
    if active.as_ref().map(|(id, _)| *id) != Some(newest) {
        *active = Some((newest, std::fs::File::open(dir.join(format!("{newest}.jnl")))?));
    }
    match active {
        Some((_, file)) => file.sync_data(),
        None => unreachable!("set just above"),
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
        let mut active = None;
        sync_active_journal(dir.path(), &mut active).expect("the newest journal syncs");
        assert!(active.is_some(), "a journal file was found");
        drop(engine);
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(sync_active_journal(empty.path(), &mut None).is_err(), "no journal is an error");
    }

    #[test]
    fn syncer_follows_a_rotated_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("3.jnl"), b"").unwrap();
        let mut active = None;
        sync_active_journal(dir.path(), &mut active).unwrap();
        assert_eq!(active.as_ref().map(|(id, _)| *id), Some(3));
        sync_active_journal(dir.path(), &mut active).unwrap();
        assert_eq!(active.as_ref().map(|(id, _)| *id), Some(3), "no rotation, same journal");
        // fjall rotates 3.jnl to 4.jnl: the next sync must sync 4.jnl, not the sealed 3.jnl.
        std::fs::write(dir.path().join("4.jnl"), b"").unwrap();
        sync_active_journal(dir.path(), &mut active).unwrap();
        assert_eq!(active.as_ref().map(|(id, _)| *id), Some(4));
    }
}
