//! Anti-entropy for a storage node restarted on a wiped data directory.
//!
//! Every storage node answers a random `incarnation_id` made when its data directory was
//! created. Core 0 of every coordinator compares it every `migration.anti_entropy_interval_ms`;
//! when a node answers a new one (it lost everything it held and came back under the same id),
//! every range it owns is copied back into it from the other replicas, all of them, merged by
//! the version rules: no read is needed to bring the keys back. While a migration runs, the
//! rebuild waits for it to end (the cleanup would fight it).
//!
//! What this does not cover yet: a node that silently lost only part of its data, or missed
//! writes beyond the hint window without being wiped. That needs range digests (Merkle trees)
//! compared between replicas; see docs/DATA_MOVEMENT.md.

use std::{collections::HashMap, rc::Rc, sync::Arc, time::Duration};

use crate::{
    coordinator::{
        migrate::{stream::*, MoveMetrics, METRICS},
        shard::{blocking, Shard},
    },
    core::{ids::NodeId, ring::MAX_PREFERENCE_LIST},
    proto::storage as pb,
    runtime::shutdown::Shutdown,
};

/// Watches incarnations and rebuilds wiped nodes until shutdown.
pub async fn watch(shard: Rc<Shard>, shutdown: Shutdown) {
    let cfg = &shard.shared.config.migration;
    let every = Duration::from_millis(cfg.anti_entropy_interval_ms);
    let throttle = Throttle::new(cfg);
    throttle.govern(shard.shared.clone());
    let streamer = Rc::new(Streamer {
        shard: shard.clone(),
        throttle: throttle.clone(),
        slots: Rc::new(Slots::new(cfg.max_streams_per_node)),
        page_entries: cfg.page_entries,
    });
    let mut known: HashMap<NodeId, String> = HashMap::new();
    let mut pending: Vec<NodeId> = Vec::new();
    while !shutdown.is_triggered() {
        for link in shard.links() {
            if link.is_down() {
                continue;
            }
            let reply: Result<pb::HealthCheckResponse, _> = link
                .call("/pairdb.storage.v1.StorageService/HealthCheck", &pb::HealthCheckRequest {})
                .await;
            let Ok(reply) = reply else { continue };
            if reply.incarnation_id.is_empty() {
                continue;
            }
            let id = link.id().clone();
            match known.insert(id.clone(), reply.incarnation_id.clone()) {
                Some(before) if before != reply.incarnation_id => {
                    tracing::warn!(node = %id, "storage node came back with a wiped data directory; refilling it from the other replicas");
                    MoveMetrics::add(&METRICS.anti_entropy_rebuilds, 1);
                    if !pending.contains(&id) {
                        pending.push(id);
                    }
                }
                _ => {}
            }
        }
        if shard.placement().is_none() {
            while let Some(node) = pending.pop() {
                if let Err(e) = rebuild(&shard, &streamer, &node).await {
                    tracing::warn!(node = %node, error = %e, "refill failed; retrying");
                    pending.push(node);
                    break;
                }
            }
        }
        futures_lite::future::or(glommio::timer::sleep(every), shutdown.wait()).await;
    }
}

/// Copies into `node` every entry it owns under the current ring, from every other replica.
pub async fn rebuild(
    shard: &Rc<Shard>,
    streamer: &Rc<Streamer>,
    node: &NodeId,
) -> Result<u64, String> {
    let ring = Arc::new((*shard.ring()).clone());
    let meta = shard.shared.meta.clone();
    let tenants = blocking(move || meta.tenants()).await.map_err(|e| e.to_string())?;
    let mut factors: Vec<usize> = tenants.iter().map(|t| t.replication_factor as usize).collect();
    factors.sort_unstable();
    factors.dedup();
    let mut copied = 0u64;
    let stop = std::cell::Cell::new(false);
    for rf in factors {
        let want = Want::Owns { ring: ring.clone(), rf };
        for (range, _) in ring.ranges() {
            let owners = ring.preference_list(range.end_inclusive, rf.min(MAX_PREFERENCE_LIST));
            if !owners.contains(node) {
                continue;
            }
            let sources: Vec<NodeId> = owners.iter().filter(|n| *n != node).cloned().collect();
            for source in sources {
                let mut cursor = Vec::new();
                loop {
                    let page = streamer.page(&source, node, &range, &cursor, &want, &stop).await;
                    let page = match page {
                        Ok(p) => p,
                        // A source that is down: the others cover the range.
                        Err(e) if e.contains(source.as_str()) => break,
                        Err(e) => return Err(e),
                    };
                    copied += page.keys;
                    MoveMetrics::add(&METRICS.anti_entropy_keys, page.keys);
                    match page.next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
            }
        }
    }
    tracing::info!(node = %node, copied, "refilled storage node");
    Ok(copied)
}
