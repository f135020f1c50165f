//! `pairdb.storage.v1.StorageService`: the RPC face of a storage node's [`Engine`].
//!
//! Engine calls run inline on the request core in group-commit mode: an apply is a memtable
//! insert plus a buffered journal write to the OS page cache (microseconds), and the fsync happens
//! on the engine's syncer thread. In `Sync` mode every write waits for `fdatasync`, so writes then
//! run on glommio's blocking thread pool instead, never on the core itself. A `Batch` is applied
//! with one journal persist for all of its writes. `Evict` always runs on the blocking pool: it
//! is background cleanup of up to [`MAX_EVICT_KEYS`] keys, never worth a request core's time.

use std::{sync::Arc, time::Instant};

use crate::{
    core::version::Version,
    error::PairError,
    proto::storage::{
        self as pb, batch_operation::Op, batch_result::Result as BatchOutcome, BatchRequest,
        BatchResponse, BatchResult, DeleteRequest, DeleteResponse, EvictRequest, EvictResponse,
        HealthCheckRequest, HealthCheckResponse, RangeDigestRequest, RangeDigestResponse,
        ReadRequest, ReadResponse, RepairRequest, RepairResponse, ScanRangeRequest,
        ScanRangeResponse, StatsRequest, StatsResponse, WriteRequest, WriteResponse,
    },
    rpc::{framing::DEFAULT_MAX_MESSAGE_BYTES, CallContext, Router, Status},
    storage::engine::{Applied, ApplyOp, Durability, Engine, EngineError},
};

/// Longest a write waits on a request core for the engine's flush to catch up before it is
/// committed anyway. Far above a healthy flush, short of a client's usual deadline.
const MAX_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most operations one `Batch` may carry: bounds the work and memory of one call.
pub const MAX_BATCH_OPERATIONS: usize = 10_000;
/// Default and largest `ScanRange` page.
pub const DEFAULT_SCAN_LIMIT: usize = 1_000;
/// Largest `ScanRange` page a caller may ask for.
pub const MAX_SCAN_LIMIT: usize = 10_000;
/// Most keys one `Evict` may list; more is INVALID_ARGUMENT (`BATCH_TOO_LARGE`, as for `Batch`).
/// Bounds the work and memory of one call; a caller evicting more splits it into several calls.
pub const MAX_EVICT_KEYS: usize = 10_000;

const SERVICE: &str = "/pairdb.storage.v1.StorageService/";
/// The `Batch` method's path: what coordinators call, and what a local call is counted under.
pub const BATCH_PATH: &str = "/pairdb.storage.v1.StorageService/Batch";

/// State shared by one node's handlers on one core.
pub struct StorageService {
    engine: Arc<Engine>,
    node_id: String,
    /// The data directory's id (see [`crate::storage::incarnation`]), for HealthCheck and Stats.
    incarnation_id: String,
    started: Instant,
    /// Stored bytes one `ScanRange` page may carry, so that its reply fits one message.
    max_scan_page_bytes: usize,
}

impl StorageService {
    /// A service over `engine`, for replies of at most [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub fn new(engine: Arc<Engine>, node_id: String, incarnation_id: String) -> Self {
        Self {
            engine,
            node_id,
            incarnation_id,
            started: Instant::now(),
            max_scan_page_bytes: scan_page_bytes(DEFAULT_MAX_MESSAGE_BYTES),
        }
    }

    /// Sizes `ScanRange` pages for replies of at most `max_message_bytes`.
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_scan_page_bytes = scan_page_bytes(max_message_bytes);
        self
    }

    /// Adds every StorageService method to `router`.
    pub fn register(self: Arc<Self>, router: Router) -> Router {
        let dg = self.clone();
        let (w, r, d, rp, h, b, sc, st, ev) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self,
        );
        router
            .unary(&format!("{SERVICE}Write"), move |req: WriteRequest, _: CallContext| {
                let svc = w.clone();
                async move {
                    let version = incoming(&req.tenant_id, &req.key, req.version.as_ref(), false)?;
                    let a = svc.apply_one(req.tenant_id, req.key, version).await?;
                    Ok(WriteResponse { applied: a.applied, current: Some((&a.current).into()) })
                }
            })
            .unary(&format!("{SERVICE}Read"), move |req: ReadRequest, _: CallContext| {
                let result = r.read(&req);
                async move { result }
            })
            .unary(&format!("{SERVICE}Delete"), move |req: DeleteRequest, _: CallContext| {
                let svc = d.clone();
                async move {
                    let version = incoming(&req.tenant_id, &req.key, req.version.as_ref(), true)?;
                    let a = svc.apply_one(req.tenant_id, req.key, version).await?;
                    Ok(DeleteResponse { applied: a.applied, current: Some((&a.current).into()) })
                }
            })
            .unary(&format!("{SERVICE}Repair"), move |req: RepairRequest, _: CallContext| {
                let svc = rp.clone();
                async move {
                    let version = incoming(&req.tenant_id, &req.key, req.version.as_ref(), false)?;
                    let a = svc.apply_one(req.tenant_id, req.key, version).await?;
                    Ok(RepairResponse { applied: a.applied, current: Some((&a.current).into()) })
                }
            })
            .unary(
                &format!("{SERVICE}HealthCheck"),
                move |_: HealthCheckRequest, _: CallContext| {
                    let reply = HealthCheckResponse {
                        status: "SERVING".into(),
                        node_id: h.node_id.clone(),
                        uptime_seconds: h.started.elapsed().as_secs(),
                        incarnation_id: h.incarnation_id.clone(),
                    };
                    async move { Ok(reply) }
                },
            )
            .unary(BATCH_PATH, move |req: BatchRequest, _: CallContext| {
                let svc = b.clone();
                async move { svc.batch(req).await }
            })
            .unary(&format!("{SERVICE}ScanRange"), move |req: ScanRangeRequest, _: CallContext| {
                let result = sc.scan(&req);
                async move { result }
            })
            .unary(&format!("{SERVICE}Stats"), move |_: StatsRequest, _: CallContext| {
                let result =
                    st.engine.stats().map_err(|e| engine_status(&e)).map(|s| StatsResponse {
                        node_id: st.node_id.clone(),
                        key_count: s.key_count,
                        tombstone_count: s.tombstone_count,
                        disk_bytes: s.disk_bytes,
                        disk_usage_percent: s.disk_usage_percent,
                        incarnation_id: st.incarnation_id.clone(),
                    });
                async move { result }
            })
            .unary(&format!("{SERVICE}Evict"), move |req: EvictRequest, _: CallContext| {
                let svc = ev.clone();
                async move { svc.evict(req).await }
            })
            .unary(
                &format!("{SERVICE}RangeDigest"),
                move |req: RangeDigestRequest, _: CallContext| {
                    let svc = dg.clone();
                    async move { svc.digest(req).await }
                },
            )
    }

    async fn apply_one(
        &self,
        tenant_id: String,
        key: String,
        version: Version,
    ) -> Result<Applied, Status> {
        if self.engine.durability() == Durability::Sync {
            let engine = self.engine.clone();
            // fdatasync per write: keep it off the request core.
            return glommio::executor()
                .spawn_blocking(move || engine.apply(&tenant_id, &key, &version))
                .await
                .map_err(|e| engine_status(&e));
        }
        self.wait_for_flush().await;
        self.engine.apply(&tenant_id, &key, &version).map_err(|e| engine_status(&e))
    }

    /// Yields this core while the engine would stall writers (see [`Engine::write_stalled`]),
    /// instead of letting fjall sleep the whole executor thread, for at most
    /// [`MAX_FLUSH_WAIT`]; after that the write goes ahead and fjall applies its own
    /// backpressure.
    async fn wait_for_flush(&self) {
        if !self.engine.write_stalled() {
            return;
        }
        let started = std::time::Instant::now();
        let give_up = started + MAX_FLUSH_WAIT;
        while self.engine.write_stalled() && std::time::Instant::now() < give_up {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Counted (`pairdb_storage_write_stall*`), so that a stall shows in the metrics.
        self.engine.record_stall_wait(started.elapsed());
    }

    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, Status> {
        check_key(&req.tenant_id, &req.key)?;
        match self.engine.read(&req.tenant_id, &req.key).map_err(|e| engine_status(&e))? {
            Some(v) => Ok(ReadResponse { found: true, version: Some((&v).into()) }),
            None => Ok(ReadResponse { found: false, version: None }),
        }
    }

    fn scan(&self, req: &ScanRangeRequest) -> Result<ScanRangeResponse, Status> {
        let limit = match req.limit as usize {
            0 => DEFAULT_SCAN_LIMIT,
            n => n.min(MAX_SCAN_LIMIT),
        };
        let (entries, next_cursor) = self
            .engine
            .scan_range_within(
                req.start_token,
                req.end_token,
                &req.cursor,
                limit,
                req.include_tombstones,
                self.max_scan_page_bytes,
            )
            .map_err(|e| engine_status(&e))?;
        Ok(ScanRangeResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::ScanEntry {
                    tenant_id: e.tenant_id,
                    key: e.key,
                    token: e.token,
                    version: Some((&e.version).into()),
                })
                .collect(),
            next_cursor: next_cursor.into(),
        })
    }

    /// Removes the listed entries outright (see [`Engine::evict`]). At most [`MAX_EVICT_KEYS`]
    /// keys; every key is checked before any is removed, and one bad tenant id or key fails the
    /// whole call with INVALID_ARGUMENT.
    async fn evict(&self, req: EvictRequest) -> Result<EvictResponse, Status> {
        if req.keys.len() > MAX_EVICT_KEYS {
            return Err(PairError::BatchTooLarge(format!(
                "evict of {} keys exceeds the limit of {MAX_EVICT_KEYS}",
                req.keys.len()
            ))
            .into());
        }
        for k in &req.keys {
            check_key(&k.tenant_id, &k.key)?;
        }
        if req.keys.is_empty() {
            return Ok(EvictResponse { evicted: 0 });
        }
        let engine = self.engine.clone();
        let evicted = glommio::executor()
            .spawn_blocking(move || {
                let keys: Vec<(&str, &str)> =
                    req.keys.iter().map(|k| (k.tenant_id.as_str(), k.key.as_str())).collect();
                engine.evict(&keys)
            })
            .await
            .map_err(|e| engine_status(&e))?;
        Ok(EvictResponse { evicted })
    }

    /// Anti-entropy's digest of one tenant's records in a token range. It reads up to
    /// `MAX_DIGEST_RECORDS` records, so it runs on the blocking pool, never on the core.
    async fn digest(&self, req: RangeDigestRequest) -> Result<RangeDigestResponse, Status> {
        if req.tenant_id.is_empty() {
            return Err(PairError::invalid("tenant_id is required").into());
        }
        let engine = self.engine.clone();
        let d = glommio::executor()
            .spawn_blocking(move || {
                engine.digest_range(&req.tenant_id, req.start_token, req.end_token)
            })
            .await
            .map_err(|e| engine_status(&e))?;
        Ok(RangeDigestResponse { digest: d.digest, entries: d.entries, complete: d.complete })
    }

    /// Applies a `Batch`: the RPC's handler, and the local path of [`crate::storage::local`].
    pub(crate) async fn batch(self: Arc<Self>, req: BatchRequest) -> Result<BatchResponse, Status> {
        if req.operations.len() > MAX_BATCH_OPERATIONS {
            return Err(PairError::BatchTooLarge(format!(
                "batch of {} operations exceeds the limit of {MAX_BATCH_OPERATIONS}",
                req.operations.len()
            ))
            .into());
        }
        // Validate everything first; writes of the batch then share one journal persist.
        let mut results: Vec<Option<BatchOutcome>> = vec![None; req.operations.len()];
        let mut writes: Vec<(usize, String, String, Version)> = Vec::new();
        let mut kinds: Vec<WriteKind> = Vec::new();
        for (i, op) in req.operations.into_iter().enumerate() {
            let (tenant_id, key, version, kind) = match op.op {
                Some(Op::Read(r)) => {
                    results[i] = Some(match self.read(&r) {
                        Ok(reply) => BatchOutcome::Read(reply),
                        Err(status) => op_error(&status),
                    });
                    continue;
                }
                Some(Op::Write(w)) => (w.tenant_id, w.key, w.version, WriteKind::Write),
                Some(Op::Delete(d)) => (d.tenant_id, d.key, d.version, WriteKind::Delete),
                Some(Op::Repair(r)) => (r.tenant_id, r.key, r.version, WriteKind::Repair),
                None => {
                    results[i] =
                        Some(op_error(&Status::invalid_argument("batch operation has no op")));
                    continue;
                }
            };
            match incoming(&tenant_id, &key, version.as_ref(), kind == WriteKind::Delete) {
                Ok(v) => {
                    writes.push((i, tenant_id, key, v));
                    kinds.push(kind);
                }
                Err(status) => results[i] = Some(op_error(&status)),
            }
        }
        if !writes.is_empty() {
            if self.engine.durability() != Durability::Sync {
                self.wait_for_flush().await;
            }
            let applied = if self.engine.durability() == Durability::Sync {
                let engine = self.engine.clone();
                let (applied, returned) = glommio::executor()
                    .spawn_blocking(move || {
                        let ops: Vec<ApplyOp<'_>> = writes
                            .iter()
                            .map(|(_, t, k, v)| ApplyOp { tenant_id: t, key: k, version: v })
                            .collect();
                        let applied = engine.apply_batch(&ops);
                        (applied, writes)
                    })
                    .await;
                writes = returned;
                applied
            } else {
                let ops: Vec<ApplyOp<'_>> = writes
                    .iter()
                    .map(|(_, t, k, v)| ApplyOp { tenant_id: t, key: k, version: v })
                    .collect();
                self.engine.apply_batch(&ops)
            };
            for (((i, _, _, _), kind), result) in writes.iter().zip(kinds).zip(applied) {
                results[*i] = Some(match result {
                    Ok(a) => {
                        let (applied, current) = (a.applied, Some((&a.current).into()));
                        match kind {
                            WriteKind::Write => {
                                BatchOutcome::Write(WriteResponse { applied, current })
                            }
                            WriteKind::Delete => {
                                BatchOutcome::Delete(DeleteResponse { applied, current })
                            }
                            WriteKind::Repair => {
                                BatchOutcome::Repair(RepairResponse { applied, current })
                            }
                        }
                    }
                    Err(e) => op_error(&engine_status(&e)),
                });
            }
        }
        Ok(BatchResponse {
            results: results.into_iter().map(|result| BatchResult { result }).collect(),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Write,
    Delete,
    Repair,
}

/// The stored-bytes budget of a `ScanRange` page whose reply must fit `max_message_bytes`. Half:
/// the protobuf reply adds a few dozen bytes per entry to what is stored (a full page of
/// `MAX_SCAN_LIMIT` tiny records adds well under a megabyte), and one record alone may still
/// exceed the budget (the engine always returns at least one).
fn scan_page_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes / 2
}

/// Validates the incoming version of a write, delete or repair.
fn incoming(
    tenant_id: &str,
    key: &str,
    version: Option<&pb::Version>,
    tombstone: bool,
) -> Result<Version, Status> {
    check_key(tenant_id, key)?;
    let Some(version) = version else {
        return Err(PairError::invalid("version is required").into());
    };
    let mut version = Version::try_from(version)
        .map_err(|e| Status::from(PairError::invalid(format!("invalid version: {e}"))))?;
    if tombstone {
        version.tombstone = true;
        version.value = Default::default();
    }
    Ok(version)
}

fn check_key(tenant_id: &str, key: &str) -> Result<(), Status> {
    if tenant_id.is_empty() {
        return Err(PairError::invalid("tenant_id is required").into());
    }
    if key.is_empty() {
        return Err(PairError::invalid("key is required").into());
    }
    Ok(())
}

fn op_error(status: &Status) -> BatchOutcome {
    BatchOutcome::Error(crate::convert::operation_error(status))
}

/// An engine error as the caller sees it (its gRPC status is chosen in `rpc::status`).
pub fn engine_error(e: &EngineError) -> PairError {
    match e {
        EngineError::KeyTooLarge { .. }
        | EngineError::ValueTooLarge { .. }
        | EngineError::ActorTooLong { .. }
        | EngineError::TombstoneWithValue
        | EngineError::EmptyClock
        | EngineError::InvalidCursor => PairError::invalid(e.to_string()),
        EngineError::Backend(_) | EngineError::Io(_) => PairError::StorageUnavailable(format!(
            "{e}: {}",
            std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default()
        )),
        EngineError::Corrupt { .. } => PairError::StorageCorrupt(e.to_string()),
    }
}

/// [`engine_error`] as a gRPC status.
pub fn engine_status(e: &EngineError) -> Status {
    Status::from(engine_error(e))
}
