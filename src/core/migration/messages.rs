//! The plain data a data-movement driver ([`super::driver::Migration`]) exchanges with its
//! caller: the actions it asks for, the checkpoints it asks to persist, the failures it is told
//! about and the errors it answers with. Serde-free structs and enums; the caller chooses how to
//! store and send them.

use crate::core::ids::NodeId;
use crate::core::ring::TokenRange;

use super::plan::SegmentId;
use super::sets::Side;
use super::Stage;

/// Identifies one data movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MigrationId(pub u64);

/// Where a source's scan of a segment got to, opaque to the driver: resuming passes it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor(pub Vec<u8>);

/// Caps on the work in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Segments started and not done at once, cluster-wide.
    pub max_active_segments: usize,
    /// Failed streams of one source on one segment before it is given up on.
    pub max_source_attempts: u32,
}

impl Default for Limits {
    /// 8 segments at once (the notes' cluster cap) and 3 attempts per source.
    fn default() -> Self {
        Self { max_active_segments: 8, max_source_attempts: 3 }
    }
}

/// What the caller should do next, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Store this durably before acting on any later action.
    Persist(Checkpoint),
    /// Get every coordinator onto `stage`, wait for older requests to drain, then call
    /// [`handle_barrier`](super::driver::Migration::handle_barrier).
    WaitBarrier { stage: Stage },
    /// Stream `range` from `source` to `target`, resuming after `cursor` when `Some`; report
    /// pages with [`handle_segment_progress`](super::driver::Migration::handle_segment_progress)
    /// and the end with [`handle_segment_done`](super::driver::Migration::handle_segment_done).
    /// `attempt` is the driver's: a streamer of an older attempt must stop.
    Stream {
        segment: SegmentId,
        attempt: u32,
        target: NodeId,
        source: NodeId,
        range: TokenRange,
        cursor: Option<Cursor>,
    },
    /// Stop streaming `segment` from `source`: enough sources finished, or the change reverts.
    StopStream { segment: SegmentId, source: NodeId },
    /// On `node`, evict every entry in `ranges` that `node` does not hold under the `keep` side
    /// (`New` in CLEANUP, `Old` in CLEANUP_TARGET), then call
    /// [`handle_cleanup_done`](super::driver::Migration::handle_cleanup_done).
    Cleanup { node: NodeId, ranges: Vec<TokenRange>, keep: Side },
}

/// What a driver persists: plain data, stored however the caller likes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// The change entered `stage`.
    Stage { migration: MigrationId, attempt: u32, stage: Stage, error: Option<String> },
    /// A source's progress on a segment.
    Segment(SegmentCheckpoint),
    /// `node` finished the cleanup of the `keep` side.
    Cleaned { migration: MigrationId, attempt: u32, node: NodeId, keep: Side },
}

impl Checkpoint {
    /// The change it belongs to.
    pub fn migration(&self) -> MigrationId {
        match self {
            Checkpoint::Stage { migration, .. } | Checkpoint::Cleaned { migration, .. } => {
                *migration
            }
            Checkpoint::Segment(s) => s.migration,
        }
    }

    pub(super) fn attempt(&self) -> u32 {
        match self {
            Checkpoint::Stage { attempt, .. } | Checkpoint::Cleaned { attempt, .. } => *attempt,
            Checkpoint::Segment(s) => s.attempt,
        }
    }
}

/// One source's progress on one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentCheckpoint {
    /// The change.
    pub migration: MigrationId,
    /// The driver attempt that wrote it.
    pub attempt: u32,
    /// The segment.
    pub segment: SegmentId,
    /// The gaining node it streams to.
    pub target: NodeId,
    /// The old replica it streams from.
    pub source: NodeId,
    /// Where to resume; `None` before the first page.
    pub cursor: Option<Cursor>,
    /// Keys this source has sent for the segment so far.
    pub keys: u64,
    /// The source finished the segment.
    pub finished: bool,
}

/// Why the driver refused an input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    /// Only a planned change can start.
    #[error("cannot start a change in stage {stage:?}")]
    NotPlanned { stage: Stage },
    /// From USE_NEW on, the old replicas miss writes, so going back would lose them.
    #[error("cannot cancel a change in stage {stage:?}")]
    TooLateToCancel { stage: Stage },
    /// A checkpoint of another change was passed to `resume_from`.
    #[error("checkpoint of migration {found:?} given to migration {want:?}")]
    WrongMigration { want: MigrationId, found: MigrationId },
}

/// Something that went wrong, reported by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Streaming `segment` from `source` failed; it is retried from its cursor.
    Source { segment: SegmentId, source: NodeId },
    /// A cleanup on `node` failed; it is asked for again.
    Cleanup { node: NodeId },
    /// The change cannot go on as planned (for example the new replicas lost their quorum).
    Abort { reason: String },
}
