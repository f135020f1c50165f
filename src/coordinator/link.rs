//! One core's connection to one storage node, and the batching of its operations.
//!
//! ```text
//!  request handlers ──submit(op)──▶ queue ──flush task──▶ Batch RPC ──▶ storage node
//!        ▲                                     (queued, not run inline)        │
//!        └──────────── per-op reply (oneshot) ◀──────── results in order ◀─────┘
//! ```
//!
//! Batching needs no timer: `submit` only appends to the queue and, if no flush is scheduled,
//! queues one on the core's task queue. Every handler that runs in the same executor turn (all
//! the streams that one socket read delivered) appends before the flush runs, so under load
//! operations leave together, while a lone operation leaves as soon as its handler yields. At most
//! `max_inflight_batches` Batch calls are outstanding per node; beyond that operations wait in the
//! queue and leave with the next batch, which is what makes batches grow with load.
//!
//! An operation that fails or misses its deadline is reported to the link's owner, which turns a
//! write-type one into a hint (policy: `core::hints`), whatever the client's request already
//! answered: the link is the one place that knows both what was sent and that it did not arrive.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use ahash::AHashMap;
use futures_channel::oneshot;

use crate::{
    core::ids::NodeId,
    metrics::Hist,
    proto::storage::{
        batch_operation::Op, batch_result::Result as BatchOutcome, BatchOperation, BatchRequest,
        BatchResponse, BatchResult, DeleteResponse, ReadResponse, RepairResponse, WriteResponse,
    },
    rpc::{Channel, ClientConfig, Status},
    storage::local,
};

use crate::storage::service::BATCH_PATH;
const WRITE_PATH: &str = "/pairdb.storage.v1.StorageService/Write";
const READ_PATH: &str = "/pairdb.storage.v1.StorageService/Read";
const DELETE_PATH: &str = "/pairdb.storage.v1.StorageService/Delete";
const REPAIR_PATH: &str = "/pairdb.storage.v1.StorageService/Repair";

/// How a link talks to its node.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// HTTP/2 connections per node per core.
    pub connections: usize,
    /// Send operations as `Batch` calls (true) or one RPC each (false, for comparison).
    pub batching: bool,
    /// Most operations in one Batch call.
    pub max_batch_ops: usize,
    /// Outstanding Batch calls per node before operations wait to leave together.
    pub max_inflight_batches: usize,
    /// Per-replica deadline: an operation without a reply by then has failed.
    pub replica_timeout: Duration,
    /// Queue bound: operations beyond it fail at once instead of piling up memory.
    pub max_queued_ops: usize,
    /// Client settings for the connections.
    pub client: ClientConfig,
    /// Send a `Batch` for a storage node that this process serves on this core straight to
    /// its service, without the network (`storage::local`; the coordinator's
    /// `local_storage_calls`).
    pub local_calls: bool,
}

/// Reply to one operation.
pub type OpReply = Result<BatchOutcome, Status>;

/// An operation that did not reach its node, and why: the owner decides (by the policy of
/// `core::hints`) whether it becomes a hint.
pub type HintSink = Rc<dyn Fn(&NodeId, &Op, &Status)>;

struct Pending {
    op: Op,
    reply: oneshot::Sender<OpReply>,
    /// When the operation was submitted: its fan-out latency includes the wait in the queue.
    started: Instant,
}

/// One core's link to one storage node.
pub struct NodeLink {
    id: NodeId,
    addr: SocketAddr,
    config: Rc<LinkConfig>,
    channels: RefCell<Vec<Option<Channel>>>,
    next_channel: Cell<usize>,
    queue: RefCell<Vec<Pending>>,
    flush_scheduled: Cell<bool>,
    inflight_batches: Cell<usize>,
    /// Set by the health checker's broadcasts: operations fail fast instead of waiting for a
    /// connect timeout, and write-type ones become hints.
    down: Cell<bool>,
    on_missed: HintSink,
    stats: Rc<LinkStats>,
}

/// Per-core fan-out counters, shared by a core's links.
#[derive(Default)]
pub struct LinkStats {
    /// Batch calls sent.
    pub batches: Cell<u64>,
    /// Operations sent in batches.
    pub batched_ops: Cell<u64>,
    /// Operations that failed or timed out.
    pub failed_ops: Cell<u64>,
    /// Operations per Batch call.
    pub batch_sizes: RefCell<Hist>,
    /// Per storage node: latency from submit to reply, and failures. Kept here, not in the
    /// request, so that replies arriving after the request was answered still count.
    pub fanout: RefCell<AHashMap<NodeId, NodeFanout>>,
}

/// One storage node's operations as seen from one core.
#[derive(Default)]
pub struct NodeFanout {
    /// Operations that failed, timed out or were refused (node down, queue full).
    pub errors: u64,
    /// Submit-to-reply latency of operations that were sent.
    pub latency: Hist,
}

impl LinkStats {
    /// Records one operation's end; `started` is None when it was never sent.
    fn observe(&self, node: &NodeId, started: Option<Instant>, ok: bool) {
        let mut fanout = self.fanout.borrow_mut();
        let entry = match fanout.get_mut(node) {
            Some(e) => e,
            None => fanout.entry(node.clone()).or_default(),
        };
        if let Some(started) = started {
            entry.latency.record_duration(started.elapsed());
        }
        if !ok {
            entry.errors += 1;
        }
    }
}

impl NodeLink {
    /// A link that connects lazily on first use.
    pub fn new(
        id: NodeId,
        addr: SocketAddr,
        config: Rc<LinkConfig>,
        on_missed: HintSink,
        stats: Rc<LinkStats>,
    ) -> Rc<Self> {
        let connections = config.connections.max(1);
        Rc::new(Self {
            id,
            addr,
            config,
            channels: RefCell::new(vec![None; connections]),
            next_channel: Cell::new(0),
            queue: RefCell::new(Vec::new()),
            flush_scheduled: Cell::new(false),
            inflight_batches: Cell::new(0),
            down: Cell::new(false),
            on_missed,
            stats,
        })
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Marks the node down (operations fail fast) or up.
    pub fn set_down(&self, down: bool) {
        self.down.set(down);
    }

    /// True while the health checker considers the node down.
    pub fn is_down(&self) -> bool {
        self.down.get()
    }

    /// Sends `op` to the node (batched with whatever else is pending) and returns its reply.
    pub fn submit(self: &Rc<Self>, op: Op) -> oneshot::Receiver<OpReply> {
        let (tx, rx) = oneshot::channel();
        if self.down.get() {
            let status = Status::unavailable(format!("storage node {} is down", self.id));
            self.fail(op, tx, status, None);
            return rx;
        }
        if !self.config.batching {
            let link = self.clone();
            glommio::spawn_local(async move {
                let started = Instant::now();
                let result = link.send_single(&op).await;
                link.finish(op, tx, result, started);
            })
            .detach();
            return rx;
        }
        if self.queue.borrow().len() >= self.config.max_queued_ops {
            self.fail(
                op,
                tx,
                Status::resource_exhausted(format!("queue to storage node {} is full", self.id)),
                None,
            );
            return rx;
        }
        self.queue.borrow_mut().push(Pending { op, reply: tx, started: Instant::now() });
        self.schedule_flush();
        rx
    }

    fn schedule_flush(self: &Rc<Self>) {
        if self.flush_scheduled.get()
            || self.inflight_batches.get() >= self.config.max_inflight_batches
        {
            return;
        }
        self.flush_scheduled.set(true);
        let link = self.clone();
        // Queued behind the tasks already runnable on this core, not polled inline: every
        // handler of this turn gets to append before the batch leaves.
        let queue = glommio::executor().current_task_queue();
        let spawned = glommio::spawn_local_into(async move { link.flush().await }, queue);
        match spawned {
            Ok(task) => {
                task.detach();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot schedule a batch flush");
                self.flush_scheduled.set(false);
            }
        }
    }

    async fn flush(self: Rc<Self>) {
        self.flush_scheduled.set(false);
        let batch: Vec<Pending> = {
            let mut queue = self.queue.borrow_mut();
            let n = queue.len().min(self.config.max_batch_ops);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        self.inflight_batches.set(self.inflight_batches.get() + 1);
        if !self.queue.borrow().is_empty() {
            // More than one batch's worth: let another batch leave alongside this one.
            self.schedule_flush();
        }
        self.stats.batches.set(self.stats.batches.get() + 1);
        self.stats.batched_ops.set(self.stats.batched_ops.get() + batch.len() as u64);
        self.stats.batch_sizes.borrow_mut().record(batch.len() as u64);
        let (ops, replies): (Vec<Op>, Vec<(oneshot::Sender<OpReply>, Instant)>) =
            batch.into_iter().map(|p| (p.op, (p.reply, p.started))).unzip();
        let request = BatchRequest {
            operations: ops.into_iter().map(|op| BatchOperation { op: Some(op) }).collect(),
        };
        let local = if self.config.local_calls { local::lookup(self.addr) } else { None };
        let result = match local {
            Some(node) => self.call_local(node, request.clone()).await,
            None => self.call::<_, BatchResponse>(BATCH_PATH, &request).await,
        };
        let ops = request.operations.into_iter().filter_map(|o| o.op);
        match result {
            Ok(response) if response.results.len() == replies.len() => {
                for ((op, (reply, started)), BatchResult { result }) in
                    ops.zip(replies).zip(response.results)
                {
                    match result {
                        Some(BatchOutcome::Error(e)) => {
                            // The node's own `pairdb-error-code` crosses the hop with it.
                            let status = crate::convert::operation_status(e);
                            self.fail(op, reply, status, Some(started))
                        }
                        Some(outcome) => {
                            self.stats.observe(&self.id, Some(started), true);
                            let _ = reply.send(Ok(outcome));
                        }
                        None => {
                            let status = Status::internal("empty batch result");
                            self.fail(op, reply, status, Some(started))
                        }
                    }
                }
            }
            Ok(response) => {
                let status = Status::internal(format!(
                    "storage node {} answered {} results for {} operations",
                    self.id,
                    response.results.len(),
                    replies.len()
                ));
                for (op, (reply, started)) in ops.zip(replies) {
                    self.fail(op, reply, status.clone(), Some(started));
                }
            }
            Err(status) => {
                for (op, (reply, started)) in ops.zip(replies) {
                    self.fail(op, reply, status.clone(), Some(started));
                }
            }
        }
        self.inflight_batches.set(self.inflight_batches.get() - 1);
        if !self.queue.borrow().is_empty() {
            self.schedule_flush();
        }
    }

    /// A `Batch` for a node this core serves, run by its service in this process, under the
    /// same per-replica deadline as a network call. An inline engine apply (the usual case)
    /// answers on the first poll: no task, no timer. Otherwise it finishes as its own task, as it
    /// would on a remote node, whether or not the deadline let us wait for it.
    async fn call_local(
        &self,
        node: local::LocalBatcher,
        request: BatchRequest,
    ) -> Result<BatchResponse, Status> {
        let mut call = Box::pin(node.batch(request));
        if let Some(result) = futures_lite::future::poll_once(&mut call).await {
            return result;
        }
        let task = glommio::spawn_local(call).detach();
        let timeout = self.config.replica_timeout;
        futures_lite::future::or(
            async {
                task.await.unwrap_or_else(|| Err(Status::unavailable("local batch was cancelled")))
            },
            async {
                glommio::timer::sleep(timeout).await;
                Err(Status::deadline_exceeded(format!("{BATCH_PATH}: no reply within {timeout:?}")))
            },
        )
        .await
    }

    /// Unbatched mode: the operation's own RPC.
    async fn send_single(&self, op: &Op) -> OpReply {
        Ok(match op {
            Op::Write(w) => {
                BatchOutcome::Write(self.call::<_, WriteResponse>(WRITE_PATH, w).await?)
            }
            Op::Read(r) => BatchOutcome::Read(self.call::<_, ReadResponse>(READ_PATH, r).await?),
            Op::Delete(d) => {
                BatchOutcome::Delete(self.call::<_, DeleteResponse>(DELETE_PATH, d).await?)
            }
            Op::Repair(r) => {
                BatchOutcome::Repair(self.call::<_, RepairResponse>(REPAIR_PATH, r).await?)
            }
        })
    }

    fn finish(&self, op: Op, reply: oneshot::Sender<OpReply>, result: OpReply, started: Instant) {
        match result {
            Ok(outcome) => {
                self.stats.observe(&self.id, Some(started), true);
                let _ = reply.send(Ok(outcome));
            }
            Err(status) => self.fail(op, reply, status, Some(started)),
        }
    }

    /// Fails `op`; `started` is when it was submitted, None when it was never sent.
    fn fail(
        &self,
        op: Op,
        reply: oneshot::Sender<OpReply>,
        status: Status,
        started: Option<Instant>,
    ) {
        self.stats.failed_ops.set(self.stats.failed_ops.get() + 1);
        self.stats.observe(&self.id, started, false);
        (self.on_missed)(&self.id, &op, &status);
        let _ = reply.send(Err(status));
    }

    /// One unary call on one of the node's connections, with the per-replica deadline.
    pub async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp, Status> {
        let channel = self.channel().await?;
        channel.unary(path, req, Some(self.config.replica_timeout)).await
    }

    /// A connected channel, round-robin over the node's connections, reconnecting closed ones.
    async fn channel(&self) -> Result<Channel, Status> {
        let slot = self.next_channel.get() % self.channels.borrow().len();
        self.next_channel.set(slot + 1);
        if let Some(ch) = &self.channels.borrow()[slot] {
            if !ch.is_closed() {
                return Ok(ch.clone());
            }
        }
        let ch = Channel::connect(self.addr, &self.config.client).await?;
        self.channels.borrow_mut()[slot] = Some(ch.clone());
        Ok(ch)
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, sync::Arc};

    use super::*;
    use crate::{
        proto::storage::{ReadRequest, VectorClock, VectorClockEntry, Version, WriteRequest},
        rpc::RpcMetrics,
        storage::{
            engine::{Engine, EngineConfig},
            service::StorageService,
        },
    };

    fn config(local_calls: bool) -> Rc<LinkConfig> {
        Rc::new(LinkConfig {
            connections: 1,
            batching: true,
            max_batch_ops: 16,
            max_inflight_batches: 2,
            replica_timeout: Duration::from_millis(500),
            max_queued_ops: 64,
            client: ClientConfig {
                connect_timeout: Duration::from_millis(200),
                ..Default::default()
            },
            local_calls,
        })
    }

    fn write(key: &str, value: &'static [u8]) -> Op {
        Op::Write(WriteRequest {
            tenant_id: "t".into(),
            key: key.into(),
            version: Some(Version {
                value: bytes::Bytes::from_static(value),
                vector_clock: Some(VectorClock {
                    entries: vec![VectorClockEntry {
                        coordinator_node_id: "c/0".into(),
                        logical_timestamp: 1,
                    }],
                }),
                timestamp: 1,
                writer: "c/0".into(),
                ..Default::default()
            }),
        })
    }

    fn read(key: &str) -> Op {
        Op::Read(ReadRequest { tenant_id: "t".into(), key: key.into() })
    }

    /// A link to an address where nothing listens reaches a node this core serves in-process,
    /// and only while it is registered; with local calls off, the same operation goes to the
    /// network, fails, and is reported as missed (the hint path).
    #[test]
    fn batches_reach_a_node_served_in_this_process_without_the_network() {
        let dir = tempfile::tempdir().unwrap();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let engine = Arc::new(Engine::open(dir.path(), EngineConfig::default()).unwrap());
                let service = Arc::new(StorageService::new(engine, "s1".into(), "inc".into()));
                let metrics = Rc::new(RpcMetrics::default());
                // Port 9 (discard) on loopback: nothing listens in the test environment.
                let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
                let missed = Rc::new(RefCell::new(Vec::new()));
                let sink: HintSink = {
                    let missed = missed.clone();
                    Rc::new(move |node: &NodeId, _: &Op, status: &Status| {
                        missed.borrow_mut().push((node.to_string(), status.code))
                    })
                };
                let stats = Rc::new(LinkStats::default());
                let local = NodeLink::new(
                    NodeId::new("s1"),
                    addr,
                    config(true),
                    sink.clone(),
                    stats.clone(),
                );
                let registration =
                    crate::storage::local::register(addr, service.clone(), metrics.clone());

                let written = local.submit(write("k", b"v1")).await.unwrap().unwrap();
                assert!(matches!(
                    written,
                    BatchOutcome::Write(WriteResponse { applied: true, .. })
                ));
                match local.submit(read("k")).await.unwrap().unwrap() {
                    BatchOutcome::Read(r) => {
                        assert!(r.found);
                        assert_eq!(&r.version.unwrap().value[..], b"v1");
                    }
                    other => panic!("expected a read, got {other:?}"),
                }
                // Counted on the node as Batch calls, as over the network.
                let mut samples = Vec::new();
                metrics.samples(0, &mut samples);
                let batches = samples
                    .iter()
                    .find(|s| {
                        s.name == "pairdb_rpc_requests_total"
                            && s.labels.iter().any(|(k, v)| *k == "method" && v == "Batch")
                    })
                    .map(|s| s.value);
                assert_eq!(batches, Some(2.0));
                assert!(missed.borrow().is_empty());

                // The same node with local calls off: over the network, where nothing listens.
                let remote =
                    NodeLink::new(NodeId::new("s1"), addr, config(false), sink.clone(), stats);
                let status = remote.submit(write("k2", b"v2")).await.unwrap().unwrap_err();
                assert_eq!(missed.borrow().len(), 1, "{status:?}");

                // Once the node stops serving (its registration dropped), so does the shortcut.
                drop(registration);
                assert!(local.submit(read("k")).await.unwrap().is_err());
                assert_eq!(missed.borrow().len(), 2);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
