//! Moving entries between storage nodes: one range from one source into one target, page by
//! page, as repairs that keep each entry's version (value, clock, timestamp, tombstone); and
//! the cleanup that evicts what a node no longer owns. Both go through the byte [`Throttle`]
//! and the per-node [`Slots`], and retry a node that does not answer before giving up.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    coordinator::{migrate::MoveMetrics, migrate::METRICS, shard::Shard},
    core::{
        ids::NodeId,
        migration::{
            placement::Placement,
            plan::{gaining, RfChange},
            sets::Side,
        },
        ring::{key_token, Ring, TokenRange, MAX_PREFERENCE_LIST},
    },
    proto::storage::{self as pb, batch_operation::Op, batch_result::Result as BatchOutcome},
    rpc::Status,
};

const SCAN: &str = "/pairdb.storage.v1.StorageService/ScanRange";
const BATCH: &str = "/pairdb.storage.v1.StorageService/Batch";
const EVICT: &str = "/pairdb.storage.v1.StorageService/Evict";

/// Failed calls in a row to one node before a stream or cleanup gives up (about a minute with
/// the backoff): a node restarting is waited for, a dead one is reported.
pub const MAX_RETRIES: u32 = 40;

/// The cluster-wide byte cap, adapted to the targets' latency: a page slower than
/// `backoff_latency` halves the rate (down to 1/64 of the cap), a faster one wins back 1/16.
pub struct Throttle {
    cap: f64,
    rate: Cell<f64>,
    next: Cell<Instant>,
    backoff_latency: Duration,
}

impl Throttle {
    /// A throttle at `bytes_per_sec`.
    pub fn new(bytes_per_sec: u64, backoff_latency: Duration) -> Self {
        let cap = bytes_per_sec.max(1) as f64;
        Self { cap, rate: Cell::new(cap), next: Cell::new(Instant::now()), backoff_latency }
    }

    /// The current rate, bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate.get()
    }

    /// A page's write to its target took `latency`.
    pub fn observe(&self, latency: Duration) {
        let rate = if latency > self.backoff_latency {
            MoveMetrics::add(&METRICS.backoffs, 1);
            (self.rate.get() / 2.0).max(self.cap / 64.0)
        } else {
            (self.rate.get() + self.cap / 16.0).min(self.cap)
        };
        self.rate.set(rate);
    }

    /// Waits until `bytes` more fit under the rate.
    pub async fn pace(&self, bytes: usize) {
        let now = Instant::now();
        let start = self.next.get().max(now);
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate.get());
        self.next.set(start + cost);
        if start > now {
            let wait = start - now;
            MoveMetrics::add(&METRICS.throttled_us, wait.as_micros() as u64);
            glommio::timer::sleep(wait).await;
        }
    }
}

/// Streams per node at once (`migration.max_streams_per_node`), counted for sources and
/// targets alike.
pub struct Slots {
    max: usize,
    used: RefCell<HashMap<NodeId, usize>>,
}

impl Slots {
    /// At most `max` per node.
    pub fn new(max: usize) -> Self {
        Self { max: max.max(1), used: RefCell::new(HashMap::new()) }
    }

    /// Takes a slot on each of `nodes`, waiting while any is full.
    pub async fn take(self: &Rc<Self>, nodes: &[NodeId]) -> SlotGuard {
        loop {
            let free = {
                let used = self.used.borrow();
                nodes.iter().all(|n| used.get(n).copied().unwrap_or(0) < self.max)
            };
            if free {
                let mut used = self.used.borrow_mut();
                for n in nodes {
                    *used.entry(n.clone()).or_default() += 1;
                }
                return SlotGuard { slots: self.clone(), nodes: nodes.to_vec() };
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Slots held; given back on drop.
pub struct SlotGuard {
    slots: Rc<Slots>,
    nodes: Vec<NodeId>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut used = self.slots.used.borrow_mut();
        for n in &self.nodes {
            if let Some(c) = used.get_mut(n) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

/// Which scanned entries a target should get.
#[derive(Clone)]
pub enum Want {
    /// A data movement: entries of tenants in `group` that `target` gains under `placement`.
    Gains { placement: Arc<Placement>, group: RfChange },
    /// Anti-entropy: entries of tenants of factor `rf` that `target` holds under `ring`.
    Owns { ring: Arc<Ring>, rf: usize },
}

/// What a page did.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Entries sent to the target.
    pub keys: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Where the next page starts; `None` once the range is exhausted.
    pub next: Option<Vec<u8>>,
}

/// Everything one stream needs.
pub struct Streamer {
    pub shard: Rc<Shard>,
    pub throttle: Rc<Throttle>,
    pub slots: Rc<Slots>,
    pub page_entries: u32,
}

impl Streamer {
    /// Copies one page of `range` from `source` into `target`, starting after `cursor`
    /// (empty: from the start). Retries each call up to [`MAX_RETRIES`] times while `stop`
    /// stays false; the error says which node failed.
    pub async fn page(
        &self,
        source: &NodeId,
        target: &NodeId,
        range: &TokenRange,
        cursor: &[u8],
        want: &Want,
        stop: &Cell<bool>,
    ) -> Result<Page, String> {
        let _slots = self.slots.take(&[source.clone(), target.clone()]).await;
        let req = pb::ScanRangeRequest {
            start_token: range.start_exclusive.0,
            end_token: range.end_inclusive.0,
            cursor: cursor.to_vec().into(),
            limit: self.page_entries,
            include_tombstones: true,
        };
        let scan: pb::ScanRangeResponse = self
            .retry(source, stop, |link| {
                let req = &req;
                async move { link.call(SCAN, req).await }
            })
            .await?;
        let mut ops = Vec::with_capacity(scan.entries.len());
        let mut bytes = 0u64;
        for e in scan.entries {
            if !self.wanted(&e, target, want).await {
                continue;
            }
            bytes += (e.tenant_id.len() + e.key.len()) as u64
                + e.version.as_ref().map_or(0, |v| v.value.len() as u64);
            ops.push(pb::BatchOperation {
                op: Some(Op::Repair(pb::RepairRequest {
                    tenant_id: e.tenant_id,
                    key: e.key,
                    version: e.version,
                })),
            });
        }
        let keys = ops.len() as u64;
        if !ops.is_empty() {
            self.throttle.pace(bytes as usize).await;
            let batch = pb::BatchRequest { operations: ops };
            let started = Instant::now();
            self.retry(target, stop, |link| {
                let batch = &batch;
                async move {
                    let resp: pb::BatchResponse = link.call(BATCH, batch).await?;
                    match resp.results.iter().find_map(|r| match &r.result {
                        Some(BatchOutcome::Error(e)) => Some(e.message.clone()),
                        None => Some("empty result".to_owned()),
                        _ => None,
                    }) {
                        Some(e) => Err(Status::unavailable(format!("repair refused: {e}"))),
                        None => Ok(()),
                    }
                }
            })
            .await?;
            self.throttle.observe(started.elapsed());
            MoveMetrics::add(&METRICS.keys_streamed, keys);
            MoveMetrics::add(&METRICS.bytes_streamed, bytes);
        }
        let next = (!scan.next_cursor.is_empty()).then(|| scan.next_cursor.to_vec());
        Ok(Page { keys, bytes, next })
    }

    /// Evicts from `node` one page of `range` (after `cursor`): the entries `node` does not
    /// hold under the `keep` side of `placement`.
    pub async fn evict_page(
        &self,
        node: &NodeId,
        range: &TokenRange,
        cursor: &[u8],
        placement: &Placement,
        keep: Side,
        stop: &Cell<bool>,
    ) -> Result<Page, String> {
        let _slots = self.slots.take(std::slice::from_ref(node)).await;
        let req = pb::ScanRangeRequest {
            start_token: range.start_exclusive.0,
            end_token: range.end_inclusive.0,
            cursor: cursor.to_vec().into(),
            limit: self.page_entries,
            include_tombstones: true,
        };
        let scan: pb::ScanRangeResponse = self
            .retry(node, stop, |link| {
                let req = &req;
                async move { link.call(SCAN, req).await }
            })
            .await?;
        let mut keys = Vec::new();
        for e in scan.entries {
            let Ok(tenant) = self.shard.tenant(&e.tenant_id).await else {
                continue; // an unknown tenant's data is left alone
            };
            let (old, new) =
                placement.replicas(&e.tenant_id, &e.key, tenant.replication_factor as usize);
            let owners = if keep == Side::New { new } else { old };
            if !owners.contains(node) {
                keys.push(pb::EvictKey { tenant_id: e.tenant_id, key: e.key });
            }
        }
        let evicted = keys.len() as u64;
        if !keys.is_empty() {
            let req = pb::EvictRequest { keys };
            self.retry(node, stop, |link| {
                let req = &req;
                async move { link.call::<_, pb::EvictResponse>(EVICT, req).await }
            })
            .await?;
            MoveMetrics::add(&METRICS.keys_evicted, evicted);
        }
        let next = (!scan.next_cursor.is_empty()).then(|| scan.next_cursor.to_vec());
        Ok(Page { keys: evicted, bytes: 0, next })
    }

    async fn wanted(&self, e: &pb::ScanEntry, target: &NodeId, want: &Want) -> bool {
        let Ok(tenant) = self.shard.tenant(&e.tenant_id).await else {
            return false;
        };
        let rf = tenant.replication_factor as usize;
        match want {
            Want::Gains { placement, group } => {
                let pair = placement.rf_pair(&e.tenant_id, rf);
                if pair != *group {
                    return false;
                }
                let (old, new) = placement.replicas(&e.tenant_id, &e.key, rf);
                gaining(&old, &new, pair).contains(&target)
            }
            Want::Owns { ring, rf: want_rf } => {
                rf == *want_rf
                    && ring
                        .preference_list(
                            key_token(&e.tenant_id, &e.key),
                            rf.min(MAX_PREFERENCE_LIST),
                        )
                        .contains(target)
            }
        }
    }

    async fn retry<T, F, Fut>(&self, node: &NodeId, stop: &Cell<bool>, call: F) -> Result<T, String>
    where
        F: Fn(Rc<crate::coordinator::link::NodeLink>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0u32;
        loop {
            if stop.get() {
                return Err("stopped".into());
            }
            let result = match self.shard.link(node) {
                Some(link) => call(link).await,
                None => Err(Status::unavailable(format!("no link to storage node {node}"))),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    attempt += 1;
                    if attempt >= MAX_RETRIES {
                        return Err(format!("storage node {node}: {}", e.message));
                    }
                    let backoff = Duration::from_millis(100 * u64::from(attempt.min(20)));
                    glommio::timer::sleep(backoff).await;
                }
            }
        }
    }
}
