//! What one coordinator core reports when scraped: its gRPC calls, fan-out, quorum failures,
//! repairs, hints, caches and ring, read from the shard's counters and machines.

use crate::{
    coordinator::shard::{CoreStats, Shard as Core},
    core::ids::NodeId,
    metrics::Sample,
    rpc::RpcMetrics,
};

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
            repairs.dropped_full + repairs.dropped_attempts,
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
    for (reason, v) in
        [("requests", m.rate_limited_requests.get()), ("bytes", m.rate_limited_bytes.get())]
    {
        out.push(
            Sample::counter(
                "pairdb_tenant_rate_limited_total",
                "Key-value requests refused with RATE_LIMITED, by the limit that refused them.",
                v,
            )
            .label("reason", reason),
        );
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
