//! Running data movement: the I/O edge of `core::migration`.
//!
//! A change (a node added or removed, a replication factor changed) is stored as a migration
//! record whose `state` is a [`State`] (JSON): both memberships, the factor change, the stage
//! and the driver's checkpoints. One coordinator (the record's `owner`) runs the driver
//! ([`run::Runner`]): it streams each gained range from a quorum of the old replicas into the
//! new one ([`stream`]), as repairs that keep every version, waits for every coordinator at each
//! barrier (`coordinator::placement`), evicts what the losers no longer own and finally
//! rewrites the membership or the factor. Every coordinator routes keys by the stage in the
//! record, so they all follow the same placement. A driver that crashed is resumed from its
//! checkpoints by its coordinator's restart, or taken over by another coordinator once its
//! owner stopped beating.
//!
//! - [`plan`]: the merged plan of a stored state.
//! - [`adopt`]: starting a driver, resuming it after a restart, taking it over.
//! - [`run`]: the driver loop, barrier waits, persistence, cancel, finish.
//! - `run/finish.rs`: the end of a migration (membership or factor rewritten, record closed).
//! - [`stream`]: paging a range from a source into a target, cleanup, the byte throttle.
//! - [`anti_entropy`]: a storage node restarted on a wiped data directory is refilled.

pub mod adopt;
pub mod anti_entropy;
pub mod plan;
pub mod run;
pub mod stream;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::core::ids::NodeId;
use crate::core::migration::{
    driver::{Checkpoint, Cursor, MigrationId, SegmentCheckpoint},
    placement::TenantRfChange,
    plan::SegmentId,
    sets::Side,
    Stage,
};

/// A factor change, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfChangeState {
    pub tenant_id: String,
    pub rf0: usize,
    pub rf1: usize,
}

impl From<RfChangeState> for TenantRfChange {
    fn from(c: RfChangeState) -> Self {
        TenantRfChange { tenant_id: c.tenant_id, rf0: c.rf0, rf1: c.rf1 }
    }
}

/// One source's progress on one segment, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    pub segment: u32,
    pub target: String,
    pub source: String,
    /// The resume cursor, hex; empty before the first page.
    pub cursor: String,
    pub keys: u64,
    pub finished: bool,
}

/// A migration's persisted state: everything needed to rebuild its plan and driver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The coordinator running the driver.
    pub owner: String,
    /// Members before and after: (node id, virtual nodes).
    pub old_members: Vec<(String, u32)>,
    pub new_members: Vec<(String, u32)>,
    /// The factor change, for REPLICATION_CHANGE.
    pub rf_change: Option<RfChangeState>,
    /// The (rf0, rf1) groups planned: the factors of the tenants when the change started.
    pub groups: Vec<(usize, usize)>,
    /// A dead node removed with `force`: never streamed from, never cleaned.
    pub dead: Option<String>,
    pub stage: String,
    pub attempt: u32,
    pub error: Option<String>,
    pub sources: Vec<SourceProgress>,
    /// Nodes whose cleanup finished, with the side they kept (OLD or NEW).
    pub cleaned: Vec<(String, String)>,
    pub bytes: u64,
    pub total_keys: u64,
    /// The highest percentage reported, so that it never goes down.
    pub percentage: u8,
    pub keys_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Estimated completion, unix seconds; 0 unknown.
    pub eta: i64,
    pub blocked_on: String,
    pub segments_done: u64,
    pub segments_total: u64,
    /// For `force`: gained ranges that had fewer than a quorum of surviving old replicas.
    pub thin_ranges: u64,
    /// Failed cleanups per node.
    #[serde(default)]
    pub cleanup_failures: std::collections::BTreeMap<String, u32>,
    /// Nodes whose cleanup was given up (they did not answer).
    #[serde(default)]
    pub uncleaned: Vec<String>,
    /// Each target's incarnation id when streaming started: a new one means it was wiped.
    #[serde(default)]
    pub incarnations: std::collections::BTreeMap<String, String>,
}

impl State {
    /// Parses a stored state.
    pub fn decode(json: &str) -> Result<State, String> {
        serde_json::from_str(json).map_err(|e| format!("migration state: {e}"))
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a migration state serialises")
    }

    /// Folds one driver checkpoint in.
    pub fn apply(&mut self, checkpoint: &Checkpoint) {
        match checkpoint {
            Checkpoint::Stage { stage, attempt, error, .. } => {
                self.stage = stage.as_str().to_owned();
                self.attempt = self.attempt.max(*attempt);
                if error.is_some() {
                    self.error.clone_from(error);
                }
            }
            Checkpoint::Segment(s) => {
                let entry = SourceProgress {
                    segment: s.segment.0,
                    target: s.target.as_str().to_owned(),
                    source: s.source.as_str().to_owned(),
                    cursor: s.cursor.as_ref().map(|c| hex(&c.0)).unwrap_or_default(),
                    keys: s.keys,
                    finished: s.finished,
                };
                match self
                    .sources
                    .iter_mut()
                    .find(|p| p.segment == entry.segment && p.source == entry.source)
                {
                    Some(p) => *p = entry,
                    None => self.sources.push(entry),
                }
            }
            Checkpoint::Cleaned { node, keep, .. } => {
                let pair = (node.as_str().to_owned(), side_name(*keep).to_owned());
                if !self.cleaned.contains(&pair) {
                    self.cleaned.push(pair);
                }
            }
        }
    }

    /// The checkpoints to resume a driver from, in an order `resume_from` accepts.
    pub fn checkpoints(&self, id: MigrationId) -> Vec<Checkpoint> {
        let mut out = Vec::new();
        if let Some(stage) = Stage::parse(&self.stage) {
            out.push(Checkpoint::Stage {
                migration: id,
                attempt: self.attempt,
                stage,
                error: self.error.clone(),
            });
        }
        for p in &self.sources {
            out.push(Checkpoint::Segment(SegmentCheckpoint {
                migration: id,
                attempt: self.attempt,
                segment: SegmentId(p.segment),
                target: NodeId::new(p.target.clone()),
                source: NodeId::new(p.source.clone()),
                cursor: unhex(&p.cursor).map(Cursor),
                keys: p.keys,
                finished: p.finished,
            }));
        }
        for (node, side) in &self.cleaned {
            let keep = if side == "OLD" { Side::Old } else { Side::New };
            out.push(Checkpoint::Cleaned {
                migration: id,
                attempt: self.attempt,
                node: NodeId::new(node.clone()),
                keep,
            });
        }
        out
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Old => "OLD",
        Side::New => "NEW",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Process-wide data-movement counters, exported by the coordinator's metrics.
#[derive(Debug, Default)]
pub struct MoveMetrics {
    /// Entries copied to new replicas (`pairdb_migration_keys_streamed_total`).
    pub keys_streamed: AtomicU64,
    /// Bytes of those entries (`pairdb_migration_bytes_streamed_total`).
    pub bytes_streamed: AtomicU64,
    /// Microseconds streams waited on the byte cap (`pairdb_migration_throttle_seconds_total`).
    pub throttled_us: AtomicU64,
    /// Times a slow target halved the stream rate (`pairdb_migration_backoffs_total`).
    pub backoffs: AtomicU64,
    /// Times the foreground's latency halved the stream rate
    /// (`pairdb_migration_foreground_backoffs_total`).
    pub foreground_backoffs: AtomicU64,
    /// The pacer's current rate, bytes per second (`pairdb_migration_rate_bytes_per_second`).
    pub rate: AtomicU64,
    /// Entries evicted from nodes that no longer own them (`pairdb_migration_keys_evicted_total`).
    pub keys_evicted: AtomicU64,
    /// Entries that changed a replica, copied by anti-entropy (into a node found wiped, or
    /// between replicas whose digests differed) (`pairdb_anti_entropy_keys_repaired_total`).
    pub anti_entropy_keys: AtomicU64,
    /// Token ranges whose replicas' digests were compared
    /// (`pairdb_anti_entropy_ranges_compared_total`).
    pub anti_entropy_ranges_compared: AtomicU64,
    /// Ranges whose replicas disagreed and were repaired
    /// (`pairdb_anti_entropy_ranges_repaired_total`).
    pub anti_entropy_ranges_repaired: AtomicU64,
    /// Wiped nodes found (`pairdb_anti_entropy_rebuilds_total`).
    pub anti_entropy_rebuilds: AtomicU64,
    /// Percentage of the running migration (`pairdb_migration_progress_percent`).
    pub percentage: AtomicU64,
    /// Times a stream or cleanup task waited for the driver loop's bounded event queue
    /// (`pairdb_migration_event_waits_total`).
    pub event_waits: AtomicU64,
}

/// The counters.
pub static METRICS: MoveMetrics = MoveMetrics {
    keys_streamed: AtomicU64::new(0),
    bytes_streamed: AtomicU64::new(0),
    throttled_us: AtomicU64::new(0),
    backoffs: AtomicU64::new(0),
    foreground_backoffs: AtomicU64::new(0),
    rate: AtomicU64::new(0),
    keys_evicted: AtomicU64::new(0),
    anti_entropy_keys: AtomicU64::new(0),
    anti_entropy_ranges_compared: AtomicU64::new(0),
    anti_entropy_ranges_repaired: AtomicU64::new(0),
    anti_entropy_rebuilds: AtomicU64::new(0),
    percentage: AtomicU64::new(0),
    event_waits: AtomicU64::new(0),
};

impl MoveMetrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_survive_the_stored_form() {
        let id = MigrationId(7);
        let mut state = State::default();
        state.apply(&Checkpoint::Stage {
            migration: id,
            attempt: 2,
            stage: Stage::Streaming,
            error: None,
        });
        let seg = |keys, cursor: Option<Vec<u8>>, finished| {
            Checkpoint::Segment(SegmentCheckpoint {
                migration: id,
                attempt: 2,
                segment: SegmentId(3),
                target: NodeId::new("d"),
                source: NodeId::new("a"),
                cursor: cursor.map(Cursor),
                keys,
                finished,
            })
        };
        state.apply(&seg(10, Some(vec![1, 0xff]), false));
        state.apply(&seg(20, Some(vec![2]), true));
        let back = State::decode(&state.encode()).unwrap();
        assert_eq!(back, state);
        let cps = back.checkpoints(id);
        assert_eq!(cps.len(), 2, "one stage, one source (the newest progress)");
        assert_eq!(cps[1], seg(20, Some(vec![2]), true));
        assert_eq!(unhex(&hex(&[0, 1, 0xab])), Some(vec![0, 1, 0xab]));
        assert_eq!(unhex(""), None);
    }
}
