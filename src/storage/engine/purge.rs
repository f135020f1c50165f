//! Tombstone purge: removing tombstones once they are older than the grace period (see the
//! module doc of [`super`], # Tombstones), in one pass or every interval on a thread.

use std::sync::{atomic::Ordering, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam::channel::RecvTimeoutError;
use fjall::PersistMode;

use super::{
    format::{decode_header, token_of_storage_key},
    stripe_of, Engine, EngineError,
};

/// Tombstones purged per fjall batch. Purge holds these keys' stripes while it re-checks and
/// removes them, so the chunk is small to keep request cores from waiting on a background job.
const PURGE_CHUNK: usize = 64;

impl Engine {
    /// Removes tombstones whose timestamp is older than `now_us - grace`, returning how many. It
    /// scans the whole keyspace and re-checks each candidate under its stripe lock, so a key
    /// rewritten meanwhile is kept. Blocking and long-running: call it from a background thread
    /// (see [`Engine::spawn_purger`]). A record that fails to decode is logged and skipped.
    pub fn purge_tombstones(&self, now_us: i64, grace: Duration) -> Result<usize, EngineError> {
        let grace_us = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
        let cutoff_us = now_us.saturating_sub(grace_us);
        let mut purged = 0;
        let mut candidates: Vec<Vec<u8>> = Vec::with_capacity(PURGE_CHUNK);
        for item in self.data.iter() {
            let (k, v) = item.into_inner()?;
            match decode_header(&v) {
                Ok((true, ts)) if ts < cutoff_us => candidates.push(k.to_vec()),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge skips a corrupt record"),
            }
            if candidates.len() == PURGE_CHUNK {
                purged += self.purge_chunk(&candidates, cutoff_us)?;
                candidates.clear();
            }
        }
        if !candidates.is_empty() {
            purged += self.purge_chunk(&candidates, cutoff_us)?;
        }
        Ok(purged)
    }

    /// Starts a thread that runs [`Engine::purge_tombstones`] every `interval` with `grace`
    /// (defaults: [`DEFAULT_PURGE_INTERVAL`], [`DEFAULT_TOMBSTONE_GRACE`]). The thread holds only
    /// a weak reference and exits once the engine is dropped; the handle is for joining it.
    pub fn spawn_purger(
        self: &Arc<Self>,
        interval: Duration,
        grace: Duration,
    ) -> Result<JoinHandle<()>, EngineError> {
        let engine = Arc::downgrade(self);
        let stop = self.stop_rx.clone();
        let handle = std::thread::Builder::new().name("pairdb-purger".into()).spawn(move || {
            loop {
                match stop.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // Disconnected: the engine is gone. Nothing is ever sent.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(engine) = engine.upgrade() else { return };
                match engine.purge_tombstones(unix_now_us(), grace) {
                    Ok(n) => tracing::debug!(purged = n, "tombstone purge done"),
                    Err(e) => tracing::warn!(error = %e, "tombstone purge failed"),
                }
            }
        })?;
        Ok(handle)
    }

    /// Re-checks each candidate under its stripe lock and removes those still old tombstones,
    /// in one journal write.
    fn purge_chunk(&self, candidates: &[Vec<u8>], cutoff_us: i64) -> Result<usize, EngineError> {
        // No fsync even in Sync mode: a lost purge only brings back a tombstone, purged again
        // next pass.
        self.remove_checked(candidates, |header| matches!(header, Ok((true, ts)) if ts < cutoff_us))
    }

    /// Physical removal, shared by purge and [`Engine::evict`]: locks the stripes of `skeys`,
    /// reads each stored record and removes those for which `remove(header)` holds (`header` is
    /// the record's [`decode_header`] result: tombstone flag and timestamp), all in one journal
    /// write with [`PersistMode::Buffer`], then updates the counters. Returns how many records it
    /// removed. `skeys` must hold no duplicates (a duplicate would be counted twice). Does not
    /// fsync: a caller in [`super::Durability::Sync`] mode that needs the removal durable syncs
    /// after this returns, with the stripes released.
    pub(super) fn remove_checked(
        &self,
        skeys: &[Vec<u8>],
        mut remove: impl FnMut(Result<(bool, i64), EngineError>) -> bool,
    ) -> Result<usize, EngineError> {
        let mut stripe_ids: Vec<usize> =
            skeys.iter().map(|k| stripe_of(token_of_storage_key(k))).collect();
        let guards = self.lock_stripes(&mut stripe_ids);
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        // The tombstone flag of each record removed (a record whose header does not decode is
        // counted as a live key, as it cannot say otherwise).
        let mut removed: Vec<bool> = Vec::new();
        for k in skeys {
            let Some(v) = self.data.get(k)? else { continue };
            let header = decode_header(&v);
            let tombstone = matches!(header, Ok((true, _)));
            if remove(header) {
                batch.remove(&self.data, k.as_slice());
                removed.push(tombstone);
            }
        }
        if !removed.is_empty() {
            batch.commit()?;
            self.journal_writes.fetch_add(1, Ordering::Release);
            for &tombstone in &removed {
                self.count_change(Some(tombstone), None);
            }
        }
        drop(guards);
        Ok(removed.len())
    }
}

fn unix_now_us() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::engine::tests::{open, tomb, ver};
    use crate::storage::engine::DEFAULT_TOMBSTONE_GRACE;

    #[test]
    fn tombstones_are_read_and_only_old_ones_purged() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let grace = Duration::from_secs(10);
        let now_us = 100_000_000;
        e.apply("t", "old", &ver(&[("a", 1)], 1, "a", "v")).unwrap();
        e.apply("t", "old", &tomb(&[("a", 2)], 1_000_000, "a")).unwrap();
        e.apply("t", "young", &tomb(&[("a", 1)], now_us - 1_000_000, "a")).unwrap();
        e.apply("t", "live", &ver(&[("a", 1)], 1, "a", "v")).unwrap();

        let read = e.read("t", "old").unwrap().unwrap();
        assert!(read.tombstone);
        assert!(read.value.is_empty());
        let s = e.stats().unwrap();
        assert_eq!((s.key_count, s.tombstone_count), (3, 2));

        assert_eq!(e.purge_tombstones(now_us, grace).unwrap(), 1);
        assert_eq!(e.read("t", "old").unwrap(), None);
        assert!(e.read("t", "young").unwrap().unwrap().tombstone);
        assert!(e.read("t", "live").unwrap().is_some());
        let s = e.stats().unwrap();
        assert_eq!((s.key_count, s.tombstone_count), (2, 1));
        assert_eq!(e.purge_tombstones(now_us, grace).unwrap(), 0);
    }

    #[test]
    fn purger_stops_when_engine_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(open(dir.path()));
        let handle = e.spawn_purger(Duration::from_secs(3600), DEFAULT_TOMBSTONE_GRACE).unwrap();
        drop(e);
        handle.join().unwrap();
        // The directory is free again: the purger held no strong reference.
        open(dir.path());
    }
}
