//! Choosing and starting the coordinator's backing stores from its configuration.
//!
//! `metadata.backend` picks the [`MetadataStore`] + [`HintStore`]: the embedded redb file (one
//! coordinator) or PostgreSQL (several coordinators sharing tenants, nodes and hints).
//! `idempotency.backend` picks where idempotency records live. Nothing here is on a request path:
//! [`open`] runs once before the executors start, and [`Stores::watch`] starts one plain thread.
//!
//! With PostgreSQL, other coordinators change the shared metadata too. Each coordinator keeps a
//! listener thread ([`PostgresStore::watch`]): on a notification, or every
//! `metadata.reload_interval_secs` as a backstop, it reloads tenants and nodes and broadcasts
//! what differs from what it last saw to every core, exactly as a local admin call does. The
//! reload runs on that thread, so a slow or absent database delays only the reload, never a
//! request: cores keep serving from their caches.
//!
//! Hints are shared too: every coordinator's core 0 replays the hints of every node that is up,
//! whoever stored them. Two coordinators may replay the same hint at once; that is harmless, since
//! a replay is a storage `Repair` (a version merge, idempotent) and removing an id that the other
//! already removed is ignored.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Weak},
    time::Duration,
};

use crate::{
    config::{CoordinatorConfig, IdempotencyBackendKind, MetadataBackend},
    coordinator::{Shared, Update},
    idempotency::{
        redis::{RedisConfig, RedisIdempotencyStore},
        EmbeddedIdempotencyStore, IdempotencyBackend, IdempotencyConfig,
    },
    meta::{
        embedded::EmbeddedStore,
        postgres::{Change, PostgresStore},
        HintStore, MetaError, MetadataStore, NodeRecord, TenantRecord,
    },
};

/// The stores a coordinator runs on, as chosen by its configuration.
pub struct Stores {
    /// Tenants, nodes, migrations.
    pub meta: Arc<dyn MetadataStore>,
    /// Hinted handoff.
    pub hints: Arc<dyn HintStore>,
    /// Idempotency records.
    pub idempotency: Arc<IdempotencyBackend>,
    /// The PostgreSQL store when it is the metadata backend, for [`Stores::watch`].
    postgres: Option<Arc<PostgresStore>>,
}

/// Opens the configured stores. Blocking: PostgreSQL is connected to (waiting for it up to
/// `metadata.startup_wait_secs`) and migrated here.
pub fn open(config: &CoordinatorConfig) -> Result<Stores, MetaError> {
    let embedded = IdempotencyConfig {
        ttl: Duration::from_secs(config.idempotency_ttl_secs),
        max_records: config.idempotency_max_records,
        ..IdempotencyConfig::default()
    };
    let idempotency = Arc::new(match config.idempotency.backend {
        IdempotencyBackendKind::Embedded => {
            IdempotencyBackend::Embedded(EmbeddedIdempotencyStore::new(embedded))
        }
        IdempotencyBackendKind::Redis => {
            let store = RedisIdempotencyStore::start(RedisConfig {
                url: config.idempotency.redis_url.clone(),
                ttl: embedded.ttl,
                pending_timeout: embedded.pending_timeout,
                timeout: Duration::from_millis(config.idempotency.redis_timeout_ms),
            })
            .map_err(|e| MetaError::Unavailable { backend: "redis", source: Box::new(e) })?;
            tracing::info!("idempotency records in Redis");
            IdempotencyBackend::Redis(store)
        }
    });
    match config.metadata.backend {
        MetadataBackend::Embedded => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| MetaError::Unavailable { backend: "redb", source: Box::new(e) })?;
            let store = Arc::new(
                EmbeddedStore::open(&config.data_dir)?.with_max_hints(config.hint_max_stored),
            );
            Ok(Stores { meta: store.clone(), hints: store, idempotency, postgres: None })
        }
        MetadataBackend::Postgres => {
            let store = Arc::new(
                PostgresStore::open_waiting(
                    &config.metadata.postgres_url,
                    Duration::from_secs(config.metadata.startup_wait_secs),
                )?
                .with_max_hints(config.hint_max_stored),
            );
            tracing::info!("metadata in PostgreSQL");
            Ok(Stores {
                meta: store.clone(),
                hints: store.clone(),
                idempotency,
                postgres: Some(store),
            })
        }
    }
}

impl Stores {
    /// With PostgreSQL: starts the listener thread that keeps `shared`'s cores in step with
    /// changes made through other coordinators. `tenants` and `nodes` are what the cores were
    /// built with. The thread ends once `shared` is dropped. Without PostgreSQL: nothing to do.
    pub fn watch(
        &self,
        shared: &Arc<Shared>,
        tenants: &[TenantRecord],
        nodes: &[NodeRecord],
    ) -> std::io::Result<()> {
        let Some(store) = self.postgres.clone() else { return Ok(()) };
        let every = Duration::from_secs(shared.config.metadata.reload_interval_secs);
        let mut follower = Follower {
            shared: Arc::downgrade(shared),
            store: store.clone(),
            tenants: tenants.iter().map(|t| (t.tenant_id.clone(), t.clone())).collect(),
            nodes: nodes.to_vec(),
        };
        store.watch(every, move |change| follower.reload(change))?.detach();
        Ok(())
    }
}

/// The listener thread's view of the shared metadata: what it last broadcast.
struct Follower {
    shared: Weak<Shared>,
    store: Arc<PostgresStore>,
    tenants: HashMap<String, TenantRecord>,
    nodes: Vec<NodeRecord>,
}

impl Follower {
    /// Reloads what `change` names and broadcasts the differences; false once the coordinator is
    /// gone, which ends the thread.
    fn reload(&mut self, change: Change) -> bool {
        let Some(shared) = self.shared.upgrade() else { return false };
        if matches!(change, Change::Tenants | Change::Everything) {
            match self.store.tenants() {
                Ok(tenants) => {
                    for t in tenants {
                        if self.tenants.get(&t.tenant_id) != Some(&t) {
                            tracing::debug!(tenant = %t.tenant_id, "tenant changed elsewhere");
                            self.tenants.insert(t.tenant_id.clone(), t.clone());
                            shared.broadcast(Update::Tenant(t));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot reload tenants; keeping cached ones"),
            }
        }
        if matches!(change, Change::Tokens | Change::Everything) {
            // A revoked token must stop working everywhere within a second or two.
            if let Err(e) = shared.auth.reload(self.store.as_ref(), &shared) {
                tracing::warn!(error = %e, "cannot reload tokens; keeping the cached ones");
            }
        }
        if matches!(change, Change::Nodes | Change::Everything) {
            match self.store.nodes() {
                Ok(nodes) if nodes != self.nodes => {
                    // A newer epoch than any broadcast so far, so every core applies it. A core's
                    // own membership change racing with this reload may be overtaken by an older
                    // list; its notification triggers another reload, which sets it right.
                    let epoch = shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::info!(epoch, nodes = nodes.len(), "storage nodes changed elsewhere");
                    self.nodes = nodes.clone();
                    // Resolved here, on the listener thread, never on a request core.
                    let nodes = crate::coordinator::resolve_nodes(nodes);
                    shared.broadcast(Update::Nodes { epoch, nodes });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot reload nodes; keeping the ring"),
            }
        }
        true
    }
}
