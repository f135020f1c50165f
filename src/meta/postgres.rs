//! [`PostgresStore`]: [`MetadataStore`] and [`HintStore`] in a PostgreSQL database shared by
//! several coordinators.
//!
//! The synchronous `postgres` crate is enough: the traits are blocking and the coordinator calls
//! them on its blocking thread pool, never on a request core. Connections come from a small pool
//! ([`MAX_IDLE_CONNECTIONS`] kept idle); a connection that failed is dropped, not returned, and the
//! next call opens a new one, so the store recovers by itself when the server comes back. A call
//! that meets a connection gone stale while idle (the server restarted) is retried once on a fresh
//! connection: nothing ran on the dead one.
//!
//! The schema is the SQL files under `migrations/`, compiled in and applied by
//! [`PostgresStore::open`] in order, each in its own transaction and recorded in
//! `schema_migrations`. The whole check-and-apply runs under a PostgreSQL advisory lock, so when
//! several coordinators start together exactly one applies each file and the others wait, then
//! find it recorded. A database with a migration this build does not know is refused as
//! [`MetaError::Corrupt`] rather than used with a schema it may misread.
//!
//! Every write to tenants or nodes also runs `pg_notify('pairdb_meta', '{schema}:{what}')` in its
//! transaction, so coordinators that [`watch`](PostgresStore::watch) the channel hear about it
//! when it commits (and not at all if it rolls back). The channel is database-wide; the schema in
//! the payload lets several clusters (or tests) share one database without reloading on each
//! other's writes. Notifications are best effort (a listener that was
//! disconnected misses them), which is why the watcher also reports a periodic tick: the caller
//! reloads on either, and the tick bounds how stale a coordinator can be.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use postgres::{error::SqlState, fallible_iterator::FallibleIterator, Client, NoTls, Transaction};
use prost::Message;

use crate::core::version::Version;
use crate::meta::{
    BackendError, Hint, HintStore, MetaError, MetadataStore, MigrationRecord, NodeRecord,
    NodeState, RecordKind, TenantRecord,
};
use crate::proto::storage;

const BACKEND: &str = "postgres";

/// The channel metadata writes notify on and [`PostgresStore::watch`] listens to.
pub const CHANNEL: &str = "pairdb_meta";

/// Idle connections kept for reuse: 4. Metadata calls are rare (admin requests, hint batches
/// every 100 ms per core, a reload every tick), so a few connections cover the blocking pool's
/// concurrency; more would only hold server slots.
pub const MAX_IDLE_CONNECTIONS: usize = 4;

/// How long opening a connection may take: 3 s, unless the URL sets `connect_timeout`. A server
/// that is down refuses at once; this bounds the wait for one that is unreachable, so an admin
/// call answers UNAVAILABLE within a client's usual deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Key of the advisory lock held while migrations are checked and applied (any constant shared
/// by all coordinators works; this one spells "pairdb" in ASCII).
const MIGRATION_LOCK: i64 = 0x7061_6972_6462;

/// The schema, in order: (version, file name, SQL). Versions are never reused or edited once
/// released; a change is a new file.
const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "0001_metadata.sql", include_str!("../../migrations/0001_metadata.sql"))];

/// What a notification (or the watcher itself) says changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A tenant was created or changed.
    Tenants,
    /// The storage node list changed.
    Nodes,
    /// Anything may have changed: the periodic tick, or the listener reconnected and may have
    /// missed notifications. Reload everything.
    Everything,
}

/// Metadata and hints in PostgreSQL. Cheap to share as `Arc<PostgresStore>`, which serves as both
/// `Arc<dyn MetadataStore>` and `Arc<dyn HintStore>`.
pub struct PostgresStore {
    config: postgres::Config,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("host", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, any libpq-style parameter such as
    /// `options=-csearch_path%3Dmyschema`) and applies pending migrations.
    pub fn open(url: &str) -> Result<Self, MetaError> {
        Self::open_waiting(url, Duration::ZERO)
    }

    /// [`PostgresStore::open`], but while the server cannot be reached (not started yet, a
    /// failover in progress) keeps trying once a second, with a warning each time, for up to
    /// `wait`. A malformed URL fails at once.
    pub fn open_waiting(url: &str, wait: Duration) -> Result<Self, MetaError> {
        let mut config: postgres::Config = url.parse().map_err(|e| MetaError::Unavailable {
            backend: BACKEND,
            source: Box::new(InvalidUrl(format!("{e}"))),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("pairdb-coordinator");
        }
        let store = Self { config, idle: Mutex::new(Vec::new()) };
        // No deadline when `wait` is too large to add to the clock: wait as long as it takes.
        let give_up = Instant::now().checked_add(wait);
        loop {
            match store.connect() {
                Ok(client) => {
                    store.give_back(client);
                    break;
                }
                Err(e) if give_up.is_none_or(|t| Instant::now() < t) => {
                    tracing::warn!(
                        error = %e,
                        left_secs = give_up
                            .map_or(u64::MAX, |t| t.saturating_duration_since(Instant::now()).as_secs()),
                        "PostgreSQL cannot be reached yet; retrying in 1 s (metadata.startup_wait_secs)"
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
        store.migrate()?;
        Ok(store)
    }

    /// Applies the migrations this database lacks, under the advisory lock.
    fn migrate(&self) -> Result<(), MetaError> {
        let mut client = self.connect()?;
        let result = (|| -> Result<(), Fail> {
            client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
            let applied = (|| -> Result<(), Fail> {
                client.batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                         version    INTEGER PRIMARY KEY,
                         name       TEXT NOT NULL,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                     )",
                )?;
                let done: Vec<i32> = client
                    .query("SELECT version FROM schema_migrations ORDER BY version", &[])?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let latest = MIGRATIONS.last().map_or(0, |m| m.0);
                if let Some(&unknown) = done.iter().find(|v| **v > latest) {
                    return Err(Fail::Meta(MetaError::Corrupt {
                        kind: RecordKind::Store,
                        id: "schema_migrations".into(),
                        source: Box::new(UnknownSchema { found: unknown, latest }),
                    }));
                }
                for (version, name, sql) in MIGRATIONS {
                    if done.contains(version) {
                        continue;
                    }
                    let mut tx = client.transaction()?;
                    tx.batch_execute(sql)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        &[version, name],
                    )?;
                    tx.commit()?;
                    tracing::info!(version, name, "metadata schema migration applied");
                }
                Ok(())
            })();
            // Released on every path; a lost connection releases it on the server anyway.
            let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
            applied?;
            unlocked?;
            Ok(())
        })();
        result.map_err(MetaError::from)?;
        self.give_back(client);
        Ok(())
    }

    fn connect(&self) -> Result<Client, MetaError> {
        self.config.connect(NoTls).map_err(|e| Fail::Pg(e).into())
    }

    fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_CONNECTIONS {
                idle.push(client);
            }
        }
    }

    /// Runs `body` on a pooled connection. A connection-level failure on a connection that sat
    /// idle is retried once on a new one; any failure drops the connection rather than reuse it.
    fn with<T>(
        &self,
        mut body: impl FnMut(&mut Client) -> Result<T, Fail>,
    ) -> Result<T, MetaError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some(mut client) = pooled {
            match body(&mut client) {
                Ok(out) => {
                    self.give_back(client);
                    return Ok(out);
                }
                Err(Fail::Pg(e)) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "stale metadata connection; reconnecting");
                }
                Err(e) => {
                    if !matches!(e, Fail::Pg(_)) {
                        self.give_back(client);
                    }
                    return Err(e.into());
                }
            }
        }
        let mut client = self.connect()?;
        let out = body(&mut client);
        if out.is_ok() || matches!(out, Err(Fail::Meta(_))) {
            self.give_back(client);
        }
        out.map_err(Into::into)
    }

    /// Runs `body` in a transaction and commits it; an error rolls it back, changing nothing.
    fn write<T>(
        &self,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>,
    ) -> Result<T, MetaError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            let out = body(&mut tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Starts a thread that listens on [`CHANNEL`] and calls `on_change` for every notification
    /// about this store's schema and, every `every`, with [`Change::Everything`]. It reconnects by itself
    /// (once a second while the server is down) and reports [`Change::Everything`] after each
    /// reconnection, since notifications sent meanwhile were lost. The thread stops within
    /// `every` once `on_change` returns false or the returned [`Watch`] is dropped.
    pub fn watch(
        &self,
        every: Duration,
        mut on_change: impl FnMut(Change) -> bool + Send + 'static,
    ) -> std::io::Result<Watch> {
        let config = self.config.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new().name("pairdb-meta-watch".into()).spawn(move || {
            let mut first = true;
            while !stopped.load(Ordering::Relaxed) {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata watch cannot connect; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                let listen = client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .and_then(|()| client.query_one("SELECT current_schema()", &[]));
                let schema: String = match listen {
                    Ok(row) => row.get(0),
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata watch cannot LISTEN; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                if !first && !on_change(Change::Everything) {
                    return;
                }
                first = false;
                // The periodic reload is a deadline, not "nothing heard for `every`": the channel
                // is shared by every schema of the database, so it may never be quiet.
                let mut next_reload = Instant::now() + every;
                while !stopped.load(Ordering::Relaxed) {
                    let mut notifications = client.notifications();
                    let mut changes = Vec::new();
                    let wait = next_reload.saturating_duration_since(Instant::now());
                    match notifications.timeout_iter(wait).next() {
                        Ok(Some(n)) => changes.extend(parse_change(n.payload(), &schema)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "metadata watch lost its connection");
                            break;
                        }
                    }
                    // A burst of writes becomes one reload of each kind.
                    let mut pending = notifications.iter();
                    while let Ok(Some(n)) = pending.next() {
                        changes.extend(parse_change(n.payload(), &schema));
                    }
                    if Instant::now() >= next_reload {
                        changes.push(Change::Everything);
                        next_reload = Instant::now() + every;
                    }
                    if changes.contains(&Change::Everything) {
                        changes = vec![Change::Everything];
                    }
                    for kind in [Change::Everything, Change::Tenants, Change::Nodes] {
                        if changes.contains(&kind) && !on_change(kind) {
                            return;
                        }
                    }
                }
            }
        })?;
        Ok(Watch { stop })
    }
}

/// Stops a [`PostgresStore::watch`] thread when dropped.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
}

impl Watch {
    /// Lets the thread run until its callback returns false, instead of until this is dropped.
    pub fn detach(self) {
        // Only the stop flag is leaked: one allocation per watch, made once per process.
        std::mem::forget(self);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a notification's payload, `{schema}:{what}`, says changed; `None` when it is about
/// another schema of the same database (another cluster, or another test).
fn parse_change(payload: &str, schema: &str) -> Option<Change> {
    let (from, what) = payload.rsplit_once(':')?;
    if from != schema {
        return None;
    }
    Some(match what {
        "tenants" => Change::Tenants,
        "nodes" => Change::Nodes,
        _ => Change::Everything,
    })
}

/// Notifies watchers, when the transaction commits, that `what` changed in this schema.
fn notify(tx: &mut Transaction<'_>, what: &str) -> Result<(), Fail> {
    tx.execute("SELECT pg_notify($1, current_schema() || ':' || $2)", &[&CHANNEL, &what])?;
    Ok(())
}

/// True when the error is the connection failing, not the server answering.
fn is_connection_error(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
    }
}

impl MetadataStore for PostgresStore {
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Tenant, &tenant.tenant_id)?;
        let rf = to_i32(tenant.replication_factor);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tenants (tenant_id, replication_factor, created_at, updated_at)
                 VALUES ($1, $2, $3, $4)",
                &[&tenant.tenant_id, &rf, &tenant.created_at, &tenant.updated_at],
            )
            .map_err(|e| exists(e, RecordKind::Tenant, &tenant.tenant_id))?;
            notify(tx, "tenants")
        })
    }

    fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT tenant_id, replication_factor, created_at, updated_at
                 FROM tenants WHERE tenant_id = $1",
                &[&tenant_id],
            )?;
            Ok(row.as_ref().map(tenant_from_row))
        })
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT tenant_id, replication_factor, created_at, updated_at
                 FROM tenants ORDER BY tenant_id",
                &[],
            )?;
            Ok(rows.iter().map(tenant_from_row).collect())
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
        let rf = to_i32(replication_factor);
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                "SELECT tenant_id, replication_factor, created_at, updated_at
                 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant_id],
            )?
            else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Tenant,
                    id: tenant_id.to_owned(),
                }));
            };
            let old = tenant_from_row(&row);
            tx.execute(
                "UPDATE tenants SET replication_factor = $2, updated_at = $3 WHERE tenant_id = $1",
                &[&tenant_id, &rf, &now],
            )?;
            put_migration(tx, migration)?;
            notify(tx, "tenants")?;
            Ok(old)
        })
    }

    fn add_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO storage_nodes (node_id, host, port, virtual_nodes, state, added_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &node_params(node).as_params(),
            )
            .map_err(|e| exists(e, RecordKind::Node, &node.node_id))?;
            notify(tx, "nodes")
        })
    }

    fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO storage_nodes (node_id, host, port, virtual_nodes, state, added_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (node_id) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port,
                     virtual_nodes = EXCLUDED.virtual_nodes, state = EXCLUDED.state,
                     added_at = EXCLUDED.added_at",
                &node_params(node).as_params(),
            )?;
            notify(tx, "nodes")
        })
    }

    fn remove_node(&self, node_id: &str) -> Result<NodeRecord, MetaError> {
        self.write(|tx| {
            let row = tx.query_opt(
                "DELETE FROM storage_nodes WHERE node_id = $1
                 RETURNING node_id, host, port, virtual_nodes, state, added_at",
                &[&node_id],
            )?;
            let Some(row) = row else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Node,
                    id: node_id.to_owned(),
                }));
            };
            let node = node_from_row(&row)?;
            notify(tx, "nodes")?;
            Ok(node)
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT node_id, host, port, virtual_nodes, state, added_at
                 FROM storage_nodes ORDER BY node_id",
                &[],
            )?;
            rows.iter().map(node_from_row).collect()
        })
    }

    fn put_migration(&self, migration: &MigrationRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        self.write(|tx| put_migration(tx, migration))
    }

    fn migration(&self, migration_id: &str) -> Result<Option<MigrationRecord>, MetaError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT migration_id, migration_type, node_id, status, keys_migrated, total_keys,
                        started_at, completed_at, error_message
                 FROM migrations WHERE migration_id = $1",
                &[&migration_id],
            )?;
            Ok(row.map(|r| MigrationRecord {
                migration_id: r.get(0),
                migration_type: r.get(1),
                node_id: r.get(2),
                status: r.get(3),
                keys_migrated: r.get(4),
                total_keys: r.get(5),
                started_at: r.get(6),
                completed_at: r.get(7),
                error_message: r.get(8),
            }))
        })
    }
}

impl HintStore for PostgresStore {
    fn add_hints(&self, hints: &[Hint]) -> Result<(), MetaError> {
        if hints.is_empty() {
            return Ok(());
        }
        for hint in hints {
            check_id(RecordKind::Hint, &hint.target_node)?;
        }
        let encoded: Vec<Vec<u8>> =
            hints.iter().map(|h| storage::Version::from(&h.version).encode_to_vec()).collect();
        let nodes: Vec<&str> = hints.iter().map(|h| h.target_node.as_str()).collect();
        let tenants: Vec<&str> = hints.iter().map(|h| h.tenant_id.as_str()).collect();
        let keys: Vec<&str> = hints.iter().map(|h| h.key.as_str()).collect();
        let times: Vec<i64> = hints.iter().map(|h| h.created_at_us).collect();
        // One statement for the whole batch (a core flushes up to thousands at once), rows in
        // array order so that their ids increase in the order given.
        self.write(|tx| {
            tx.execute(
                "INSERT INTO hints (target_node, tenant_id, key, version, created_at_us)
                 SELECT n, t, k, v, c
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[])
                      WITH ORDINALITY AS u(n, t, k, v, c, ord)
                 ORDER BY ord",
                &[&nodes, &tenants, &keys, &encoded, &times],
            )?;
            Ok(())
        })
    }

    fn hints_for(&self, node: &str, limit: usize) -> Result<Vec<(u64, Hint)>, MetaError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c.query(
                "SELECT id, tenant_id, key, version, created_at_us FROM hints
                 WHERE target_node = $1 ORDER BY id LIMIT $2",
                &[&node, &limit],
            )?;
            rows.iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    let id = id as u64;
                    let bytes: &[u8] = r.get(3);
                    let version = decode_version(bytes)
                        .map_err(|e| corrupt(RecordKind::Hint, &format!("{node}/{id}"), e))?;
                    Ok((
                        id,
                        Hint {
                            target_node: node.to_owned(),
                            tenant_id: r.get(1),
                            key: r.get(2),
                            version,
                            created_at_us: r.get(4),
                        },
                    ))
                })
                .collect()
        })
    }

    fn remove_hints(&self, node: &str, ids: &[u64]) -> Result<(), MetaError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.iter().filter_map(|id| i64::try_from(*id).ok()).collect();
        self.with(|c| {
            c.execute("DELETE FROM hints WHERE target_node = $1 AND id = ANY($2)", &[&node, &ids])?;
            Ok(())
        })
    }

    fn pending_counts(&self) -> Result<Vec<(String, u64)>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT target_node, count(*) FROM hints GROUP BY target_node ORDER BY target_node",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let n: i64 = r.get(1);
                    (r.get(0), n as u64)
                })
                .collect())
        })
    }

    fn drop_older_than(&self, cutoff_us: i64) -> Result<usize, MetaError> {
        self.with(|c| {
            let n = c.execute("DELETE FROM hints WHERE created_at_us < $1", &[&cutoff_us])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

fn put_migration(tx: &mut Transaction<'_>, m: &MigrationRecord) -> Result<(), Fail> {
    tx.execute(
        "INSERT INTO migrations (migration_id, migration_type, node_id, status, keys_migrated,
                                 total_keys, started_at, completed_at, error_message)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (migration_id) DO UPDATE SET migration_type = EXCLUDED.migration_type,
             node_id = EXCLUDED.node_id, status = EXCLUDED.status,
             keys_migrated = EXCLUDED.keys_migrated, total_keys = EXCLUDED.total_keys,
             started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
             error_message = EXCLUDED.error_message",
        &[
            &m.migration_id,
            &m.migration_type,
            &m.node_id,
            &m.status,
            &m.keys_migrated,
            &m.total_keys,
            &m.started_at,
            &m.completed_at,
            &m.error_message,
        ],
    )?;
    Ok(())
}

/// A node's columns, owned so that they can be passed as `&[&dyn ToSql]`.
struct NodeParams {
    node_id: String,
    host: String,
    port: i32,
    virtual_nodes: i32,
    state: &'static str,
    added_at: i64,
}

impl NodeParams {
    fn as_params(&self) -> [&(dyn postgres::types::ToSql + Sync); 6] {
        [&self.node_id, &self.host, &self.port, &self.virtual_nodes, &self.state, &self.added_at]
    }
}

fn node_params(n: &NodeRecord) -> NodeParams {
    NodeParams {
        node_id: n.node_id.clone(),
        host: n.host.clone(),
        port: i32::from(n.port),
        virtual_nodes: to_i32(n.virtual_nodes),
        state: n.state.as_str(),
        added_at: n.added_at,
    }
}

fn tenant_from_row(r: &postgres::Row) -> TenantRecord {
    let rf: i32 = r.get(1);
    TenantRecord {
        tenant_id: r.get(0),
        // The CHECK constraint keeps it positive.
        replication_factor: rf.max(0) as u32,
        created_at: r.get(2),
        updated_at: r.get(3),
    }
}

fn node_from_row(r: &postgres::Row) -> Result<NodeRecord, Fail> {
    let node_id: String = r.get(0);
    let state: String = r.get(4);
    let port: i32 = r.get(2);
    let virtual_nodes: i32 = r.get(3);
    let state = NodeState::parse(&state)
        .ok_or_else(|| corrupt(RecordKind::Node, &node_id, DecodeError::NodeState(state)))?;
    let port =
        u16::try_from(port).map_err(|_| corrupt(RecordKind::Node, &node_id, DecodeError::Port))?;
    Ok(NodeRecord {
        host: r.get(1),
        port,
        virtual_nodes: virtual_nodes.max(0) as u32,
        state,
        added_at: r.get(5),
        node_id,
    })
}

fn decode_version(bytes: &[u8]) -> Result<Version, DecodeError> {
    let wire = storage::Version::decode(bytes)?;
    Ok(Version::try_from(&wire)?)
}

fn to_i32(n: u32) -> i32 {
    // Replication factors and virtual node counts are validated far below i32::MAX.
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn check_id(kind: RecordKind, id: &str) -> Result<(), MetaError> {
    if id.is_empty() {
        return Err(MetaError::Invalid { kind, reason: "empty id" });
    }
    Ok(())
}

/// A unique violation on insert is the record existing; anything else stays a database error.
fn exists(e: postgres::Error, kind: RecordKind, id: &str) -> Fail {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        Fail::Meta(MetaError::AlreadyExists { kind, id: id.to_owned() })
    } else {
        Fail::Pg(e)
    }
}

fn corrupt(kind: RecordKind, id: &str, e: impl Into<BackendError>) -> Fail {
    Fail::Meta(MetaError::Corrupt { kind, id: id.to_owned(), source: e.into() })
}

/// An error inside a call: the driver's, or an answer (not found, exists, corrupt) that aborts
/// the transaction.
enum Fail {
    Pg(postgres::Error),
    Meta(MetaError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<Fail> for MetaError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Meta(e) => e,
            // Connection failures, timeouts, and the server refusing (shutting down, too many
            // connections, serialization failures): retrying later may succeed.
            Fail::Pg(e) => MetaError::Unavailable { backend: BACKEND, source: e.into() },
        }
    }
}

/// The URL does not parse as a PostgreSQL connection string.
#[derive(Debug, thiserror::Error)]
#[error("invalid postgres url: {0}")]
struct InvalidUrl(String);

/// The database has a migration this build does not know: written by a newer build.
#[derive(Debug, thiserror::Error)]
#[error("schema migration {found} is newer than this build's latest ({latest})")]
struct UnknownSchema {
    found: i32,
    latest: i32,
}

/// Why a stored row could not be read back.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    /// A node state name this build does not know.
    #[error("unknown node state {0:?}")]
    NodeState(String),
    /// A port outside 0..=65535.
    #[error("port out of range")]
    Port,
    /// The hint's version bytes are not a storage.Version.
    #[error("undecodable version")]
    Prost(#[from] prost::DecodeError),
    /// The version does not convert (negative counter, empty actor).
    #[error("invalid version")]
    Version(#[from] crate::convert::ConvertError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert!(!sql.trim().is_empty());
        }
    }

    #[test]
    fn payloads_parse_and_other_schemas_are_ignored() {
        assert_eq!(parse_change("public:tenants", "public"), Some(Change::Tenants));
        assert_eq!(parse_change("public:nodes", "public"), Some(Change::Nodes));
        assert_eq!(parse_change("public:?", "public"), Some(Change::Everything));
        assert_eq!(parse_change("other:tenants", "public"), None);
        assert_eq!(parse_change("tenants", "public"), None);
    }

    #[test]
    fn a_bad_url_is_refused_without_connecting() {
        let err = PostgresStore::open("=oops").unwrap_err();
        assert!(matches!(err, MetaError::Unavailable { backend: "postgres", .. }), "{err:?}");
    }
}
