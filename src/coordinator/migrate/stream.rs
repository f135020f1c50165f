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
    config::MigrationSection,
    coordinator::{migrate::MoveMetrics, migrate::METRICS, shard::Shard, Shared},
    core::{
        ids::NodeId,
        migration::{
            pace::{PaceConfig, Pacer, Verdict, Window},
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

/// How often the pacer looks at the foreground ([`Window`]).
pub const PACE_WINDOW: Duration = Duration::from_millis(500);

/// The cluster-wide byte rate of a migration's (or anti-entropy's) streams, held by its
/// [`Pacer`]: with `migration.foreground_tolerance_pct` set (the default), the rate follows
/// the foreground's own latency on this coordinator (`core::migration::pace`); a page whose write
/// to its target is slower than `backoff_latency_ms` halves it as well. With pacing off, only
/// the byte cap and the page rule apply.
pub struct Throttle {
    pacer: RefCell<Pacer>,
    next: Cell<Instant>,
    backoff_latency: Duration,
    /// Bytes paced since the pacer's last window.
    streamed: Cell<u64>,
    paced: bool,
}

impl Throttle {
    /// A throttle for the `migration:` settings `cfg`. Call [`Throttle::govern`] to let the
    /// foreground drive it.
    pub fn new(cfg: &MigrationSection) -> Rc<Self> {
        let pace = PaceConfig::new(
            cfg.max_bytes_per_sec as f64,
            cfg.min_bytes_per_sec as f64,
            f64::from(cfg.foreground_tolerance_pct) / 100.0,
        );
        let pace = PaceConfig { window: PACE_WINDOW, ..pace };
        let paced = cfg.foreground_tolerance_pct > 0;
        Rc::new(Self {
            pacer: RefCell::new(if paced { Pacer::new(pace) } else { Pacer::unpaced(pace) }),
            next: Cell::new(Instant::now()),
            backoff_latency: Duration::from_millis(cfg.backoff_latency_ms),
            streamed: Cell::new(0),
            paced,
        })
    }

    /// Feeds the pacer a window of this coordinator's foreground every [`PACE_WINDOW`], for as
    /// long as the throttle lives. Nothing when pacing is off.
    pub fn govern(self: &Rc<Self>, shared: Arc<Shared>) {
        if !self.paced {
            return;
        }
        let weak = Rc::downgrade(self);
        glommio::spawn_local(async move {
            let mut last = shared.foreground.snapshot();
            loop {
                glommio::timer::sleep(PACE_WINDOW).await;
                let Some(t) = weak.upgrade() else { return };
                let now = shared.foreground.snapshot();
                let d = now.since(&last);
                last = now;
                let w = Window {
                    ops: d.ops,
                    p99: d.p99,
                    lag_p99: d.lag_p99,
                    streamed: t.streamed.replace(0),
                };
                let verdict = t.pacer.borrow_mut().on_window(w);
                match verdict {
                    Verdict::Backoff => MoveMetrics::add(&METRICS.foreground_backoffs, 1),
                    Verdict::Calibrated { p99, lag_p99 } => tracing::debug!(
                        p99_ms = p99.as_secs_f64() * 1e3,
                        poll_lag_p99_ms = lag_p99.as_secs_f64() * 1e3,
                        "data movement: foreground baseline measured"
                    ),
                    Verdict::Calibrating | Verdict::Increase => {}
                }
                METRICS.rate.store(t.rate() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .detach();
    }

    /// The current rate, bytes per second.
    pub fn rate(&self) -> f64 {
        self.pacer.borrow().rate()
    }

    /// A page's write to its target took `latency`.
    pub fn observe(&self, latency: Duration) {
        if self.pacer.borrow_mut().on_page(latency, self.backoff_latency) {
            MoveMetrics::add(&METRICS.backoffs, 1);
        }
    }

    /// Waits while the pacer measures the foreground, then until `bytes` more fit under the
    /// rate.
    pub async fn pace(&self, bytes: usize) {
        let waited = Instant::now();
        while self.pacer.borrow().paused() {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let now = Instant::now();
        let start = self.next.get().max(now);
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate());
        self.next.set(start + cost);
        self.streamed.set(self.streamed.get() + bytes as u64);
        if start > now {
            glommio::timer::sleep(start - now).await;
        }
        MoveMetrics::add(&METRICS.throttled_us, waited.elapsed().as_micros() as u64);
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
    /// Of those, the entries that changed the target (it lacked them or held an older version).
    pub applied: u64,
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
        let mut applied = 0;
        if !ops.is_empty() {
            self.throttle.pace(bytes as usize).await;
            let batch = pb::BatchRequest { operations: ops };
            let started = Instant::now();
            applied = self
                .retry(target, stop, |link| {
                    let batch = &batch;
                    async move {
                        let resp: pb::BatchResponse = link.call(BATCH, batch).await?;
                        match resp.results.iter().find_map(|r| match &r.result {
                            Some(BatchOutcome::Error(e)) => Some(e.message.clone()),
                            None => Some("empty result".to_owned()),
                            _ => None,
                        }) {
                            Some(e) => Err(Status::unavailable(format!("repair refused: {e}"))),
                            None => Ok(resp
                                .results
                                .iter()
                                .filter(|r| {
                                    matches!(&r.result, Some(BatchOutcome::Repair(a)) if a.applied)
                                })
                                .count() as u64),
                        }
                    }
                })
                .await?;
            self.throttle.observe(started.elapsed());
            MoveMetrics::add(&METRICS.keys_streamed, keys);
            MoveMetrics::add(&METRICS.bytes_streamed, bytes);
        }
        let next = (!scan.next_cursor.is_empty()).then(|| scan.next_cursor.to_vec());
        Ok(Page { keys, bytes, applied, next })
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
        Ok(Page { keys: evicted, bytes: 0, applied: evicted, next })
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
