//! [`EmbeddedStore`]: [`MetadataStore`] and [`HintStore`] in one `redb` file, `meta.redb`, in the
//! coordinator's data dir. It is the default backend of a single coordinator; several
//! coordinators sharing metadata need the PostgreSQL backend instead.
//!
//! redb is a crash-safe B-tree store with serializable transactions: one writer at a time, any
//! number of readers on snapshots. Every call below is one transaction committed with redb's
//! default durability (fsync before `commit` returns). That costs a few milliseconds per call,
//! which is fine because admin calls are rare and hints are written off the request cores; it
//! buys "acknowledged means on disk", which admin changes and hints both need.
//!
//! Tables (keys sort bytewise in the order shown, so per-node scans are ranges):
//!
//! ```text
//!   tenants        tenant_id                        -> TenantValue (prost)
//!   nodes          node_id                          -> NodeValue (prost)
//!   migrations     migration_id                     -> MigrationValue (prost)
//!   hints          (target_node, id)                -> HintValue (prost, with storage::Version)
//!   hints_by_time  (created_at_us, target_node, id) -> ()    index for drop_older_than
//!   hint_counts    target_node                      -> count  kept with every add and remove
//!   settings       "schema_version" | "next_hint_id" -> u64
//! ```
//!
//! Values are small hand-declared prost messages rather than serde: prost is already how the
//! crate encodes versions, unknown fields are skipped (so a newer build may add fields), and the
//! hint's version is stored as the wire's `storage::Version`, converted by `crate::convert`.
//! A record's id is its key and is not repeated in the value.
//!
//! The time index makes [`HintStore::drop_older_than`] a range scan over just the expired hints,
//! and the counts table makes [`HintStore::pending_counts`] independent of how many hints wait;
//! both cost one extra small write per hint, which is cheap next to the fsync.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::core::version::Version;
use crate::meta::{
    BackendError, Hint, HintStore, MetaError, MetadataStore, MigrationRecord, NodeRecord,
    NodeState, RecordKind, TenantRecord,
};
use crate::proto::storage;

/// Name of the database file inside the data dir.
pub const FILE_NAME: &str = "meta.redb";

/// Layout version of the tables above. A file with another version is refused as
/// [`MetaError::Corrupt`] rather than misread; a future layout change adds a migration step.
const SCHEMA_VERSION: u64 = 1;

const BACKEND: &str = "redb";
const SCHEMA_VERSION_KEY: &str = "schema_version";
const NEXT_HINT_ID_KEY: &str = "next_hint_id";

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");
const HINTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("hints");
const HINTS_BY_TIME: TableDefinition<(i64, &str, u64), ()> = TableDefinition::new("hints_by_time");
const HINT_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("hint_counts");
const SETTINGS: TableDefinition<&str, u64> = TableDefinition::new("settings");

/// Metadata and hints in one redb file. Cheap to share: `Arc<EmbeddedStore>` serves as both
/// `Arc<dyn MetadataStore>` and `Arc<dyn HintStore>`.
///
/// Only one `EmbeddedStore` may have a given file open at a time (redb locks it); a second
/// [`EmbeddedStore::open`] of the same dir fails with [`MetaError::Unavailable`] until the first
/// is dropped.
pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens `dir/meta.redb`, creating the dir, the file and its tables when absent.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, MetaError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Fail::from(redb::Error::from(e)))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(Fail::from)?;
        let store = Self { db, path };
        store.write(|txn| {
            // Opening a table in a write transaction creates it, so readers never meet a
            // missing table.
            txn.open_table(TENANTS)?;
            txn.open_table(NODES)?;
            txn.open_table(MIGRATIONS)?;
            txn.open_table(HINTS)?;
            txn.open_table(HINTS_BY_TIME)?;
            txn.open_table(HINT_COUNTS)?;
            let mut settings = txn.open_table(SETTINGS)?;
            let found = settings.get(SCHEMA_VERSION_KEY)?.map(|g| g.value());
            match found {
                None => {
                    settings.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(corrupt(
                        RecordKind::Store,
                        FILE_NAME,
                        DecodeError::Schema { found, expected: SCHEMA_VERSION },
                    ))
                }
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `body` in a write transaction and commits it; an error aborts it, changing nothing.
    fn write<T>(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<T, Fail>,
    ) -> Result<T, MetaError> {
        let txn = self.db.begin_write().map_err(Fail::from)?;
        let out = body(&txn)?;
        txn.commit().map_err(Fail::from)?;
        Ok(out)
    }

    /// Runs `body` on a read snapshot.
    fn read<T>(
        &self,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<T, Fail>,
    ) -> Result<T, MetaError> {
        let txn = self.db.begin_read().map_err(Fail::from)?;
        Ok(body(&txn)?)
    }
}

impl MetadataStore for EmbeddedStore {
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Tenant, &tenant.tenant_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(TENANTS)?;
            if table.get(tenant.tenant_id.as_str())?.is_some() {
                return Err(Fail::Meta(MetaError::AlreadyExists {
                    kind: RecordKind::Tenant,
                    id: tenant.tenant_id.clone(),
                }));
            }
            table.insert(tenant.tenant_id.as_str(), encode_tenant(tenant).as_slice())?;
            Ok(())
        })
    }

    fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(TENANTS)?;
            let found = table.get(tenant_id)?;
            found.map(|g| decode_tenant(tenant_id, g.value())).transpose()
        })
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(TENANTS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push(decode_tenant(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    fn update_replication_factor(
        &self,
        tenant_id: &str,
        replication_factor: u32,
        now: i64,
        migration: &MigrationRecord,
    ) -> Result<TenantRecord, MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        self.write(|txn| {
            let mut tenants = txn.open_table(TENANTS)?;
            let old = match tenants.get(tenant_id)? {
                Some(g) => decode_tenant(tenant_id, g.value())?,
                None => {
                    return Err(Fail::Meta(MetaError::NotFound {
                        kind: RecordKind::Tenant,
                        id: tenant_id.to_owned(),
                    }))
                }
            };
            let new = TenantRecord { replication_factor, updated_at: now, ..old.clone() };
            tenants.insert(tenant_id, encode_tenant(&new).as_slice())?;
            let mut migrations = txn.open_table(MIGRATIONS)?;
            migrations
                .insert(migration.migration_id.as_str(), encode_migration(migration).as_slice())?;
            Ok(old)
        })
    }

    fn add_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            if table.get(node.node_id.as_str())?.is_some() {
                return Err(Fail::Meta(MetaError::AlreadyExists {
                    kind: RecordKind::Node,
                    id: node.node_id.clone(),
                }));
            }
            table.insert(node.node_id.as_str(), encode_node(node).as_slice())?;
            Ok(())
        })
    }

    fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            table.insert(node.node_id.as_str(), encode_node(node).as_slice())?;
            Ok(())
        })
    }

    fn remove_node(&self, node_id: &str) -> Result<NodeRecord, MetaError> {
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            let removed = table.remove(node_id)?;
            match removed {
                Some(g) => decode_node(node_id, g.value()),
                None => Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Node,
                    id: node_id.to_owned(),
                })),
            }
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(NODES)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push(decode_node(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    fn put_migration(&self, migration: &MigrationRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(MIGRATIONS)?;
            table
                .insert(migration.migration_id.as_str(), encode_migration(migration).as_slice())?;
            Ok(())
        })
    }

    fn migration(&self, migration_id: &str) -> Result<Option<MigrationRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(MIGRATIONS)?;
            let found = table.get(migration_id)?;
            found.map(|g| decode_migration(migration_id, g.value())).transpose()
        })
    }
}

impl HintStore for EmbeddedStore {
    fn add_hints(&self, hints: &[Hint]) -> Result<(), MetaError> {
        if hints.is_empty() {
            return Ok(());
        }
        for hint in hints {
            check_id(RecordKind::Hint, &hint.target_node)?;
        }
        self.write(|txn| {
            let mut settings = txn.open_table(SETTINGS)?;
            let mut next_id = settings.get(NEXT_HINT_ID_KEY)?.map_or(1, |g| g.value());
            let mut table = txn.open_table(HINTS)?;
            let mut by_time = txn.open_table(HINTS_BY_TIME)?;
            let mut added: BTreeMap<&str, u64> = BTreeMap::new();
            for hint in hints {
                let node = hint.target_node.as_str();
                let id = next_id;
                next_id += 1;
                table.insert((node, id), encode_hint(hint).as_slice())?;
                by_time.insert((hint.created_at_us, node, id), ())?;
                *added.entry(node).or_default() += 1;
            }
            settings.insert(NEXT_HINT_ID_KEY, next_id)?;
            let mut counts = txn.open_table(HINT_COUNTS)?;
            for (node, n) in added {
                let current = counts.get(node)?.map_or(0, |g| g.value());
                counts.insert(node, current + n)?;
            }
            Ok(())
        })
    }

    fn hints_for(&self, node: &str, limit: usize) -> Result<Vec<(u64, Hint)>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(HINTS)?;
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in table.range((node, 0u64)..=(node, u64::MAX))?.take(limit) {
                let (k, v) = row?;
                let (_, id) = k.value();
                out.push((id, decode_hint(node, id, v.value())?));
            }
            Ok(out)
        })
    }

    fn remove_hints(&self, node: &str, ids: &[u64]) -> Result<(), MetaError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(HINTS)?;
            let mut by_time = txn.open_table(HINTS_BY_TIME)?;
            let mut removed = 0u64;
            for &id in ids {
                let created_at_us = match table.remove((node, id))? {
                    None => continue,
                    // A hint that does not decode is still removed; its time index entry then
                    // stays until drop_older_than passes it, which tolerates a missing hint.
                    Some(g) => HintValue::decode(g.value()).ok().map(|h| h.created_at_us),
                };
                removed += 1;
                if let Some(t) = created_at_us {
                    by_time.remove((t, node, id))?;
                }
            }
            let mut counts = txn.open_table(HINT_COUNTS)?;
            subtract_count(&mut counts, node, removed)?;
            Ok(())
        })
    }

    fn pending_counts(&self) -> Result<Vec<(String, u64)>, MetaError> {
        self.read(|txn| {
            let counts = txn.open_table(HINT_COUNTS)?;
            let mut out = Vec::new();
            for row in counts.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value()));
            }
            Ok(out)
        })
    }

    fn drop_older_than(&self, cutoff_us: i64) -> Result<usize, MetaError> {
        self.write(|txn| {
            let mut by_time = txn.open_table(HINTS_BY_TIME)?;
            // `(cutoff_us, "", 0)` sorts before every real key with that timestamp (node ids are
            // never empty), so this range is exactly the hints created before the cutoff.
            let mut expired = Vec::new();
            for row in by_time.range(..(cutoff_us, "", 0u64))? {
                let (k, _) = row?;
                let (t, node, id) = k.value();
                expired.push((t, node.to_owned(), id));
            }
            let mut table = txn.open_table(HINTS)?;
            let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
            for (t, node, id) in &expired {
                by_time.remove((*t, node.as_str(), *id))?;
                if table.remove((node.as_str(), *id))?.is_some() {
                    *dropped.entry(node.as_str()).or_default() += 1;
                }
            }
            let mut counts = txn.open_table(HINT_COUNTS)?;
            let mut total = 0usize;
            for (node, n) in dropped {
                subtract_count(&mut counts, node, n)?;
                total += usize::try_from(n).unwrap_or(usize::MAX);
            }
            Ok(total)
        })
    }
}

/// Lowers `node`'s pending count by `n`, removing the row at zero so that
/// [`HintStore::pending_counts`] lists only nodes with hints.
fn subtract_count(
    counts: &mut redb::Table<'_, &'static str, u64>,
    node: &str,
    n: u64,
) -> Result<(), Fail> {
    if n == 0 {
        return Ok(());
    }
    let current = counts.get(node)?.map_or(0, |g| g.value());
    match current.saturating_sub(n) {
        0 => {
            counts.remove(node)?;
        }
        left => {
            counts.insert(node, left)?;
        }
    }
    Ok(())
}

fn check_id(kind: RecordKind, id: &str) -> Result<(), MetaError> {
    if id.is_empty() {
        return Err(MetaError::Invalid { kind, reason: "empty id" });
    }
    Ok(())
}

/// An error inside a transaction body: redb's, or an answer (not found, corrupt record) that
/// aborts the transaction.
enum Fail {
    Db(redb::Error),
    Meta(MetaError),
}

impl<E: Into<redb::Error>> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail::Db(e.into())
    }
}

impl From<Fail> for MetaError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Meta(e) => e,
            // redb reports a damaged or foreign-version file as these; retrying cannot help.
            Fail::Db(e @ (redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_))) => {
                MetaError::Corrupt {
                    kind: RecordKind::Store,
                    id: FILE_NAME.into(),
                    source: e.into(),
                }
            }
            Fail::Db(e) => MetaError::Unavailable { backend: BACKEND, source: e.into() },
        }
    }
}

fn corrupt(kind: RecordKind, id: &str, e: impl Into<BackendError>) -> Fail {
    Fail::Meta(MetaError::Corrupt { kind, id: id.to_owned(), source: e.into() })
}

/// Why a stored value could not be read back.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    /// The bytes are not the expected prost message.
    #[error("undecodable value")]
    Prost(#[from] prost::DecodeError),
    /// A node state number this build does not know.
    #[error("unknown node state {0}")]
    NodeState(i32),
    /// A port above 65535.
    #[error("port {0} out of range")]
    Port(u32),
    /// A hint without its version.
    #[error("hint has no version")]
    MissingVersion,
    /// A hint whose version does not convert (negative counter, empty actor).
    #[error("invalid version")]
    Version(#[from] crate::convert::ConvertError),
    /// The file's table layout is not the one this build reads.
    #[error("schema version {found}, expected {expected}")]
    Schema { found: u64, expected: u64 },
}

#[derive(Clone, PartialEq, Message)]
struct TenantValue {
    #[prost(uint32, tag = "1")]
    replication_factor: u32,
    #[prost(int64, tag = "2")]
    created_at: i64,
    #[prost(int64, tag = "3")]
    updated_at: i64,
}

#[derive(Clone, PartialEq, Message)]
struct NodeValue {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(uint32, tag = "2")]
    port: u32,
    #[prost(uint32, tag = "3")]
    virtual_nodes: u32,
    /// 1 = active, 2 = draining; 0 (unset) is refused so that a lost field is not read as a state.
    #[prost(int32, tag = "4")]
    state: i32,
    #[prost(int64, tag = "5")]
    added_at: i64,
}

#[derive(Clone, PartialEq, Message)]
struct MigrationValue {
    #[prost(string, tag = "1")]
    migration_type: String,
    #[prost(string, tag = "2")]
    node_id: String,
    #[prost(string, tag = "3")]
    status: String,
    #[prost(int64, tag = "4")]
    keys_migrated: i64,
    #[prost(int64, tag = "5")]
    total_keys: i64,
    #[prost(int64, tag = "6")]
    started_at: i64,
    #[prost(int64, tag = "7")]
    completed_at: i64,
    #[prost(string, tag = "8")]
    error_message: String,
}

#[derive(Clone, PartialEq, Message)]
struct HintValue {
    #[prost(string, tag = "1")]
    tenant_id: String,
    #[prost(string, tag = "2")]
    key: String,
    #[prost(message, optional, tag = "3")]
    version: Option<storage::Version>,
    #[prost(int64, tag = "4")]
    created_at_us: i64,
}

fn encode_tenant(t: &TenantRecord) -> Vec<u8> {
    TenantValue {
        replication_factor: t.replication_factor,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
    .encode_to_vec()
}

fn decode_tenant(tenant_id: &str, bytes: &[u8]) -> Result<TenantRecord, Fail> {
    let v = TenantValue::decode(bytes)
        .map_err(|e| corrupt(RecordKind::Tenant, tenant_id, DecodeError::from(e)))?;
    Ok(TenantRecord {
        tenant_id: tenant_id.to_owned(),
        replication_factor: v.replication_factor,
        created_at: v.created_at,
        updated_at: v.updated_at,
    })
}

fn encode_node(n: &NodeRecord) -> Vec<u8> {
    let state = match n.state {
        NodeState::Active => 1,
        NodeState::Draining => 2,
    };
    NodeValue {
        host: n.host.clone(),
        port: u32::from(n.port),
        virtual_nodes: n.virtual_nodes,
        state,
        added_at: n.added_at,
    }
    .encode_to_vec()
}

fn decode_node(node_id: &str, bytes: &[u8]) -> Result<NodeRecord, Fail> {
    let fail = |e: DecodeError| corrupt(RecordKind::Node, node_id, e);
    let v = NodeValue::decode(bytes).map_err(|e| fail(e.into()))?;
    let state = match v.state {
        1 => NodeState::Active,
        2 => NodeState::Draining,
        other => return Err(fail(DecodeError::NodeState(other))),
    };
    let port = u16::try_from(v.port).map_err(|_| fail(DecodeError::Port(v.port)))?;
    Ok(NodeRecord {
        node_id: node_id.to_owned(),
        host: v.host,
        port,
        virtual_nodes: v.virtual_nodes,
        state,
        added_at: v.added_at,
    })
}

fn encode_migration(m: &MigrationRecord) -> Vec<u8> {
    MigrationValue {
        migration_type: m.migration_type.clone(),
        node_id: m.node_id.clone(),
        status: m.status.clone(),
        keys_migrated: m.keys_migrated,
        total_keys: m.total_keys,
        started_at: m.started_at,
        completed_at: m.completed_at,
        error_message: m.error_message.clone(),
    }
    .encode_to_vec()
}

fn decode_migration(migration_id: &str, bytes: &[u8]) -> Result<MigrationRecord, Fail> {
    let v = MigrationValue::decode(bytes)
        .map_err(|e| corrupt(RecordKind::Migration, migration_id, DecodeError::from(e)))?;
    Ok(MigrationRecord {
        migration_id: migration_id.to_owned(),
        migration_type: v.migration_type,
        node_id: v.node_id,
        status: v.status,
        keys_migrated: v.keys_migrated,
        total_keys: v.total_keys,
        started_at: v.started_at,
        completed_at: v.completed_at,
        error_message: v.error_message,
    })
}

fn encode_hint(h: &Hint) -> Vec<u8> {
    HintValue {
        tenant_id: h.tenant_id.clone(),
        key: h.key.clone(),
        version: Some(storage::Version::from(&h.version)),
        created_at_us: h.created_at_us,
    }
    .encode_to_vec()
}

fn decode_hint(node: &str, id: u64, bytes: &[u8]) -> Result<Hint, Fail> {
    let fail = |e: DecodeError| corrupt(RecordKind::Hint, &format!("{node}/{id}"), e);
    let v = HintValue::decode(bytes).map_err(|e| fail(e.into()))?;
    let wire = v.version.ok_or_else(|| fail(DecodeError::MissingVersion))?;
    let version = Version::try_from(&wire).map_err(|e| fail(e.into()))?;
    Ok(Hint {
        target_node: node.to_owned(),
        tenant_id: v.tenant_id,
        key: v.key,
        version,
        created_at_us: v.created_at_us,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::core::vclock::VClock;

    fn hint(node: &str, key: &str, created_at_us: i64) -> Hint {
        Hint {
            target_node: node.into(),
            tenant_id: "t1".into(),
            key: key.into(),
            version: Version {
                value: Bytes::copy_from_slice(key.as_bytes()),
                clock: VClock::from_entries([("coord-1/0".to_string(), 3)]),
                timestamp_us: created_at_us,
                writer: "coord-1/0".into(),
                tombstone: false,
            },
            created_at_us,
        }
    }

    fn node(id: &str) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            host: "10.0.0.1".into(),
            port: 50051,
            virtual_nodes: 128,
            state: NodeState::Active,
            added_at: 7,
        }
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        let n = NodeRecord { state: NodeState::Draining, port: u16::MAX, ..node("n1") };
        assert_eq!(decode_node("n1", &encode_node(&n)).ok(), Some(n));
        let t = TenantRecord {
            tenant_id: "t".into(),
            replication_factor: 3,
            created_at: -1,
            updated_at: 5,
        };
        assert_eq!(decode_tenant("t", &encode_tenant(&t)).ok(), Some(t));
        let h = Hint {
            version: Version { tombstone: true, value: Bytes::new(), ..hint("n1", "k", 9).version },
            ..hint("n1", "k", 9)
        };
        assert_eq!(decode_hint("n1", 1, &encode_hint(&h)).ok(), Some(h));
    }

    #[test]
    fn undecodable_node_is_corrupt_not_a_panic() {
        let bad = NodeValue { state: 9, ..Default::default() }.encode_to_vec();
        let err = MetaError::from(decode_node("n1", &bad).unwrap_err());
        assert!(matches!(err, MetaError::Corrupt { kind: RecordKind::Node, .. }), "{err:?}");
        let err = MetaError::from(decode_tenant("t", &[0xff, 0xff]).unwrap_err());
        assert!(matches!(err, MetaError::Corrupt { kind: RecordKind::Tenant, .. }), "{err:?}");
    }

    #[test]
    fn hint_ids_keep_increasing_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.add_hints(&[hint("n1", "a", 1), hint("n1", "b", 2)]).unwrap();
            let ids: Vec<u64> = s.hints_for("n1", 10).unwrap().iter().map(|(id, _)| *id).collect();
            s.remove_hints("n1", &ids).unwrap();
            ids
        };
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.add_hints(&[hint("n1", "c", 3)]).unwrap();
        let after = s.hints_for("n1", 10).unwrap();
        assert_eq!(after.len(), 1);
        assert!(after[0].0 > *first.iter().max().unwrap(), "{first:?} then {after:?}");
    }

    #[test]
    fn second_open_of_the_same_dir_is_unavailable_until_drop() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let err = EmbeddedStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Unavailable { backend: "redb", .. }), "{err:?}");
        drop(s);
        EmbeddedStore::open(dir.path()).unwrap();
    }

    #[test]
    fn unknown_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedStore::open(dir.path()).unwrap());
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(SETTINGS).unwrap().insert(SCHEMA_VERSION_KEY, 99).unwrap();
            txn.commit().unwrap();
        }
        let err = EmbeddedStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Corrupt { kind: RecordKind::Store, .. }), "{err:?}");
    }

    #[test]
    fn failed_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let m = MigrationRecord {
            migration_id: "m1".into(),
            migration_type: MigrationRecord::REPLICATION_CHANGE.into(),
            node_id: "absent".into(),
            status: MigrationRecord::PENDING.into(),
            keys_migrated: 0,
            total_keys: 0,
            started_at: 1,
            completed_at: 0,
            error_message: String::new(),
        };
        let err = s.update_replication_factor("absent", 5, 10, &m).unwrap_err();
        assert!(matches!(err, MetaError::NotFound { kind: RecordKind::Tenant, .. }), "{err:?}");
        assert_eq!(s.migration("m1").unwrap(), None);
    }

    #[test]
    fn drop_older_than_tolerates_a_hint_already_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.add_hints(&[hint("n1", "a", 10), hint("n1", "b", 20)]).unwrap();
        let ids: Vec<u64> = s.hints_for("n1", 1).unwrap().iter().map(|(id, _)| *id).collect();
        s.remove_hints("n1", &ids).unwrap();
        s.remove_hints("n1", &ids).unwrap();
        assert_eq!(s.drop_older_than(100).unwrap(), 1);
        assert_eq!(s.pending_counts().unwrap(), vec![]);
    }
}
