//! The coordinator's metadata: tenants, storage nodes, migrations and hints, behind two traits.
//!
//! [`MetadataStore`] keeps what changes by admin request (tenants and their replication factor,
//! the storage node list, migration progress). [`HintStore`] keeps hinted handoff: writes that a
//! replica missed while it was down, replayed to it when it returns. Both are implemented by
//! [`embedded::EmbeddedStore`] (one crash-safe `redb` file in the coordinator's data dir) and by
//! [`postgres::PostgresStore`] (a database shared by several coordinators). `tests/meta_contract.rs` is the one contract suite every implementation passes.
//!
//! The traits are synchronous and object-safe (`Arc<dyn MetadataStore>`). A call may do disk or
//! network I/O and take milliseconds, so request cores never call them directly: the coordinator
//! runs them on a blocking thread pool. The idempotency records, used on the request cores, are
//! not metadata: they live in [`crate::idempotency`].
//!
//! Errors say who caused them: [`MetaError::NotFound`], [`MetaError::AlreadyExists`] and
//! [`MetaError::Invalid`] are answers to the caller's request; [`MetaError::Unavailable`] is the
//! backend failing (retry later); [`MetaError::Corrupt`] is stored data we cannot read (an
//! operator must look).

use std::fmt;
use std::time::Duration;

use crate::core::version::{self, Version};

pub mod embedded;
pub mod postgres;

/// How long a hint is kept: 3 hours, as Cassandra's `max_hint_window`. A replica down longer than
/// this no longer gets hints and must be brought up to date by repair instead; the bound keeps
/// the hint table from growing without limit while a node is lost for good.
///
/// It must stay below the storage nodes' tombstone grace
/// ([`crate::config::DEFAULT_TOMBSTONE_GRACE`], 10 days): a hint carrying a value that a
/// later delete superseded, replayed after every replica purged that delete's tombstone, would
/// bring the deleted value back. The assertion below enforces it at compile time.
pub const DEFAULT_HINT_WINDOW: Duration = Duration::from_secs(3 * 3600);

const _: () =
    assert!(DEFAULT_HINT_WINDOW.as_secs() < crate::config::DEFAULT_TOMBSTONE_GRACE.as_secs());

/// How many hints a store keeps at most, by default: 1,000,000 (`hint_max_stored`).
///
/// Coalescing keeps one hint per key and target node, so this bounds the number of distinct keys
/// waiting for down nodes, not the write rate. A hint is a few hundred bytes plus its value
/// (up to `max_value_bytes`), so a million small hints is a few hundred MB of redb file or table;
/// past the cap, new keys are left to read repair and anti-entropy, which is what a node down
/// longer than the hint window gets anyway.
pub const DEFAULT_MAX_HINTS: u64 = crate::config::DEFAULT_HINT_MAX_STORED;

/// A boxed error from a backend (redb, a database driver), kept as the source of a [`MetaError`].
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The kind of record an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A [`TenantRecord`].
    Tenant,
    /// A [`NodeRecord`].
    Node,
    /// A [`MigrationRecord`].
    Migration,
    /// A [`Hint`].
    Hint,
    /// A [`TokenRecord`].
    Token,
    /// The store as a whole: its schema or its files, not one record.
    Store,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Tenant => "tenant",
            RecordKind::Node => "node",
            RecordKind::Migration => "migration",
            RecordKind::Hint => "hint",
            RecordKind::Token => "token",
            RecordKind::Store => "store",
        })
    }
}

/// What went wrong in a metadata call.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The tenant, node or migration asked for does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What kind of record was looked up.
        kind: RecordKind,
        /// Its id.
        id: String,
    },
    /// A tenant or node with this id already exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// What kind of record was created.
        kind: RecordKind,
        /// Its id.
        id: String,
    },
    /// The caller passed a record no backend stores (an empty id): API misuse, not a failure.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// What kind of record was passed.
        kind: RecordKind,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The backend could not do the operation (I/O error, file held by another process,
    /// connection lost); nothing was changed and retrying later may succeed.
    #[error("metadata backend {backend} unavailable")]
    Unavailable {
        /// Which backend: `redb`, `postgres`, ...
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: BackendError,
    },
    /// Stored data cannot be read back: a record that does not decode, or a store whose schema
    /// this build does not know. Retrying does not help.
    #[error("corrupt {kind} record {id:?}")]
    Corrupt {
        /// What kind of record (or [`RecordKind::Store`] for the whole store).
        kind: RecordKind,
        /// The record's id, or the store's path.
        id: String,
        /// Why it could not be read.
        #[source]
        source: BackendError,
    },
}

/// One tenant: a namespace of keys with its own replication factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's id, as clients send it.
    pub tenant_id: String,
    /// How many replicas hold each key (N).
    pub replication_factor: u32,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last change (replication factor, limits), unix seconds.
    pub updated_at: i64,
    /// Its own limits (0 fields: the coordinator's `limits:` defaults).
    pub limits: crate::core::limits::TenantLimits,
}

/// One client bearer token (see `core::auth`): everything but the secret, kept only as a hash.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's id: 16 hex digits, the `<id>` of `pdb_<id>_<secret>`.
    pub token_id: String,
    /// The tenant a tenant token belongs to; empty for an admin token.
    pub tenant_id: String,
    /// `admin`, `tenant-rw` or `tenant-ro` (`core::auth::Role::as_str`).
    pub role: String,
    /// Creation time, unix microseconds.
    pub created_at_us: i64,
    /// Revocation time, unix microseconds; 0 while the token is valid.
    pub revoked_at_us: i64,
    /// SHA-256 of the secret, lowercase hex (`core::auth::hash_secret`).
    pub secret_hash: String,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the secret, but it has no business in logs either.
        f.debug_struct("TokenRecord")
            .field("token_id", &self.token_id)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .field("created_at_us", &self.created_at_us)
            .field("revoked_at_us", &self.revoked_at_us)
            .finish_non_exhaustive()
    }
}

/// Whether a storage node takes new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// On the ring: owns tokens and serves reads and writes.
    Active,
    /// Being removed: its data is moving away and it gets no new ownership.
    Draining,
    /// Added by a migration that has not completed: linked to, not on the ring yet (the
    /// migration's placement decides what it gets).
    Joining,
}

impl NodeState {
    /// The name stored in SQL backends and shown by admin calls.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "ACTIVE",
            NodeState::Draining => "DRAINING",
            NodeState::Joining => "JOINING",
        }
    }

    /// Parses [`NodeState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(NodeState::Active),
            "DRAINING" => Some(NodeState::Draining),
            "JOINING" => Some(NodeState::Joining),
            _ => None,
        }
    }
}

/// One storage node on the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's id: its name on the ring and in hints.
    pub node_id: String,
    /// Host name or address its gRPC server listens on.
    pub host: String,
    /// Port of its gRPC server.
    pub port: u16,
    /// How many tokens it owns on the ring.
    pub virtual_nodes: u32,
    /// Whether it takes new data.
    pub state: NodeState,
    /// When it was added, unix seconds.
    pub added_at: i64,
}

/// Progress of one data migration (node added or removed, replication factor changed).
///
/// Type and status are strings, as the admin API and SQL backends spell them; the associated
/// constants are the values in use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationRecord {
    /// The migration's id, returned to the admin who started it.
    pub migration_id: String,
    /// [`MigrationRecord::NODE_ADDITION`], [`MigrationRecord::NODE_REMOVAL`] or
    /// [`MigrationRecord::REPLICATION_CHANGE`].
    pub migration_type: String,
    /// The node added or removed; the tenant id for a replication change.
    pub node_id: String,
    /// [`MigrationRecord::PENDING`], [`MigrationRecord::IN_PROGRESS`],
    /// [`MigrationRecord::COMPLETED`] or [`MigrationRecord::FAILED`].
    pub status: String,
    /// Keys copied so far.
    pub keys_migrated: i64,
    /// Keys to copy, as estimated at the start.
    pub total_keys: i64,
    /// Start time, unix seconds.
    pub started_at: i64,
    /// End time, unix seconds; 0 while running.
    pub completed_at: i64,
    /// Why it failed; empty otherwise.
    pub error_message: String,
    /// The driver's persisted state (plan inputs, stage, checkpoints), JSON owned by
    /// `coordinator::migrate`; empty for records written before data movement existed.
    pub state: String,
    /// An operator asked to cancel. Set only by [`MetadataStore::request_cancel`]: a
    /// [`MetadataStore::put_migration`] never clears it, so a driver's checkpoint cannot lose it.
    pub cancel_requested: bool,
}

impl MigrationRecord {
    /// `migration_type` of a node addition.
    pub const NODE_ADDITION: &'static str = "NODE_ADDITION";
    /// `migration_type` of a node removal.
    pub const NODE_REMOVAL: &'static str = "NODE_REMOVAL";
    /// `migration_type` of a tenant's replication factor change.
    pub const REPLICATION_CHANGE: &'static str = "REPLICATION_CHANGE";
    /// `status` before any key moved.
    pub const PENDING: &'static str = "PENDING";
    /// `status` while keys move.
    pub const IN_PROGRESS: &'static str = "IN_PROGRESS";
    /// `status` once every key moved.
    pub const COMPLETED: &'static str = "COMPLETED";
    /// `status` after an error; see `error_message`.
    pub const FAILED: &'static str = "FAILED";
    pub const CANCELLED: &'static str = "CANCELLED";

    /// Still running: only one such record may exist ([`MetadataStore::begin_migration`]).
    pub fn is_active(&self) -> bool {
        self.status == Self::PENDING || self.status == Self::IN_PROGRESS
    }
}

/// One coordinator's last word on which migration stage all its cores applied: the barrier a
/// migration waits on before its next stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorBeat {
    pub coordinator_id: String,
    /// Unix milliseconds of the beat.
    pub at_ms: i64,
    /// The migration whose stage is reported; empty when none runs.
    pub migration_id: String,
    pub stage: String,
}

/// A write that a down replica missed (hinted handoff): the coordinator stores it here and
/// replays it to `target_node` when that node answers again.
///
/// ```text
///   write: replica down ──> add_hints ──> [stored] ──> hints_for(node) ──> replay to node
///                                            │                               │ acknowledged
///                                            │ older than the hint window    v
///                                            └──> drop_older_than      remove_hints(ids)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The replica that missed the write.
    pub target_node: String,
    /// The key's tenant.
    pub tenant_id: String,
    /// The user's key.
    pub key: String,
    /// The version to deliver (a tombstone for a delete).
    pub version: Version,
    /// When the hint was made, unix microseconds; compared with the hint window.
    pub created_at_us: i64,
}

impl Hint {
    /// What two hints for the same key and target node become when the second arrives: `None`
    /// when `stored` stays as it is, else the hint to keep.
    ///
    /// The version is [`version::newest`] of the two, the rule every replica applies, so the
    /// order in which hints arrive does not matter. The hint's `created_at_us` (its expiry clock)
    /// is that of the hint whose version was kept, or the later of the two when the versions
    /// merged: a coalesced hint expires with the write it carries, as an uncoalesced one would.
    pub fn coalesce(stored: &Hint, incoming: &Hint) -> Option<Hint> {
        let version = version::newest(&stored.version, &incoming.version);
        if version == stored.version {
            return None;
        }
        let created_at_us = if version == incoming.version {
            incoming.created_at_us
        } else {
            stored.created_at_us.max(incoming.created_at_us)
        };
        Some(Hint { version, created_at_us, ..incoming.clone() })
    }
}

/// Folds the hints of one batch that share a key and target node into one, in the order of each
/// key's first hint. Returns the folded hints and how many were folded away.
pub(crate) fn coalesce_batch(hints: &[Hint]) -> (Vec<Hint>, u64) {
    let mut index: std::collections::HashMap<(&str, &str, &str), usize> =
        std::collections::HashMap::with_capacity(hints.len());
    let mut out: Vec<Hint> = Vec::with_capacity(hints.len());
    let mut folded = 0;
    for hint in hints {
        let triple = (hint.target_node.as_str(), hint.tenant_id.as_str(), hint.key.as_str());
        match index.get(&triple) {
            Some(&i) => {
                folded += 1;
                if let Some(kept) = Hint::coalesce(&out[i], hint) {
                    out[i] = kept;
                }
            }
            None => {
                index.insert(triple, out.len());
                out.push(hint.clone());
            }
        }
    }
    (out, folded)
}

/// What [`HintStore::add_hints`] did with a batch; every hint given is counted exactly once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintsAdded {
    /// Hints stored for a key (and target node) that had none.
    pub stored: u64,
    /// Hints folded into the one already stored for their key, or into an earlier hint of the
    /// same batch; the kept version is [`version::newest`] of the two.
    pub coalesced: u64,
    /// Hints for a key that had none, refused because the store already held its `max_hints`.
    pub dropped: u64,
}

/// Tenants, storage nodes and migrations. Every write is durable when the call returns.
///
/// Blocking: call from a blocking thread pool, never from a request core.
pub trait MetadataStore: Send + Sync {
    /// Stores a new tenant; [`MetaError::AlreadyExists`] when its id is taken.
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), MetaError>;

    /// The tenant with this id, if any.
    fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError>;

    /// Every tenant, ordered by id.
    fn tenants(&self) -> Result<Vec<TenantRecord>, MetaError>;

    /// Sets a tenant's replication factor and `updated_at = now`, and stores `migration`, in one
    /// atomic step: either both are stored or neither. Returns the record as it was before;
    /// [`MetaError::NotFound`] when the tenant does not exist.
    fn update_replication_factor(
        &self,
        tenant_id: &str,
        replication_factor: u32,
        now: i64,
        migration: &MigrationRecord,
    ) -> Result<TenantRecord, MetaError>;

    /// Replaces a tenant's limits and sets `updated_at = now`; returns the record as stored
    /// now, [`MetaError::NotFound`] when the tenant does not exist. Tells every coordinator, as
    /// a replication factor change does.
    fn update_tenant_limits(
        &self,
        tenant_id: &str,
        limits: &crate::core::limits::TenantLimits,
        now: i64,
    ) -> Result<TenantRecord, MetaError>;

    /// Stores a new node; [`MetaError::AlreadyExists`] when its id is taken.
    fn add_node(&self, node: &NodeRecord) -> Result<(), MetaError>;

    /// Stores a node, replacing any node with the same id (state changes, address moves).
    fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError>;

    /// Removes a node and returns it; [`MetaError::NotFound`] when absent.
    fn remove_node(&self, node_id: &str) -> Result<NodeRecord, MetaError>;

    /// Every node, ordered by id.
    fn nodes(&self) -> Result<Vec<NodeRecord>, MetaError>;

    /// Stores a migration, replacing any with the same id (progress updates).
    fn put_migration(&self, migration: &MigrationRecord) -> Result<(), MetaError>;

    /// The migration with this id, if any.
    fn migration(&self, migration_id: &str) -> Result<Option<MigrationRecord>, MetaError>;

    /// How many migrations there are in each status, ordered by status (statuses with none are
    /// absent). Read by the coordinator's `/metrics` at scrape time.
    fn migration_counts(&self) -> Result<Vec<(String, u64)>, MetaError>;

    /// The most recent migrations (by `started_at`, then id), newest first, at most `limit`.
    fn migrations(&self, limit: usize) -> Result<Vec<MigrationRecord>, MetaError>;

    /// Stores a new migration, and `node` with it (a joining node), in one transaction that
    /// first checks that no other migration is active: when one is, fails with
    /// [`MetaError::AlreadyExists`] of kind [`RecordKind::Migration`] naming the active one.
    fn begin_migration(
        &self,
        migration: &MigrationRecord,
        node: Option<&NodeRecord>,
    ) -> Result<(), MetaError>;

    /// Marks the migration as asked to cancel; see [`MigrationRecord::cancel_requested`].
    fn request_cancel(&self, migration_id: &str) -> Result<(), MetaError>;

    /// Records a coordinator's [`CoordinatorBeat`], replacing its previous one.
    fn beat(&self, beat: &CoordinatorBeat) -> Result<(), MetaError>;

    /// Every coordinator's last beat.
    fn beats(&self) -> Result<Vec<CoordinatorBeat>, MetaError>;

    /// Stores a new token; [`MetaError::AlreadyExists`] when its id is taken. Tells every
    /// coordinator, as a tenant change does.
    fn create_token(&self, token: &TokenRecord) -> Result<(), MetaError>;

    /// Every token, revoked ones included, ordered by id.
    fn tokens(&self) -> Result<Vec<TokenRecord>, MetaError>;

    /// Marks a token revoked at `now_us` (a token revoked already keeps its first revocation
    /// time) and returns it; [`MetaError::NotFound`] when absent. Tells every coordinator.
    fn revoke_token(&self, token_id: &str, now_us: i64) -> Result<TokenRecord, MetaError>;
}

/// Hints for hinted handoff. Every write is durable when the call returns.
///
/// Each stored hint gets an id, increasing in the order hints were added, so that a node's
/// hints replay oldest first. Blocking: call from a blocking thread pool.
///
/// The store is bounded two ways: it keeps at most one hint per `(target_node, tenant_id, key)`,
/// coalescing a new hint into the stored one ([`Hint::coalesce`]), and at most `max_hints` hints
/// in all (set when the store is opened, [`DEFAULT_MAX_HINTS`] by default).
pub trait HintStore: Send + Sync {
    /// Stores hints, all or none, and says what became of each.
    ///
    /// A hint for a key that already has one is coalesced into it: the stored hint takes the
    /// newest version and a new id (so a replay that read the old id and removes it afterwards
    /// does not remove a version it never delivered), or stays as it is when it already holds
    /// the newest. A hint for a key that has none is stored while the store holds fewer than
    /// `max_hints`, and dropped (counted in [`HintsAdded::dropped`]) once it is full; coalescing
    /// still works when full.
    fn add_hints(&self, hints: &[Hint]) -> Result<HintsAdded, MetaError>;

    /// Up to `limit` hints for `node`, oldest (smallest id) first, with their ids.
    fn hints_for(&self, node: &str, limit: usize) -> Result<Vec<(u64, Hint)>, MetaError>;

    /// Forgets delivered hints. Ids that are not (or no longer) stored for `node` are ignored,
    /// so a replay that races with [`HintStore::drop_older_than`] does not fail.
    fn remove_hints(&self, node: &str, ids: &[u64]) -> Result<(), MetaError>;

    /// How many hints each node has waiting, ordered by node id; nodes with none are absent.
    fn pending_counts(&self) -> Result<Vec<(String, u64)>, MetaError>;

    /// Drops every hint with `created_at_us < cutoff_us`, returning how many. The coordinator
    /// calls it periodically with `now - hint window` ([`DEFAULT_HINT_WINDOW`]).
    fn drop_older_than(&self, cutoff_us: i64) -> Result<usize, MetaError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::version::test_version;

    fn hint(key: &str, version: Version, created_at_us: i64) -> Hint {
        Hint {
            target_node: "n1".into(),
            tenant_id: "t".into(),
            key: key.into(),
            version,
            created_at_us,
        }
    }

    #[test]
    fn coalesce_keeps_the_newest_version_and_its_creation_time() {
        let old = hint("k", test_version(&[("a", 1)], 50, "a", "old"), 10);
        let new = hint("k", test_version(&[("a", 2)], 40, "a", "new"), 5);
        assert_eq!(Hint::coalesce(&old, &new), Some(new.clone()));
        assert_eq!(Hint::coalesce(&new, &old), None, "the stored hint stays");
        assert_eq!(Hint::coalesce(&new, &new), None);

        let x = hint("k", test_version(&[("a", 1)], 10, "a", "x"), 30);
        let y = hint("k", test_version(&[("b", 1)], 10, "b", "y"), 20);
        let merged = Hint::coalesce(&x, &y).expect("a merge changes the stored hint");
        assert_eq!(merged.version, version::newest(&y.version, &x.version));
        assert_eq!(merged.created_at_us, 30, "the later of the two");
    }

    #[test]
    fn a_batch_folds_per_key_in_first_seen_order() {
        let v = |n| test_version(&[("a", n)], 1, "a", "v");
        let other_node = Hint { target_node: "n2".into(), ..hint("a", v(1), 1) };
        let batch =
            [hint("b", v(1), 1), hint("a", v(2), 2), hint("b", v(3), 3), other_node.clone()];
        let (folded, n) = coalesce_batch(&batch);
        assert_eq!(n, 1);
        assert_eq!(folded, vec![hint("b", v(3), 3), hint("a", v(2), 2), other_node]);
    }
}
