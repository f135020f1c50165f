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
//!   hint_keys      (target_node, tenant_id, key)    -> id    the one hint of each key
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
//! both cost one extra small write per hint, which is cheap next to the fsync. The key index
//! makes coalescing a point lookup, and the counts (summed over nodes, a handful of rows) are
//! what [`EmbeddedStore::with_max_hints`]'s cap is checked against.
//!
//! Schema versions: 1 had no `hint_keys`; opening a version 1 file builds it, collapsing hints
//! for the same key to the one created last (the highest id on a tie), in the same transaction
//! that records version 2. A file of a version this build does not know is refused.

mod hints;
mod metadata;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::meta::{BackendError, MetaError, RecordKind, DEFAULT_MAX_HINTS};
#[cfg(doc)]
use crate::meta::{HintStore, MetadataStore};

/// Name of the database file inside the data dir.
pub const FILE_NAME: &str = "meta.redb";

/// Layout version of the tables above. A file of version 1 is upgraded when opened; any other
/// version is refused as [`MetaError::Corrupt`] rather than misread. A future layout change adds
/// a migration step.
const SCHEMA_VERSION: u64 = 2;

const BACKEND: &str = "redb";
const SCHEMA_VERSION_KEY: &str = "schema_version";
const NEXT_HINT_ID_KEY: &str = "next_hint_id";

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");
const HINTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("hints");
const HINTS_BY_TIME: TableDefinition<(i64, &str, u64), ()> = TableDefinition::new("hints_by_time");
const HINT_KEYS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("hint_keys");
const HINT_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("hint_counts");
const SETTINGS: TableDefinition<&str, u64> = TableDefinition::new("settings");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");

/// Metadata and hints in one redb file. Cheap to share: `Arc<EmbeddedStore>` serves as both
/// `Arc<dyn MetadataStore>` and `Arc<dyn HintStore>`.
///
/// Only one `EmbeddedStore` may have a given file open at a time (redb locks it); a second
/// [`EmbeddedStore::open`] of the same dir fails with [`MetaError::Unavailable`] until the first
/// is dropped.
pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
    max_hints: u64,
    beats: std::sync::Mutex<std::collections::HashMap<String, crate::meta::CoordinatorBeat>>,
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
        let store = Self { db, path, max_hints: DEFAULT_MAX_HINTS, beats: Default::default() };
        store.write(|txn| {
            // Opening a table in a write transaction creates it, so readers never meet a
            // missing table.
            txn.open_table(TENANTS)?;
            txn.open_table(NODES)?;
            txn.open_table(MIGRATIONS)?;
            txn.open_table(HINTS)?;
            txn.open_table(HINTS_BY_TIME)?;
            txn.open_table(HINT_KEYS)?;
            txn.open_table(HINT_COUNTS)?;
            txn.open_table(TOKENS)?;
            let mut settings = txn.open_table(SETTINGS)?;
            let found = settings.get(SCHEMA_VERSION_KEY)?.map(|g| g.value());
            match found {
                None => {
                    settings.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(1) => {
                    let collapsed = hints::index_v1_hints(txn)?;
                    settings.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                    tracing::info!(collapsed, "hint store upgraded to schema 2 (one hint per key)");
                }
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

    /// Caps the number of stored hints at `max_hints` (default [`DEFAULT_MAX_HINTS`]); see
    /// [`HintStore::add_hints`].
    pub fn with_max_hints(mut self, max_hints: u64) -> Self {
        self.max_hints = max_hints;
        self
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::core::vclock::VClock;
    use crate::core::version::Version;
    use crate::meta::{Hint, HintStore, HintsAdded, MetadataStore, MigrationRecord};

    pub(super) fn hint(node: &str, key: &str, created_at_us: i64) -> Hint {
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
            ..Default::default()
        };
        let err = s.update_replication_factor("absent", 5, 10, &m).unwrap_err();
        assert!(matches!(err, MetaError::NotFound { kind: RecordKind::Tenant, .. }), "{err:?}");
        assert_eq!(s.migration("m1").unwrap(), None);
    }

    #[test]
    fn a_schema_1_file_is_upgraded_collapsing_duplicate_hints() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedStore::open(dir.path()).unwrap());
        // Schema 1 as an older build left it: no key index, one hint per missed write.
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut hints = txn.open_table(HINTS).unwrap();
                let mut by_time = txn.open_table(HINTS_BY_TIME).unwrap();
                for (id, key, created_at_us) in
                    [(1, "a", 10), (2, "b", 20), (3, "a", 30), (4, "a", 5)]
                {
                    let h = super::hints::encode_hint(&hint("n1", key, created_at_us));
                    hints.insert(("n1", id), h.as_slice()).unwrap();
                    by_time.insert((created_at_us, "n1", id), ()).unwrap();
                }
                txn.open_table(HINT_COUNTS).unwrap().insert("n1", 4).unwrap();
                let mut settings = txn.open_table(SETTINGS).unwrap();
                settings.insert(NEXT_HINT_ID_KEY, 5).unwrap();
                settings.insert(SCHEMA_VERSION_KEY, 1).unwrap();
            }
            txn.delete_table(HINT_KEYS).unwrap();
            txn.commit().unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let kept = s.hints_for("n1", 10).unwrap();
        assert_eq!(kept, vec![(2, hint("n1", "b", 20)), (3, hint("n1", "a", 30))]);
        assert_eq!(s.pending_counts().unwrap(), vec![("n1".to_string(), 2)]);
        // The key index is built: a new hint for a stored key coalesces.
        let added = s.add_hints(&[hint("n1", "b", 50)]).unwrap();
        assert_eq!(added, HintsAdded { stored: 0, coalesced: 1, dropped: 0 });
        assert_eq!(s.drop_older_than(i64::MAX).unwrap(), 2);
        assert_eq!(s.pending_counts().unwrap(), vec![]);
        drop(s);
        EmbeddedStore::open(dir.path()).unwrap();
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
