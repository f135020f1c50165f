//! The storage node's local engine: one fjall database holding, for each `(tenant_id, key)`, the
//! one [`Version`] this replica keeps. It owns the on-disk layout, the per-key read-modify-write
//! that applies the winner rule of [`crate::core::version`], durability, stats and tombstone
//! purge. It knows nothing of gRPC or glommio: the service layer decides which calls may run on a
//! request core and which must go to a blocking thread.
//!
//! The work is spread over this module's files:
//! - this file: the [`Engine`] API (open, apply, read, stats, sync), its configuration and
//!   errors, and the striped key locks;
//! - [`format`]: the on-disk encoding of keys and values;
//! - [`scan`]: paging through a token range;
//! - [`purge`]: tombstone purge, once or on a background thread, and the physical removal it
//!   shares with [`evict`];
//! - [`evict`]: removing records outright, for data movement's cleanup;
//! - [`digest`]: range digests, which anti-entropy compares across replicas;
//! - [`syncer`]: the group-commit thread that `fdatasync`s the journal.
//!
//! # Layout
//!
//! One fjall keyspace, `data`, keyed by token then tenant then key; see [`format`].
//!
//! # Atomic read-modify-write
//!
//! Several request cores apply writes concurrently, and applying a write reads the stored version
//! first, so two writes to one key must not interleave (that would lose one of two concurrent
//! versions). We use [`STRIPES`] striped `std::sync::Mutex<()>` chosen by token rather than
//! fjall's transactional databases: the optimistic one makes conflicting writers retry, which is
//! unbounded work on a hot key, and the single-writer one serializes every write of the node.
//! A stripe is held only for a point read, the winner rule and a buffered journal write (a few
//! microseconds, never our fsync), and a batch takes its stripes in ascending order so batches
//! cannot deadlock each other. Reads take no lock: a fjall point read is atomic on its own.
//!
//! One wait inside fjall can still stretch a write, stripe held, and the service layer must
//! budget for it: fjall's write backpressure, which sleeps in `WriteBatch::commit` in 100 ms steps while 4 or
//! more sealed memtables wait for flush (`keyspace/mod.rs` `Keyspace::local_backpressure`).
//! On a 2-core VM, 4 threads applying 200-byte writes saw p50 ~3 µs, p99 5-190 µs, p99.9
//! 0.1-6 ms and max 8-60 ms, with the long tail present even with the syncer idle.
//!
//! # Durability
//!
//! See [`Durability`]. What fjall 3.1 does, checked in its source:
//! - A committed `WriteBatch` with `durability(Some(PersistMode::Buffer))` has written the batch
//!   to the journal and flushed the journal's `BufWriter` to the OS (`write(2)`) before `commit`
//!   returns (`batch/mod.rs` `WriteBatch::commit`, `journal/writer.rs` `Writer::persist`). The
//!   data is then in the kernel's page cache: a process crash (SIGKILL, panic) loses nothing,
//!   a power loss or kernel crash may lose it.
//! - `Database::persist(PersistMode::SyncData)` calls `fdatasync` on the active journal
//!   (`db.rs` `Database::persist` -> `journal/mod.rs` `Journal::persist`). `fdatasync` covers
//!   the file-size change of appends, and journal rotation already makes the sealed journal
//!   durable and the next one durable in the directory (`journal/writer.rs`
//!   `Writer::prepare_next`, `Writer::rotate_to`), so `SyncData` is enough.
//! - fjall 3 has no periodic fsync thread of its own (fjall 2's `fsync_ms` is gone); it syncs
//!   only on journal rotation, memtable flush (`worker_pool.rs`) and drop (`Journal::drop`,
//!   `SyncAll`). Nothing there conflicts with our own syncer. Upstream, the flush worker's
//!   fsyncs (and a rotation's three) run under the journal mutex; the vendored fjall
//!   (`vendor/README.md`) runs them without it, except the sealed journal's last `fdatasync`.
//! - Both `commit` and `persist` hold fjall's single journal mutex, so a syncer that called
//!   `persist` would make every write on a request core wait for the disk. Ours does not: it
//!   `fdatasync`s the active journal file (`N.jnl`, where `N` is what the vendored fjall's
//!   `Database::active_journal_id` returns) through a descriptor of its own. `fdatasync` acts on
//!   the inode, so it makes durable every byte any writer has handed to the OS for that file,
//!   without fjall's mutex. Older journals need nothing from us: fjall `fdatasync`s a journal
//!   when it seals it, before it publishes the next id. The syncer reads the write counter
//!   before the id, so every counted write is in the journal it syncs or in a sealed one.
//!
//! # Tombstones
//!
//! A delete stores a tombstone version; it must outlive every copy of the value it deletes, or a
//! replica that missed the delete (a hint, a node that was down, a late repair) writes the value
//! back. [`Engine::purge_tombstones`] removes tombstones older than a grace period; see
//! [`DEFAULT_TOMBSTONE_GRACE`] for the bound it must respect.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::core::version::{resolve, Resolution, Version};

mod digest;
mod evict;
mod format;
mod purge;
mod scan;
mod syncer;
mod types;

// The defaults live with the configuration keys that override them; re-exported as the engine's.
pub use crate::config::{
    DEFAULT_BACKGROUND_NICE, DEFAULT_CACHE_BYTES, DEFAULT_GROUP_COMMIT_INTERVAL,
    DEFAULT_PURGE_INTERVAL, DEFAULT_TOMBSTONE_GRACE,
};
pub use digest::{RangeDigest, MAX_DIGEST_RECORDS};
pub use format::{MAX_ACTOR_BYTES, MAX_STORAGE_KEY_BYTES, MAX_VALUE_BYTES};
pub use scan::{ScanEntry, DEFAULT_SCAN_LIMIT, MAX_SCAN_LIMIT};
pub use types::{Applied, ApplyOp, Durability, EngineConfig, EngineError, StallWaits, Stats};

use format::{decode_header, decode_version, encode_version, storage_key, validate_version};

/// Number of key-lock stripes. With a few dozen writes in flight per node, two unrelated keys
/// share a stripe with probability ~n/1024; each stripe is padded to a cache line, so the table
/// is 64 KiB.
pub const STRIPES: usize = 1024;

/// Sealed memtables at which fjall 3.1 stalls writers (`keyspace/mod.rs`
/// `Keyspace::local_backpressure`); see [`Engine::write_stalled`].
pub const FJALL_STALL_SEALED_MEMTABLES: usize = 4;

const DATA_KEYSPACE: &str = "data";

/// A lock stripe, padded to a cache line so neighbouring stripes do not false-share.
#[repr(align(64))]
#[derive(Default)]
struct Stripe(Mutex<()>);

/// The local engine of a storage node. `Send + Sync`: all cores share one `Arc<Engine>`.
///
/// Dropping the last `Arc` stops the syncer (joined) and any purger (which notices within one
/// tick; a purger caught mid-purge finishes that pass first), then syncs the journal.
pub struct Engine {
    db: Database,
    data: Keyspace,
    dir: PathBuf,
    durability: Durability,
    stripes: Box<[Stripe]>,
    key_count: AtomicU64,
    tombstone_count: AtomicU64,
    /// Writes that waited for a flush ([`Engine::record_stall_wait`]), and their total wait, µs.
    stall_waits: AtomicU64,
    stall_wait_us: AtomicU64,
    /// Records removed by [`Engine::evict`].
    evicted: AtomicU64,
    /// Bumped after every journal write; the syncer skips the fsync when it has not moved.
    journal_writes: Arc<AtomicU64>,
    /// Dropping this sender disconnects `stop_rx`, which stops the syncer and the purgers.
    stop_tx: Option<Sender<()>>,
    stop_rx: Receiver<()>,
    syncer: Option<JoinHandle<()>>,
}

impl Engine {
    /// Opens (or creates) the engine in `dir`, counts its records and, in group-commit mode,
    /// starts the syncer thread. Blocks on disk I/O; call it before serving.
    pub fn open(dir: impl AsRef<Path>, config: EngineConfig) -> Result<Self, EngineError> {
        let dir = dir.as_ref().to_path_buf();
        // Our batches set their persist mode explicitly; leaving fjall's automatic
        // per-write buffer flush on only affects calls we do not make.
        let db = Database::builder(&dir)
            .cache_size(config.cache_bytes)
            .manual_journal_persist(false)
            .open()?;
        let data = db.keyspace(DATA_KEYSPACE, KeyspaceCreateOptions::default)?;
        if config.background_nice > 0 {
            // fjall's worker pool (flushes, compactions) starts with the database.
            let n = crate::runtime::priority::lower_threads_named(
                "fjall:worker",
                config.background_nice,
            );
            tracing::debug!(threads = n, nice = config.background_nice, "engine workers reniced");
        }
        let (stop_tx, stop_rx) = channel::bounded(0);
        let journal_writes = Arc::new(AtomicU64::new(0));
        let syncer =
            match config.durability {
                Durability::Sync => None,
                Durability::GroupCommit { interval } => {
                    let (db, writes, stop) = (db.clone(), journal_writes.clone(), stop_rx.clone());
                    let journal_dir = dir.clone();
                    Some(std::thread::Builder::new().name("pairdb-syncer".into()).spawn(
                        move || syncer::run_syncer(db, journal_dir, writes, stop, interval),
                    )?)
                }
            };
        let engine = Self {
            db,
            data,
            dir,
            durability: config.durability,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            key_count: AtomicU64::new(0),
            tombstone_count: AtomicU64::new(0),
            stall_waits: AtomicU64::new(0),
            stall_wait_us: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            journal_writes,
            stop_tx: Some(stop_tx),
            stop_rx,
            syncer,
        };
        engine.recount()?;
        Ok(engine)
    }

    /// The durability mode this engine was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// True while a write would stall inside fjall: with [`FJALL_STALL_SEALED_MEMTABLES`] or more
    /// sealed memtables waiting for flush, fjall's commit sleeps its thread in 100 ms steps
    /// (`Keyspace::local_backpressure`). A caller on a request core waits for this to clear
    /// asynchronously first, so the core keeps serving everything else meanwhile.
    pub fn write_stalled(&self) -> bool {
        self.data.sealed_memtable_count() >= FJALL_STALL_SEALED_MEMTABLES
    }

    /// Sealed memtables waiting for flush: the flush backlog.
    pub fn sealed_memtables(&self) -> usize {
        self.data.sealed_memtable_count()
    }

    /// Tables in level 0: the compaction backlog. fjall delays writers once L0 holds 20 runs
    /// and halts them at 30 (`Keyspace::local_backpressure`).
    pub fn l0_tables(&self) -> usize {
        self.data.l0_table_count()
    }

    /// Tables (SST files) in all levels.
    pub fn tables(&self) -> usize {
        self.data.table_count()
    }

    /// Counts one wait of a write for [`Engine::write_stalled`] to clear, of `waited`.
    pub fn record_stall_wait(&self, waited: Duration) {
        self.stall_waits.fetch_add(1, Ordering::Relaxed);
        let us = waited.as_micros().min(u128::from(u64::MAX)) as u64;
        self.stall_wait_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The writes that waited for a flush so far, and how long they waited in all.
    pub fn stall_waits(&self) -> StallWaits {
        StallWaits {
            count: self.stall_waits.load(Ordering::Relaxed),
            waited: Duration::from_micros(self.stall_wait_us.load(Ordering::Relaxed)),
        }
    }

    /// Applies `incoming` to what is stored for `(tenant_id, key)` by the winner rule and stores
    /// the result if it changed. Atomic per key across threads. In [`Durability::Sync`] mode this
    /// blocks on `fdatasync` when it wrote.
    pub fn apply(
        &self,
        tenant_id: &str,
        key: &str,
        incoming: &Version,
    ) -> Result<Applied, EngineError> {
        let op = ApplyOp { tenant_id, key, version: incoming };
        let mut results = self.apply_batch(&[op]);
        // Invariant: apply_batch returns exactly one result per op.
        results.pop().expect("one result per op")
    }

    /// Applies many versions with one journal write (and, in `Sync` mode, one fsync), returning
    /// one result per op in order. Ops on the same key apply in order, each seeing the previous
    /// one's result. One op's invalid input fails only that op; a failed journal write fails
    /// every op of the batch.
    pub fn apply_batch(&self, ops: &[ApplyOp<'_>]) -> Vec<Result<Applied, EngineError>> {
        let mut results: Vec<Option<Result<Applied, EngineError>>> = vec![None; ops.len()];
        let mut prepared: Vec<(usize, u64, Vec<u8>)> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match validate_version(op.version).and_then(|()| storage_key(op.tenant_id, op.key)) {
                Ok((token, skey)) => prepared.push((i, token, skey)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let mut stripe_ids: Vec<usize> = prepared.iter().map(|p| stripe_of(p.1)).collect();
        let guards = self.lock_stripes(&mut stripe_ids);

        // Per storage key: whether it was absent / a tombstone before the batch, and its newest
        // version so far. Later ops on the same key resolve against this, not the disk.
        let mut pending: HashMap<&[u8], (Option<bool>, Version)> = HashMap::new();
        for (i, _, skey) in &prepared {
            let incoming = ops[*i].version;
            let from_disk;
            let stored = match pending.get(skey.as_slice()) {
                Some((_, v)) => Some(v),
                None => match self.read_raw(skey) {
                    Ok(v) => {
                        from_disk = v;
                        from_disk.as_ref()
                    }
                    Err(e) => {
                        results[*i] = Some(Err(e));
                        continue;
                    }
                },
            };
            let before = stored.map(|v| v.tombstone);
            let (applied, current) = match stored {
                None => (true, incoming.clone()),
                Some(s) => match resolve(s, incoming) {
                    Resolution::TakeIncoming => (true, incoming.clone()),
                    Resolution::KeepStored => (false, s.clone()),
                    Resolution::Merged(v) => (v != *s, v),
                },
            };
            if applied {
                match pending.entry(skey.as_slice()) {
                    Entry::Occupied(mut o) => o.get_mut().1 = current.clone(),
                    Entry::Vacant(slot) => {
                        slot.insert((before, current.clone()));
                    }
                }
            }
            results[*i] = Some(Ok(Applied { applied, current }));
        }

        let wrote = !pending.is_empty();
        if wrote {
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            for (skey, (_, v)) in &pending {
                batch.insert(&self.data, *skey, encode_version(v));
            }
            if let Err(e) = batch.commit() {
                fail_all_ok(&mut results, &EngineError::from(e));
                return finish(results);
            }
            self.journal_writes.fetch_add(1, Ordering::Release);
            for (before, after) in pending.values() {
                self.count_change(*before, Some(after.tombstone));
            }
        }
        drop(guards);

        if wrote && self.durability == Durability::Sync {
            // After releasing the stripes: other writers proceed while we wait, and fjall's
            // journal mutex turns concurrent fsyncs into a natural group commit.
            if let Err(e) = self.db.persist(PersistMode::SyncData) {
                fail_all_ok(&mut results, &EngineError::from(e));
            }
        }
        finish(results)
    }

    /// The version stored for `(tenant_id, key)`, tombstones included; `None` when the node holds
    /// nothing for the key.
    pub fn read(&self, tenant_id: &str, key: &str) -> Result<Option<Version>, EngineError> {
        let (_, skey) = storage_key(tenant_id, key)?;
        self.read_raw(&skey)
    }

    /// Record counts, fjall's disk use and the data filesystem's fullness. `disk_bytes` and the
    /// percentage cost a lock and a `statvfs` call; cheap, but not free.
    pub fn stats(&self) -> Result<Stats, EngineError> {
        Ok(Stats {
            key_count: self.key_count.load(Ordering::Relaxed),
            tombstone_count: self.tombstone_count.load(Ordering::Relaxed),
            disk_bytes: self.db.disk_space()?,
            disk_usage_percent: disk_usage_percent(&self.dir)?,
        })
    }

    /// `fdatasync`s the journal now: every write acknowledged before the call is on disk when it
    /// returns. Blocking; for graceful shutdown and tests.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn read_raw(&self, skey: &[u8]) -> Result<Option<Version>, EngineError> {
        match self.data.get(skey)? {
            Some(v) => Ok(Some(decode_version(&v)?)),
            None => Ok(None),
        }
    }

    /// Locks the given stripes in ascending order (sorting and deduplicating `ids` in place):
    /// one global order is what keeps batches from deadlocking each other.
    fn lock_stripes(&self, ids: &mut Vec<usize>) -> Vec<MutexGuard<'_, ()>> {
        ids.sort_unstable();
        ids.dedup();
        // The mutexes guard no data, so a panic while holding one leaves nothing inconsistent:
        // poisoning is ignored.
        ids.iter()
            .map(|&s| self.stripes[s].0.lock().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Updates the counters for one record going from `before` to `after` (each `None` when
    /// absent, else `Some(is_tombstone)`).
    fn count_change(&self, before: Option<bool>, after: Option<bool>) {
        match (before, after) {
            (None, Some(t)) => {
                self.key_count.fetch_add(1, Ordering::Relaxed);
                if t {
                    self.tombstone_count.fetch_add(1, Ordering::Relaxed);
                }
            }
            (Some(t), None) => {
                self.key_count.fetch_sub(1, Ordering::Relaxed);
                if t {
                    self.tombstone_count.fetch_sub(1, Ordering::Relaxed);
                }
            }
            (Some(false), Some(true)) => {
                self.tombstone_count.fetch_add(1, Ordering::Relaxed);
            }
            (Some(true), Some(false)) => {
                self.tombstone_count.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Counts records and tombstones with one full scan of the fixed value headers. O(records)
    /// at open: about a second per few million records on SSD.
    fn recount(&self) -> Result<(), EngineError> {
        let (mut keys, mut tombstones) = (0u64, 0u64);
        for item in self.data.iter() {
            let (_, v) = item.into_inner()?;
            keys += 1;
            if decode_header(&v)?.0 {
                tombstones += 1;
            }
        }
        self.key_count.store(keys, Ordering::Relaxed);
        self.tombstone_count.store(tombstones, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        drop(self.stop_tx.take());
        if let Some(syncer) = self.syncer.take() {
            if syncer.join().is_err() {
                tracing::error!("syncer thread panicked");
            }
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "final journal sync failed");
        }
    }
}

fn stripe_of(token: u64) -> usize {
    (token % STRIPES as u64) as usize
}

/// Sets every still-successful result to `err`: used when the batch's shared journal write or
/// fsync failed, after which none of its outcomes can be promised.
fn fail_all_ok(results: &mut [Option<Result<Applied, EngineError>>], err: &EngineError) {
    for r in results.iter_mut() {
        if matches!(r, Some(Ok(_))) {
            *r = Some(Err(err.clone()));
        }
    }
}

fn finish(results: Vec<Option<Result<Applied, EngineError>>>) -> Vec<Result<Applied, EngineError>> {
    // Invariant: every op was given a result above, either at validation or when resolved.
    results.into_iter().map(|r| r.expect("every op has a result")).collect()
}

/// Percentage of the filesystem holding `dir` that is used, as `df` computes it:
/// used / (used + available to unprivileged users).
fn disk_usage_percent(dir: &Path) -> Result<f64, EngineError> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let total = used + st.f_bavail as f64;
    Ok(if total == 0.0 { 0.0 } else { used / total * 100.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ring::key_token;
    use bytes::Bytes;

    pub(super) use crate::core::version::test_version as ver;

    pub(super) fn open(dir: &Path) -> Engine {
        Engine::open(dir, EngineConfig { cache_bytes: 8 * 1024 * 1024, ..Default::default() })
            .expect("open engine")
    }

    pub(super) fn tomb(pairs: &[(&str, u64)], ts: i64, writer: &str) -> Version {
        Version { tombstone: true, ..ver(pairs, ts, writer, "") }
    }

    /// Writes `n` keys and returns their tokens, sorted.
    pub(super) fn fill(e: &Engine, n: usize) -> Vec<u64> {
        let mut tokens = Vec::new();
        for i in 0..n {
            let key = format!("key-{i}");
            e.apply("t", &key, &ver(&[("a", 1)], 1, "a", "v")).unwrap();
            tokens.push(key_token("t", &key).0);
        }
        tokens.sort_unstable();
        tokens
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Engine>();
    }

    #[test]
    fn apply_dominated_dominating_and_concurrent() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let v1 = ver(&[("a", 1)], 10, "a", "one");
        let v2 = ver(&[("a", 2)], 5, "a", "two");

        let r = e.apply("t", "k", &v1).unwrap();
        assert_eq!(r, Applied { applied: true, current: v1.clone() });
        let r = e.apply("t", "k", &v2).unwrap();
        assert_eq!(r, Applied { applied: true, current: v2.clone() });
        // Dominated: stored stays and is answered back.
        let r = e.apply("t", "k", &v1).unwrap();
        assert_eq!(r, Applied { applied: false, current: v2.clone() });
        // Equal: nothing changes.
        assert!(!e.apply("t", "k", &v2).unwrap().applied);

        // Concurrent: the later timestamp wins under the merged clock.
        let c = ver(&[("b", 1)], 50, "b", "concurrent");
        let r = e.apply("t", "k", &c).unwrap();
        assert!(r.applied);
        assert_eq!(r.current.value, Bytes::from_static(b"concurrent"));
        assert_eq!(r.current.clock.counter("a"), 2);
        assert_eq!(r.current.clock.counter("b"), 1);
        assert_eq!(e.read("t", "k").unwrap(), Some(r.current));
    }

    #[test]
    fn replicas_fed_in_opposite_orders_converge() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (e1, e2) = (open(d1.path()), open(d2.path()));
        let writes = [
            ver(&[("a", 1)], 10, "a", "x"),
            ver(&[("b", 1)], 10, "b", "y"),
            ver(&[("a", 2)], 12, "a", "z"),
            tomb(&[("c", 1)], 11, "c"),
            ver(&[("a", 1), ("b", 1)], 9, "b", "w"),
        ];
        for w in &writes {
            e1.apply("t", "k", w).unwrap();
        }
        for w in writes.iter().rev() {
            e2.apply("t", "k", w).unwrap();
        }
        let (r1, r2) = (e1.read("t", "k").unwrap(), e2.read("t", "k").unwrap());
        assert_eq!(r1, r2);
        assert_eq!(r1.unwrap().value, Bytes::from_static(b"z"));
    }

    #[test]
    fn apply_batch_orders_ops_on_one_key_and_isolates_bad_ops() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let (v1, v2) = (ver(&[("a", 1)], 1, "a", "1"), ver(&[("a", 2)], 2, "a", "2"));
        let bad = Version { value: Bytes::from_static(b"x"), ..tomb(&[("a", 3)], 3, "a") };
        let ops = [
            ApplyOp { tenant_id: "t", key: "k", version: &v1 },
            ApplyOp { tenant_id: "t", key: "k", version: &bad },
            ApplyOp { tenant_id: "t", key: "k", version: &v2 },
            ApplyOp { tenant_id: "t", key: "k", version: &v1 },
            ApplyOp { tenant_id: "t", key: "other", version: &v1 },
        ];
        let r = e.apply_batch(&ops);
        assert!(r[0].as_ref().unwrap().applied);
        assert!(matches!(r[1], Err(EngineError::TombstoneWithValue)));
        assert!(r[2].as_ref().unwrap().applied);
        assert_eq!(r[3].as_ref().unwrap(), &Applied { applied: false, current: v2.clone() });
        assert!(r[4].as_ref().unwrap().applied);
        assert_eq!(e.read("t", "k").unwrap(), Some(v2));
        assert_eq!(e.stats().unwrap().key_count, 2);
    }

    #[test]
    fn invalid_versions_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let empty_clock = ver(&[], 1, "a", "v");
        assert!(matches!(e.apply("t", "k", &empty_clock), Err(EngineError::EmptyClock)));
        let long_key = "k".repeat(MAX_STORAGE_KEY_BYTES);
        let v = ver(&[("a", 1)], 1, "a", "v");
        assert!(matches!(e.apply("t", &long_key, &v), Err(EngineError::KeyTooLarge { .. })));
        let long_writer = ver(&[("a", 1)], 1, &"w".repeat(MAX_ACTOR_BYTES + 1), "v");
        assert!(matches!(e.apply("t", "k", &long_writer), Err(EngineError::ActorTooLong { .. })));
    }

    #[test]
    fn concurrent_applies_on_one_key_lose_no_version() {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(open(dir.path()));
        const THREADS: u64 = 8;
        const WRITES: u64 = 100;
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let e = e.clone();
                std::thread::spawn(move || {
                    let actor = format!("c{t}");
                    for n in 1..=WRITES {
                        let v = ver(&[(&actor, n)], (n * THREADS + t) as i64, &actor, "v");
                        e.apply("t", "hot", &v).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let stored = e.read("t", "hot").unwrap().unwrap();
        for t in 0..THREADS {
            assert_eq!(stored.clock.counter(&format!("c{t}")), WRITES, "actor c{t}");
        }
    }

    #[test]
    fn tenants_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        e.apply("alpha", "k", &ver(&[("a", 1)], 1, "a", "from-alpha")).unwrap();
        e.apply("beta", "k", &ver(&[("a", 1)], 1, "a", "from-beta")).unwrap();
        assert_eq!(e.read("alpha", "k").unwrap().unwrap().value, Bytes::from_static(b"from-alpha"));
        assert_eq!(e.read("beta", "k").unwrap().unwrap().value, Bytes::from_static(b"from-beta"));
        assert_eq!(e.read("gamma", "k").unwrap(), None);
        // A tenant id that is a prefix of another's plus key cannot alias it.
        assert_eq!(e.read("alph", "ak").unwrap(), None);
    }

    #[test]
    fn stats_count_keys_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = open(dir.path());
            fill(&e, 10);
            e.apply("t", "key-0", &tomb(&[("a", 2)], 2, "a")).unwrap();
            e.apply("t", "key-0", &tomb(&[("a", 3)], 3, "a")).unwrap();
            let s = e.stats().unwrap();
            assert_eq!((s.key_count, s.tombstone_count), (10, 1));
            assert!(s.disk_bytes > 0);
            assert!((0.0..=100.0).contains(&s.disk_usage_percent));
        }
        let e = open(dir.path());
        let s = e.stats().unwrap();
        assert_eq!((s.key_count, s.tombstone_count), (10, 1));
    }

    #[test]
    fn group_commit_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let v = ver(&[("a", 1)], 1, "a", "durable");
        {
            let e = open(dir.path());
            assert_eq!(e.durability(), Durability::default());
            e.apply("t", "k", &v).unwrap();
            // Dropped without an explicit sync.
        }
        let e = open(dir.path());
        assert_eq!(e.read("t", "k").unwrap(), Some(v));
    }

    #[test]
    fn sync_mode_applies_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            durability: Durability::Sync,
            cache_bytes: 8 << 20,
            ..Default::default()
        };
        let v = ver(&[("a", 1)], 1, "a", "synced");
        {
            let e = Engine::open(dir.path(), config).unwrap();
            let ops = [
                ApplyOp { tenant_id: "t", key: "k1", version: &v },
                ApplyOp { tenant_id: "t", key: "k2", version: &v },
            ];
            assert!(e.apply_batch(&ops).iter().all(|r| r.as_ref().unwrap().applied));
        }
        let e = Engine::open(dir.path(), config).unwrap();
        assert_eq!(e.read("t", "k2").unwrap(), Some(v));
    }

    /// A crash after the vendored fjall prepared the next journal and before it switched to
    /// it leaves an empty, preallocated `N+1.jnl` (vendor/README.md): reopening must find
    /// every write, which is in `N.jnl`, and go on writing in `N+1.jnl`.
    #[test]
    fn a_prepared_but_unused_next_journal_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = ver(&[("a", 1)], 1, "a", "in the old journal");
        let id = {
            let e = open(dir.path());
            e.apply("t", "k1", &v1).unwrap();
            e.db.active_journal_id()
        };
        let next = std::fs::File::create_new(dir.path().join(format!("{}.jnl", id + 1))).unwrap();
        next.set_len(64 << 20).unwrap();
        drop(next);

        let v2 = ver(&[("a", 1)], 1, "a", "in the new journal");
        {
            let e = open(dir.path());
            assert_eq!(e.read("t", "k1").unwrap(), Some(v1.clone()));
            assert_eq!(e.db.active_journal_id(), id + 1, "the prepared journal is the active one");
            e.apply("t", "k2", &v2).unwrap();
        }
        let e = open(dir.path());
        assert_eq!(e.read("t", "k1").unwrap(), Some(v1));
        assert_eq!(e.read("t", "k2").unwrap(), Some(v2));
    }

    /// A real rotation: fjall switches to a new journal once a memtable flush finds the journal
    /// past 64 MB. Every write stays readable, before and after reopening, and the journal id
    /// the syncer follows names the file that now receives writes.
    #[test]
    fn journal_rotation_switches_files_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let value = "x".repeat(4000);
        let n = 18_000; // about 72 MB of journal, past fjall's 64 MiB memtable
        let first;
        {
            let e = open(dir.path());
            first = e.db.active_journal_id();
            for i in 0..n {
                e.apply("t", &format!("k{i}"), &ver(&[("a", 1)], 1, "a", &value)).unwrap();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while e.db.active_journal_id() == first {
                assert!(std::time::Instant::now() < deadline, "no journal rotation in 60 s");
                std::thread::sleep(Duration::from_millis(20));
            }
            let now = e.db.active_journal_id();
            assert_eq!(now, first + 1);
            let mut active = None;
            syncer::sync_active_journal(dir.path(), now, &mut active).expect("the new journal");
            e.apply("t", "after", &ver(&[("a", 1)], 1, "a", "after the rotation")).unwrap();
            for i in (0..n).step_by(997) {
                assert!(e.read("t", &format!("k{i}")).unwrap().is_some(), "k{i} before reopen");
            }
        }
        let e = open(dir.path());
        for i in 0..n {
            assert!(e.read("t", &format!("k{i}")).unwrap().is_some(), "k{i} after reopen");
        }
        assert_eq!(
            e.read("t", "after").unwrap().map(|v| v.value),
            Some(Bytes::from("after the rotation"))
        );
    }

    /// Flushes and compactions install new versions of the LSM tree while reads and writes go
    /// on; the vendored lsm-tree persists each version before it takes the version lock
    /// (vendor/README.md). Every acknowledged write must stay readable throughout, with its
    /// latest value, and after a reopen.
    #[test]
    fn flushes_and_compactions_under_load_lose_nothing() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let (rounds, per_round) = (6, 400);
        let value = |round: usize, i: usize| format!("round {round} key {i}");
        {
            let e = open(dir.path());
            let written = AtomicUsize::new(0);
            let done = AtomicBool::new(false);
            std::thread::scope(|s| {
                let reader = s.spawn(|| {
                    let mut reads = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let n = written.load(Ordering::Acquire);
                        for i in (0..n).step_by(7) {
                            let got = e.read("t", &format!("k{i}")).unwrap();
                            assert!(got.is_some(), "k{i} of {n} acknowledged writes is missing");
                            reads += 1;
                        }
                    }
                    reads
                });
                for round in 0..rounds {
                    // Each round rewrites every key so far with a newer clock and adds new ones,
                    // so that flushed tables overlap and compactions merge them.
                    let upto = (round + 1) * per_round;
                    for i in 0..upto {
                        let clock = round as u64 + 1;
                        let v = ver(&[("a", clock)], clock as i64, "a", &value(round, i));
                        e.apply("t", &format!("k{i}"), &v).unwrap();
                    }
                    written.store(upto, Ordering::Release);
                    e.data.rotate_memtable_and_wait().unwrap();
                }
                assert!(e.data.table_count() >= 2, "the rounds flushed tables");
                e.data.major_compact().unwrap();
                assert_eq!(e.data.l0_table_count(), 0, "the major compaction merged L0");
                done.store(true, Ordering::Release);
                assert!(reader.join().unwrap() > 0, "the reader ran");
            });
            for i in 0..rounds * per_round {
                let got = e.read("t", &format!("k{i}")).unwrap().map(|v| v.value);
                assert_eq!(got, Some(Bytes::from(value(rounds - 1, i))), "k{i} before reopen");
            }
        }
        let e = open(dir.path());
        for i in 0..rounds * per_round {
            let got = e.read("t", &format!("k{i}")).unwrap().map(|v| v.value);
            assert_eq!(got, Some(Bytes::from(value(rounds - 1, i))), "k{i} after reopen");
        }
    }

    #[test]
    fn a_fresh_engine_does_not_stall_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
        assert!(!engine.write_stalled());
    }
}
