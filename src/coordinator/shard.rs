//! One coordinator shard (one per core): its copies of the ring and tenant configs, its links to
//! storage nodes, its hint buffer and read-repair queue, and the small drivers that pump the
//! sans-IO machines of [`crate::core`] with real sockets, timers and clocks.
//!
//! A key-value request never leaves its core and takes no lock: the tenant comes from the
//! shard's cache, the preference list from the shard's ring, the operations go out on the
//! shard's links, and every decision (version stamp, quorum, repairs owed, hint policy) is made
//! by a machine from `core`. The handlers live in [`super::kv`] (key-value) and
//! [`super::manage`] (tenants, nodes, migrations); this file holds the state they share.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ahash::AHashMap;
use futures_util::{stream::FuturesUnordered, StreamExt};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::{
    coordinator::{
        link::{HintSink, LinkConfig, LinkStats, NodeLink, OpReply},
        metrics::CoreMetrics,
        ResolvedNode, Shared, Update,
    },
    core::{
        hints::{owes_hint, Admitted, HintBuffer},
        ids::NodeId,
        migration::{
            placement::Placement,
            sets::{KeySets, Side, WriteRule},
        },
        quorum::Level,
        repair::{RepairPolicy, RepairQueue},
        ring::{key_token, Member, Ring, MAX_PREFERENCE_LIST},
        version::Version,
        write::Stamper,
    },
    error::PairError,
    meta::{Hint, MetaError, NodeRecord, NodeState, RecordKind, TenantRecord},
    proto::storage::{self as pb, batch_operation::Op},
    rpc::{Code, Router, Status},
};

/// Hints buffered per core before new keys are dropped (read repair still covers them); one
/// entry per (node, tenant, key), so a hot key costs one.
const MAX_BUFFERED_HINTS: usize = 100_000;
/// How long an unknown tenant id is remembered as unknown, so that a client hammering a missing
/// tenant costs one metadata lookup per second per core, not one per request.
const NEGATIVE_TENANT_TTL: Duration = Duration::from_secs(1);
/// Unknown tenant ids remembered per core; the table is cleared when full.
const MAX_UNKNOWN_TENANTS: usize = 10_000;
/// Reads per core still collecting replies after their answer (for read repair). Past it, a
/// read's late replies are not awaited and its repairs are skipped (counted): the next read of
/// the key repairs instead.
pub const MAX_UNSETTLED_READS: usize = 4_096;
/// First retry delay of a read repair; retry `n` waits `n` times this.
const REPAIR_BACKOFF: Duration = Duration::from_millis(100);

/// Counters of one core, read into metrics.
#[derive(Default)]
pub struct CoreStats {
    /// Reads whose late replies were not awaited because [`MAX_UNSETTLED_READS`] were.
    pub repairs_skipped: Cell<u64>,
    /// Hints the hint store accepted (stored or merged into a stored hint of the same key).
    pub hints_stored: Cell<u64>,
    /// Hints dropped: the hint store was full (`hint_max_stored`) or failed.
    pub hints_dropped: Cell<u64>,
    /// Hints the hint store merged into a stored hint of the same node and key.
    pub hints_coalesced_in_store: Cell<u64>,
    /// Writes that went on without idempotency (store full, or Redis unreachable).
    pub idempotency_skipped: Cell<u64>,
    /// Requests answered UNAVAILABLE for want of replicas.
    pub quorum_failures: Cell<u64>,
}

/// A read repair waiting to be sent.
pub struct RepairJob {
    pub(crate) node: NodeId,
    pub(crate) tenant_id: String,
    pub(crate) key: String,
    pub(crate) version: pb::Version,
}

/// The key a buffered hint is coalesced under.
type HintKey = (NodeId, String, String);

/// One core's state. Built on the core, never shared with another.
pub struct Shard {
    /// This core's index.
    pub index: usize,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    ring: RefCell<Rc<Ring>>,
    /// Node id -> its record, from the latest membership.
    nodes: RefCell<AHashMap<String, NodeRecord>>,
    links: RefCell<AHashMap<NodeId, Rc<NodeLink>>>,
    /// Nodes the health checker reported down; only members are kept.
    down: RefCell<AHashMap<String, bool>>,
    tenants: RefCell<AHashMap<String, Rc<TenantRecord>>>,
    /// The valid client tokens (see `coordinator::auth`).
    tokens: RefCell<Arc<crate::coordinator::auth::TokenSet>>,
    unknown_tenants: RefCell<AHashMap<String, Instant>>,
    pub(crate) link_config: Rc<LinkConfig>,
    /// Fan-out counters of this core's links.
    pub link_stats: Rc<LinkStats>,
    /// Other counters of this core.
    pub stats: CoreStats,
    /// Fan-out latencies, cache and idempotency hit rates (see `coordinator::metrics`).
    pub metrics: Rc<CoreMetrics>,
    pub(crate) stamper: RefCell<Stamper>,
    /// This core's inbox (the background inbox task holds a clone) and how many updates from it
    /// were applied; see [`Shard::catch_up`].
    inbox: flume::Receiver<Update>,
    applied: Cell<u64>,
    rng: RefCell<SmallRng>,
    hints: Rc<RefCell<HintBuffer<HintKey, Version>>>,
    pub(crate) repairs: RefCell<RepairQueue<RepairJob>>,
    repair_worker_running: Cell<bool>,
    pub(crate) unsettled_reads: Cell<usize>,
    /// The running data movement's placement, `None` when keys follow `ring`.
    placement: RefCell<Option<Arc<Placement>>>,
    /// This core's token buckets, per tenant (see `coordinator::limits`).
    pub(crate) buckets: RefCell<AHashMap<String, crate::core::limits::TenantBuckets>>,
}

impl Shard {
    /// Builds core `index` from the membership and tenants loaded at start.
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        inbox: flume::Receiver<Update>,
        nodes: Vec<ResolvedNode>,
        tenants: Vec<TenantRecord>,
    ) -> Rc<Shard> {
        let cfg = &shared.config;
        let link_config = Rc::new(LinkConfig {
            connections: cfg.connections_per_node,
            batching: cfg.batching,
            local_calls: cfg.local_storage_calls,
            max_batch_ops: cfg.max_batch_ops,
            max_inflight_batches: cfg.max_inflight_batches,
            replica_timeout: Duration::from_millis(cfg.replica_timeout_ms),
            max_queued_ops: cfg.max_batch_ops * cfg.max_inflight_batches * 64,
            client: crate::rpc::ClientConfig {
                max_message_bytes: cfg.max_message_bytes,
                http2: cfg.rpc.http2,
                // The cluster secret, sent on every call so that storage nodes trust us.
                authorization: cfg.rpc.storage_authorization(),
                // TLS (mutual with a client certificate) when rpc.tls.storage_ca_file is set.
                tls: crate::rpc::tls::ClientTls::for_storage(&cfg.rpc.tls),
                ..Default::default()
            },
        });
        // The seed only has to differ between cores and restarts (generated idempotency keys
        // and migration ids); the simulation seeds the machines itself.
        let seed = (index as u64) ^ unix_now_us() as u64;
        let repairs = RepairQueue::new(RepairPolicy {
            capacity: cfg.read_repair_queue,
            max_attempts: cfg.read_repair_attempts.max(1),
            backoff: REPAIR_BACKOFF,
        });
        let shard = Rc::new(Shard {
            index,
            ring: RefCell::new(Rc::new(Ring::new(0, Vec::new()).expect("an empty ring is valid"))),
            nodes: RefCell::new(AHashMap::new()),
            links: RefCell::new(AHashMap::new()),
            down: RefCell::new(AHashMap::new()),
            tenants: RefCell::new(
                tenants.into_iter().map(|t| (t.tenant_id.clone(), Rc::new(t))).collect(),
            ),
            unknown_tenants: RefCell::new(AHashMap::new()),
            tokens: RefCell::new(shared.auth.snapshot()),
            link_config,
            link_stats: Rc::new(LinkStats::default()),
            stats: CoreStats::default(),
            metrics: Rc::new(CoreMetrics::default()),
            stamper: RefCell::new(Stamper::new(format!("{}/{index}", cfg.node_id))),
            inbox,
            applied: Cell::new(0),
            rng: RefCell::new(SmallRng::seed_from_u64(seed)),
            hints: Rc::new(RefCell::new(HintBuffer::new(MAX_BUFFERED_HINTS))),
            repairs: RefCell::new(repairs),
            repair_worker_running: Cell::new(false),
            unsettled_reads: Cell::new(0),
            placement: RefCell::new(None),
            buckets: RefCell::new(AHashMap::new()),
            shared,
        });
        let (seq, placement) = shard.shared.placement.current();
        shard.apply(Update::Placement { seq, placement });
        let epoch = shard.shared.epoch.load(Ordering::SeqCst);
        shard.apply(Update::Nodes { epoch, nodes });
        shard
    }

    /// Applies one update taken from this core's inbox.
    pub fn receive(&self, update: Update) {
        self.applied.set(self.applied.get() + 1);
        self.apply(update);
    }

    /// Applies every update already sent to this core that it has not applied yet. One atomic
    /// load when up to date, which is nearly always; called at the start of every request so that
    /// a change another core acknowledged is in force here too. True when an update could not be
    /// delivered (the inbox was full) and the core must [`resync`](Shard::resync) first.
    pub fn catch_up(&self) -> bool {
        if self.shared.sent[self.index].load(Ordering::SeqCst) != self.applied.get() {
            while let Ok(update) = self.inbox.try_recv() {
                self.receive(update);
            }
        }
        self.shared.resync[self.index].load(Ordering::SeqCst)
    }

    /// Reloads tenants and membership from the metadata store, after this core's bounded inbox
    /// overflowed and an update was lost (counted in `pairdb_coordinator_inbox_full_total`).
    pub async fn resync(&self) {
        self.shared.resync[self.index].store(false, Ordering::SeqCst);
        let meta = self.shared.meta.clone();
        let loaded = blocking(move || {
            let tokens = meta.tokens()?;
            let tenants = meta.tenants()?;
            let nodes = crate::coordinator::resolve_nodes(meta.nodes()?);
            Ok::<_, MetaError>((tokens, tenants, nodes))
        })
        .await;
        match loaded {
            Ok((tokens, tenants, nodes)) => {
                // A revocation may be among the lost updates: the stored set wins.
                let tokens = crate::coordinator::auth::TokenSet::from_records(&tokens);
                self.apply(Update::Tokens(Arc::new(tokens)));
                for t in tenants {
                    self.apply(Update::Tenant(t));
                }
                let epoch = self.shared.epoch.load(Ordering::SeqCst);
                self.apply(Update::Nodes { epoch, nodes });
            }
            Err(e) => {
                // Try again on the next request.
                self.shared.resync[self.index].store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, core = self.index, "cannot resync after a full inbox");
            }
        }
    }

    /// Applies a change to this core's copies.
    fn apply(&self, update: Update) {
        match update {
            Update::Tokens(set) => *self.tokens.borrow_mut() = set,
            Update::Tenant(t) => {
                self.unknown_tenants.borrow_mut().remove(&t.tenant_id);
                self.tenants.borrow_mut().insert(t.tenant_id.clone(), Rc::new(t));
            }
            Update::Placement { seq, placement } => {
                *self.placement.borrow_mut() = placement;
                self.shared.placement.mark_applied(self.index, seq);
            }
            Update::NodeHealth { node_id, up } => {
                if !self.nodes.borrow().contains_key(&node_id) {
                    return; // a node that left: nothing to remember
                }
                if let Some(link) = self.links.borrow().get(&NodeId::new(node_id.clone())) {
                    link.set_down(!up);
                }
                self.down.borrow_mut().insert(node_id, !up);
            }
            Update::Nodes { epoch, nodes } => {
                if epoch < self.ring.borrow().epoch() {
                    return;
                }
                let members: Vec<Member> = nodes
                    .iter()
                    .map(|n| Member {
                        id: NodeId::new(n.record.node_id.clone()),
                        virtual_nodes: n.record.virtual_nodes,
                        // A joining node is linked to but owns nothing until its migration
                        // completes; a draining one keeps its ranges until then.
                        active: n.record.state != NodeState::Joining,
                    })
                    .collect();
                match Ring::new(epoch, members) {
                    Ok(ring) => *self.ring.borrow_mut() = Rc::new(ring),
                    Err(e) => {
                        tracing::error!(error = %e, epoch, "membership does not form a ring; keeping the old one");
                        return;
                    }
                }
                let mut links = self.links.borrow_mut();
                let mut fresh = AHashMap::with_capacity(nodes.len());
                let mut down = self.down.borrow_mut();
                down.retain(|id, _| nodes.iter().any(|n| &n.record.node_id == id));
                for n in &nodes {
                    let id = NodeId::new(n.record.node_id.clone());
                    // Resolved by whoever broadcast the membership, off the request cores.
                    let Some(addr) = n.addr else {
                        tracing::warn!(node = %n.record.node_id, host = %n.record.host, "cannot resolve storage node address");
                        continue;
                    };
                    let link = match links.remove(&id) {
                        Some(link) if link.addr() == addr => link,
                        _ => self.new_link(id.clone(), addr),
                    };
                    link.set_down(down.get(&n.record.node_id).copied().unwrap_or(false));
                    fresh.insert(id, link);
                }
                *links = fresh;
                // Fan-out metrics of nodes that left are forgotten with them.
                self.link_stats.fanout.borrow_mut().retain(|id, _| links.contains_key(id));
                *self.nodes.borrow_mut() =
                    nodes.into_iter().map(|n| (n.record.node_id.clone(), n.record)).collect();
            }
        }
    }

    fn new_link(&self, id: NodeId, addr: SocketAddr) -> Rc<NodeLink> {
        let buffer = self.hints.clone();
        let metrics = self.metrics.clone();
        let on_missed: HintSink = Rc::new(move |node: &NodeId, op: &Op, status: &Status| {
            let (tenant_id, key, version) = match op {
                Op::Write(w) => (&w.tenant_id, &w.key, &w.version),
                Op::Delete(d) => (&d.tenant_id, &d.key, &d.version),
                Op::Repair(r) => (&r.tenant_id, &r.key, &r.version),
                Op::Read(_) => return,
            };
            if !owes_hint(false, status.code == Code::INVALID_ARGUMENT) {
                return;
            }
            let Some(version) = version.as_ref().and_then(|v| Version::try_from(v).ok()) else {
                return;
            };
            let key = (node.clone(), tenant_id.clone(), key.clone());
            if buffer.borrow_mut().handle_missed(key, version) == Admitted::Dropped {
                metrics.hints_buffer_full.set(metrics.hints_buffer_full.get() + 1);
            }
        });
        NodeLink::new(id, addr, self.link_config.clone(), on_missed, self.link_stats.clone())
    }

    /// The core's current ring.
    pub fn ring(&self) -> Rc<Ring> {
        self.ring.borrow().clone()
    }

    /// The link to `node`, if it is a member.
    pub fn link(&self, node: &NodeId) -> Option<Rc<NodeLink>> {
        self.links.borrow().get(node).cloned()
    }

    /// Every link of this core.
    pub fn links(&self) -> Vec<Rc<NodeLink>> {
        self.links.borrow().values().cloned().collect()
    }

    /// The record of member `node_id`.
    pub fn node(&self, node_id: &str) -> Option<NodeRecord> {
        self.nodes.borrow().get(node_id).cloned()
    }

    /// Every member's record, ordered by id.
    pub fn node_records(&self) -> Vec<NodeRecord> {
        let mut records: Vec<NodeRecord> = self.nodes.borrow().values().cloned().collect();
        records.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        records
    }

    /// True when the health checker reported `node_id` down.
    pub fn is_down(&self, node_id: &str) -> bool {
        self.down.borrow().get(node_id).copied().unwrap_or(false)
    }

    /// Takes the hints buffered since the last call.
    pub fn take_hints(&self) -> Vec<Hint> {
        let created_at_us = unix_now_us();
        self.hints
            .borrow_mut()
            .take()
            .into_iter()
            .map(|((node, tenant_id, key), version)| Hint {
                target_node: node.as_str().to_owned(),
                tenant_id,
                key,
                version,
                created_at_us,
            })
            .collect()
    }

    /// Hints waiting in this core's buffer.
    pub fn buffered_hints(&self) -> usize {
        self.hints.borrow().len()
    }

    /// The hint buffer's counters.
    pub fn hint_buffer_stats(&self) -> crate::core::hints::HintBufferStats {
        self.hints.borrow().stats()
    }

    /// Registers every CoordinatorService method on `router`, bound to this core.
    pub fn register(self: &Rc<Self>, router: Router) -> Router {
        macro_rules! route {
            ($router:expr, $name:literal, $method:ident) => {{
                let shard = self.clone();
                $router.unary(
                    concat!("/pairdb.coordinator.v1.CoordinatorService/", $name),
                    move |req, ctx| {
                        let resync = shard.catch_up();
                        let shard = shard.clone();
                        async move {
                            if resync {
                                shard.resync().await;
                            }
                            shard
                                .clone()
                                .guarded($name, req, ctx, Shard::$method)
                                .await
                                .map_err(Status::from)
                        }
                    },
                )
            }};
        }
        let router = route!(router, "WriteKeyValue", write_key_value);
        let router = route!(router, "ReadKeyValue", read_key_value);
        let router = route!(router, "DeleteKeyValue", delete_key_value);
        let router = route!(router, "CreateTenant", create_tenant);
        let router = route!(router, "UpdateReplicationFactor", update_replication_factor);
        let router = route!(router, "GetTenant", get_tenant);
        let router = route!(router, "AddStorageNode", add_storage_node);
        let router = route!(router, "RemoveStorageNode", remove_storage_node);
        let router = route!(router, "GetMigrationStatus", get_migration_status);
        let router = route!(router, "CancelMigration", cancel_migration);
        let router = route!(router, "ListMigrations", list_migrations);
        let router = route!(router, "CreateToken", create_token);
        let router = route!(router, "ListTokens", list_tokens);
        let router = route!(router, "RevokeToken", revoke_token);
        let router = route!(router, "UpdateTenantLimits", update_tenant_limits);
        route!(router, "ListStorageNodes", list_storage_nodes)
    }

    /// This core's valid client tokens.
    pub(crate) fn tokens(&self) -> Arc<crate::coordinator::auth::TokenSet> {
        self.tokens.borrow().clone()
    }

    /// The preference list of `(tenant_id, key)` for replication factor `rf`.
    pub fn replicas(&self, tenant_id: &str, key: &str, rf: usize) -> Vec<NodeId> {
        let ring = self.ring.borrow();
        ring.preference_list(key_token(tenant_id, key), rf.min(MAX_PREFERENCE_LIST)).to_vec()
    }

    /// The running data movement's placement, if any.
    pub fn placement(&self) -> Option<Arc<Placement>> {
        self.placement.borrow().clone()
    }

    /// Where a request at `level` for the key goes: its preference list, or during a data
    /// movement the sets of the current stage (`core::migration::sets`). The second value is
    /// the replication factor the read set stands for.
    pub fn key_sets(&self, tenant_id: &str, key: &str, rf: usize, level: Level) -> KeySets {
        if let Some(p) = self.placement.borrow().as_ref() {
            return p.key_sets(tenant_id, key, rf, level);
        }
        let replicas = self.replicas(tenant_id, key, rf);
        let required = level.required(rf).max(1);
        KeySets {
            read_side: Side::Old,
            read: replicas.clone(),
            read_required: required,
            write: WriteRule::Single { replicas, required },
        }
    }

    /// Refuses key-value traffic while this coordinator may route by a stage the cluster left
    /// (it lost the metadata store for longer than its lease).
    /// Only while a migration runs: with none, a coordinator cut off from the metadata store
    /// keeps serving its cached tenants and ring (a migration cannot get past its first barrier
    /// without it, see `coordinator::migrate::run`).
    pub fn check_fresh(&self) -> Result<(), PairError> {
        if self.placement.borrow().is_none() || self.shared.placement.is_fresh(unix_now_us() / 1000)
        {
            return Ok(());
        }
        Err(PairError::PlacementStale(
            "this coordinator lost contact with the metadata store and may not know the current \
             data-movement stage; retry on another coordinator or in a moment"
                .into(),
        ))
    }

    /// Sends `op` to `node` through its link; the reply names the node.
    pub fn send(
        &self,
        node: NodeId,
        op: Op,
    ) -> impl std::future::Future<Output = (NodeId, OpReply)> + 'static {
        let link = self.link(&node);
        async move {
            let reply = match link {
                Some(link) => link.submit(op).await.unwrap_or_else(|_| {
                    Err(Status::internal("storage operation dropped without a reply"))
                }),
                None => Err(Status::unavailable(format!("storage node {node} left the ring"))),
            };
            (node, reply)
        }
    }

    /// Counts a quorum failure and passes it on.
    pub fn quorum_failed(&self, e: PairError) -> PairError {
        if matches!(e, PairError::QuorumNotReached { .. }) {
            self.stats.quorum_failures.set(self.stats.quorum_failures.get() + 1);
        }
        e
    }

    /// The tenant's config from this core's cache, or from the metadata store on a miss.
    pub async fn tenant(&self, tenant_id: &str) -> Result<Rc<TenantRecord>, PairError> {
        if let Some(t) = self.tenants.borrow().get(tenant_id) {
            self.metrics.tenant_cache_hits.set(self.metrics.tenant_cache_hits.get() + 1);
            return Ok(t.clone());
        }
        self.metrics.tenant_cache_misses.set(self.metrics.tenant_cache_misses.get() + 1);
        let not_found = || PairError::TenantNotFound { tenant_id: tenant_id.to_owned() };
        if let Some(at) = self.unknown_tenants.borrow().get(tenant_id) {
            // A tenant created through another core reaches this one as a broadcast in its
            // inbox, which the creator sent before answering. While the inbox holds anything,
            // this negative entry may be stale: ask the store, or a client that created a tenant
            // would be told it does not exist on its next call.
            let inbox_pending = self.shared.mesh.get(self.index).is_some_and(|i| !i.is_empty());
            if at.elapsed() < NEGATIVE_TENANT_TTL && !inbox_pending {
                return Err(not_found());
            }
        }
        let meta = self.shared.meta.clone();
        let id = tenant_id.to_owned();
        match blocking(move || meta.tenant(&id)).await {
            Ok(Some(t)) => {
                let t = Rc::new(t);
                self.tenants.borrow_mut().insert(tenant_id.to_owned(), t.clone());
                Ok(t)
            }
            Ok(None) => {
                let mut unknown = self.unknown_tenants.borrow_mut();
                if unknown.len() >= MAX_UNKNOWN_TENANTS {
                    unknown.clear();
                }
                unknown.insert(tenant_id.to_owned(), Instant::now());
                Err(not_found())
            }
            Err(e) => Err(meta_error(e)),
        }
    }

    /// A fresh random id such as `mig-0123456789abcdef`.
    pub fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}-{:016x}", self.rng.borrow_mut().random::<u64>())
    }

    /// A fresh generated idempotency key (128 random bits, hex).
    pub fn generated_idempotency_key(&self) -> String {
        format!("{:032x}", self.rng.borrow_mut().random::<u128>())
    }

    /// Queues read repairs; a full queue drops them (counted by the queue).
    pub fn enqueue_repair(self: &Rc<Self>, job: RepairJob) {
        if !self.repairs.borrow_mut().handle_enqueue(job) {
            return;
        }
        if !self.repair_worker_running.get() {
            self.repair_worker_running.set(true);
            let shard = self.clone();
            glommio::spawn_local(async move { shard.repair_worker().await }).detach();
        }
    }

    /// Pumps the repair queue: sends what is due (batched through the links like any write),
    /// feeds results back, sleeps until the next retry is due, and stops when the queue is empty.
    async fn repair_worker(self: Rc<Self>) {
        let mut sent = FuturesUnordered::new();
        loop {
            let now = Instant::now();
            loop {
                let next = {
                    let mut queue = self.repairs.borrow_mut();
                    queue.poll_send(now).map(|(id, job)| {
                        let op = Op::Repair(pb::RepairRequest {
                            tenant_id: job.tenant_id.clone(),
                            key: job.key.clone(),
                            version: Some(job.version.clone()),
                        });
                        (id, job.node.clone(), op)
                    })
                };
                let Some((id, node, op)) = next else { break };
                let reply = self.send(node, op);
                sent.push(async move { (id, reply.await.1.is_ok()) });
            }
            if let Some((id, ok)) = sent.next().await {
                self.repairs.borrow_mut().handle_result(id, ok, Instant::now());
                continue;
            }
            let due = self.repairs.borrow().poll_timeout();
            match due {
                Some(at) => {
                    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
                }
                None if self.repairs.borrow().is_empty() => break,
                // Jobs ready but none sent: cannot happen (poll_send drained them); stop
                // rather than spin, the next enqueue restarts the worker.
                None => break,
            }
        }
        self.repair_worker_running.set(false);
    }
}

/// Metadata errors as the client sees them.
pub fn meta_error(e: MetaError) -> PairError {
    match &e {
        MetaError::NotFound { kind: RecordKind::Tenant, id } => {
            PairError::TenantNotFound { tenant_id: id.clone() }
        }
        MetaError::NotFound { kind: RecordKind::Node, id } => {
            PairError::NodeNotFound { node_id: id.clone() }
        }
        MetaError::NotFound { kind: RecordKind::Migration, id } => {
            PairError::MigrationNotFound { migration_id: id.clone() }
        }
        // Hints and the store as a whole are never what a client names: our bug.
        MetaError::NotFound { .. } => PairError::Internal(e.to_string()),
        MetaError::AlreadyExists { kind: RecordKind::Tenant, .. } => {
            PairError::TenantExists(e.to_string())
        }
        MetaError::AlreadyExists { kind: RecordKind::Node, .. } => {
            PairError::NodeExists(e.to_string())
        }
        MetaError::AlreadyExists { .. } => PairError::Internal(e.to_string()),
        MetaError::Invalid { .. } => PairError::invalid(e.to_string()),
        MetaError::Unavailable { .. } => PairError::MetadataUnavailable(e.to_string()),
        MetaError::Corrupt { .. } => PairError::MetadataCorrupt(e.to_string()),
    }
}

/// Runs a blocking closure on the executor's blocking pool, off the request core.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(f).await
}

/// Wall-clock time, unix microseconds.
pub fn unix_now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Wall-clock time, unix seconds.
pub fn unix_now_secs() -> i64 {
    unix_now_us() / 1_000_000
}
