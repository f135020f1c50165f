//! The coordinator's own metrics, kept per core next to the shard's `CoreStats`; `report` turns
//! them into samples when a scrape asks (see [`crate::metrics`] for how cores are merged).
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

use crate::core::ids::NodeId;

/// Per-core coordinator metrics that the shard's `CoreStats` does not hold.
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
    /// Key-value requests refused by a tenant's `requests_per_second`.
    pub rate_limited_requests: Cell<u64>,
    /// Key-value requests refused by a tenant's `bytes_per_second`.
    pub rate_limited_bytes: Cell<u64>,
}

impl CoreMetrics {
    /// Counts an idempotency lookup (only requests that carried a client key).
    pub fn idempotency(&self, hit: bool) {
        let cell = if hit { &self.idempotency_hits } else { &self.idempotency_misses };
        cell.set(cell.get() + 1);
    }
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
