//! The storage node's local engine: one fjall database holding, for each `(tenant_id, key)`, the
//! one [`Version`] this replica keeps. It owns the on-disk layout, the per-key read-modify-write
//! that applies the winner rule of [`crate::core::version`], durability, stats and tombstone
//! purge. It knows nothing of gRPC or glommio: the service layer decides which calls may run on a
//! request core and which must go to a blocking thread.
//!
//! # Layout
//!
//! One fjall keyspace, `data`. A storage key is
//!
//! ```text
//!   token (u64 BE, 8 bytes) | tenant_id length (u16 BE) | tenant_id | key
//! ```
//!
//! where `token` is [`key_token`]`(tenant_id, key)`, the ring position. Keys sort by token
//! first, so a token range (what data movement asks for) is one range scan, and the tenant id is
//! part of the key, so tenants never see each other's keys even when they use the same key or
//! their tokens collide. The value is a compact custom encoding rather than prost's, so that
//! purge and the start-up count can read the tombstone flag and timestamp from a fixed 10-byte
//! header without decoding the clock:
//!
//! ```text
//!   offset  size  field
//!   0       1     format tag, 1
//!   1       1     flags: bit 0 = tombstone
//!   2       8     timestamp_us, i64 BE
//!   10      2     writer length W, u16 BE
//!   12      W     writer, UTF-8
//!   ..      2     clock entry count N, u16 BE
//!   ..      N *   (actor length A: u16 BE, actor: A bytes, counter: u64 BE)
//!   ..      rest  the user's value (empty for tombstones)
//! ```
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
//!   the file-size change of appends, and journal rotation already `fsync`s the sealed journal
//!   and the directory (`journal/writer.rs` `Writer::rotate`), so `SyncData` is enough.
//! - fjall 3 has no periodic fsync thread of its own (fjall 2's `fsync_ms` is gone); it syncs
//!   only on journal rotation, memtable flush (`worker_pool.rs`) and drop (`Journal::drop`,
//!   `SyncAll`). Nothing there conflicts with our own syncer.
//! - Both `commit` and `persist` hold fjall's single journal mutex, so a syncer that called
//!   `persist` would make every write on a request core wait for the disk. Ours does not: it
//!   `fdatasync`s the active journal file (the highest-numbered `N.jnl` in the data directory)
//!   through a descriptor of its own. `fdatasync` acts on the inode, so it makes durable every
//!   byte any writer has handed to the OS for that file, without fjall's mutex. Sealed journals
//!   need nothing from us: rotation `fsync`s them. The syncer reads the write counter before it
//!   lists the directory, so every counted write is in a journal it syncs or one rotation
//!   synced.
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
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::core::ring::key_token;
use crate::core::vclock::VClock;
use crate::core::version::{resolve, Resolution, Version};

/// Number of key-lock stripes. With a few dozen writes in flight per node, two unrelated keys
/// share a stripe with probability ~n/1024; each stripe is padded to a cache line, so the table
/// is 64 KiB.
pub const STRIPES: usize = 1024;

/// Largest storage key fjall (lsm-tree 3) accepts is 65536 bytes; we stay one below so the
/// length always fits a `u16`. A storage key is `token + tenant length + tenant_id + key`.
pub const MAX_STORAGE_KEY_BYTES: usize = u16::MAX as usize;

/// Longest writer or actor id. Ids look like `coord-1/3`; 255 bytes is generous and keeps the
/// largest clock header (64 entries) under 17 KiB.
pub const MAX_ACTOR_BYTES: usize = 255;

/// Largest user value: lsm-tree caps a stored value at 2^32 bytes and the header takes the rest.
/// The service layer enforces a much smaller message limit; this only guards the format.
pub const MAX_VALUE_BYTES: usize = u32::MAX as usize - 64 * 1024;

/// Default group-commit interval: 5 ms. It bounds what a simultaneous power loss of every
/// replica of a key can lose to ~5 ms of acknowledged writes (a process crash loses nothing in
/// either mode). Shorter intervals fsync more often for no gain in the common case of one node
/// failing, since the other replicas hold the write; longer ones make each fsync, and so the
/// journal-mutex stall a request core may see (module doc), longer.
pub const DEFAULT_GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(5);

/// Default tombstone grace: 10 days, as Cassandra's `gc_grace_seconds`. A tombstone may be purged
/// only once no replica can still receive the value it deletes: the grace must exceed how long
/// hints are kept, how long a node may be down and still rejoin without a full rebuild, and the
/// interval between anti-entropy repairs. Ten days covers a node lost over a long weekend plus
/// a week of repair cycle; the cost is disk for deleted keys.
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(10 * 24 * 3600);

/// Sealed memtables at which fjall 3.1 stalls writers (`keyspace/mod.rs`
/// `Keyspace::local_backpressure`); see [`Engine::write_stalled`].
pub const FJALL_STALL_SEALED_MEMTABLES: usize = 4;

/// Suggested interval for [`Engine::spawn_purger`]: hourly. Purge scans the whole keyspace, and
/// an hour is negligible against the 10-day grace.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Default block cache: 256 MiB. fjall's own 32 MiB default suits an embedded library; a storage
/// node is a dedicated host, and fjall recommends 20-25% of RAM, which config should set.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Page size `scan_range` uses when given 0, as the storage proto's `ScanRangeRequest.limit`.
pub const DEFAULT_SCAN_LIMIT: usize = 1000;

/// Largest page `scan_range` returns, whatever the caller asks for: bounds one call's memory.
pub const MAX_SCAN_LIMIT: usize = 10_000;

/// A page of `scan_range` examines at most `limit * SCAN_EXAMINE_FACTOR` records, so a range full
/// of skipped tombstones still returns promptly (with fewer entries and a cursor).
const SCAN_EXAMINE_FACTOR: usize = 8;

/// Tombstones purged per fjall batch. Purge holds these keys' stripes while it re-checks and
/// removes them, so the chunk is small to keep request cores from waiting on a background job.
const PURGE_CHUNK: usize = 64;

const DATA_KEYSPACE: &str = "data";
const FORMAT_V1: u8 = 1;
const FLAG_TOMBSTONE: u8 = 1;
const VALUE_HEADER_BYTES: usize = 10;
const TOKEN_BYTES: usize = 8;
const KEY_PREFIX_BYTES: usize = TOKEN_BYTES + 2;

/// When an acknowledged write is on disk.
///
/// | mode          | process crash (SIGKILL) | power loss / kernel crash               |
/// |---------------|-------------------------|-----------------------------------------|
/// | `Sync`        | nothing lost            | nothing lost                            |
/// | `GroupCommit` | nothing lost            | up to `interval` of acknowledged writes |
///
/// The default is `GroupCommit` with [`DEFAULT_GROUP_COMMIT_INTERVAL`]: a Dynamo-style store
/// already survives the loss of one node through its replicas, so paying an fsync per write
/// buys protection only against every replica losing power at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every `apply`/`apply_batch` that wrote calls `fdatasync` before returning, so these calls
    /// block on the disk: the service layer must run them off the request cores.
    Sync,
    /// Every write reaches the OS before it is acknowledged; a background thread `fdatasync`s
    /// the journal every `interval` (skipping idle intervals).
    GroupCommit {
        /// Time between background fsyncs.
        interval: Duration,
    },
}

impl Default for Durability {
    fn default() -> Self {
        Self::GroupCommit { interval: DEFAULT_GROUP_COMMIT_INTERVAL }
    }
}

/// How to open an [`Engine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// When writes reach the disk; default [`Durability::default`].
    pub durability: Durability,
    /// fjall block cache size; default [`DEFAULT_CACHE_BYTES`].
    pub cache_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { durability: Durability::default(), cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

/// Why an engine call failed. Variants up to and including [`EngineError::EmptyClock`] are the
/// caller's fault (INVALID_ARGUMENT); `Backend`, `Io` and `Corrupt` are the node's (INTERNAL or
/// UNAVAILABLE). Backend errors are shared (`Arc`) because one failed batch commit fails every
/// operation in it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    /// The tenant id and key together do not fit one storage key.
    #[error("tenant id plus key take {len} bytes, over the {max}-byte limit")]
    KeyTooLarge {
        /// Bytes the storage key would take.
        len: usize,
        /// [`MAX_STORAGE_KEY_BYTES`].
        max: usize,
    },
    /// The version's value is larger than the format can store.
    #[error("value is {len} bytes, over the {max}-byte limit")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// [`MAX_VALUE_BYTES`].
        max: usize,
    },
    /// The writer id or a clock actor id is longer than [`MAX_ACTOR_BYTES`].
    #[error("{field} is {len} bytes, over the {max}-byte limit")]
    ActorTooLong {
        /// `"writer"` or `"clock actor"`.
        field: &'static str,
        /// The id's length.
        len: usize,
        /// [`MAX_ACTOR_BYTES`].
        max: usize,
    },
    /// A tombstone carried a non-empty value.
    #[error("tombstone carries a value")]
    TombstoneWithValue,
    /// The version has an empty vector clock; every write names at least its own actor.
    #[error("version has an empty vector clock")]
    EmptyClock,
    /// The scan cursor was not produced by `scan_range` for this token range.
    #[error("scan cursor is not valid for this range")]
    InvalidCursor,
    /// fjall failed: I/O, a journal poisoned by an earlier failed fsync, or a locked directory.
    #[error("storage backend failed")]
    Backend(#[source] Arc<fjall::Error>),
    /// An operating-system call of the engine's own failed (statvfs, spawning a thread).
    #[error("engine i/o failed")]
    Io(#[source] Arc<std::io::Error>),
    /// A stored record does not decode: disk corruption or an encoder bug.
    #[error("stored record is corrupt: {what}")]
    Corrupt {
        /// Which part failed to decode.
        what: &'static str,
    },
}

impl From<fjall::Error> for EngineError {
    fn from(e: fjall::Error) -> Self {
        Self::Backend(Arc::new(e))
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// One write for [`Engine::apply_batch`].
#[derive(Clone, Copy, Debug)]
pub struct ApplyOp<'a> {
    /// The key's tenant.
    pub tenant_id: &'a str,
    /// The user's key.
    pub key: &'a str,
    /// The incoming version: a write, a tombstone, or a repair.
    pub version: &'a Version,
}

/// The outcome of applying one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// True when the incoming version changed what is stored (it won or was merged).
    pub applied: bool,
    /// What the node holds after the write.
    pub current: Version,
}

/// One record of a [`Engine::scan_range`] page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEntry {
    /// The key's tenant.
    pub tenant_id: String,
    /// The user's key.
    pub key: String,
    /// The key's ring token.
    pub token: u64,
    /// The stored version (possibly a tombstone).
    pub version: Version,
}

/// What [`Engine::stats`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Stored records: live keys plus tombstones not yet purged. Exact: counted at open, then
    /// maintained on every write and purge.
    pub key_count: u64,
    /// Tombstones among `key_count`.
    pub tombstone_count: u64,
    /// Bytes fjall uses on disk (journals and tables).
    pub disk_bytes: u64,
    /// How full the data directory's filesystem is, 0 to 100, as `df` computes it.
    pub disk_usage_percent: f64,
}

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
        let (stop_tx, stop_rx) = channel::bounded(0);
        let journal_writes = Arc::new(AtomicU64::new(0));
        let syncer = match config.durability {
            Durability::Sync => None,
            Durability::GroupCommit { interval } => {
                let (db, writes, stop) = (db.clone(), journal_writes.clone(), stop_rx.clone());
                let journal_dir = dir.clone();
                Some(
                    std::thread::Builder::new()
                        .name("pairdb-syncer".into())
                        .spawn(move || run_syncer(db, journal_dir, writes, stop, interval))?,
                )
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

    /// One page of the records whose token lies in `(start_exclusive, end_inclusive]`, in
    /// storage-key order; when `start_exclusive >= end_inclusive` the range wraps:
    /// `(start, u64::MAX] ∪ [0, end]` (so `start == end` is the whole ring).
    ///
    /// `cursor` is empty for the first page, then the previous page's `next_cursor`, which is
    /// empty when the range is exhausted. A page holds at most `limit` entries (0 means
    /// [`DEFAULT_SCAN_LIMIT`], capped at [`MAX_SCAN_LIMIT`]) and may hold fewer, even none, with a
    /// non-empty cursor when it skipped many tombstones: keep paging until the cursor is empty.
    /// Pages see writes made between calls; a key written during a scan may or may not appear.
    pub fn scan_range(
        &self,
        start_exclusive: u64,
        end_inclusive: u64,
        cursor: &[u8],
        limit: usize,
        include_tombstones: bool,
    ) -> Result<(Vec<ScanEntry>, Vec<u8>), EngineError> {
        self.scan_range_within(
            start_exclusive,
            end_inclusive,
            cursor,
            limit,
            include_tombstones,
            usize::MAX,
        )
    }

    /// [`Engine::scan_range`], with pages also cut at about `max_page_bytes`: a record that
    /// would take the page's stored bytes (keys and encoded values) past the budget starts the
    /// next page instead, unless the page is still empty. Without it a page of `limit` large
    /// values could not fit in one reply and the range could never be scanned.
    pub fn scan_range_within(
        &self,
        start_exclusive: u64,
        end_inclusive: u64,
        cursor: &[u8],
        limit: usize,
        include_tombstones: bool,
        max_page_bytes: usize,
    ) -> Result<(Vec<ScanEntry>, Vec<u8>), EngineError> {
        let limit = if limit == 0 { DEFAULT_SCAN_LIMIT } else { limit.min(MAX_SCAN_LIMIT) };
        let max_examined = limit.saturating_mul(SCAN_EXAMINE_FACTOR);

        // Token segments, inclusive on both ends, in scan order.
        let mut segments: Vec<(u64, u64)> = Vec::with_capacity(2);
        if start_exclusive < end_inclusive {
            segments.push((start_exclusive + 1, end_inclusive));
        } else {
            if start_exclusive < u64::MAX {
                segments.push((start_exclusive + 1, u64::MAX));
            }
            segments.push((0, end_inclusive));
        }

        let mut first = 0;
        let mut resume: Option<Vec<u8>> = None;
        if !cursor.is_empty() {
            let (token, _, _) =
                parse_storage_key(cursor).map_err(|_| EngineError::InvalidCursor)?;
            first = segments
                .iter()
                .position(|&(lo, hi)| lo <= token && token <= hi)
                .ok_or(EngineError::InvalidCursor)?;
            resume = Some(cursor.to_vec());
        }

        let mut entries = Vec::new();
        let mut examined = 0;
        let mut page_bytes = 0usize;
        let mut last_key: Vec<u8> = Vec::new();
        for (n, &(lo, hi)) in segments.iter().enumerate().skip(first) {
            let lower = match (n == first, resume.take()) {
                (true, Some(c)) => Bound::Excluded(c),
                _ => Bound::Included(lo.to_be_bytes().to_vec()),
            };
            let upper = match hi.checked_add(1) {
                Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            for item in self.data.range::<Vec<u8>, _>((lower, upper)) {
                if entries.len() == limit || examined == max_examined {
                    // Another record is in range: hand out a cursor to it.
                    return Ok((entries, last_key));
                }
                let (k, v) = item.into_inner()?;
                let record_bytes = k.len() + v.len();
                if !entries.is_empty() && page_bytes.saturating_add(record_bytes) > max_page_bytes {
                    // `last_key` is the previous record: the cursor resumes at this one.
                    return Ok((entries, last_key));
                }
                examined += 1;
                last_key.clear();
                last_key.extend_from_slice(&k);
                let (tombstone, _) = decode_header(&v)?;
                if tombstone && !include_tombstones {
                    continue;
                }
                let (token, tenant_id, key) = parse_storage_key(&k)?;
                page_bytes += record_bytes;
                entries.push(ScanEntry {
                    tenant_id: tenant_id.to_owned(),
                    key: key.to_owned(),
                    token,
                    version: decode_version(&v)?,
                });
            }
        }
        Ok((entries, Vec::new()))
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

    /// Re-checks each candidate under its stripe lock and removes those still old tombstones,
    /// in one journal write.
    fn purge_chunk(&self, candidates: &[Vec<u8>], cutoff_us: i64) -> Result<usize, EngineError> {
        let mut stripe_ids: Vec<usize> =
            candidates.iter().map(|k| stripe_of(token_of_storage_key(k))).collect();
        let guards = self.lock_stripes(&mut stripe_ids);
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut removed = 0;
        for k in candidates {
            let still_old_tombstone = match self.data.get(k)? {
                Some(v) => matches!(decode_header(&v), Ok((true, ts)) if ts < cutoff_us),
                None => false,
            };
            if still_old_tombstone {
                batch.remove(&self.data, k.as_slice());
                removed += 1;
            }
        }
        if removed > 0 {
            batch.commit()?;
            self.journal_writes.fetch_add(1, Ordering::Release);
            for _ in 0..removed {
                self.count_change(Some(true), None);
            }
        }
        drop(guards);
        // No fsync even in Sync mode: a lost purge only brings back a tombstone, purged again
        // next pass.
        Ok(removed)
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

/// The group-commit loop: every `interval`, `fdatasync` the active journal if anything was
/// written since the last sync, through the syncer's own descriptor (see the module doc: this
/// keeps fjall's journal mutex, and so the request cores, out of the disk wait). Exits when the
/// engine drops its stop sender, or after a failed sync (the journal can no longer be trusted to
/// be durable, so the engine is poisoned through fjall and later writes fail unacknowledged).
fn run_syncer(
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
fn sync_active_journal(
    dir: &Path,
    active: &mut Option<(u64, std::fs::File)>,
) -> std::io::Result<()> {
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

fn stripe_of(token: u64) -> usize {
    (token % STRIPES as u64) as usize
}

/// The token and storage key of `(tenant_id, key)`; see the module doc for the layout.
fn storage_key(tenant_id: &str, key: &str) -> Result<(u64, Vec<u8>), EngineError> {
    let len = KEY_PREFIX_BYTES + tenant_id.len() + key.len();
    if len > MAX_STORAGE_KEY_BYTES {
        return Err(EngineError::KeyTooLarge { len, max: MAX_STORAGE_KEY_BYTES });
    }
    let token = key_token(tenant_id, key).0;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&token.to_be_bytes());
    // Fits: tenant_id.len() < len <= u16::MAX.
    out.extend_from_slice(&(tenant_id.len() as u16).to_be_bytes());
    out.extend_from_slice(tenant_id.as_bytes());
    out.extend_from_slice(key.as_bytes());
    Ok((token, out))
}

fn parse_storage_key(skey: &[u8]) -> Result<(u64, &str, &str), EngineError> {
    const BAD: EngineError = EngineError::Corrupt { what: "storage key" };
    let Some((token, rest)) = skey.split_first_chunk::<TOKEN_BYTES>() else { return Err(BAD) };
    let Some((tenant_len, rest)) = rest.split_first_chunk::<2>() else { return Err(BAD) };
    let tenant_len = usize::from(u16::from_be_bytes(*tenant_len));
    if rest.len() < tenant_len {
        return Err(BAD);
    }
    let (tenant, key) = rest.split_at(tenant_len);
    let tenant = std::str::from_utf8(tenant).map_err(|_| BAD)?;
    let key = std::str::from_utf8(key).map_err(|_| BAD)?;
    Ok((u64::from_be_bytes(*token), tenant, key))
}

/// The token prefix of a storage key we wrote (at least 10 bytes by construction).
fn token_of_storage_key(skey: &[u8]) -> u64 {
    skey.first_chunk::<TOKEN_BYTES>().map_or(0, |t| u64::from_be_bytes(*t))
}

/// Rejects versions the engine must not store; after this, `encode_version` cannot fail.
fn validate_version(v: &Version) -> Result<(), EngineError> {
    if v.tombstone && !v.value.is_empty() {
        return Err(EngineError::TombstoneWithValue);
    }
    if v.clock.is_empty() {
        return Err(EngineError::EmptyClock);
    }
    if v.value.len() > MAX_VALUE_BYTES {
        return Err(EngineError::ValueTooLarge { len: v.value.len(), max: MAX_VALUE_BYTES });
    }
    if v.writer.len() > MAX_ACTOR_BYTES {
        let len = v.writer.len();
        return Err(EngineError::ActorTooLong { field: "writer", len, max: MAX_ACTOR_BYTES });
    }
    if let Some((actor, _)) = v.clock.entries().iter().find(|(a, _)| a.len() > MAX_ACTOR_BYTES) {
        let len = actor.len();
        return Err(EngineError::ActorTooLong { field: "clock actor", len, max: MAX_ACTOR_BYTES });
    }
    Ok(())
}

/// Encodes a validated version in the layout of the module doc. Lengths fit their `u16`s because
/// `validate_version` capped ids at [`MAX_ACTOR_BYTES`] and clocks hold at most
/// `vclock::MAX_ENTRIES` entries.
fn encode_version(v: &Version) -> Vec<u8> {
    let clock = v.clock.entries();
    let clock_bytes: usize = clock.iter().map(|(a, _)| 2 + a.len() + 8).sum();
    let mut out = Vec::with_capacity(
        VALUE_HEADER_BYTES + 2 + v.writer.len() + 2 + clock_bytes + v.value.len(),
    );
    out.push(FORMAT_V1);
    out.push(if v.tombstone { FLAG_TOMBSTONE } else { 0 });
    out.extend_from_slice(&v.timestamp_us.to_be_bytes());
    out.extend_from_slice(&(v.writer.len() as u16).to_be_bytes());
    out.extend_from_slice(v.writer.as_bytes());
    out.extend_from_slice(&(clock.len() as u16).to_be_bytes());
    for (actor, counter) in clock {
        out.extend_from_slice(&(actor.len() as u16).to_be_bytes());
        out.extend_from_slice(actor.as_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
    }
    out.extend_from_slice(&v.value);
    out
}

/// `(tombstone, timestamp_us)` from the fixed header, without decoding the rest.
fn decode_header(raw: &[u8]) -> Result<(bool, i64), EngineError> {
    let Some((header, _)) = raw.split_first_chunk::<VALUE_HEADER_BYTES>() else {
        return Err(EngineError::Corrupt { what: "value header" });
    };
    if header[0] != FORMAT_V1 {
        return Err(EngineError::Corrupt { what: "value format tag" });
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&header[2..]);
    Ok((header[1] & FLAG_TOMBSTONE != 0, i64::from_be_bytes(ts)))
}

fn decode_version(raw: &[u8]) -> Result<Version, EngineError> {
    let (tombstone, timestamp_us) = decode_header(raw)?;
    let mut r = Reader(&raw[VALUE_HEADER_BYTES..]);
    let writer_len = r.u16()?;
    let writer = r.utf8(usize::from(writer_len))?.to_owned();
    let count = r.u16()?;
    let mut entries = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = r.u16()?;
        let actor = r.utf8(usize::from(len))?.to_owned();
        entries.push((actor, r.u64()?));
    }
    Ok(Version {
        value: Bytes::copy_from_slice(r.0),
        clock: VClock::from_entries(entries),
        timestamp_us,
        writer,
        tombstone,
    })
}

/// A bounds-checked reader over a stored value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        if self.0.len() < n {
            return Err(EngineError::Corrupt { what: "value truncated" });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, EngineError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn utf8(&mut self, n: usize) -> Result<&'a str, EngineError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| EngineError::Corrupt { what: "utf-8 id" })
    }
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

fn unix_now_us() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Engine {
        Engine::open(dir, EngineConfig { cache_bytes: 8 * 1024 * 1024, ..Default::default() })
            .expect("open engine")
    }

    use crate::core::version::test_version as ver;

    fn tomb(pairs: &[(&str, u64)], ts: i64, writer: &str) -> Version {
        Version { tombstone: true, ..ver(pairs, ts, writer, "") }
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Engine>();
    }

    #[test]
    fn storage_keys_carry_ring_tokens() {
        // Same pins as core::ring's `key_token_is_pinned`: the engine's layout and the ring's
        // ownership must agree on every key's token.
        for (tenant, key, want) in crate::core::ring::PINNED_TOKENS {
            let (token, skey) = storage_key(tenant, key).unwrap();
            assert_eq!(token, *want, "{tenant:?}/{key:?}");
            assert_eq!(parse_storage_key(&skey).unwrap(), (*want, *tenant, *key));
        }
    }

    #[test]
    fn value_encoding_round_trips() {
        let v = ver(&[("a", 3), ("b", u64::MAX)], -7, "a", "hello");
        assert_eq!(decode_version(&encode_version(&v)).unwrap(), v);
        let t = tomb(&[("a", 1)], 99, "a");
        assert_eq!(decode_header(&encode_version(&t)).unwrap(), (true, 99));
        assert!(decode_version(&encode_version(&v)[..12]).is_err());
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

    /// Writes `n` keys and returns their tokens, sorted.
    fn fill(e: &Engine, n: usize) -> Vec<u64> {
        let mut tokens = Vec::new();
        for i in 0..n {
            let key = format!("key-{i}");
            e.apply("t", &key, &ver(&[("a", 1)], 1, "a", "v")).unwrap();
            tokens.push(key_token("t", &key).0);
        }
        tokens.sort_unstable();
        tokens
    }

    fn scan_all(e: &Engine, start: u64, end: u64, limit: usize, tombstones: bool) -> Vec<u64> {
        let mut cursor = Vec::new();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let (page, next) = e.scan_range(start, end, &cursor, limit, tombstones).unwrap();
            assert!(page.len() <= limit);
            out.extend(page.iter().map(|en| en.token));
            if next.is_empty() {
                return out;
            }
            cursor = next;
        }
        panic!("scan did not finish");
    }

    #[test]
    fn scan_range_pages_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let tokens = fill(&e, 200);
        let (a, b) = (tokens[40], tokens[150]);

        // Plain range (a, b], paged by 7.
        let want: Vec<u64> = tokens.iter().copied().filter(|&t| t > a && t <= b).collect();
        assert_eq!(scan_all(&e, a, b, 7, false), want);

        // Wrapping range (b, a]: the tail of the ring, then its head.
        let mut want: Vec<u64> = tokens.iter().copied().filter(|&t| t > b).collect();
        want.extend(tokens.iter().copied().filter(|&t| t <= a));
        assert_eq!(scan_all(&e, b, a, 7, false), want);

        // start == end is the whole ring; a single page that fits says it is the last.
        assert_eq!(scan_all(&e, a, a, 1000, false).len(), 200);
        let (page, next) = e.scan_range(a, a, &[], 1000, false).unwrap();
        assert_eq!((page.len(), next.is_empty()), (200, true));

        // Entries carry tenant and key.
        let (page, _) = e.scan_range(a, b, &[], 1, false).unwrap();
        assert_eq!(page[0].tenant_id, "t");
        assert_eq!(key_token("t", &page[0].key).0, page[0].token);

        // A cursor from outside the range is refused.
        let (_, cur) = e.scan_range(a, b, &[], 1, false).unwrap();
        assert!(matches!(
            e.scan_range(b, tokens[199], &cur, 1, false),
            Err(EngineError::InvalidCursor)
        ));
    }

    #[test]
    fn scan_range_pages_are_cut_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let value = "x".repeat(1000);
        for i in 0..10 {
            e.apply("t", &format!("big-{i}"), &ver(&[("a", 1)], 1, "a", &value)).unwrap();
        }
        let mut cursor = Vec::new();
        let mut pages = Vec::new();
        loop {
            let (page, next) = e.scan_range_within(7, 7, &cursor, 1000, false, 2500).unwrap();
            pages.push(page.len());
            if next.is_empty() {
                break;
            }
            cursor = next;
        }
        // A record takes a little over 1000 bytes: two fit in 2500.
        assert_eq!(pages, [2, 2, 2, 2, 2]);
        // A record larger than the whole budget still goes, alone on its page.
        let (page, next) = e.scan_range_within(7, 7, &[], 1000, false, 10).unwrap();
        assert_eq!((page.len(), next.is_empty()), (1, false));
    }

    #[test]
    fn scan_range_skips_tombstones_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        fill(&e, 50);
        for i in 0..50 {
            e.apply("t", &format!("key-{i}"), &tomb(&[("a", 2)], 2, "a")).unwrap();
        }
        e.apply("t", "live", &ver(&[("a", 1)], 1, "a", "v")).unwrap();
        // limit 1 examines at most 8 records a page, so this also pages through empty pages.
        assert_eq!(scan_all(&e, 0, 0, 1, false), vec![key_token("t", "live").0]);
        assert_eq!(scan_all(&e, 0, 0, 1, true).len(), 51);
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
        let config = EngineConfig { durability: Durability::Sync, cache_bytes: 8 << 20 };
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
    fn a_fresh_engine_does_not_stall_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
        assert!(!engine.write_stalled());
    }
}
