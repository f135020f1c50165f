//! The coordinator: serves `pairdb.coordinator.v1.CoordinatorService`, places keys on the ring,
//! fans operations out to storage nodes and answers once the consistency level is met.
//!
//! ```text
//!                 ┌──────────── process (one per coordinator) ─────────────┐
//!                 │ Shared: config, metadata store, hint store,            │
//!                 │         idempotency store, mesh (one inbox per core)   │
//!                 └──────────┬───────────────────────────┬─────────────────┘
//!                            │ Arc                       │ Update broadcasts
//!        ┌───────────────────▼──────┐       ┌────────────▼─────────────┐
//!        │ core 0: Shard            │  ...  │ core N: Shard            │
//!        │  ring (Rc), tenant cache │       │  its own copies          │
//!        │  links to storage nodes  │       │  its own links           │
//!        │  + health checks, hint   │       │                          │
//!        │    replay, sweeps        │       │                          │
//!        └──────────────────────────┘       └──────────────────────────┘
//! ```
//!
//! Each core's [`shard::Shard`] owns its ring copy, tenant cache and storage-node connections (`Rc`/`RefCell`,
//! no locks). Changes (a tenant created, a node added, a node found down) are made once, in the
//! metadata store off the request cores, and then broadcast as [`Update`]s to every core's inbox.
//! Background duties that must happen once per process (health checks, hint replay, sweeps) run
//! on core 0.
//!
//! - [`shard`]: per-core state (ring, tenant cache, links, hint buffer, repair queue).
//! - [`kv`]: the key-value handlers.
//! - [`limits`]: per-tenant rate and size limits, enforced on each core before any fan-out.
//! - [`driver`]: pumps `crate::core`'s request machines with replies and one timer.
//! - [`manage`]: tenant, node and migration handlers.
//! - [`migrate`]: runs a data movement (`core::migration`'s driver) and anti-entropy.
//! - [`placement`]: the placement cores route by during a migration, and the stage barrier.
//! - [`link`]: one core's connection to one storage node, with batching.
//! - [`metrics`]: the coordinator's per-core metrics.
//! - [`report`]: what a core reports when scraped.
//! - [`background`]: health checks, hint flush and replay, read repair, sweeps.
//! - [`auth`]: client bearer tokens: who calls, what they may do, the audit log of admin calls.
//! - [`backends`]: the configured metadata and idempotency stores, and following PostgreSQL.
//! - [`http`]: the HTTP/JSON API (`http_api.port`), on the request cores, calling the same
//!   handlers as gRPC.
//! - [`server`]: the process runner (`pairdb coordinator`, `pairdb dev`).

pub mod auth;
pub mod backends;
pub mod background;
pub mod driver;
pub mod foreground;
pub mod http;
pub mod kv;
pub mod limits;
pub mod link;
pub mod manage;
pub mod metrics;
pub mod migrate;
pub mod placement;
pub mod report;
pub mod server;
pub mod shard;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use crate::{
    config::CoordinatorConfig,
    idempotency::IdempotencyBackend,
    meta::{HintStore, MetadataStore, NodeRecord, TenantRecord},
    rpc::health::HealthState,
};

/// A change every core applies to its own copy of the shared state.
#[derive(Clone, Debug)]
pub enum Update {
    /// A tenant was created or changed.
    Tenant(TenantRecord),
    /// The storage node membership changed: rebuild the ring at this epoch.
    Nodes {
        /// Ring epoch, increasing with every membership change.
        epoch: u64,
        /// The full membership, with addresses resolved by the sender (off the request cores).
        nodes: Vec<ResolvedNode>,
    },
    /// A data movement's placement (or none): route keys by it from now on. `seq` increases
    /// with every publication; see `placement::PlacementState`.
    Placement {
        /// Publication number.
        seq: u64,
        /// The placement; `None` when no migration runs.
        placement: Option<std::sync::Arc<crate::core::migration::placement::Placement>>,
    },
    /// The valid client tokens changed (created or revoked): the whole new set.
    Tokens(Arc<auth::TokenSet>),
    /// The health checker found a node down (`up == false`) or back.
    NodeHealth {
        /// The node.
        node_id: String,
        /// Its new state.
        up: bool,
    },
}

/// A member with its address resolved; `None` when its host does not resolve (the core then has
/// no link to it and its operations fail as unreachable).
#[derive(Clone, Debug)]
pub struct ResolvedNode {
    /// The member.
    pub record: NodeRecord,
    /// Its address.
    pub addr: Option<SocketAddr>,
}

/// Resolves every member's address. Blocking (getaddrinfo): call it on a blocking thread, never
/// on a request core.
pub fn resolve_nodes(nodes: Vec<NodeRecord>) -> Vec<ResolvedNode> {
    nodes
        .into_iter()
        .map(|record| {
            let addr = crate::config::resolve("host", &record.host, record.port).ok();
            ResolvedNode { record, addr }
        })
        .collect()
}

/// Updates a core's inbox holds before the sender gives up on it: the core is then told to
/// reload tenants and membership from the metadata store instead ([`Shared::resync`]). Inboxes
/// drain continuously (a task per core), so this only fills when a core is stuck.
pub const INBOX_CAPACITY: usize = 4_096;

/// What all cores of one coordinator process share. Read-mostly; nothing here is touched on a
/// request path except the idempotency store (a lock-free map) and the mesh senders.
pub struct Shared {
    /// The configuration.
    pub config: CoordinatorConfig,
    /// Tenants, nodes, migrations (blocking: used off the request cores).
    pub meta: Arc<dyn MetadataStore>,
    /// Hinted handoff (blocking: used off the request cores).
    pub hints: Arc<dyn HintStore>,
    /// Idempotency records (never blocks a core; shared by all cores, and with Redis by every
    /// coordinator).
    pub idempotency: Arc<IdempotencyBackend>,
    /// One inbox per core.
    pub mesh: Vec<flume::Sender<Update>>,
    /// Updates sent to each core's inbox so far. A core compares it (one atomic load) with what
    /// it applied at the start of every request, and drains its inbox first when behind: a
    /// change acknowledged by one core is then in force on every core for the next request.
    pub sent: Vec<AtomicU64>,
    /// Per core: an update could not be delivered (inbox full), reload before the next request.
    pub resync: Vec<AtomicBool>,
    /// Updates not delivered because a core's inbox was full.
    pub inbox_full: AtomicU64,
    /// Ring epoch of the latest membership broadcast.
    pub epoch: AtomicU64,
    /// gRPC health, flipped to NOT_SERVING at shutdown.
    pub health: HealthState,
    /// The data-movement placement published to the cores, and the lease that fences this
    /// coordinator when it loses the metadata store.
    pub placement: placement::PlacementState,
    /// Every core's key-value latencies and poll lag, for background work that must not hurt
    /// them (the data-movement pacer).
    pub foreground: foreground::Foreground,
    /// Client authentication: the mode, the bootstrap token's hash, the latest token set.
    pub auth: auth::AuthShared,
}

impl Shared {
    /// Sends `update` to every core, this one included. Never blocks: a full inbox (bounded by
    /// [`INBOX_CAPACITY`]) marks its core for a reload instead, counted in `inbox_full`.
    pub fn broadcast(&self, update: Update) {
        for (i, (inbox, sent)) in self.mesh.iter().zip(&self.sent).enumerate() {
            match inbox.try_send(update.clone()) {
                // After the send: whoever sees the new count finds the update in the inbox.
                Ok(()) => {
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                Err(flume::TrySendError::Full(_)) => {
                    self.inbox_full.fetch_add(1, Ordering::Relaxed);
                    self.resync[i].store(true, Ordering::SeqCst);
                }
                // A closed inbox is a core that already stopped: nothing left to update.
                Err(flume::TrySendError::Disconnected(_)) => {}
            }
        }
    }
}
