//! The contract every metadata backend keeps: [`MetadataStore`] and [`HintStore`] behaviour,
//! written once over `&dyn` traits and mounted once per backend.
//!
//! A backend is mounted with [`mount!`] and a [`Backend`] impl: `fixture` makes an empty, private
//! place for one test (a temp dir; later, a fresh schema in a PostgreSQL database) or returns
//! `None` to skip with a message when the backend is not configured; `open` opens a store on it
//! and may be called again after the previous store was dropped, which is how persistence is
//! checked. The embedded backend always runs.
//!
//! PostgreSQL runs when `PAIRDB_TEST_POSTGRES_URL` is set, or under CI (`CI=true`, default URL
//! [`CI_POSTGRES_URL`]), where a missing server fails the run instead of skipping. Each test gets
//! a fresh schema (dropped at the end) and reaches it through `search_path`, so tests run in
//! parallel without seeing each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use pairdb::core::limits::TenantLimits;
use pairdb::core::vclock::VClock;
use pairdb::core::version::{self, Version};
use pairdb::meta::embedded::EmbeddedStore;
use pairdb::meta::postgres::PostgresStore;
use pairdb::meta::{
    Hint, HintStore, HintsAdded, MetaError, MetadataStore, MigrationRecord, NodeRecord, NodeState,
    RecordKind, TenantRecord, TokenRecord,
};

/// Both traits on one object, as every backend provides them.
trait Store: MetadataStore + HintStore {}

impl<T: MetadataStore + HintStore + ?Sized> Store for T {}

/// How the suite opens one backend.
trait Backend {
    /// One test's private place; dropped at the end of the test.
    type Fixture;
    /// A fresh, empty fixture, or `None` (after printing why) to skip.
    fn fixture() -> Option<Self::Fixture>;
    /// Opens a store on the fixture; a later call sees what earlier, dropped stores wrote.
    fn open(fixture: &Self::Fixture) -> Arc<dyn Store>;
    /// [`Backend::open`] with the hint store capped at `max_hints`.
    fn open_capped(fixture: &Self::Fixture, max_hints: u64) -> Arc<dyn Store>;
}

struct Embedded;

impl Backend for Embedded {
    type Fixture = tempfile::TempDir;

    fn fixture() -> Option<Self::Fixture> {
        Some(tempfile::tempdir().expect("temp dir"))
    }

    fn open(dir: &Self::Fixture) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(dir.path()).expect("open embedded store"))
    }

    fn open_capped(dir: &Self::Fixture, max_hints: u64) -> Arc<dyn Store> {
        let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
        Arc::new(store.with_max_hints(max_hints))
    }
}

/// The server CI provides (and this project's machines run).
const CI_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Postgres;

/// A schema private to one test, dropped with the fixture.
struct PgSchema {
    admin_url: String,
    schema: String,
    url: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

impl Backend for Postgres {
    type Fixture = PgSchema;

    fn fixture() -> Option<Self::Fixture> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let admin_url = match std::env::var("PAIRDB_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if ci => CI_POSTGRES_URL.to_owned(),
            _ => {
                eprintln!(
                    "skipped: postgres contract tests need PAIRDB_TEST_POSTGRES_URL \
                     (e.g. {CI_POSTGRES_URL}) or CI=true"
                );
                return None;
            }
        };
        let mut client = match postgres::Client::connect(&admin_url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => panic!("postgres at {admin_url} is configured for these tests but: {e}"),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "pairdb_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create test schema");
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        Some(PgSchema { admin_url, schema, url })
    }

    fn open(fixture: &Self::Fixture) -> Arc<dyn Store> {
        Arc::new(PostgresStore::open(&fixture.url).expect("open postgres store"))
    }

    fn open_capped(fixture: &Self::Fixture, max_hints: u64) -> Arc<dyn Store> {
        let store = PostgresStore::open(&fixture.url).expect("open postgres store");
        Arc::new(store.with_max_hints(max_hints))
    }
}

// ---- fixtures -----------------------------------------------------------------------------

fn tenant(id: &str, rf: u32) -> TenantRecord {
    TenantRecord {
        tenant_id: id.into(),
        replication_factor: rf,
        created_at: 100,
        updated_at: 100,
        limits: TenantLimits::default(),
    }
}

fn limits(rps: u64, bps: u64, key: u64, value: u64) -> TenantLimits {
    TenantLimits {
        requests_per_second: rps,
        bytes_per_second: bps,
        max_key_bytes: key,
        max_value_bytes: value,
    }
}

fn node(id: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        host: format!("{id}.storage.local"),
        port: 50051,
        virtual_nodes: 256,
        state: NodeState::Active,
        added_at: 200,
    }
}

fn migration(id: &str, node_id: &str) -> MigrationRecord {
    MigrationRecord {
        migration_id: id.into(),
        migration_type: MigrationRecord::NODE_ADDITION.into(),
        node_id: node_id.into(),
        status: MigrationRecord::PENDING.into(),
        keys_migrated: 0,
        total_keys: 1_000,
        started_at: 300,
        completed_at: 0,
        error_message: String::new(),
        ..Default::default()
    }
}

fn hint(node: &str, key: &str, created_at_us: i64) -> Hint {
    Hint {
        target_node: node.into(),
        tenant_id: "acme".into(),
        key: key.into(),
        version: Version {
            value: Bytes::copy_from_slice(format!("value of {key}").as_bytes()),
            clock: VClock::from_entries([
                ("coord-1/0".to_string(), 4),
                ("coord-2/1".to_string(), 1),
            ]),
            timestamp_us: created_at_us,
            writer: "coord-1/0".into(),
            tombstone: false,
        },
        created_at_us,
    }
}

fn tombstone_hint(node: &str, key: &str, created_at_us: i64) -> Hint {
    let mut h = hint(node, key, created_at_us);
    h.version.value = Bytes::new();
    h.version.tombstone = true;
    h
}

/// A hint for `key` carrying a version with clock `clock`, stamped `ts`, holding `value`.
fn versioned(key: &str, clock: &[(&str, u64)], ts: i64, value: &str, created_at_us: i64) -> Hint {
    let mut h = hint("n1", key, created_at_us);
    h.version = Version {
        value: Bytes::copy_from_slice(value.as_bytes()),
        clock: VClock::from_entries(clock.iter().map(|(a, c)| (a.to_string(), *c))),
        timestamp_us: ts,
        writer: clock.first().map_or("w", |(a, _)| a).to_string(),
        tombstone: false,
    };
    h
}

fn added(stored: u64, coalesced: u64, dropped: u64) -> HintsAdded {
    HintsAdded { stored, coalesced, dropped }
}

fn keys_of(hints: &[(u64, Hint)]) -> Vec<&str> {
    hints.iter().map(|(_, h)| h.key.as_str()).collect()
}

fn ids_of(hints: &[(u64, Hint)]) -> Vec<u64> {
    hints.iter().map(|(id, _)| *id).collect()
}

fn counts(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

// ---- MetadataStore -------------------------------------------------------------------------

fn tenant_create_get_and_duplicate(store: &dyn MetadataStore) {
    store.create_tenant(&tenant("acme", 3)).unwrap();
    assert_eq!(store.tenant("acme").unwrap(), Some(tenant("acme", 3)));
    assert_eq!(store.tenant("absent").unwrap(), None);

    let err = store.create_tenant(&tenant("acme", 5)).unwrap_err();
    assert!(
        matches!(&err, MetaError::AlreadyExists { kind: RecordKind::Tenant, id } if id == "acme"),
        "{err:?}"
    );
    assert_eq!(store.tenant("acme").unwrap(), Some(tenant("acme", 3)), "duplicate changed it");
}

fn tenants_are_listed_in_id_order(store: &dyn MetadataStore) {
    assert_eq!(store.tenants().unwrap(), vec![]);
    for id in ["globex", "acme", "initech"] {
        store.create_tenant(&tenant(id, 3)).unwrap();
    }
    let ids: Vec<String> = store.tenants().unwrap().into_iter().map(|t| t.tenant_id).collect();
    assert_eq!(ids, ["acme", "globex", "initech"]);
}

fn update_replication_factor_stores_tenant_and_migration(store: &dyn MetadataStore) {
    store.create_tenant(&tenant("acme", 3)).unwrap();
    let mut m = migration("mig-1", "acme");
    m.migration_type = MigrationRecord::REPLICATION_CHANGE.into();

    let old = store.update_replication_factor("acme", 5, 999, &m).unwrap();
    assert_eq!(old, tenant("acme", 3), "returns the record as it was");
    let new = TenantRecord { replication_factor: 5, updated_at: 999, ..tenant("acme", 3) };
    assert_eq!(store.tenant("acme").unwrap(), Some(new));
    assert_eq!(store.migration("mig-1").unwrap(), Some(m));
}

fn tenant_limits_are_created_updated_and_kept(store: &dyn MetadataStore) {
    let own = TenantRecord { limits: limits(50, 1 << 20, 16, 4096), ..tenant("acme", 3) };
    store.create_tenant(&own).unwrap();
    assert_eq!(store.tenant("acme").unwrap(), Some(own.clone()));
    let updated = store.update_tenant_limits("acme", &limits(0, 7, 0, u64::MAX >> 1), 777).unwrap();
    let want = TenantRecord { limits: limits(0, 7, 0, u64::MAX >> 1), updated_at: 777, ..own };
    assert_eq!(updated, want);
    assert_eq!(store.tenants().unwrap(), vec![want.clone()]);
    // A replication factor change keeps the limits.
    store.update_replication_factor("acme", 4, 800, &migration("mig-1", "acme")).unwrap();
    assert_eq!(store.tenant("acme").unwrap().unwrap().limits, want.limits);
    let err = store.update_tenant_limits("absent", &limits(1, 1, 1, 1), 1).unwrap_err();
    assert!(matches!(err, MetaError::NotFound { kind: RecordKind::Tenant, .. }), "{err:?}");
    assert_eq!(store.tenant("absent").unwrap(), None);
}

fn update_replication_factor_of_absent_tenant_changes_nothing(store: &dyn MetadataStore) {
    let err = store.update_replication_factor("absent", 5, 999, &migration("mig-1", "absent"));
    let err = err.unwrap_err();
    assert!(
        matches!(&err, MetaError::NotFound { kind: RecordKind::Tenant, id } if id == "absent"),
        "{err:?}"
    );
    assert_eq!(store.migration("mig-1").unwrap(), None, "the migration is not stored alone");
    assert_eq!(store.tenant("absent").unwrap(), None);
}

fn nodes_add_duplicate_list_and_remove(store: &dyn MetadataStore) {
    assert_eq!(store.nodes().unwrap(), vec![]);
    store.add_node(&node("n2")).unwrap();
    store.add_node(&node("n1")).unwrap();

    let mut moved = node("n1");
    moved.host = "elsewhere".into();
    let err = store.add_node(&moved).unwrap_err();
    assert!(
        matches!(&err, MetaError::AlreadyExists { kind: RecordKind::Node, id } if id == "n1"),
        "{err:?}"
    );
    assert_eq!(store.nodes().unwrap(), vec![node("n1"), node("n2")], "ordered, unchanged");

    assert_eq!(store.remove_node("n1").unwrap(), node("n1"));
    let err = store.remove_node("n1").unwrap_err();
    assert!(
        matches!(&err, MetaError::NotFound { kind: RecordKind::Node, id } if id == "n1"),
        "{err:?}"
    );
    assert_eq!(store.nodes().unwrap(), vec![node("n2")]);
}

fn upsert_node_inserts_and_replaces(store: &dyn MetadataStore) {
    store.upsert_node(&node("n1")).unwrap();
    assert_eq!(store.nodes().unwrap(), vec![node("n1")]);
    let draining =
        NodeRecord { state: NodeState::Draining, port: 65535, virtual_nodes: 1, ..node("n1") };
    store.upsert_node(&draining).unwrap();
    assert_eq!(store.nodes().unwrap(), vec![draining]);
}

fn migration_put_get_and_update(store: &dyn MetadataStore) {
    assert_eq!(store.migration("mig-1").unwrap(), None);
    assert_eq!(store.migration_counts().unwrap(), vec![]);
    let m = migration("mig-1", "n4");
    store.put_migration(&m).unwrap();
    assert_eq!(store.migration("mig-1").unwrap(), Some(m.clone()));
    store.put_migration(&migration("mig-0", "n5")).unwrap();
    assert_eq!(store.migration_counts().unwrap(), vec![(MigrationRecord::PENDING.into(), 2)]);

    let failed = MigrationRecord {
        status: MigrationRecord::FAILED.into(),
        keys_migrated: 250,
        completed_at: 400,
        error_message: "node n4 unreachable".into(),
        ..m
    };
    store.put_migration(&failed).unwrap();
    assert_eq!(store.migration("mig-1").unwrap(), Some(failed));
    assert_eq!(store.migration("mig-2").unwrap(), None);
    // An update moves the migration from one status's count to the other's.
    let counts = store.migration_counts().unwrap();
    let want: Vec<(String, u64)> =
        vec![(MigrationRecord::FAILED.into(), 1), (MigrationRecord::PENDING.into(), 1)];
    assert_eq!(counts, want);
}

fn empty_ids_are_invalid(store: &dyn MetadataStore) {
    for err in [
        store.create_tenant(&tenant("", 3)).unwrap_err(),
        store.add_node(&node("")).unwrap_err(),
        store.put_migration(&migration("", "n1")).unwrap_err(),
    ] {
        assert!(matches!(err, MetaError::Invalid { .. }), "{err:?}");
    }
    assert_eq!(store.tenants().unwrap(), vec![]);
    assert_eq!(store.nodes().unwrap(), vec![]);
}

// ---- HintStore -----------------------------------------------------------------------------

fn hints_are_listed_per_node_oldest_first(store: &dyn HintStore) {
    store
        .add_hints(&[hint("n1", "a", 10), hint("n2", "x", 11), tombstone_hint("n1", "b", 12)])
        .unwrap();
    store.add_hints(&[hint("n1", "c", 5)]).unwrap();

    let n1 = store.hints_for("n1", 100).unwrap();
    assert_eq!(keys_of(&n1), ["a", "b", "c"], "in the order added, whatever created_at says");
    assert!(ids_of(&n1).windows(2).all(|w| w[0] < w[1]), "ids increase: {:?}", ids_of(&n1));
    assert_eq!(n1[0].1, hint("n1", "a", 10), "round trip");
    assert_eq!(n1[1].1, tombstone_hint("n1", "b", 12), "tombstones round trip");

    assert_eq!(keys_of(&store.hints_for("n1", 2).unwrap()), ["a", "b"], "limit");
    assert_eq!(store.hints_for("n1", 0).unwrap(), vec![]);
    assert_eq!(keys_of(&store.hints_for("n2", 100).unwrap()), ["x"]);
    assert_eq!(store.hints_for("n", 100).unwrap(), vec![], "no prefix match");
    assert_eq!(store.hints_for("n3", 100).unwrap(), vec![]);
}

fn removed_hints_are_gone_and_counted(store: &dyn HintStore) {
    assert_eq!(store.pending_counts().unwrap(), vec![]);
    store.add_hints(&[hint("n1", "a", 1), hint("n1", "b", 2), hint("n1", "c", 3)]).unwrap();
    store.add_hints(&[hint("n2", "x", 4)]).unwrap();
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 3), ("n2", 1)]));

    let n1 = store.hints_for("n1", 2).unwrap();
    store.remove_hints("n2", &ids_of(&n1)).unwrap();
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 3), ("n2", 1)]), "wrong node");

    store.remove_hints("n1", &ids_of(&n1)).unwrap();
    assert_eq!(keys_of(&store.hints_for("n1", 100).unwrap()), ["c"]);
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 1), ("n2", 1)]));

    store.remove_hints("n1", &ids_of(&n1)).unwrap();
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 1), ("n2", 1)]), "twice");

    let rest = store.hints_for("n1", 100).unwrap();
    store.remove_hints("n1", &ids_of(&rest)).unwrap();
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n2", 1)]), "empty nodes vanish");
    store.remove_hints("n1", &[]).unwrap();
    store.add_hints(&[]).unwrap();
}

fn drop_older_than_drops_by_creation_time(store: &dyn HintStore) {
    store
        .add_hints(&[
            hint("n1", "old", 100),
            hint("n2", "old", 150),
            hint("n1", "edge", 200),
            hint("n2", "new", 300),
        ])
        .unwrap();
    assert_eq!(store.drop_older_than(100).unwrap(), 0, "the cutoff itself is kept");
    assert_eq!(store.drop_older_than(200).unwrap(), 2);
    assert_eq!(keys_of(&store.hints_for("n1", 100).unwrap()), ["edge"]);
    assert_eq!(keys_of(&store.hints_for("n2", 100).unwrap()), ["new"]);
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 1), ("n2", 1)]));

    assert_eq!(store.drop_older_than(i64::MAX).unwrap(), 2);
    assert_eq!(store.pending_counts().unwrap(), vec![]);
    assert_eq!(store.drop_older_than(i64::MAX).unwrap(), 0);
}

fn hints_with_negative_times_are_dropped_too(store: &dyn HintStore) {
    store.add_hints(&[hint("n1", "a", -5), hint("n1", "b", 0)]).unwrap();
    assert_eq!(store.drop_older_than(0).unwrap(), 1);
    assert_eq!(keys_of(&store.hints_for("n1", 10).unwrap()), ["b"]);
}

fn hints_for_one_key_coalesce_to_the_newest_in_any_order(store: &dyn HintStore) {
    // `new` dominates `old` although its timestamp is lower; `x` and `y` are concurrent.
    let old = versioned("k", &[("a", 1)], 50, "old", 10);
    let new = versioned("k", &[("a", 2)], 40, "new", 20);
    let x = versioned("c", &[("a", 1)], 10, "x", 30);
    let y = versioned("c", &[("b", 1)], 10, "y", 40);
    let concurrent = version::newest(&x.version, &y.version);
    assert_ne!(concurrent, x.version, "a merge, not either side");

    // Each pair in both orders, in separate batches and in one batch, on its own target node.
    let cases = [
        ("fwd", vec![vec![old.clone()], vec![new.clone()]]),
        ("rev", vec![vec![new.clone()], vec![old.clone()]]),
        ("one", vec![vec![old.clone(), new.clone()]]),
        ("one-rev", vec![vec![new.clone(), old.clone()]]),
        ("cxy", vec![vec![x.clone()], vec![y.clone()]]),
        ("cyx", vec![vec![y.clone()], vec![x.clone()]]),
        ("cone", vec![vec![y.clone(), x.clone()]]),
    ];
    for (node, batches) in &cases {
        let mut total = HintsAdded::default();
        for batch in batches {
            let batch: Vec<Hint> =
                batch.iter().map(|h| Hint { target_node: node.to_string(), ..h.clone() }).collect();
            let got = store.add_hints(&batch).unwrap();
            total.stored += got.stored;
            total.coalesced += got.coalesced;
            total.dropped += got.dropped;
        }
        assert_eq!(total, added(1, 1, 0), "{node}");
        let stored = store.hints_for(node, 10).unwrap();
        assert_eq!(stored.len(), 1, "{node}: one hint per key");
        let want = if node.starts_with('c') { &concurrent } else { &new.version };
        assert_eq!(&stored[0].1.version, want, "{node}");
    }
    // Created_at follows the version kept: `new`'s, or the later of two merged ones.
    assert_eq!(store.hints_for("rev", 1).unwrap()[0].1.created_at_us, 20);
    assert_eq!(store.hints_for("cxy", 1).unwrap()[0].1.created_at_us, 40);
    assert_eq!(store.pending_counts().unwrap().iter().map(|(_, n)| n).sum::<u64>(), 7);
}

fn a_coalesced_hint_gets_a_new_id_and_replays_last(store: &dyn HintStore) {
    let a1 = versioned("a", &[("w", 1)], 1, "a1", 1);
    let a2 = versioned("a", &[("w", 2)], 2, "a2", 3);
    assert_eq!(store.add_hints(&[a1.clone(), hint("n1", "b", 2)]).unwrap(), added(2, 0, 0));
    let before = store.hints_for("n1", 10).unwrap();
    assert_eq!(keys_of(&before), ["a", "b"]);

    // A replay read `a1` and is delivering it when `a2` arrives.
    assert_eq!(store.add_hints(std::slice::from_ref(&a2)).unwrap(), added(0, 1, 0));
    let after = store.hints_for("n1", 10).unwrap();
    assert_eq!(keys_of(&after), ["b", "a"], "the new version queues behind b");
    assert!(after[1].0 > before[1].0, "new id: {before:?} then {after:?}");
    assert_eq!(after[1].1, a2);

    // The replay acknowledges what it read: the version it did not deliver stays.
    store.remove_hints("n1", &[before[0].0]).unwrap();
    assert_eq!(store.hints_for("n1", 10).unwrap(), after);

    // An older version changes nothing, not even the id.
    assert_eq!(store.add_hints(&[a1]).unwrap(), added(0, 1, 0));
    assert_eq!(store.hints_for("n1", 10).unwrap(), after);
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 2)]));

    store.remove_hints("n1", &ids_of(&after)).unwrap();
    assert_eq!(store.pending_counts().unwrap(), vec![]);
    // Once delivered, the key is new again.
    assert_eq!(store.add_hints(&[a2]).unwrap(), added(1, 0, 0));
}

fn the_same_key_on_other_nodes_or_tenants_is_another_hint(store: &dyn HintStore) {
    let other_tenant = Hint { tenant_id: "globex".into(), ..hint("n1", "k", 1) };
    let got =
        store.add_hints(&[hint("n1", "k", 1), hint("n2", "k", 1), other_tenant.clone()]).unwrap();
    assert_eq!(got, added(3, 0, 0));
    assert_eq!(store.hints_for("n1", 10).unwrap().len(), 2);
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 2), ("n2", 1)]));
}

fn expiry_follows_the_coalesced_hint(store: &dyn HintStore) {
    let old = versioned("k", &[("w", 1)], 1, "old", 100);
    let new = versioned("k", &[("w", 2)], 2, "new", 300);
    store.add_hints(std::slice::from_ref(&old)).unwrap();
    store.add_hints(std::slice::from_ref(&new)).unwrap();
    assert_eq!(store.drop_older_than(200).unwrap(), 0, "the new write restarted the clock");
    // A late, older version keeps the stored hint and its creation time.
    store.add_hints(&[versioned("k", &[("w", 1)], 1, "old", 500)]).unwrap();
    assert_eq!(store.hints_for("n1", 10).unwrap()[0].1, new);
    assert_eq!(store.drop_older_than(400).unwrap(), 1);
    assert_eq!(store.pending_counts().unwrap(), vec![]);
    assert_eq!(store.add_hints(&[old]).unwrap(), added(1, 0, 0), "expired keys are new again");
}

/// The cap, on a store opened with `max_hints: 3`.
fn a_full_store_drops_new_keys_but_still_coalesces(open: &dyn Fn(u64) -> Arc<dyn Store>) {
    let store = open(3);
    assert_eq!(store.add_hints(&[hint("n1", "a", 1), hint("n2", "b", 2)]).unwrap(), added(2, 0, 0));
    let got = store.add_hints(&[hint("n1", "c", 3), hint("n1", "d", 4), hint("n2", "e", 5)]);
    assert_eq!(got.unwrap(), added(1, 0, 2), "the first new key fits, the others are dropped");
    assert_eq!(keys_of(&store.hints_for("n1", 10).unwrap()), ["a", "c"]);
    assert_eq!(keys_of(&store.hints_for("n2", 10).unwrap()), ["b"]);

    // Full: a newer version of a stored key still replaces it; a new key is dropped, also when
    // the batch holds it twice.
    let a2 = versioned("a", &[("coord-1/0", 9), ("coord-2/1", 1)], 9, "a2", 9);
    let f1 = versioned("f", &[("w", 1)], 1, "f1", 1);
    let f2 = versioned("f", &[("w", 2)], 2, "f2", 2);
    assert_eq!(store.add_hints(&[a2.clone(), f1, f2]).unwrap(), added(0, 2, 1));
    let n1 = store.hints_for("n1", 10).unwrap();
    assert_eq!(keys_of(&n1), ["c", "a"]);
    assert_eq!(n1[1].1, a2);
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 2), ("n2", 1)]));

    // Replay and expiry make room again.
    store.remove_hints("n1", &[n1[0].0]).unwrap();
    assert_eq!(
        store.add_hints(&[hint("n2", "g", 10), hint("n2", "h", 11)]).unwrap(),
        added(1, 0, 1)
    );
    assert_eq!(keys_of(&store.hints_for("n2", 10).unwrap()), ["b", "g"]);
    assert_eq!(store.drop_older_than(3).unwrap(), 1, "b");
    assert_eq!(store.add_hints(&[hint("n2", "h", 11)]).unwrap(), added(1, 0, 0));

    // The count survives reopening.
    drop(store);
    let store = open(3);
    assert_eq!(store.add_hints(&[hint("n3", "z", 12)]).unwrap(), added(0, 0, 1));
    let store = {
        drop(store);
        open(4)
    };
    assert_eq!(store.add_hints(&[hint("n3", "z", 12)]).unwrap(), added(1, 0, 0));
    assert_eq!(store.drop_older_than(i64::MAX).unwrap(), 4);
    assert_eq!(store.pending_counts().unwrap(), vec![]);
    assert_eq!(store.add_hints(&[hint("n1", "y", 13)]).unwrap(), added(1, 0, 0));
}

// ---- tokens --------------------------------------------------------------------------------

fn token(id: &str, tenant: &str, role: &str) -> TokenRecord {
    TokenRecord {
        token_id: id.into(),
        tenant_id: tenant.into(),
        role: role.into(),
        created_at_us: 1_000,
        revoked_at_us: 0,
        secret_hash: format!("hash-of-{id}"),
    }
}

fn tokens_create_list_duplicate_and_revoke(store: &dyn MetadataStore) {
    assert_eq!(store.tokens().unwrap(), vec![]);
    store.create_token(&token("b", "acme", "tenant-rw")).unwrap();
    store.create_token(&token("a", "", "admin")).unwrap();
    let err = store.create_token(&token("a", "acme", "tenant-ro")).unwrap_err();
    assert!(matches!(err, MetaError::AlreadyExists { kind: RecordKind::Token, .. }), "{err:?}");
    assert_eq!(
        store.tokens().unwrap(),
        vec![token("a", "", "admin"), token("b", "acme", "tenant-rw")],
        "ordered by id, the duplicate changed nothing"
    );

    let revoked = store.revoke_token("b", 5_000).unwrap();
    assert_eq!(revoked, TokenRecord { revoked_at_us: 5_000, ..token("b", "acme", "tenant-rw") });
    // A second revocation keeps the first time.
    assert_eq!(store.revoke_token("b", 9_000).unwrap().revoked_at_us, 5_000);
    assert_eq!(store.tokens().unwrap()[1].revoked_at_us, 5_000);
    let err = store.revoke_token("nope", 1).unwrap_err();
    assert!(matches!(err, MetaError::NotFound { kind: RecordKind::Token, .. }), "{err:?}");
    let err = store.create_token(&token("", "acme", "tenant-rw")).unwrap_err();
    assert!(matches!(err, MetaError::Invalid { kind: RecordKind::Token, .. }), "{err:?}");
}

// ---- persistence ---------------------------------------------------------------------------

fn everything_survives_reopen(open: &dyn Fn() -> Arc<dyn Store>) {
    let old_ids = {
        let store = open();
        store.create_tenant(&tenant("acme", 3)).unwrap();
        store.update_replication_factor("acme", 4, 500, &migration("mig-1", "acme")).unwrap();
        store.update_tenant_limits("acme", &limits(50, 0, 8, 0), 600).unwrap();
        store.add_node(&node("n1")).unwrap();
        store.put_migration(&migration("mig-2", "n1")).unwrap();
        store.add_hints(&[hint("n1", "a", 1), hint("n1", "b", 2)]).unwrap();
        store.create_token(&token("t1", "acme", "tenant-ro")).unwrap();
        store.revoke_token("t1", 7).unwrap();
        ids_of(&store.hints_for("n1", 10).unwrap())
    };

    let store = open();
    let acme = TenantRecord {
        replication_factor: 4,
        updated_at: 600,
        limits: limits(50, 0, 8, 0),
        ..tenant("acme", 3)
    };
    assert_eq!(store.tenants().unwrap(), vec![acme]);
    assert_eq!(store.nodes().unwrap(), vec![node("n1")]);
    assert_eq!(store.migration("mig-1").unwrap(), Some(migration("mig-1", "acme")));
    assert_eq!(store.migration("mig-2").unwrap(), Some(migration("mig-2", "n1")));
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 2)]));
    assert_eq!(
        store.tokens().unwrap(),
        vec![TokenRecord { revoked_at_us: 7, ..token("t1", "acme", "tenant-ro") }]
    );
    let hints = store.hints_for("n1", 10).unwrap();
    assert_eq!(ids_of(&hints), old_ids);
    assert_eq!(hints[1].1, hint("n1", "b", 2));

    store.add_hints(&[hint("n1", "c", 3)]).unwrap();
    let ids = ids_of(&store.hints_for("n1", 10).unwrap());
    assert!(ids[2] > old_ids[1], "ids keep increasing after reopen: {ids:?}");
}

// ---- mounting ------------------------------------------------------------------------------

/// Runs one case on a fresh store of backend `B`, or reports the skip.
fn run<B: Backend>(name: &str, case: impl FnOnce(&dyn Fn() -> Arc<dyn Store>)) {
    let Some(fixture) = B::fixture() else {
        eprintln!("skipped {name}: backend not configured (see above)");
        return;
    };
    case(&|| B::open(&fixture));
}

/// Mounts every case of the suite as `#[test]`s in module `$module` for backend `$backend`.
macro_rules! mount {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;

            mount!(@meta $backend;
                tenant_create_get_and_duplicate,
                tenants_are_listed_in_id_order,
                update_replication_factor_stores_tenant_and_migration,
                update_replication_factor_of_absent_tenant_changes_nothing,
                tenant_limits_are_created_updated_and_kept,
                nodes_add_duplicate_list_and_remove,
                upsert_node_inserts_and_replaces,
                migration_put_get_and_update,
                empty_ids_are_invalid,
                tokens_create_list_duplicate_and_revoke,
            );
            mount!(@hint $backend;
                hints_are_listed_per_node_oldest_first,
                removed_hints_are_gone_and_counted,
                drop_older_than_drops_by_creation_time,
                hints_with_negative_times_are_dropped_too,
                hints_for_one_key_coalesce_to_the_newest_in_any_order,
                a_coalesced_hint_gets_a_new_id_and_replays_last,
                the_same_key_on_other_nodes_or_tenants_is_another_hint,
                expiry_follows_the_coalesced_hint,
            );

            #[test]
            fn everything_survives_reopen() {
                run::<$backend>("everything_survives_reopen", super::everything_survives_reopen);
            }

            #[test]
            fn a_full_store_drops_new_keys_but_still_coalesces() {
                let Some(fixture) = <$backend>::fixture() else { return };
                super::a_full_store_drops_new_keys_but_still_coalesces(&|max| {
                    <$backend>::open_capped(&fixture, max)
                });
            }
        }
    };
    (@meta $backend:ty; $($case:ident,)*) => {$(
        #[test]
        fn $case() {
            run::<$backend>(stringify!($case), |open| super::$case(&*open()));
        }
    )*};
    (@hint $backend:ty; $($case:ident,)*) => {$(
        #[test]
        fn $case() {
            run::<$backend>(stringify!($case), |open| super::$case(&*open()));
        }
    )*};
}

mount!(embedded, Embedded);
mount!(postgres_backend, Postgres);

/// Several stores opening one empty schema at once: the migration is applied exactly once and
/// every store works.
#[test]
fn postgres_migrations_apply_once_under_concurrent_start() {
    let Some(fixture) = Postgres::fixture() else { return };
    let url = fixture.url.clone();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().expect("no panic").expect("open");
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = c.query("SELECT version FROM schema_migrations ORDER BY version", &[]).unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5], "each migration recorded once");
    let store = Postgres::open(&fixture);
    store.create_tenant(&tenant("acme", 3)).unwrap();
}

/// A version 1 schema holds one row per missed write; migration 2 collapses each key's rows to
/// the one created last and counts what is left.
#[test]
fn postgres_migration_2_collapses_duplicate_hints() {
    use prost::Message;

    let Some(fixture) = Postgres::fixture() else { return };
    let mut c = postgres::Client::connect(&fixture.url, postgres::NoTls).unwrap();
    c.batch_execute(include_str!("../migrations/0001_metadata.sql")).unwrap();
    c.batch_execute(
        "CREATE TABLE schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version, name) VALUES (1, '0001_metadata.sql')",
    )
    .unwrap();
    for (node, key, created_at_us) in
        [("n1", "a", 10), ("n1", "b", 20), ("n1", "a", 30), ("n1", "a", 5), ("n2", "a", 1)]
    {
        let h = hint(node, key, created_at_us);
        let version = pairdb::proto::storage::Version::from(&h.version).encode_to_vec();
        c.execute(
            "INSERT INTO hints (target_node, tenant_id, key, version, created_at_us)
             VALUES ($1, $2, $3, $4, $5)",
            &[&h.target_node, &h.tenant_id, &h.key, &version, &h.created_at_us],
        )
        .unwrap();
    }

    let store = Postgres::open_capped(&fixture, 4);
    let n1 = store.hints_for("n1", 10).unwrap();
    assert_eq!(
        n1.iter().map(|(_, h)| h.clone()).collect::<Vec<_>>(),
        [hint("n1", "b", 20), hint("n1", "a", 30)]
    );
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", 2), ("n2", 1)]));
    let total: i64 = c.query_one("SELECT n FROM hint_total", &[]).unwrap().get(0);
    assert_eq!(total, 3);
    assert_eq!(
        store.add_hints(&[hint("n1", "b", 50), hint("n3", "x", 1), hint("n3", "y", 1)]).unwrap(),
        added(1, 1, 1)
    );
}

/// Several coordinators (stores) writing hints for the same keys into one database at once:
/// every key ends with one hint holding the newest version, and the cap holds exactly.
#[test]
fn postgres_coalescing_and_the_cap_hold_across_coordinators() {
    const CAP: u64 = 30;
    const ROUNDS: u64 = 10;
    let Some(fixture) = Postgres::fixture() else { return };
    drop(Postgres::open(&fixture));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let url = fixture.url.clone();
            std::thread::spawn(move || {
                let store = PostgresStore::open(&url).unwrap().with_max_hints(CAP);
                let mut total = HintsAdded::default();
                for round in 1..=ROUNDS {
                    // Ten keys every coordinator writes (one actor, so the highest counter is
                    // the newest), then five of its own.
                    let clock = [("w", round * 10 + t)];
                    let value = format!("v{round}-{t}");
                    let mut batch: Vec<Hint> = (0..10)
                        .map(|k| versioned(&format!("shared{k}"), &clock, 1, &value, 1))
                        .collect();
                    batch.extend((0..5).map(|k| {
                        versioned(&format!("own{t}-{round}-{k}"), &[("w", 1)], 1, "own", 1)
                    }));
                    let got = store.add_hints(&batch).unwrap();
                    total.stored += got.stored;
                    total.coalesced += got.coalesced;
                    total.dropped += got.dropped;
                }
                total
            })
        })
        .collect();
    let mut total = HintsAdded::default();
    for h in handles {
        let got = h.join().expect("no panic");
        total.stored += got.stored;
        total.coalesced += got.coalesced;
        total.dropped += got.dropped;
    }
    // The first batch to commit stores the ten shared keys and five own ones.
    assert_eq!(total, added(CAP, 4 * ROUNDS * 10 - 10, 4 * ROUNDS * 5 - (CAP - 10)));

    let store = Postgres::open(&fixture);
    let hints = store.hints_for("n1", 1000).unwrap();
    assert_eq!(hints.len() as u64, CAP);
    assert_eq!(store.pending_counts().unwrap(), counts(&[("n1", CAP)]));
    for k in 0..10 {
        let key = format!("shared{k}");
        let of_key: Vec<&Hint> = hints.iter().map(|(_, h)| h).filter(|h| h.key == key).collect();
        assert_eq!(of_key.len(), 1, "{key}");
        assert_eq!(of_key[0].version.value, Bytes::from(format!("v{ROUNDS}-3")), "{key}");
    }
}
