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
//! Hints are one row per `(target_node, tenant_id, key)` (migration 2). Every hint write first
//! locks the one row of `hint_total`, the running count of hints: that serializes the hint
//! writes of all coordinators sharing the database, so a coalescing `add_hints` reads the stored
//! hint, picks the newest version in Rust and writes it back without another coordinator
//! slipping a write in between, the `max_hints` cap is exact, and hint writers always take their
//! locks in the same order (count, then rows), so they cannot deadlock. Hint batches are written
//! off the request cores, so waiting for that lock costs no request latency.
//! [`HintStore::drop_older_than`] recounts the table, so rows deleted by hand heal the count.
//!
//! Every write to tenants or nodes also runs `pg_notify('pairdb_meta', '{schema}:{what}')` in its
//! transaction, so coordinators that [`watch`](PostgresStore::watch) the channel hear about it
//! when it commits (and not at all if it rolls back). The channel is database-wide; the schema in
//! the payload lets several clusters (or tests) share one database without reloading on each
//! other's writes. Notifications are best effort (a listener that was
//! disconnected misses them), which is why the watcher also reports a periodic tick: the caller
//! reloads on either, and the tick bounds how stale a coordinator can be.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use postgres::{error::SqlState, Client, NoTls, Transaction};
use prost::Message;

use crate::core::version::Version;
use crate::meta::{BackendError, MetaError, RecordKind, DEFAULT_MAX_HINTS};
#[cfg(doc)]
use crate::meta::{HintStore, MetadataStore};
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
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_metadata.sql", include_str!("../../../migrations/0001_metadata.sql")),
    (2, "0002_hint_coalescing.sql", include_str!("../../../migrations/0002_hint_coalescing.sql")),
    (3, "0003_data_movement.sql", include_str!("../../../migrations/0003_data_movement.sql")),
    (4, "0004_tokens.sql", include_str!("../../../migrations/0004_tokens.sql")),
    (5, "0005_tenant_limits.sql", include_str!("../../../migrations/0005_tenant_limits.sql")),
];

mod hints;
mod listen;
mod metadata;

pub use listen::{Change, Watch};

/// Metadata and hints in PostgreSQL. Cheap to share as `Arc<PostgresStore>`, which serves as both
/// `Arc<dyn MetadataStore>` and `Arc<dyn HintStore>`.
pub struct PostgresStore {
    config: postgres::Config,
    idle: Mutex<Vec<Client>>,
    max_hints: u64,
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
        let store = Self { config, idle: Mutex::new(Vec::new()), max_hints: DEFAULT_MAX_HINTS };
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

    /// Caps the number of stored hints at `max_hints` (default [`DEFAULT_MAX_HINTS`]); see
    /// [`HintStore::add_hints`]. The cap is on the whole table, shared by every coordinator
    /// using the database: give them all the same value.
    pub fn with_max_hints(mut self, max_hints: u64) -> Self {
        self.max_hints = max_hints;
        self
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

fn decode_version(bytes: &[u8]) -> Result<Version, DecodeError> {
    let wire = storage::Version::decode(bytes)?;
    Ok(Version::try_from(&wire)?)
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
    fn a_bad_url_is_refused_without_connecting() {
        let err = PostgresStore::open("=oops").unwrap_err();
        assert!(matches!(err, MetaError::Unavailable { backend: "postgres", .. }), "{err:?}");
    }
}
