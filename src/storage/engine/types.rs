//! The engine's public value types: its configuration and durability mode, its errors, what an
//! apply takes and returns, its statistics and its write-stall counts. Split from `mod.rs`, which
//! owns the `Engine` itself; re-exported there, so `storage::engine::X` paths are unchanged.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    DurabilityMode, StorageConfig, DEFAULT_BACKGROUND_NICE, DEFAULT_CACHE_BYTES,
    DEFAULT_GROUP_COMMIT_INTERVAL,
};
use crate::core::version::Version;

/// Writes that waited for fjall to flush, and how long in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallWaits {
    /// Writes that waited.
    pub count: u64,
    /// Their total wait.
    pub waited: Duration,
}

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
    /// The nice value of fjall's flush and compaction workers (0: as the request cores);
    /// default [`DEFAULT_BACKGROUND_NICE`].
    pub background_nice: i32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            background_nice: DEFAULT_BACKGROUND_NICE,
        }
    }
}

// Here rather than in `config`, which depends on no server module.
impl StorageConfig {
    /// The engine settings this config asks for.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            durability: match self.durability {
                DurabilityMode::Sync => Durability::Sync,
                DurabilityMode::GroupCommit => Durability::GroupCommit {
                    interval: Duration::from_millis(self.group_commit_ms),
                },
            },
            cache_bytes: self.cache_mb << 20,
            background_nice: self.background_nice,
        }
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
