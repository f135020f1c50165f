//! The coordinator's own metrics, kept per core next to [`CoreStats`] and collected into
//! [`Sample`]s when a scrape asks (see [`crate::metrics`] for how cores are merged).
//!
//! Everything here is written by its core only (`Cell`, `RefCell`). The fan-out latencies are
//! kept by the links (`LinkStats::fanout`), per storage node, from handing the operation to the
//! node's link to its reply: they include batching and queueing on this core, which is what a
//! request actually waits for, and they count replies that arrive after the request answered.

use std::{
    cell::Cell,
    fmt::Write as _,
    time::{Duration, Instant},
};

use crate::{
    coordinator::shard::{CoreStats, Shard as Core},
    core::ids::NodeId,
    metrics::Sample,
    rpc::RpcMetrics,
};

/// Per-core coordinator metrics that [`CoreStats`] does not hold.
#[derive(Default)]
pub struct CoreMetrics {
    /// Tenant lookups answered from the core's cache.
    pub tenant_cache_hits: Cell<u64>,
    /// Tenant lookups that went to the metadata store.
    pub tenant_cache_misses: Cell<u64>,
    /// Writes and deletes with a client idempotency key answered from a stored response.
    pub idempotency_hits: Cell<u64>,
    /// Writes and deletes with a client idempotency key that ran.
    pub idempotency_misses: Cell<u64>,
    /// Answers of unkeyed writes and deletes not stored under their generated key because the
    /// embedded table had no room left for such records.
    pub idempotency_generated_unstored: Cell<u64>,
    /// Hints dropped because the core's hint buffer was full.
    pub hints_buffer_full: Cell<u64>,
    /// Hints delivered by replay (core 0 replays).
    pub hints_replayed: Cell<u64>,
    /// Requests logged as slow.
    pub slow_requests: Cell<u64>,
}

impl CoreMetrics {
    /// Counts an idempotency lookup (only requests that carried a client key).
    pub fn idempotency(&self, hit: bool) {
        let cell = if hit { &self.idempotency_hits } else { &self.idempotency_misses };
        cell.set(cell.get() + 1);
    }
}

/// Everything core `core` reports: its gRPC calls, fan-out, quorum, repairs, hints, caches.
pub fn samples(core: &Core, rpc: &RpcMetrics) -> Vec<Sample> {
    let mut out = Vec::with_capacity(64);
    rpc.samples(core.index, &mut out);
    let m = &core.metrics;
    let s: &CoreStats = &core.stats;
    let repairs = core.repairs.borrow().stats();
    let hint_buffer = core.hint_buffer_stats();
    let inbox_full = if core.index == 0 {
        // Process-wide: reported once, by core 0.
        core.shared.inbox_full.load(std::sync::atomic::Ordering::Relaxed)
    } else {
        0
    };
    let counters: [(&'static str, &'static str, u64); 18] = [
        (
            "pairdb_quorum_failures_total",
            "Requests answered UNAVAILABLE because too few replicas answered.",
            s.quorum_failures.get(),
        ),
        ("pairdb_read_repairs_queued_total", "Read repairs queued.", repairs.queued),
        ("pairdb_read_repairs_done_total", "Read repairs acknowledged.", repairs.done),
        (
            "pairdb_read_repairs_dropped_total",
            "Read repairs dropped (queue full or attempts exhausted).",
            s.repairs_dropped.get(),
        ),
        (
            "pairdb_read_repair_retries_total",
            "Read repair sends that failed and were scheduled again.",
            repairs.retries,
        ),
        (
            "pairdb_read_repairs_skipped_total",
            "Reads whose late replies were not awaited (too many reads settling on the core).",
            s.repairs_skipped.get(),
        ),
        (
            "pairdb_hints_stored_total",
            "Hints the hint store accepted (new, or merged into a stored hint of the same key).",
            s.hints_stored.get(),
        ),
        (
            "pairdb_hints_dropped_total",
            "Hints dropped: the core's buffer was full, or the hint store failed.",
            s.hints_dropped.get() + m.hints_buffer_full.get(),
        ),
        (
            "pairdb_hints_coalesced_total",
            "Hints merged into a hint of the same node and key (in the core's buffer or the store).",
            hint_buffer.coalesced + s.hints_coalesced_in_store.get(),
        ),
        (
            "pairdb_coordinator_inbox_full_total",
            "Updates not delivered to a core because its inbox was full (the core then reloads).",
            inbox_full,
        ),
        ("pairdb_hints_replayed_total", "Hints delivered by replay.", m.hints_replayed.get()),
        (
            "pairdb_idempotency_skipped_total",
            "Writes that went on without idempotency because the store was full or unreachable.",
            s.idempotency_skipped.get(),
        ),
        (
            "pairdb_tenant_cache_hits_total",
            "Tenant lookups answered from the core's cache.",
            m.tenant_cache_hits.get(),
        ),
        (
            "pairdb_tenant_cache_misses_total",
            "Tenant lookups that went to the metadata store.",
            m.tenant_cache_misses.get(),
        ),
        (
            "pairdb_idempotency_hits_total",
            "Requests with an idempotency key answered from a stored response.",
            m.idempotency_hits.get(),
        ),
        (
            "pairdb_idempotency_misses_total",
            "Requests with an idempotency key that ran.",
            m.idempotency_misses.get(),
        ),
        (
            "pairdb_idempotency_generated_unstored_total",
            "Answers of unkeyed writes not stored under their generated idempotency key (table full).",
            m.idempotency_generated_unstored.get(),
        ),
        (
            "pairdb_slow_requests_total",
            "Requests over the slow-request threshold.",
            m.slow_requests.get(),
        ),
    ];
    for (name, help, v) in counters {
        out.push(Sample::counter(name, help, v));
    }
    let links = &core.link_stats;
    out.push(Sample::counter(
        "pairdb_batches_total",
        "Batch calls sent to storage nodes.",
        links.batches.get(),
    ));
    out.push(Sample::counter(
        "pairdb_batched_ops_total",
        "Operations sent inside Batch calls.",
        links.batched_ops.get(),
    ));
    out.push(Sample::sizes(
        "pairdb_batch_ops",
        "Operations per Batch call to a storage node.",
        &links.batch_sizes.borrow(),
    ));
    out.push(
        Sample::gauge(
            "pairdb_hints_buffered",
            "Hints in the core's memory buffer, not yet in the hint store.",
            core.buffered_hints() as f64,
        )
        .label("core", core.index.to_string()),
    );
    let ring = core.ring();
    out.push(
        Sample::gauge(
            "pairdb_ring_epoch",
            "Ring membership generation in force.",
            ring.epoch() as f64,
        )
        .max_across_cores(),
    );
    let fanout = links.fanout.borrow();
    let mut nodes: Vec<&NodeId> = fanout.keys().collect();
    nodes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    for node in nodes {
        let f = &fanout[node];
        out.push(
            Sample::latency(
                "pairdb_replica_latency_seconds",
                "Storage operation latency per node, from the link's queue to the reply.",
                &f.latency,
            )
            .label("node", node.as_str()),
        );
        out.push(
            Sample::counter(
                "pairdb_replica_errors_total",
                "Storage operations that failed or timed out, per node.",
                f.errors,
            )
            .label("node", node.as_str()),
        );
    }
    if core.index == 0 {
        for link in core.links() {
            out.push(
                Sample::gauge(
                    "pairdb_storage_node_up",
                    "1 while the health checker sees the node up.",
                    {
                        if link.is_down() {
                            0.0
                        } else {
                            1.0
                        }
                    },
                )
                .label("node", link.id().as_str()),
            );
        }
    }
    out
}

/// When each replica of one request answered, for the slow-request log. One small allocation
/// per request; node ids are moved in, not cloned.
pub struct ReplicaTimings {
    started: Instant,
    replies: Vec<(NodeId, Duration, bool)>,
}

impl ReplicaTimings {
    /// Starts the clock for a request to `replicas` nodes.
    pub fn new(replicas: usize) -> Self {
        Self { started: Instant::now(), replies: Vec::with_capacity(replicas) }
    }

    /// `node` answered now, successfully or not.
    pub fn reply(&mut self, node: NodeId, ok: bool) {
        self.replies.push((node, self.started.elapsed(), ok));
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The number of replicas asked.
    pub fn capacity(&self) -> usize {
        self.replies.capacity()
    }

    /// `node=1.234ms ok, node=3.000ms failed, node=no reply` for every node of `preference`.
    pub fn describe(&self, preference: &[NodeId]) -> String {
        let mut out = String::new();
        for (i, node) in preference.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match self.replies.iter().find(|(n, _, _)| n == node) {
                Some((_, t, ok)) => {
                    let state = if *ok { "ok" } else { "failed" };
                    let _ = write!(out, "{node}={:.3}ms {state}", t.as_secs_f64() * 1e3);
                }
                None => {
                    let _ = write!(out, "{node}=no reply");
                }
            }
        }
        out
    }
}

/// A key's hash for logs: identifies a hot or slow key across log lines without writing the
/// key, which may be personal data.
pub fn key_hash(key: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}
