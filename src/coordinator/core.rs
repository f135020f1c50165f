//! One coordinator core: its copies of the ring and tenant configs, its links to storage nodes,
//! and the `CoordinatorService` handlers that run on it.
//!
//! A key-value request never leaves its core and takes no lock: the tenant comes from the core's
//! cache, the preference list from the core's ring, the operations go out on the core's links,
//! and the quorum decision is the sans-IO state machine of `core::quorum`, driven here with one
//! timer per request.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::{poll_fn, Future},
    net::SocketAddr,
    pin::pin,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    task::Poll,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ahash::AHashMap;
use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, StreamExt};
use prost::Message;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::{
    config::OnUnavailable,
    coordinator::{
        link::{HintSink, LinkConfig, LinkStats, NodeLink, OpReply},
        metrics::{key_hash, CoreMetrics, ReplicaTimings},
        Shared, Update,
    },
    core::{
        idempotency::{fingerprint, Operation},
        ids::NodeId,
        quorum::{Level, QuorumError, QuorumRead, QuorumWrite},
        ring::{key_token, Member, Ring, DEFAULT_VIRTUAL_NODES, MAX_PREFERENCE_LIST},
        vclock::VClock,
        version::Version,
    },
    idempotency::{Claim, IdempotencyKey},
    meta::{Hint, MetaError, MigrationRecord, NodeRecord, NodeState, TenantRecord},
    proto::{
        coordinator as api,
        storage::{self as pb, batch_operation::Op, batch_result::Result as BatchOutcome},
    },
    rpc::{CallContext, Router, Status},
};

const SERVICE: &str = "/pairdb.coordinator.v1.CoordinatorService/";
/// Longest tenant id: ids appear in every storage key, so they stay short.
pub const MAX_TENANT_ID_BYTES: usize = 128;
/// Hints buffered per core before new ones are dropped (read repair still covers them).
const MAX_BUFFERED_HINTS: usize = 100_000;
/// How long an unknown tenant id is remembered as unknown, so that a client hammering a missing
/// tenant costs one metadata lookup per second per core, not one per request.
const NEGATIVE_TENANT_TTL: Duration = Duration::from_secs(1);
/// How long a request waits for an identical in-flight request (same idempotency key) to finish.
const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(5);

/// Counters of one core, read by tests and (later) metrics.
#[derive(Default)]
pub struct CoreStats {
    /// Read repairs queued.
    pub repairs_queued: Cell<u64>,
    /// Read repairs acknowledged.
    pub repairs_done: Cell<u64>,
    /// Read repairs dropped (queue full or attempts exhausted).
    pub repairs_dropped: Cell<u64>,
    /// Hints buffered for the hint store.
    pub hints_buffered: Cell<u64>,
    /// Hints dropped because the buffer was full.
    pub hints_dropped: Cell<u64>,
    /// Writes that went on without idempotency (store full, or Redis unreachable).
    pub idempotency_skipped: Cell<u64>,
    /// Requests answered UNAVAILABLE for want of replicas.
    pub quorum_failures: Cell<u64>,
}

/// A read repair waiting to be sent.
struct RepairJob {
    node: NodeId,
    tenant_id: String,
    key: String,
    version: pb::Version,
    attempt: u32,
}

/// One core's state. Built on the core, never shared with another.
pub struct Core {
    /// This core's index.
    pub index: usize,
    /// The vector-clock actor of this core: `{node_id}/{index}`.
    pub actor: String,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    ring: RefCell<Rc<Ring>>,
    /// Node id -> its address and state, from the latest membership.
    nodes: RefCell<AHashMap<String, NodeRecord>>,
    links: RefCell<AHashMap<NodeId, Rc<NodeLink>>>,
    down: RefCell<AHashMap<String, bool>>,
    tenants: RefCell<AHashMap<String, Rc<TenantRecord>>>,
    unknown_tenants: RefCell<AHashMap<String, Instant>>,
    link_config: Rc<LinkConfig>,
    /// Fan-out counters of this core's links.
    pub link_stats: Rc<LinkStats>,
    /// Other counters of this core.
    pub stats: CoreStats,
    /// Fan-out latencies, cache and idempotency hit rates (see `coordinator::metrics`).
    pub metrics: Rc<CoreMetrics>,
    last_counter: Cell<u64>,
    /// This core's inbox (the background inbox task holds a clone) and how many updates from it
    /// were applied; see [`Core::catch_up`].
    inbox: flume::Receiver<Update>,
    applied: Cell<u64>,
    rng: RefCell<SmallRng>,
    hint_buffer: Rc<RefCell<Vec<Hint>>>,
    repairs: RefCell<VecDeque<RepairJob>>,
    repair_worker_running: Cell<bool>,
}

impl Core {
    /// Builds core `index` from the membership and tenants loaded at start.
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        inbox: flume::Receiver<Update>,
        nodes: Vec<NodeRecord>,
        tenants: Vec<TenantRecord>,
    ) -> Rc<Core> {
        let cfg = &shared.config;
        let link_config = Rc::new(LinkConfig {
            connections: cfg.connections_per_node,
            batching: cfg.batching,
            max_batch_ops: cfg.max_batch_ops,
            max_inflight_batches: cfg.max_inflight_batches,
            replica_timeout: Duration::from_millis(cfg.replica_timeout_ms),
            max_queued_ops: cfg.max_batch_ops * cfg.max_inflight_batches * 64,
            client: crate::rpc::ClientConfig {
                max_message_bytes: cfg.max_message_bytes,
                ..Default::default()
            },
        });
        let actor = format!("{}/{index}", cfg.node_id);
        let seed = (index as u64) ^ unix_now_us() as u64;
        let core = Rc::new(Core {
            index,
            actor,
            ring: RefCell::new(Rc::new(Ring::new(0, Vec::new()).expect("an empty ring is valid"))),
            nodes: RefCell::new(AHashMap::new()),
            links: RefCell::new(AHashMap::new()),
            down: RefCell::new(AHashMap::new()),
            tenants: RefCell::new(
                tenants.into_iter().map(|t| (t.tenant_id.clone(), Rc::new(t))).collect(),
            ),
            unknown_tenants: RefCell::new(AHashMap::new()),
            link_config,
            link_stats: Rc::new(LinkStats::default()),
            stats: CoreStats::default(),
            metrics: Rc::new(CoreMetrics::default()),
            last_counter: Cell::new(0),
            inbox,
            applied: Cell::new(0),
            rng: RefCell::new(SmallRng::seed_from_u64(seed)),
            hint_buffer: Rc::new(RefCell::new(Vec::new())),
            repairs: RefCell::new(VecDeque::new()),
            repair_worker_running: Cell::new(false),
            shared,
        });
        let epoch = core.shared.epoch.load(Ordering::SeqCst);
        core.apply(Update::Nodes { epoch, nodes });
        core
    }

    /// Applies one update taken from this core's inbox.
    pub fn receive(&self, update: Update) {
        self.applied.set(self.applied.get() + 1);
        self.apply(update);
    }

    /// Applies every update already sent to this core that it has not applied yet. One atomic
    /// load when up to date, which is nearly always; called at the start of every request so that
    /// a change another core acknowledged is in force here too.
    pub fn catch_up(&self) {
        if self.shared.sent[self.index].load(Ordering::SeqCst) == self.applied.get() {
            return;
        }
        while let Ok(update) = self.inbox.try_recv() {
            self.receive(update);
        }
    }

    /// Applies a change to this core's copies.
    fn apply(&self, update: Update) {
        match update {
            Update::Tenant(t) => {
                self.unknown_tenants.borrow_mut().remove(&t.tenant_id);
                self.tenants.borrow_mut().insert(t.tenant_id.clone(), Rc::new(t));
            }
            Update::NodeHealth { node_id, up } => {
                self.down.borrow_mut().insert(node_id.clone(), !up);
                if let Some(link) = self.links.borrow().get(&NodeId::new(node_id)) {
                    link.set_down(!up);
                }
            }
            Update::Nodes { epoch, nodes } => {
                if epoch < self.ring.borrow().epoch() {
                    return;
                }
                let members: Vec<Member> = nodes
                    .iter()
                    .map(|n| Member {
                        id: NodeId::new(n.node_id.clone()),
                        virtual_nodes: n.virtual_nodes,
                        active: n.state == NodeState::Active,
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
                for n in &nodes {
                    let id = NodeId::new(n.node_id.clone());
                    let Ok(addr) = crate::config::resolve("host", &n.host, n.port) else {
                        tracing::warn!(node = %n.node_id, host = %n.host, "cannot resolve storage node address");
                        continue;
                    };
                    let link = match links.remove(&id) {
                        Some(link) if link.addr() == addr => link,
                        _ => self.new_link(id.clone(), addr),
                    };
                    link.set_down(self.down.borrow().get(&n.node_id).copied().unwrap_or(false));
                    fresh.insert(id, link);
                }
                *links = fresh;
                *self.nodes.borrow_mut() =
                    nodes.into_iter().map(|n| (n.node_id.clone(), n)).collect();
            }
        }
    }

    fn new_link(&self, id: NodeId, addr: SocketAddr) -> Rc<NodeLink> {
        let buffer = self.hint_buffer.clone();
        let on_missed: HintSink = Rc::new(move |node: &NodeId, op: &Op| {
            let (tenant_id, key, version) = match op {
                Op::Write(w) => (&w.tenant_id, &w.key, &w.version),
                Op::Delete(d) => (&d.tenant_id, &d.key, &d.version),
                Op::Repair(r) => (&r.tenant_id, &r.key, &r.version),
                Op::Read(_) => return,
            };
            let Some(version) = version.as_ref().and_then(|v| Version::try_from(v).ok()) else {
                return;
            };
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < MAX_BUFFERED_HINTS {
                buffer.push(Hint {
                    target_node: node.as_str().to_owned(),
                    tenant_id: tenant_id.clone(),
                    key: key.clone(),
                    version,
                    created_at_us: unix_now_us(),
                });
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

    /// Takes the hints buffered since the last call.
    pub fn take_hints(&self) -> Vec<Hint> {
        std::mem::take(&mut *self.hint_buffer.borrow_mut())
    }

    /// Hints waiting in this core's buffer.
    pub fn buffered_hints(&self) -> usize {
        self.hint_buffer.borrow().len()
    }

    // ---------------------------------------------------------------- routing

    /// Registers every CoordinatorService method on `router`, bound to this core.
    pub fn register(self: &Rc<Self>, router: Router) -> Router {
        macro_rules! route {
            ($router:expr, $name:literal, $method:ident) => {{
                let core = self.clone();
                $router.unary(
                    concat!("/pairdb.coordinator.v1.CoordinatorService/", $name),
                    move |req, ctx| {
                        core.catch_up();
                        let core = core.clone();
                        async move { core.$method(req, ctx).await }
                    },
                )
            }};
        }
        debug_assert!(SERVICE.ends_with('/'));
        let router = route!(router, "WriteKeyValue", write_key_value);
        let router = route!(router, "ReadKeyValue", read_key_value);
        let router = route!(router, "DeleteKeyValue", delete_key_value);
        let router = route!(router, "CreateTenant", create_tenant);
        let router = route!(router, "UpdateReplicationFactor", update_replication_factor);
        let router = route!(router, "GetTenant", get_tenant);
        let router = route!(router, "AddStorageNode", add_storage_node);
        let router = route!(router, "RemoveStorageNode", remove_storage_node);
        let router = route!(router, "GetMigrationStatus", get_migration_status);
        route!(router, "ListStorageNodes", list_storage_nodes)
    }

    // ---------------------------------------------------------------- key-value

    async fn write_key_value(
        self: Rc<Self>,
        req: api::WriteKeyValueRequest,
        _ctx: CallContext,
    ) -> Result<api::WriteKeyValueResponse, Status> {
        self.check_key(&req.tenant_id, &req.key)?;
        if req.value.len() > self.shared.config.max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value is {} bytes, over the {}-byte limit",
                req.value.len(),
                self.shared.config.max_value_bytes
            ))
            .with_error_code("VALUE_TOO_LARGE"));
        }
        let level = level(req.consistency)?;
        let context = client_clock(req.vector_clock.as_ref())?;
        let tenant = self.tenant(&req.tenant_id).await?;
        let fingerprint = fingerprint(Operation::Write, level, &req.value, context.as_ref());
        let make =
            |clock: VClock, acks: usize, idempotency_key: String| api::WriteKeyValueResponse {
                key: req.key.clone(),
                idempotency_key,
                vector_clock: Some((&clock).into()),
                replica_count: acks as i32,
                consistency: req.consistency,
                is_duplicate: false,
            };
        let (tenant_id, key, value) = (&req.tenant_id, &req.key, req.value.clone());
        self.idempotent(tenant_id, key, &req.idempotency_key, fingerprint, || async {
            let (clock, acks) = self
                .replicate(&tenant, tenant_id, key, value, false, level, context.clone())
                .await?;
            Ok((clock, acks))
        })
        .await
        .map(|outcome| match outcome {
            Idempotent::Fresh { clock, acks, idempotency_key } => {
                make(clock, acks, idempotency_key)
            }
            Idempotent::Duplicate(bytes) => {
                let mut resp = api::WriteKeyValueResponse::decode(bytes).unwrap_or_default();
                resp.is_duplicate = true;
                resp
            }
        })
        .and_then(|resp| {
            self.remember(tenant_id, key, !req.idempotency_key.is_empty(), fingerprint, resp)
        })
    }

    async fn delete_key_value(
        self: Rc<Self>,
        req: api::DeleteKeyValueRequest,
        _ctx: CallContext,
    ) -> Result<api::DeleteKeyValueResponse, Status> {
        self.check_key(&req.tenant_id, &req.key)?;
        let level = level(req.consistency)?;
        let context = client_clock(req.vector_clock.as_ref())?;
        let tenant = self.tenant(&req.tenant_id).await?;
        let fingerprint = fingerprint(Operation::Delete, level, b"", context.as_ref());
        let (tenant_id, key) = (&req.tenant_id, &req.key);
        self.idempotent(tenant_id, key, &req.idempotency_key, fingerprint, || async {
            self.replicate(&tenant, tenant_id, key, Bytes::new(), true, level, context.clone())
                .await
        })
        .await
        .map(|outcome| match outcome {
            Idempotent::Fresh { clock, acks, idempotency_key } => api::DeleteKeyValueResponse {
                key: key.clone(),
                vector_clock: Some((&clock).into()),
                replica_count: acks as i32,
                idempotency_key,
                is_duplicate: false,
            },
            Idempotent::Duplicate(bytes) => {
                let mut resp = api::DeleteKeyValueResponse::decode(bytes).unwrap_or_default();
                resp.is_duplicate = true;
                resp
            }
        })
        .and_then(|resp| {
            self.remember(tenant_id, key, !req.idempotency_key.is_empty(), fingerprint, resp)
        })
    }

    async fn read_key_value(
        self: Rc<Self>,
        req: api::ReadKeyValueRequest,
        _ctx: CallContext,
    ) -> Result<api::ReadKeyValueResponse, Status> {
        self.check_key(&req.tenant_id, &req.key)?;
        let level = level(req.consistency)?;
        let tenant = self.tenant(&req.tenant_id).await?;
        let rf = tenant.replication_factor as usize;
        let replicas = self.replicas(&req.tenant_id, &req.key, rf);
        let required = level.required(rf);
        let deadline = Instant::now() + self.link_config.replica_timeout;
        let mut quorum: QuorumRead<Version> = QuorumRead::new(replicas.clone(), required, deadline);
        if let Some(Err(e)) = quorum.poll_outcome() {
            return Err(self.quorum_failed(e));
        }
        let mut replies = FuturesUnordered::new();
        for node in replicas {
            let op = Op::Read(pb::ReadRequest {
                tenant_id: req.tenant_id.clone(),
                key: req.key.clone(),
            });
            replies.push(self.send(node, op));
        }
        let mut timings = ReplicaTimings::new(rf);
        let outcome = drive(&mut replies, deadline, |event| {
            feed_read(&mut quorum, &event);
            if let Event::Reply(node, reply) = event {
                timings.reply(node, matches!(reply, Ok(BatchOutcome::Read(_))));
            }
            quorum.poll_outcome()
        })
        .await;
        self.log_if_slow("read", &req.tenant_id, &req.key, level, &timings, outcome.is_ok());
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => return Err(self.quorum_failed(e)),
        };
        // Read repair happens after the answer: the rest of the replies are collected by a
        // task of their own so that no reply waits for a slow replica.
        self.clone().repair_after_read(quorum, replies, deadline, &req.tenant_id, &req.key);
        match outcome.newest {
            Some(v) if !v.tombstone => Ok(api::ReadKeyValueResponse {
                key: req.key,
                value: v.value,
                vector_clock: Some((&v.clock).into()),
                replica_count: outcome.replies as i32,
            }),
            _ => Err(Status::not_found(format!(
                "key {:?} not found in tenant {:?}",
                req.key, req.tenant_id
            ))
            .with_error_code("KEY_NOT_FOUND")),
        }
    }

    /// Writes a new version of `key` (a tombstone when `tombstone`) to its replicas and waits
    /// for `level`. Returns the version's clock and the acks counted.
    #[allow(clippy::too_many_arguments)]
    async fn replicate(
        &self,
        tenant: &TenantRecord,
        tenant_id: &str,
        key: &str,
        value: Bytes,
        tombstone: bool,
        level: Level,
        context: Option<VClock>,
    ) -> Result<(VClock, usize), Status> {
        let rf = tenant.replication_factor as usize;
        let replicas = self.replicas(tenant_id, key, rf);
        let required = level.required(rf);
        let mut clock = context.unwrap_or_default();
        let floor = self.last_counter.get().max(unix_now_us() as u64);
        let counter = clock.increment(&self.actor, floor);
        self.last_counter.set(counter);
        let version = Version {
            value,
            clock,
            timestamp_us: unix_now_us(),
            writer: self.actor.clone(),
            tombstone,
        };
        let wire: pb::Version = (&version).into();
        let deadline = Instant::now() + self.link_config.replica_timeout;
        let mut quorum = QuorumWrite::new(replicas.clone(), required, deadline);
        if let Some(Err(e)) = quorum.poll_outcome() {
            // Fewer replicas on the ring than the level needs.
            return Err(self.quorum_failed(e));
        }
        let mut replies = FuturesUnordered::new();
        for node in replicas {
            let (tenant_id, key, version) =
                (tenant_id.to_owned(), key.to_owned(), Some(wire.clone()));
            let op = if tombstone {
                Op::Delete(pb::DeleteRequest { tenant_id, key, version })
            } else {
                Op::Write(pb::WriteRequest { tenant_id, key, version })
            };
            replies.push(self.send(node, op));
        }
        let mut timings = ReplicaTimings::new(rf);
        let outcome = drive(&mut replies, deadline, |event| {
            match event {
                Event::Reply(node, Ok(_)) => {
                    quorum.handle_ack(&node);
                    timings.reply(node, true);
                }
                Event::Reply(node, Err(_)) => {
                    quorum.handle_failure(&node);
                    timings.reply(node, false);
                }
                Event::Timeout(now) => quorum.handle_timeout(now),
            }
            quorum.poll_outcome()
        })
        .await;
        let op = if tombstone { "delete" } else { "write" };
        self.log_if_slow(op, tenant_id, key, level, &timings, outcome.is_ok());
        // Replicas still pending keep going on their own: a failure there becomes a hint in the
        // link, so nothing waits for them here.
        match outcome {
            Ok(w) => Ok((version.clock, w.acks)),
            Err(e) => Err(self.quorum_failed(e)),
        }
    }

    fn send(&self, node: NodeId, op: Op) -> impl Future<Output = (NodeId, OpReply)> + 'static {
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

    fn replicas(&self, tenant_id: &str, key: &str, rf: usize) -> Vec<NodeId> {
        let ring = self.ring.borrow();
        ring.preference_list(key_token(tenant_id, key), rf.min(MAX_PREFERENCE_LIST)).to_vec()
    }

    /// Logs a request slower than `log.slow_request_ms`: tenant, a hash of the key (never the
    /// key or value bytes), level, and each replica's time to answer (or that it had not).
    fn log_if_slow(
        &self,
        op: &'static str,
        tenant_id: &str,
        key: &str,
        level: Level,
        timings: &ReplicaTimings,
        ok: bool,
    ) {
        let threshold_ms = self.shared.config.log.slow_request_ms;
        let elapsed = timings.elapsed();
        if threshold_ms == 0 || elapsed < Duration::from_millis(threshold_ms) {
            return;
        }
        self.metrics.slow_requests.set(self.metrics.slow_requests.get() + 1);
        let rf = timings.capacity();
        let preference = self.replicas(tenant_id, key, rf);
        tracing::warn!(
            op,
            tenant = tenant_id,
            key_hash = %key_hash(key),
            level = ?level,
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            replicas = %timings.describe(&preference),
            outcome = if ok { "ok" } else { "quorum not reached" },
            "slow request"
        );
    }

    fn quorum_failed(&self, e: QuorumError) -> Status {
        self.stats.quorum_failures.set(self.stats.quorum_failures.get() + 1);
        Status::unavailable(format!(
            "quorum not reached: {} of {} required replicas answered",
            e.acks, e.required
        ))
        .with_error_code("QUORUM_NOT_REACHED")
    }

    fn repair_after_read<S>(
        self: Rc<Self>,
        mut quorum: QuorumRead<Version>,
        mut replies: S,
        deadline: Instant,
        tenant_id: &str,
        key: &str,
    ) where
        S: futures_util::Stream<Item = (NodeId, OpReply)> + Unpin + 'static,
    {
        let (tenant_id, key) = (tenant_id.to_owned(), key.to_owned());
        let finish = move |core: &Rc<Core>, quorum: &QuorumRead<Version>| {
            let Some(newest) = quorum.newest() else { return };
            let wire: pb::Version = newest.into();
            for node in quorum.repairs() {
                core.enqueue_repair(RepairJob {
                    node: node.clone(),
                    tenant_id: tenant_id.clone(),
                    key: key.clone(),
                    version: wire.clone(),
                    attempt: 0,
                });
            }
        };
        if quorum.is_settled() {
            finish(&self, &quorum);
            return;
        }
        glommio::spawn_local(async move {
            let _ = drive(&mut replies, deadline, |event| {
                feed_read(&mut quorum, &event);
                quorum.is_settled().then_some(Ok::<(), QuorumError>(()))
            })
            .await;
            finish(&self, &quorum);
        })
        .detach();
    }

    fn enqueue_repair(self: &Rc<Self>, job: RepairJob) {
        if self.repairs.borrow().len() >= self.shared.config.read_repair_queue {
            self.stats.repairs_dropped.set(self.stats.repairs_dropped.get() + 1);
            return;
        }
        self.stats.repairs_queued.set(self.stats.repairs_queued.get() + 1);
        self.repairs.borrow_mut().push_back(job);
        if !self.repair_worker_running.get() {
            self.repair_worker_running.set(true);
            let core = self.clone();
            glommio::spawn_local(async move { core.repair_worker().await }).detach();
        }
    }

    /// Sends queued read repairs (batched through the links like any write), retrying failures
    /// with a growing delay until `read_repair_attempts`.
    async fn repair_worker(self: Rc<Self>) {
        loop {
            let jobs: Vec<RepairJob> = self.repairs.borrow_mut().drain(..).collect();
            if jobs.is_empty() {
                break;
            }
            let mut sent = FuturesUnordered::new();
            for job in jobs {
                let op = Op::Repair(pb::RepairRequest {
                    tenant_id: job.tenant_id.clone(),
                    key: job.key.clone(),
                    version: Some(job.version.clone()),
                });
                let reply = self.send(job.node.clone(), op);
                sent.push(async move { (job, reply.await.1) });
            }
            let mut retry = Vec::new();
            while let Some((mut job, reply)) = sent.next().await {
                match reply {
                    Ok(_) => self.stats.repairs_done.set(self.stats.repairs_done.get() + 1),
                    Err(_) if job.attempt + 1 < self.shared.config.read_repair_attempts => {
                        job.attempt += 1;
                        retry.push(job);
                    }
                    Err(_) => self.stats.repairs_dropped.set(self.stats.repairs_dropped.get() + 1),
                }
            }
            if !retry.is_empty() {
                let attempt = retry.iter().map(|j| j.attempt).max().unwrap_or(1);
                glommio::timer::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                self.repairs.borrow_mut().extend(retry);
            }
        }
        self.repair_worker_running.set(false);
    }

    // ---------------------------------------------------------------- idempotency

    /// Runs `work` at most once per `(tenant, key, idempotency key)` with this fingerprint.
    async fn idempotent<F, Fut>(
        &self,
        tenant_id: &str,
        key: &str,
        idempotency_key: &str,
        fingerprint: u64,
        work: F,
    ) -> Result<Idempotent, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(VClock, usize), Status>>,
    {
        if idempotency_key.is_empty() {
            // A generated key is unique, so nobody can hold a claim on it: the request runs, and
            // `remember` stores its response under the key (`idempotency.store_generated_keys`).
            let generated = format!("{:032x}", self.rng.borrow_mut().random::<u128>());
            let (clock, acks) = work().await?;
            return Ok(Idempotent::Fresh { clock, acks, idempotency_key: generated });
        }
        let id = IdempotencyKey::new(tenant_id, key, idempotency_key);
        let store = &self.shared.idempotency;
        let give_up = Instant::now() + IDEMPOTENCY_WAIT;
        loop {
            match store.claim(&id, fingerprint, Instant::now()).await {
                Claim::Claimed => break,
                Claim::Duplicate(bytes) => return Ok(Idempotent::Duplicate(bytes)),
                Claim::Conflict => {
                    return Err(Status::failed_precondition(format!(
                        "idempotency key {idempotency_key:?} was used for a different request on this key"
                    ))
                    .with_error_code("IDEMPOTENCY_KEY_CONFLICT"))
                }
                Claim::InProgress if Instant::now() < give_up => {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                Claim::InProgress => {
                    return Err(Status::aborted("an identical request with this idempotency key is still in progress")
                        .with_error_code("IDEMPOTENCY_IN_PROGRESS"))
                }
                Claim::Unavailable
                    if store.is_remote()
                        && self.shared.config.idempotency.on_unavailable == OnUnavailable::Reject =>
                {
                    return Err(Status::unavailable(
                        "the idempotency store (redis) is unreachable and idempotency.on_unavailable is reject; retry later",
                    )
                    .with_error_code("IDEMPOTENCY_UNAVAILABLE"));
                }
                Claim::Unavailable => {
                    let skipped = self.stats.idempotency_skipped.get() + 1;
                    self.stats.idempotency_skipped.set(skipped);
                    // Logged at 1, 2, 4, 8, ... skips per core: an outage under load must not
                    // become a log line per write.
                    if skipped.is_power_of_two() {
                        tracing::warn!(
                            skipped,
                            remote = store.is_remote(),
                            "idempotency store full or unreachable; write proceeds without idempotency"
                        );
                    }
                    let (clock, acks) = work().await?;
                    return Ok(Idempotent::Fresh { clock, acks, idempotency_key: idempotency_key.to_owned() });
                }
            }
        }
        match work().await {
            Ok((clock, acks)) => {
                Ok(Idempotent::Fresh { clock, acks, idempotency_key: idempotency_key.to_owned() })
            }
            Err(status) => {
                // Let a retry try again.
                store.release(&id, fingerprint);
                Err(status)
            }
        }
    }

    /// Stores a fresh response under the idempotency key it carries: the client's
    /// (`client_key`, completing its claim), or the generated one when
    /// `idempotency.store_generated_keys` is on.
    fn remember<M: Message + HasDuplicate>(
        &self,
        tenant_id: &str,
        key: &str,
        client_key: bool,
        fingerprint: u64,
        resp: M,
    ) -> Result<M, Status> {
        if client_key {
            self.metrics.idempotency(resp.is_duplicate());
        }
        if resp.is_duplicate()
            || !(client_key || self.shared.config.idempotency.store_generated_keys)
        {
            return Ok(resp);
        }
        let store = &self.shared.idempotency;
        let id = IdempotencyKey::new(tenant_id, key, resp.idempotency_key());
        let answer = Bytes::from(resp.encode_to_vec());
        if client_key {
            store.complete(&id, fingerprint, answer, Instant::now());
        } else if !store.store_generated(&id, fingerprint, answer, Instant::now()) {
            let unstored = &self.metrics.idempotency_generated_unstored;
            unstored.set(unstored.get() + 1);
        }
        Ok(resp)
    }

    // ---------------------------------------------------------------- tenants

    /// The tenant's config from this core's cache, or from the metadata store on a miss.
    pub async fn tenant(&self, tenant_id: &str) -> Result<Rc<TenantRecord>, Status> {
        if let Some(t) = self.tenants.borrow().get(tenant_id) {
            self.metrics.tenant_cache_hits.set(self.metrics.tenant_cache_hits.get() + 1);
            return Ok(t.clone());
        }
        self.metrics.tenant_cache_misses.set(self.metrics.tenant_cache_misses.get() + 1);
        let not_found = || {
            Status::not_found(format!("tenant {tenant_id:?} does not exist"))
                .with_error_code("TENANT_NOT_FOUND")
        };
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
                if unknown.len() > 10_000 {
                    unknown.clear();
                }
                unknown.insert(tenant_id.to_owned(), Instant::now());
                Err(not_found())
            }
            Err(e) => Err(meta_status(e)),
        }
    }

    async fn create_tenant(
        self: Rc<Self>,
        req: api::CreateTenantRequest,
        _: CallContext,
    ) -> Result<api::CreateTenantResponse, Status> {
        check_tenant_id(&req.tenant_id)?;
        let rf = match req.replication_factor {
            0 => self.shared.config.default_replication_factor,
            n => check_rf(n)?,
        };
        let now = unix_now_secs();
        let record = TenantRecord {
            tenant_id: req.tenant_id.clone(),
            replication_factor: rf,
            created_at: now,
            updated_at: now,
        };
        let meta = self.shared.meta.clone();
        let stored = record.clone();
        blocking(move || meta.create_tenant(&stored)).await.map_err(meta_status)?;
        self.shared.broadcast(Update::Tenant(record.clone()));
        Ok(api::CreateTenantResponse {
            tenant_id: record.tenant_id,
            replication_factor: rf as i32,
            created_at: now,
        })
    }

    async fn get_tenant(
        self: Rc<Self>,
        req: api::GetTenantRequest,
        _: CallContext,
    ) -> Result<api::GetTenantResponse, Status> {
        if req.tenant_id.is_empty() {
            return Err(invalid("tenant_id is required"));
        }
        let t = self.tenant(&req.tenant_id).await?;
        Ok(api::GetTenantResponse {
            tenant_id: t.tenant_id.clone(),
            replication_factor: t.replication_factor as i32,
            created_at: t.created_at,
            updated_at: t.updated_at,
        })
    }

    async fn update_replication_factor(
        self: Rc<Self>,
        req: api::UpdateReplicationFactorRequest,
        _: CallContext,
    ) -> Result<api::UpdateReplicationFactorResponse, Status> {
        if req.tenant_id.is_empty() {
            return Err(invalid("tenant_id is required"));
        }
        let rf = check_rf(req.new_replication_factor)?;
        let now = unix_now_secs();
        let migration = self.ring_change(MigrationRecord::REPLICATION_CHANGE, &req.tenant_id, now);
        let meta = self.shared.meta.clone();
        let (id, m) = (req.tenant_id.clone(), migration.clone());
        let old = blocking(move || meta.update_replication_factor(&id, rf, now, &m))
            .await
            .map_err(meta_status)?;
        self.shared.broadcast(Update::Tenant(TenantRecord {
            replication_factor: rf,
            updated_at: now,
            ..old.clone()
        }));
        Ok(api::UpdateReplicationFactorResponse {
            tenant_id: req.tenant_id,
            old_replication_factor: old.replication_factor as i32,
            new_replication_factor: rf as i32,
            migration_id: migration.migration_id,
            updated_at: now,
        })
    }

    // ---------------------------------------------------------------- nodes

    async fn add_storage_node(
        self: Rc<Self>,
        req: api::AddStorageNodeRequest,
        _: CallContext,
    ) -> Result<api::AddStorageNodeResponse, Status> {
        if req.node_id.is_empty() || req.node_id.len() > 128 {
            return Err(invalid("node_id must be 1 to 128 bytes"));
        }
        if req.host.is_empty() {
            return Err(invalid("host is required"));
        }
        let port = u16::try_from(req.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid("port must be 1 to 65535"))?;
        let virtual_nodes = match req.virtual_nodes {
            0 => DEFAULT_VIRTUAL_NODES,
            n if (1..=crate::core::ring::MAX_VIRTUAL_NODES as i32).contains(&n) => n as u32,
            _ => return Err(invalid("virtual_nodes must be 1 to 1024")),
        };
        crate::config::resolve("host", &req.host, port).map_err(|e| invalid(&e.to_string()))?;
        let now = unix_now_secs();
        let record = NodeRecord {
            node_id: req.node_id.clone(),
            host: req.host.clone(),
            port,
            virtual_nodes,
            state: NodeState::Active,
            added_at: now,
        };
        let migration = self.ring_change(MigrationRecord::NODE_ADDITION, &req.node_id, now);
        let meta = self.shared.meta.clone();
        let (r, m) = (record.clone(), migration.clone());
        let nodes = blocking(move || {
            meta.add_node(&r)?;
            meta.put_migration(&m)?;
            meta.nodes()
        })
        .await
        .map_err(meta_status)?;
        self.broadcast_nodes(nodes);
        Ok(api::AddStorageNodeResponse {
            node_id: req.node_id,
            migration_id: migration.migration_id,
            message:
                "node added to the ring; existing keys are not moved to it (data movement is not \
                      implemented yet): it fills through new writes, read repair and hinted handoff"
                    .into(),
        })
    }

    async fn remove_storage_node(
        self: Rc<Self>,
        req: api::RemoveStorageNodeRequest,
        _: CallContext,
    ) -> Result<api::RemoveStorageNodeResponse, Status> {
        let Some(record) = self.nodes.borrow().get(&req.node_id).cloned() else {
            return Err(Status::not_found(format!(
                "storage node {:?} is not registered",
                req.node_id
            ))
            .with_error_code("NODE_NOT_FOUND"));
        };
        if !req.force {
            let link = self.link(&NodeId::new(req.node_id.clone()));
            let stats = match link {
                Some(link) => {
                    link.call::<_, pb::StatsResponse>(
                        "/pairdb.storage.v1.StorageService/Stats",
                        &pb::StatsRequest {},
                    )
                    .await
                }
                None => Err(Status::unavailable("no link")),
            };
            match stats {
                Ok(s) if s.key_count == 0 => {}
                Ok(s) => {
                    return Err(Status::failed_precondition(format!(
                        "storage node {:?} still holds {} keys; data movement is not implemented yet, so removing it \
                         loses those copies (use force to remove anyway)",
                        req.node_id, s.key_count
                    ))
                    .with_error_code("NODE_IN_USE"))
                }
                Err(e) => {
                    return Err(Status::failed_precondition(format!(
                        "cannot confirm that storage node {:?} is empty ({e}); use force to remove it anyway",
                        req.node_id
                    ))
                    .with_error_code("NODE_IN_USE"))
                }
            }
        }
        let now = unix_now_secs();
        let migration = self.ring_change(MigrationRecord::NODE_REMOVAL, &record.node_id, now);
        let meta = self.shared.meta.clone();
        let (id, m) = (record.node_id.clone(), migration.clone());
        let nodes = blocking(move || {
            meta.remove_node(&id)?;
            meta.put_migration(&m)?;
            meta.nodes()
        })
        .await
        .map_err(meta_status)?;
        self.broadcast_nodes(nodes);
        Ok(api::RemoveStorageNodeResponse {
            node_id: record.node_id,
            migration_id: migration.migration_id,
            message: "node removed from the ring".into(),
        })
    }

    async fn list_storage_nodes(
        self: Rc<Self>,
        _: api::ListStorageNodesRequest,
        _: CallContext,
    ) -> Result<api::ListStorageNodesResponse, Status> {
        let mut records: Vec<NodeRecord> = self.nodes.borrow().values().cloned().collect();
        records.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let calls = records.iter().map(|r| {
            let link = self.link(&NodeId::new(r.node_id.clone()));
            async move {
                match link {
                    Some(link) if !link.is_down() => link
                        .call::<_, pb::StatsResponse>(
                            "/pairdb.storage.v1.StorageService/Stats",
                            &pb::StatsRequest {},
                        )
                        .await
                        .ok(),
                    _ => None,
                }
            }
        });
        let stats = futures_util::future::join_all(calls).await;
        let down = self.down.borrow();
        let nodes = records
            .into_iter()
            .zip(stats)
            .map(|(r, s)| {
                let is_down = down.get(&r.node_id).copied().unwrap_or(false) || s.is_none();
                api::StorageNodeInfo {
                    status: if is_down { "DOWN".into() } else { r.state.as_str().into() },
                    keys_count: s.as_ref().map(|s| s.key_count as i64).unwrap_or(-1),
                    disk_usage_percent: s.as_ref().map(|s| s.disk_usage_percent).unwrap_or(-1.0),
                    node_id: r.node_id,
                    host: r.host,
                    port: i32::from(r.port),
                    virtual_nodes: r.virtual_nodes as i32,
                }
            })
            .collect();
        Ok(api::ListStorageNodesResponse { nodes })
    }

    async fn get_migration_status(
        self: Rc<Self>,
        req: api::GetMigrationStatusRequest,
        _: CallContext,
    ) -> Result<api::GetMigrationStatusResponse, Status> {
        if req.migration_id.is_empty() {
            return Err(invalid("migration_id is required"));
        }
        let meta = self.shared.meta.clone();
        let id = req.migration_id.clone();
        let Some(m) = blocking(move || meta.migration(&id)).await.map_err(meta_status)? else {
            return Err(Status::not_found(format!("migration {:?} not found", req.migration_id))
                .with_error_code("MIGRATION_NOT_FOUND"));
        };
        let percentage = if m.total_keys > 0 {
            100.0 * m.keys_migrated as f64 / m.total_keys as f64
        } else {
            100.0
        };
        Ok(api::GetMigrationStatusResponse {
            migration_id: m.migration_id,
            migration_type: m.migration_type,
            node_id: m.node_id,
            status: m.status,
            progress: Some(api::MigrationProgress {
                keys_migrated: m.keys_migrated,
                total_keys: m.total_keys,
                percentage,
            }),
            started_at: m.started_at,
            completed_at: m.completed_at,
            error_message: m.error_message,
        })
    }

    fn broadcast_nodes(&self, nodes: Vec<NodeRecord>) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.broadcast(Update::Nodes { epoch, nodes });
    }

    /// The migration record of a membership or replication change. Nothing is copied in the
    /// background yet (data movement is a later piece of work): new replicas fill through writes,
    /// read repair and hints, so the record is complete at once, with no keys moved, and says so
    /// instead of pretending to move data.
    fn ring_change(&self, migration_type: &str, subject: &str, now: i64) -> MigrationRecord {
        MigrationRecord {
            migration_id: self.new_id("mig"),
            migration_type: migration_type.into(),
            node_id: subject.into(),
            status: MigrationRecord::COMPLETED.into(),
            keys_migrated: 0,
            total_keys: 0,
            started_at: now,
            completed_at: now,
            error_message: String::new(),
        }
    }

    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}-{:016x}", self.rng.borrow_mut().random::<u64>())
    }

    fn check_key(&self, tenant_id: &str, key: &str) -> Result<(), Status> {
        if tenant_id.is_empty() {
            return Err(invalid("tenant_id is required"));
        }
        if key.is_empty() {
            return Err(invalid("key is required"));
        }
        if key.len() > self.shared.config.max_key_bytes {
            return Err(Status::invalid_argument(format!(
                "key is {} bytes, over the {}-byte limit",
                key.len(),
                self.shared.config.max_key_bytes
            ))
            .with_error_code("KEY_TOO_LARGE"));
        }
        Ok(())
    }
}

/// What an idempotent write produced.
enum Idempotent {
    Fresh { clock: VClock, acks: usize, idempotency_key: String },
    Duplicate(Bytes),
}

/// Responses that carry `is_duplicate`.
trait HasDuplicate {
    fn is_duplicate(&self) -> bool;
    fn idempotency_key(&self) -> &str;
}

impl HasDuplicate for api::WriteKeyValueResponse {
    fn is_duplicate(&self) -> bool {
        self.is_duplicate
    }
    fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
}

impl HasDuplicate for api::DeleteKeyValueResponse {
    fn is_duplicate(&self) -> bool {
        self.is_duplicate
    }
    fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
}

/// Feeds one read reply (or the deadline) to a read's quorum: a replica's version, its "none",
/// or, for a failed call or a version that does not decode, a failure.
fn feed_read(quorum: &mut QuorumRead<Version>, event: &Event) {
    match event {
        Event::Reply(node, Ok(BatchOutcome::Read(r))) => {
            match r.version.as_ref().filter(|_| r.found).map(Version::try_from) {
                None => quorum.handle_reply(node, None),
                Some(Ok(v)) => quorum.handle_reply(node, Some(v)),
                Some(Err(_)) => quorum.handle_failure(node),
            }
        }
        Event::Reply(node, _) => quorum.handle_failure(node),
        Event::Timeout(now) => quorum.handle_timeout(*now),
    }
}

enum Event {
    Reply(NodeId, OpReply),
    Timeout(Instant),
}

/// Feeds replies (and, once, the deadline) to `on_event` until it returns an outcome. One timer
/// per request, however many replicas.
async fn drive<S, T, E>(
    replies: &mut S,
    deadline: Instant,
    mut on_event: impl FnMut(Event) -> Option<Result<T, E>>,
) -> Result<T, E>
where
    S: futures_util::Stream<Item = (NodeId, OpReply)> + Unpin,
    E: From<QuorumError>,
{
    let mut timer = pin!(glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())));
    let mut timer_fired = false;
    loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(item) = replies.poll_next_unpin(cx) {
                return Poll::Ready(item.map(|(node, reply)| Event::Reply(node, reply)));
            }
            if !timer_fired && timer.as_mut().poll(cx).is_ready() {
                timer_fired = true;
                return Poll::Ready(Some(Event::Timeout(Instant::now().max(deadline))));
            }
            Poll::Pending
        })
        .await;
        let event = match event {
            Some(e) => e,
            // Every reply is in and no outcome: cannot happen with the quorum machines (they
            // decide once every replica answered); treat it as the deadline.
            None => Event::Timeout(Instant::now().max(deadline)),
        };
        let was_timeout = matches!(event, Event::Timeout(_));
        if let Some(outcome) = on_event(event) {
            return outcome;
        }
        if was_timeout && timer_fired {
            return Err(E::from(QuorumError { acks: 0, required: 0 }));
        }
    }
}

/// Runs a blocking closure on the executor's blocking pool, off the request core.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(f).await
}

fn level(consistency: i32) -> Result<Level, Status> {
    match api::Consistency::try_from(consistency) {
        Ok(api::Consistency::Unspecified) | Ok(api::Consistency::Quorum) => Ok(Level::Quorum),
        Ok(api::Consistency::One) => Ok(Level::One),
        Ok(api::Consistency::All) => Ok(Level::All),
        Err(_) => Err(invalid(&format!("consistency {consistency} is not ONE, QUORUM or ALL"))),
    }
}

fn client_clock(clock: Option<&api::VectorClock>) -> Result<Option<VClock>, Status> {
    clock
        .map(VClock::try_from)
        .transpose()
        .map_err(|e| invalid(&format!("invalid vector_clock: {e}")))
}

fn check_tenant_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > MAX_TENANT_ID_BYTES {
        return Err(invalid(&format!("tenant_id must be 1 to {MAX_TENANT_ID_BYTES} bytes")));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(invalid("tenant_id may contain only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn check_rf(rf: i32) -> Result<u32, Status> {
    if (1..=10).contains(&rf) {
        Ok(rf as u32)
    } else {
        Err(Status::invalid_argument(format!("replication factor {rf} is not between 1 and 10"))
            .with_error_code("INVALID_REPLICATION_FACTOR"))
    }
}

fn invalid(message: &str) -> Status {
    Status::invalid_argument(message).with_error_code("INVALID_REQUEST")
}

/// The one place metadata errors become gRPC statuses.
pub fn meta_status(e: MetaError) -> Status {
    use crate::meta::RecordKind;
    match &e {
        MetaError::NotFound { kind: RecordKind::Tenant, .. } => {
            Status::not_found(e.to_string()).with_error_code("TENANT_NOT_FOUND")
        }
        MetaError::NotFound { kind: RecordKind::Node, .. } => {
            Status::not_found(e.to_string()).with_error_code("NODE_NOT_FOUND")
        }
        MetaError::NotFound { kind: RecordKind::Migration, .. } => {
            Status::not_found(e.to_string()).with_error_code("MIGRATION_NOT_FOUND")
        }
        MetaError::NotFound { .. } => Status::not_found(e.to_string()),
        MetaError::AlreadyExists { kind: RecordKind::Tenant, .. } => {
            Status::already_exists(e.to_string()).with_error_code("TENANT_EXISTS")
        }
        MetaError::AlreadyExists { kind: RecordKind::Node, .. } => {
            Status::already_exists(e.to_string()).with_error_code("NODE_EXISTS")
        }
        MetaError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        MetaError::Invalid { .. } => {
            Status::invalid_argument(e.to_string()).with_error_code("INVALID_REQUEST")
        }
        MetaError::Unavailable { .. } => {
            Status::unavailable(format!("metadata store unavailable: {e}"))
                .with_error_code("METADATA_UNAVAILABLE")
        }
        MetaError::Corrupt { .. } => {
            Status::internal(e.to_string()).with_error_code("METADATA_CORRUPT")
        }
    }
}

/// Wall-clock time, unix microseconds.
pub fn unix_now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Wall-clock time, unix seconds.
pub fn unix_now_secs() -> i64 {
    unix_now_us() / 1_000_000
}
