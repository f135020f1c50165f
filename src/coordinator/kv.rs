//! The key-value handlers of a shard (`WriteKeyValue`, `DeleteKeyValue`, `ReadKeyValue`) and
//! the driver that pumps a request's machine: sends what it asks for, feeds replies and its one
//! timer back in, and stops at its outcome.
//!
//! The deadline of a request is the earlier of `replica_timeout_ms` and the client's own
//! (`grpc-timeout`). A request dropped before its outcome (the client's deadline passed, or it
//! went away) releases what it holds: its idempotency claim through [`ClaimGuard`]'s `Drop`, and
//! its operations stay with the links, which still turn a missed write into a hint.

use std::{
    future::Future,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, Stream};
use prost::Message;

use crate::{
    config::OnUnavailable,
    coordinator::{
        driver::{drive, settle, ReadPump, WritePump},
        link::OpReply,
        metrics::{key_hash, ReplicaTimings},
        shard::{unix_now_us, RepairJob, Shard, MAX_UNSETTLED_READS},
    },
    core::{
        idempotency::{fingerprint, Operation},
        ids::NodeId,
        quorum::Level,
        read::{ReadRequest, Repair},
        validate,
        vclock::VClock,
        write::WriteRequest,
    },
    error::PairError,
    idempotency::{Claim, IdempotencyBackend, IdempotencyKey},
    proto::{
        coordinator as api,
        storage::{self as pb, batch_operation::Op},
    },
    rpc::CallContext,
};

/// How long a request waits for an identical in-flight request (same idempotency key) to
/// finish, unless the client's deadline is sooner.
const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(5);

impl Shard {
    pub(crate) async fn write_key_value(
        self: Rc<Self>,
        req: api::WriteKeyValueRequest,
        ctx: CallContext,
    ) -> Result<api::WriteKeyValueResponse, PairError> {
        let cfg = &self.shared.config;
        validate::key(&req.tenant_id, &req.key, cfg.max_key_bytes)?;
        validate::value(req.value.len(), cfg.max_value_bytes)?;
        let level = level(req.consistency)?;
        let context = client_clock(req.vector_clock.as_ref())?;
        let tenant = self.tenant(&req.tenant_id).await?;
        // Before the idempotency claim and any fan-out: a refusal costs nothing downstream.
        self.admit(&tenant, req.key.len(), req.value.len())?;
        let fingerprint = fingerprint(Operation::Write, level, &req.value, context.as_ref());
        let (tenant_id, key) = (&req.tenant_id, &req.key);
        let write = Mutation { value: req.value.clone(), tombstone: false, level, context };
        let outcome = self
            .idempotent(tenant_id, key, &req.idempotency_key, fingerprint, ctx.deadline, || {
                self.replicate(&tenant, tenant_id, key, write, ctx.deadline)
            })
            .await?;
        let resp = match outcome {
            Idempotent::Fresh { clock, acks, idempotency_key } => api::WriteKeyValueResponse {
                key: req.key.clone(),
                idempotency_key,
                vector_clock: Some((&clock).into()),
                replica_count: acks as i32,
                consistency: req.consistency,
                is_duplicate: false,
            },
            Idempotent::Duplicate(bytes) => {
                let mut resp = decode_stored::<api::WriteKeyValueResponse>(bytes)?;
                resp.is_duplicate = true;
                resp
            }
        };
        Ok(self.remember(tenant_id, key, !req.idempotency_key.is_empty(), fingerprint, resp))
    }

    pub(crate) async fn delete_key_value(
        self: Rc<Self>,
        req: api::DeleteKeyValueRequest,
        ctx: CallContext,
    ) -> Result<api::DeleteKeyValueResponse, PairError> {
        validate::key(&req.tenant_id, &req.key, self.shared.config.max_key_bytes)?;
        let level = level(req.consistency)?;
        let context = client_clock(req.vector_clock.as_ref())?;
        let tenant = self.tenant(&req.tenant_id).await?;
        self.admit(&tenant, req.key.len(), 0)?;
        let fingerprint = fingerprint(Operation::Delete, level, b"", context.as_ref());
        let (tenant_id, key) = (&req.tenant_id, &req.key);
        let delete = Mutation { value: Bytes::new(), tombstone: true, level, context };
        let outcome = self
            .idempotent(tenant_id, key, &req.idempotency_key, fingerprint, ctx.deadline, || {
                self.replicate(&tenant, tenant_id, key, delete, ctx.deadline)
            })
            .await?;
        let resp = match outcome {
            Idempotent::Fresh { clock, acks, idempotency_key } => api::DeleteKeyValueResponse {
                key: key.clone(),
                vector_clock: Some((&clock).into()),
                replica_count: acks as i32,
                idempotency_key,
                is_duplicate: false,
            },
            Idempotent::Duplicate(bytes) => {
                let mut resp = decode_stored::<api::DeleteKeyValueResponse>(bytes)?;
                resp.is_duplicate = true;
                resp
            }
        };
        Ok(self.remember(tenant_id, key, !req.idempotency_key.is_empty(), fingerprint, resp))
    }

    pub(crate) async fn read_key_value(
        self: Rc<Self>,
        req: api::ReadKeyValueRequest,
        ctx: CallContext,
    ) -> Result<api::ReadKeyValueResponse, PairError> {
        validate::key(&req.tenant_id, &req.key, self.shared.config.max_key_bytes)?;
        let level = level(req.consistency)?;
        self.check_fresh()?;
        let tenant = self.tenant(&req.tenant_id).await?;
        // The value read is charged once known (`charge_read`), leaving the byte bucket in debt.
        self.admit(&tenant, req.key.len(), 0)?;
        let rf = tenant.replication_factor as usize;
        let sets = self.key_sets(&req.tenant_id, &req.key, rf, level);
        // During a data movement the read set may stand for another factor (the old or the new).
        let read_rf = if self.placement().is_some() { sets.read.len().max(1) } else { rf };
        let mut pump = ReadPump {
            read: ReadRequest::new(sets.read, level, read_rf, self.deadline(ctx.deadline)),
            timings: ReplicaTimings::new(read_rf),
        };
        let mut replies = FuturesUnordered::new();
        while let Some(node) = pump.read.poll_send() {
            let op = Op::Read(pb::ReadRequest {
                tenant_id: req.tenant_id.clone(),
                key: req.key.clone(),
            });
            replies.push(self.send(node, op));
        }
        let outcome = drive(&mut pump, &mut replies).await;
        let ok = outcome.is_ok();
        self.log_if_slow("read", &req.tenant_id, &req.key, level, &pump.timings, ok);
        let outcome = outcome.map_err(|e| self.quorum_failed(e))?;
        // Read repair happens after the answer: the rest of the replies are collected apart so
        // that no answer waits for a slow replica.
        self.clone().settle_read(pump, replies, &req.tenant_id, &req.key);
        match outcome.newest {
            Some(v) if !v.tombstone => {
                self.charge_read(&tenant.tenant_id, v.value.len());
                Ok(api::ReadKeyValueResponse {
                    key: req.key,
                    value: v.value,
                    vector_clock: Some((&v.clock).into()),
                    replica_count: outcome.replies as i32,
                })
            }
            _ => Err(PairError::KeyNotFound { tenant_id: req.tenant_id, key: req.key }),
        }
    }

    /// The deadline of a fan-out starting now: `replica_timeout_ms`, or the client's if sooner.
    fn deadline(&self, client: Option<Instant>) -> Instant {
        let own = Instant::now() + self.link_config.replica_timeout;
        client.map_or(own, |c| c.min(own))
    }

    /// Writes a new version of `key` to its replicas and waits for the level. Returns the
    /// version's clock and the acks counted.
    async fn replicate(
        &self,
        tenant: &crate::meta::TenantRecord,
        tenant_id: &str,
        key: &str,
        m: Mutation,
        client_deadline: Option<Instant>,
    ) -> Result<(VClock, usize), PairError> {
        self.check_fresh()?;
        let rf = tenant.replication_factor as usize;
        let version =
            self.stamper.borrow_mut().stamp(m.context, m.value, m.tombstone, unix_now_us());
        let wire: pb::Version = (&version).into();
        let clock = version.clock.clone();
        let deadline = self.deadline(client_deadline);
        let (write, fanout) = if self.placement().is_some() {
            // A data movement runs: the stage's rule, a quorum of the old and the new replicas
            // while both are live.
            let rule = self.key_sets(tenant_id, key, rf, m.level).write;
            let fanout = rule.replicas().len();
            (WriteRequest::with_rule(&rule, fanout, version, deadline), fanout)
        } else {
            let replicas = self.replicas(tenant_id, key, rf);
            (WriteRequest::new(replicas, m.level, rf, version, deadline), rf)
        };
        let mut pump = WritePump { write, timings: ReplicaTimings::new(fanout) };
        let mut replies = FuturesUnordered::new();
        while let Some(node) = pump.write.poll_send() {
            let (tenant_id, key, version) =
                (tenant_id.to_owned(), key.to_owned(), Some(wire.clone()));
            let op = if m.tombstone {
                Op::Delete(pb::DeleteRequest { tenant_id, key, version })
            } else {
                Op::Write(pb::WriteRequest { tenant_id, key, version })
            };
            replies.push(self.send(node, op));
        }
        let outcome = drive(&mut pump, &mut replies).await;
        let op = if m.tombstone { "delete" } else { "write" };
        self.log_if_slow(op, tenant_id, key, m.level, &pump.timings, outcome.is_ok());
        // Replicas still pending keep going in their links: a miss there becomes a hint, so
        // nothing waits for them here.
        match outcome {
            Ok(w) => Ok((clock, w.acks)),
            Err(e) => Err(self.quorum_failed(e)),
        }
    }

    /// Collects a read's remaining replies (on a task of its own, at most
    /// [`MAX_UNSETTLED_READS`] per core) and queues the repairs it owes.
    fn settle_read<S>(
        self: Rc<Self>,
        mut pump: ReadPump,
        mut replies: S,
        tenant_id: &str,
        key: &str,
    ) where
        S: Stream<Item = (NodeId, OpReply)> + Unpin + 'static,
    {
        let (tenant_id, key) = (tenant_id.to_owned(), key.to_owned());
        if pump.read.is_settled() {
            self.queue_repairs(&mut pump.read, &tenant_id, &key);
            return;
        }
        if self.unsettled_reads.get() >= MAX_UNSETTLED_READS {
            self.stats.repairs_skipped.set(self.stats.repairs_skipped.get() + 1);
            return;
        }
        self.unsettled_reads.set(self.unsettled_reads.get() + 1);
        glommio::spawn_local(async move {
            settle(&mut pump, &mut replies).await;
            self.queue_repairs(&mut pump.read, &tenant_id, &key);
            self.unsettled_reads.set(self.unsettled_reads.get() - 1);
        })
        .detach();
    }

    fn queue_repairs(self: &Rc<Self>, read: &mut ReadRequest, tenant_id: &str, key: &str) {
        while let Some(Repair { node, version }) = read.poll_repair() {
            self.enqueue_repair(RepairJob {
                node,
                tenant_id: tenant_id.to_owned(),
                key: key.to_owned(),
                version: (&version).into(),
            });
        }
    }

    /// Records the request's latency for the data-movement pacer, and logs a request slower
    /// than `log.slow_request_ms`: tenant, a hash of the key (never the key or value bytes),
    /// level, and each replica's time to answer (or that it had not).
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
        self.shared.foreground.record_op(self.index, elapsed);
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

    /// Runs `work` at most once per `(tenant, key, idempotency key)` with this fingerprint.
    async fn idempotent<F, Fut>(
        &self,
        tenant_id: &str,
        key: &str,
        idempotency_key: &str,
        fingerprint: u64,
        client_deadline: Option<Instant>,
        work: F,
    ) -> Result<Idempotent, PairError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(VClock, usize), PairError>>,
    {
        if idempotency_key.is_empty() {
            // A generated key is unique, so nobody can hold a claim on it: the request runs, and
            // `remember` stores its response under the key (`idempotency.store_generated_keys`).
            let generated = self.generated_idempotency_key();
            let (clock, acks) = work().await?;
            return Ok(Idempotent::Fresh { clock, acks, idempotency_key: generated });
        }
        let id = IdempotencyKey::new(tenant_id, key, idempotency_key);
        let store = &self.shared.idempotency;
        let give_up = client_deadline.map_or(Instant::now() + IDEMPOTENCY_WAIT, |d| {
            d.min(Instant::now() + IDEMPOTENCY_WAIT)
        });
        let guard = loop {
            match store.claim(&id, fingerprint, Instant::now()).await {
                Claim::Claimed => {
                    break ClaimGuard { store: store.clone(), id, fingerprint, armed: true }
                }
                Claim::Duplicate(bytes) => return Ok(Idempotent::Duplicate(bytes)),
                Claim::Conflict => {
                    return Err(PairError::IdempotencyKeyConflict {
                        idempotency_key: idempotency_key.to_owned(),
                    })
                }
                Claim::InProgress if Instant::now() < give_up => {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                Claim::InProgress => return Err(PairError::IdempotencyInProgress),
                Claim::Unavailable
                    if store.is_remote()
                        && self.shared.config.idempotency.on_unavailable
                            == OnUnavailable::Reject =>
                {
                    return Err(PairError::IdempotencyUnavailable);
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
                    let idempotency_key = idempotency_key.to_owned();
                    return Ok(Idempotent::Fresh { clock, acks, idempotency_key });
                }
            }
        };
        // On failure, or when this future is dropped mid-fan-out (the client's deadline), the
        // guard releases the claim so that a retry runs instead of waiting for it to expire.
        let (clock, acks) = work().await?;
        guard.disarm();
        Ok(Idempotent::Fresh { clock, acks, idempotency_key: idempotency_key.to_owned() })
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
    ) -> M {
        if client_key {
            self.metrics.idempotency(resp.is_duplicate());
        }
        if resp.is_duplicate()
            || !(client_key || self.shared.config.idempotency.store_generated_keys)
        {
            return resp;
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
        resp
    }
}

/// What a write or delete changes.
struct Mutation {
    value: Bytes,
    tombstone: bool,
    level: Level,
    context: Option<VClock>,
}

/// Releases an idempotency claim when dropped armed: the request failed or was dropped.
struct ClaimGuard {
    store: Arc<IdempotencyBackend>,
    id: IdempotencyKey,
    fingerprint: u64,
    armed: bool,
}

impl ClaimGuard {
    /// The request succeeded: its answer completes the claim (in `remember`), not a release.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.armed {
            self.store.release(&self.id, self.fingerprint);
        }
    }
}

/// What an idempotent write produced.
enum Idempotent {
    Fresh { clock: VClock, acks: usize, idempotency_key: String },
    Duplicate(Bytes),
}

/// A stored answer, decoded; a record that does not decode is our corruption, never an empty
/// success.
fn decode_stored<M: Message + Default>(bytes: Bytes) -> Result<M, PairError> {
    M::decode(bytes).map_err(|e| {
        tracing::error!(error = %e, "a stored idempotency answer does not decode");
        PairError::Internal(format!("the stored answer of this idempotency key is corrupt: {e}"))
    })
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

fn level(consistency: i32) -> Result<Level, PairError> {
    match api::Consistency::try_from(consistency) {
        Ok(api::Consistency::Unspecified) | Ok(api::Consistency::Quorum) => Ok(Level::Quorum),
        Ok(api::Consistency::One) => Ok(Level::One),
        Ok(api::Consistency::All) => Ok(Level::All),
        Err(_) => {
            Err(PairError::invalid(format!("consistency {consistency} is not ONE, QUORUM or ALL")))
        }
    }
}

fn client_clock(clock: Option<&api::VectorClock>) -> Result<Option<VClock>, PairError> {
    clock
        .map(VClock::try_from)
        .transpose()
        .map_err(|e| PairError::invalid(format!("invalid vector_clock: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_stored_answer_is_internal_not_an_empty_success() {
        // A length-delimited field whose length runs past the end.
        let corrupt = Bytes::from_static(&[0x0a, 0x7f, b'x']);
        let got = decode_stored::<api::WriteKeyValueResponse>(corrupt);
        assert!(matches!(got, Err(PairError::Internal(_))), "{got:?}");
        let status = crate::rpc::Status::from(got.unwrap_err());
        assert_eq!(status.code, crate::rpc::Code::INTERNAL);
        let stored = api::WriteKeyValueResponse { key: "k".into(), ..Default::default() };
        let back = decode_stored::<api::WriteKeyValueResponse>(stored.encode_to_vec().into());
        assert_eq!(back.map(|r| r.key), Ok("k".to_owned()));
    }

    #[test]
    fn unspecified_and_quorum_fingerprint_the_same() {
        let unspecified = level(api::Consistency::Unspecified as i32).unwrap();
        let quorum = level(api::Consistency::Quorum as i32).unwrap();
        let one = level(api::Consistency::One as i32).unwrap();
        let f = |l| fingerprint(Operation::Write, l, b"v", None);
        assert_eq!(f(unspecified), f(quorum));
        assert_ne!(f(one), f(quorum));
        assert_ne!(f(quorum), fingerprint(Operation::Delete, quorum, b"v", None));
    }
}
