//! The coordinator's background duties.
//!
//! On every core: apply broadcast [`Update`]s, and flush hints buffered by the core's links to
//! the hint store (off the core, in batches). On core 0 only, because they must happen once per
//! process: health-check storage nodes and broadcast changes, replay hints to nodes that are up,
//! drop hints past their window, and sweep expired idempotency records.
//!
//! ```text
//!   hinted handoff
//!   write fails on node B ──▶ link: hint ──▶ core buffer ──(every 100 ms)──▶ hint store
//!   health check: B up   ──▶ replay: hints_for(B) ──▶ Batch of Repairs to B ──▶ remove_hints
//! ```

use std::{
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    coordinator::{
        shard::{blocking, unix_now_us, Shard as Core},
        Update,
    },
    core::{
        health::{HealthPolicy, NodeHealth},
        ids::NodeId,
    },
    proto::storage::{self as pb, batch_operation::Op, batch_result::Result as BatchOutcome},
    runtime::shutdown::Shutdown,
};

/// How often a core moves its buffered hints to the hint store.
pub const HINT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Hints replayed per Batch call.
const REPLAY_PAGE: usize = 256;
/// How often expired idempotency records are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Applies broadcasts to this core until the inbox closes.
pub async fn inbox(core: Rc<Core>, inbox: flume::Receiver<Update>) {
    while let Ok(update) = inbox.recv_async().await {
        core.receive(update);
    }
}

/// Moves buffered hints to the hint store every [`HINT_FLUSH_INTERVAL`]; a last flush runs at
/// shutdown so that no hint buffered in memory is lost.
pub async fn flush_hints(core: Rc<Core>, shutdown: Shutdown) {
    loop {
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(HINT_FLUSH_INTERVAL).await;
                false
            },
            async {
                shutdown.wait().await;
                true
            },
        )
        .await;
        persist_hints(&core).await;
        if stop {
            return;
        }
    }
}

/// Writes the core's buffered hints to the hint store now.
pub async fn persist_hints(core: &Core) {
    let hints = core.take_hints();
    if hints.is_empty() {
        return;
    }
    let count = hints.len() as u64;
    let store = core.shared.hints.clone();
    match blocking(move || store.add_hints(&hints)).await {
        Err(e) => {
            core.stats.hints_dropped.set(core.stats.hints_dropped.get() + count);
            tracing::error!(error = %e, count, "cannot store hints; those writes rely on read repair now");
        }
        Ok(added) => {
            let stored = added.stored + added.coalesced;
            core.stats.hints_stored.set(core.stats.hints_stored.get() + stored);
            core.stats.hints_dropped.set(core.stats.hints_dropped.get() + added.dropped);
            core.stats
                .hints_coalesced_in_store
                .set(core.stats.hints_coalesced_in_store.get() + added.coalesced);
            if added.dropped > 0 {
                tracing::warn!(
                    dropped = added.dropped,
                    "hint store full (hint_max_stored); those writes rely on read repair now"
                );
            }
        }
    }
}

/// Core 0: health checks, hint replay, hint expiry and idempotency sweeps until shutdown.
pub async fn supervise(core: Rc<Core>, shutdown: Shutdown) {
    let cfg = &core.shared.config;
    let health_every = Duration::from_millis(cfg.health_check_interval_ms);
    let replay_every = Duration::from_millis(cfg.hint_replay_interval_ms);
    let mut health = NodeHealth::new(HealthPolicy::default());
    let mut next_replay = Instant::now();
    let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
    while !shutdown.is_triggered() {
        let came_back = check_health(&core, &mut health).await;
        update_readiness(&core, &health).await;
        let now = Instant::now();
        if came_back || now >= next_replay {
            replay_hints(&core).await;
            next_replay = Instant::now() + replay_every;
        }
        if now >= next_sweep {
            let swept = core.shared.idempotency.sweep(now);
            let store = core.shared.hints.clone();
            let cutoff = unix_now_us() - (cfg.hint_retention_secs as i64) * 1_000_000;
            match blocking(move || store.drop_older_than(cutoff)).await {
                Ok(n) if n > 0 => tracing::warn!(dropped = n, "hints past the hint window dropped"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot expire hints"),
            }
            tracing::debug!(swept, "idempotency sweep");
            next_sweep = now + SWEEP_INTERVAL;
        }
        futures_lite::future::or(glommio::timer::sleep(health_every), shutdown.wait()).await;
    }
}

/// Sets the process's readiness (`/health/ready`, `grpc.health.v1`): the metadata store answers
/// and at least a quorum of the default replication factor's storage nodes is up. Fewer nodes
/// up than that, and a write at QUORUM to a tenant with the default factor cannot succeed.
async fn update_readiness(core: &Rc<Core>, health: &NodeHealth) {
    let meta = core.shared.meta.clone();
    let meta_error = blocking(move || meta.nodes().err()).await;
    let members = core.links();
    let up = members.iter().filter(|l| health.is_up(l.id())).count();
    let rf = core.shared.config.default_replication_factor as usize;
    let quorum = rf / 2 + 1;
    let health = &core.shared.health;
    let (ready, reason) = match meta_error {
        Some(e) => (false, format!("metadata store does not answer: {e}")),
        None if up < quorum => (
            false,
            format!(
                "{up} of {} storage nodes up; a quorum of replication factor {rf} needs {quorum}",
                members.len()
            ),
        ),
        None => (true, String::new()),
    };
    if ready != health.is_ready() && !health.is_shutting_down() {
        if ready {
            tracing::info!("ready");
        } else {
            tracing::warn!(reason = %reason, "not ready");
        }
    }
    health.set_ready(ready, &reason);
}

/// Health-checks every storage node once and feeds the results to `health` (whose policy
/// damps flapping, see `core::health`); broadcasts its changes. True when a node came back.
async fn check_health(core: &Rc<Core>, health: &mut NodeHealth) -> bool {
    let timeout = Duration::from_millis(core.shared.config.replica_timeout_ms);
    let links = core.links();
    // Nodes that left the membership are forgotten.
    health.retain(|id| links.iter().any(|l| l.id() == id));
    let checks = links.iter().map(|link| async move {
        let call = link.call::<_, pb::HealthCheckResponse>(
            "/pairdb.storage.v1.StorageService/HealthCheck",
            &pb::HealthCheckRequest {},
        );
        let ok = futures_lite::future::or(async { call.await.is_ok() }, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await;
        (link.id().clone(), ok)
    });
    let results = futures_util::future::join_all(checks).await;
    let now = Instant::now();
    for (node, ok) in &results {
        health.handle_probe(now, node, *ok);
    }
    let mut came_back = false;
    while let Some((node, up)) = health.poll_change() {
        tracing::info!(node = %node, up, "storage node health changed");
        came_back |= up;
        core.shared.broadcast(Update::NodeHealth { node_id: node.as_str().to_owned(), up });
    }
    came_back
}

/// Replays stored hints to every node that is up, a page at a time, one Batch call per page.
/// A hint whose target no longer holds its key (the node left the ring, or a data movement
/// moved the key's replicas) goes to the key's current replicas instead, as a repair.
pub async fn replay_hints(core: &Rc<Core>) {
    let store = core.shared.hints.clone();
    let counts = match blocking(move || store.pending_counts()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read hint counts");
            return;
        }
    };
    for (node_id, pending) in counts {
        if pending == 0 {
            continue;
        }
        let node = NodeId::new(node_id.clone());
        let member = core.node(&node_id).is_some();
        let link = core.link(&node).filter(|l| !l.is_down());
        if link.is_none() && member {
            continue; // down: kept until it comes back
        }
        loop {
            let store = core.shared.hints.clone();
            let target = node_id.clone();
            let page = match blocking(move || store.hints_for(&target, REPLAY_PAGE)).await {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, node = %node_id, "cannot read hints");
                    break;
                }
            };
            let full_page = page.len() == REPLAY_PAGE;
            let mut direct = Vec::new();
            let mut delivered: Vec<u64> = Vec::new();
            let mut redirected = 0u64;
            for (id, h) in &page {
                let owners = current_owners(core, &h.tenant_id, &h.key).await;
                match owners {
                    Some(owners) if !owners.contains(&node) => {
                        for owner in owners {
                            let op = Op::Repair(pb::RepairRequest {
                                tenant_id: h.tenant_id.clone(),
                                key: h.key.clone(),
                                version: Some((&h.version).into()),
                            });
                            // Through the owner's link: a miss there is a hint for the owner.
                            glommio::spawn_local(core.send(owner, op)).detach();
                        }
                        redirected += 1;
                        delivered.push(*id);
                    }
                    _ => direct.push((*id, h)),
                }
            }
            if let (Some(link), false) = (&link, direct.is_empty()) {
                let request = pb::BatchRequest {
                    operations: direct
                        .iter()
                        .map(|(_, h)| pb::BatchOperation {
                            op: Some(Op::Repair(pb::RepairRequest {
                                tenant_id: h.tenant_id.clone(),
                                key: h.key.clone(),
                                version: Some((&h.version).into()),
                            })),
                        })
                        .collect(),
                };
                // Sent directly, not through the link's queue: a failed replay must not become
                // a new hint of itself.
                let reply = link
                    .call::<_, pb::BatchResponse>(
                        "/pairdb.storage.v1.StorageService/Batch",
                        &request,
                    )
                    .await;
                if let Ok(reply) = reply {
                    delivered.extend(
                        direct
                            .iter()
                            .zip(&reply.results)
                            .filter(|(_, r)| {
                                !matches!(r.result, Some(BatchOutcome::Error(_)) | None)
                            })
                            .map(|((id, _), _)| *id),
                    );
                }
            }
            let all_delivered = delivered.len() == page.len();
            let count = delivered.len();
            if count == 0 {
                break;
            }
            let store = core.shared.hints.clone();
            let target = node_id.clone();
            if let Err(e) = blocking(move || store.remove_hints(&target, &delivered)).await {
                tracing::warn!(error = %e, node = %node_id, "cannot remove replayed hints");
                break;
            }
            core.metrics.hints_replayed.set(core.metrics.hints_replayed.get() + count as u64);
            if redirected > 0 {
                tracing::info!(node = %node_id, redirected, "hints redirected to the keys' current replicas");
            }
            tracing::info!(node = %node_id, replayed = count, "hints replayed");
            if !all_delivered || !full_page {
                break;
            }
        }
    }
}

/// Every replica a write of the key goes to now; `None` when the tenant is unknown.
async fn current_owners(core: &Rc<Core>, tenant_id: &str, key: &str) -> Option<Vec<NodeId>> {
    let tenant = core.tenant(tenant_id).await.ok()?;
    let rf = tenant.replication_factor as usize;
    Some(core.key_sets(tenant_id, key, rf, crate::core::quorum::Level::All).write.replicas())
}
