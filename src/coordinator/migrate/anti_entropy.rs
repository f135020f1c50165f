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
        shard::{blocking, unix_now_us, Shard},
    },
    core::{
        ids::{NodeId, Token},
        ring::{TokenRange, MAX_PREFERENCE_LIST},
    },
    proto::storage as pb,
    runtime::shutdown::Shutdown,
};

const DIGEST: &str = "/pairdb.storage.v1.StorageService/RangeDigest";

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
                    MoveMetrics::add(&METRICS.anti_entropy_keys, page.applied);
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

/// A range whose replicas disagree is split down to ranges this small (by the largest replica's
/// count) before its entries are copied between the replicas: a Merkle descent, done lazily.
pub const DIGEST_LEAF_ENTRIES: u64 = 512;

/// Digest anti-entropy until shutdown: every `migration.anti_entropy_digest_interval_secs`, one
/// pass over every tenant and every ring range compares the replicas' `RangeDigest`s and copies
/// entries both ways where they differ (merged by the version rules, as repairs: the newest
/// version wins everywhere, tombstones included). One range at a time, a pause
/// (`anti_entropy_range_pause_ms`) between ranges, the copies paced like a migration's. A pass
/// stops while a migration runs (placements are in flux) and skips replicas that are down.
pub async fn digests(shard: Rc<Shard>, shutdown: Shutdown) {
    let cfg = shard.shared.config.migration.clone();
    if !cfg.anti_entropy_digests {
        return;
    }
    let throttle = Throttle::new(&cfg);
    throttle.govern(shard.shared.clone());
    let streamer = Rc::new(Streamer {
        shard: shard.clone(),
        throttle,
        slots: Rc::new(Slots::new(cfg.max_streams_per_node)),
        page_entries: cfg.page_entries,
    });
    let every = Duration::from_secs(cfg.anti_entropy_digest_interval_secs);
    let pause = Duration::from_millis(cfg.anti_entropy_range_pause_ms);
    loop {
        futures_lite::future::or(glommio::timer::sleep(every), shutdown.wait()).await;
        if shutdown.is_triggered() {
            return;
        }
        match pass(&shard, &streamer, pause, &shutdown).await {
            Ok((compared, repaired)) => {
                tracing::debug!(compared, repaired, "anti-entropy pass done")
            }
            Err(e) => tracing::warn!(error = %e, "anti-entropy pass stopped"),
        }
    }
}

/// Most differing leaves one pass keeps for its second look; more wait for the next pass.
pub const MAX_PENDING_LEAVES: usize = 4096;

/// A leaf whose replicas differed at the first look.
struct Leaf {
    tenant_id: String,
    rf: usize,
    range: TokenRange,
    replicas: Vec<NodeId>,
}

/// One pass over every tenant's ranges; returns the ranges compared and the ranges repaired.
///
/// Writes in flight while the digests are taken (applied on some replicas, not yet on others)
/// make a range differ for a moment. So the pass first walks every range and keeps the leaves
/// that differ; then, once one replica timeout (plus 200 ms) has passed, it compares each of
/// them again and copies only those that still differ.
async fn pass(
    shard: &Rc<Shard>,
    streamer: &Rc<Streamer>,
    pause: Duration,
    shutdown: &Shutdown,
) -> Result<(u64, u64), String> {
    if !leads_digests(shard).await {
        return Ok((0, 0));
    }
    let meta = shard.shared.meta.clone();
    let tenants = blocking(move || meta.tenants()).await.map_err(|e| e.to_string())?;
    let ring = shard.ring();
    let still = |shard: &Rc<Shard>| -> Result<(), String> {
        if shard.placement().is_some() || !Rc::ptr_eq(&ring, &shard.ring()) {
            return Err("the ring changed or a migration started; the next pass starts over".into());
        }
        Ok(())
    };
    let (mut compared, mut repaired) = (0u64, 0u64);
    let mut leaves: Vec<Leaf> = Vec::new();
    for tenant in tenants {
        let rf = (tenant.replication_factor as usize).min(MAX_PREFERENCE_LIST);
        if rf < 2 {
            continue;
        }
        for (range, _) in ring.ranges() {
            if shutdown.is_triggered() {
                return Ok((compared, repaired));
            }
            still(shard)?;
            let replicas: Vec<NodeId> = ring
                .preference_list(range.end_inclusive, rf)
                .iter()
                .filter(|n| shard.link(n).is_some_and(|l| !l.is_down()))
                .cloned()
                .collect();
            if replicas.len() < 2 {
                continue;
            }
            let room = MAX_PENDING_LEAVES.saturating_sub(leaves.len());
            let (c, found) =
                differing_leaves(shard, &tenant.tenant_id, range, &replicas, room).await;
            compared += c;
            leaves.extend(found.into_iter().map(|range| Leaf {
                tenant_id: tenant.tenant_id.clone(),
                rf,
                range,
                replicas: replicas.clone(),
            }));
            glommio::timer::sleep(pause).await;
        }
    }
    if leaves.is_empty() {
        return Ok((compared, repaired));
    }
    let settle = Duration::from_millis(shard.shared.config.replica_timeout_ms + 200);
    futures_lite::future::or(glommio::timer::sleep(settle), shutdown.wait()).await;
    for leaf in leaves {
        if shutdown.is_triggered() {
            break;
        }
        still(shard)?;
        compared += 1;
        MoveMetrics::add(&METRICS.anti_entropy_ranges_compared, 1);
        if agree(&digests_of(shard, &leaf.tenant_id, leaf.range, &leaf.replicas).await) {
            continue;
        }
        repaired += 1;
        MoveMetrics::add(&METRICS.anti_entropy_ranges_repaired, 1);
        copy_leaf(shard, streamer, &leaf).await;
        glommio::timer::sleep(pause).await;
    }
    Ok((compared, repaired))
}

/// Whether this coordinator runs the digest pass: the one whose id sorts first among the
/// coordinators that beat within the lease (the beats are kept while a coordinator runs), so
/// that coordinators sharing PostgreSQL metadata do not repeat each other's work. One that cannot
/// read the beats runs the pass (the repairs are idempotent: repeating one costs work, not
/// correctness).
async fn leads_digests(shard: &Rc<Shard>) -> bool {
    let meta = shard.shared.meta.clone();
    let Ok(beats) = blocking(move || meta.beats()).await else {
        return true;
    };
    let cfg = &shard.shared.config;
    let now_ms = unix_now_us() / 1000;
    let horizon = cfg.migration.coordinator_lease_ms as i64 + 1000;
    !beats.iter().any(|b| b.at_ms >= now_ms - horizon && b.coordinator_id < cfg.node_id)
}

/// Compares `range` of `tenant_id` across `replicas`, splitting it while they disagree and it
/// holds more than [`DIGEST_LEAF_ENTRIES`] (or more than one digest examines). Returns the
/// ranges compared and the leaves that differ (at most `room` of them).
async fn differing_leaves(
    shard: &Rc<Shard>,
    tenant_id: &str,
    range: TokenRange,
    replicas: &[NodeId],
    room: usize,
) -> (u64, Vec<TokenRange>) {
    let mut compared = 0u64;
    let mut leaves = Vec::new();
    let mut todo = vec![range];
    while let Some(range) = todo.pop() {
        if leaves.len() >= room {
            break;
        }
        let answers = digests_of(shard, tenant_id, range, replicas).await;
        compared += 1;
        MoveMetrics::add(&METRICS.anti_entropy_ranges_compared, 1);
        if agree(&answers) {
            continue;
        }
        let largest = answers.iter().map(|d| d.entries).max().unwrap_or(0);
        let incomplete = answers.iter().any(|d| !d.complete);
        if incomplete || largest > DIGEST_LEAF_ENTRIES {
            if let Some((lo, hi)) = split(range) {
                todo.push(hi);
                todo.push(lo);
                continue;
            }
        }
        leaves.push(range);
    }
    (compared, leaves)
}

/// Copies the entries of `leaf` from every replica into every other one, as repairs.
async fn copy_leaf(shard: &Rc<Shard>, streamer: &Rc<Streamer>, leaf: &Leaf) {
    let want = Want::Owns { ring: Arc::new((*shard.ring()).clone()), rf: leaf.rf };
    let stop = std::cell::Cell::new(false);
    for target in &leaf.replicas {
        for source in leaf.replicas.iter().filter(|s| *s != target) {
            let mut cursor = Vec::new();
            loop {
                let page =
                    match streamer.page(source, target, &leaf.range, &cursor, &want, &stop).await {
                        Ok(p) => p,
                        // A node gone meanwhile: the next pass compares the range again.
                        Err(e) => {
                            tracing::debug!(error = %e, "anti-entropy copy failed");
                            break;
                        }
                    };
                MoveMetrics::add(&METRICS.anti_entropy_keys, page.applied);
                match page.next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
    }
}

/// The digests of `range` on `replicas`, asked of all at once (so that writes landing between
/// the answers are few); a replica that does not answer is left out.
async fn digests_of(
    shard: &Rc<Shard>,
    tenant_id: &str,
    range: TokenRange,
    replicas: &[NodeId],
) -> Vec<pb::RangeDigestResponse> {
    let req = pb::RangeDigestRequest {
        tenant_id: tenant_id.to_owned(),
        start_token: range.start_exclusive.0,
        end_token: range.end_inclusive.0,
    };
    let calls = replicas.iter().filter_map(|node| shard.link(node)).map(|link| {
        let req = &req;
        async move {
            let r = link.call::<_, pb::RangeDigestResponse>(DIGEST, req).await;
            if let Err(e) = &r {
                tracing::debug!(node = %link.id(), error = %e, "range digest failed");
            }
            r.ok()
        }
    });
    futures_util::future::join_all(calls).await.into_iter().flatten().collect()
}

/// True when at least two replicas answered and every answer is complete and the same, or
/// fewer than two answered (nothing to compare).
fn agree(answers: &[pb::RangeDigestResponse]) -> bool {
    answers.len() < 2
        || answers
            .iter()
            .all(|d| d.complete && (d.digest, d.entries) == (answers[0].digest, answers[0].entries))
}

/// The two halves of `range`, or `None` for a range of one token.
fn split(range: TokenRange) -> Option<(TokenRange, TokenRange)> {
    let (start, end) = (range.start_exclusive.0, range.end_inclusive.0);
    // The width in tokens; a range with start == end is the whole ring.
    let width = match end.wrapping_sub(start) {
        0 => u64::MAX,
        w => w,
    };
    if width < 2 {
        return None;
    }
    let mid = start.wrapping_add(width / 2);
    Some((
        TokenRange { start_exclusive: Token(start), end_inclusive: Token(mid) },
        TokenRange { start_exclusive: Token(mid), end_inclusive: Token(end) },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> TokenRange {
        TokenRange { start_exclusive: Token(a), end_inclusive: Token(b) }
    }

    #[test]
    fn halves_cover_the_range_exactly_wrapping_or_not() {
        assert_eq!(split(r(10, 20)), Some((r(10, 15), r(15, 20))));
        assert_eq!(split(r(10, 11)), None);
        // Wrapping: (u64::MAX - 1, 2] is 4 tokens.
        let (lo, hi) = split(r(u64::MAX - 1, 2)).unwrap();
        assert_eq!((lo, hi), (r(u64::MAX - 1, 0), r(0, 2)));
        for t in [u64::MAX, 0, 1, 2] {
            assert!(lo.contains(Token(t)) != hi.contains(Token(t)), "{t} in exactly one half");
        }
        // The whole ring.
        let (lo, hi) = split(r(5, 5)).unwrap();
        assert!(lo.contains(Token(6)) && hi.contains(Token(4)));
    }
}
