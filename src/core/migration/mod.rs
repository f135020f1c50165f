//! Data movement: the pure foundation of moving data when storage nodes join or leave, or when a
//! tenant's replication factor changes. Nothing here does I/O, reads a clock or draws a random
//! number; `coordinator::migrate` runs it (docs/DATA_MOVEMENT.md).
//!
//! The protocol is the one in `notes/data-movement.md` §7. For a key of a tenant with replication
//! factors `rf0` before and `rf1` after, `O = pref(R0, token, rf0)` are its old replicas and
//! `N = pref(R1, token, rf1)` its new ones. One change walks these stages, with a cluster-wide
//! barrier (every coordinator applied the stage, older requests drained) after each arrow marked
//! `B`:
//!
//! ```text
//!   PLANNED --start--> DUAL_WRITE --B--> STREAMING --all segments--> READ_NEW --B--> USE_NEW
//!      |                   |                 |                          |               |
//!      | cancel            | cancel/failure  | cancel/failure           | cancel/failure  B
//!      v                   v                 v                          v               v
//!   CANCELLED <--targets-- CLEANUP_TARGET <--B-- REVERTING          CLEANUP --losers evicted-->
//!                cleaned                                            COMPLETED
//! ```
//!
//! - [`plan`]: which token ranges each node gains (with the old replicas to copy them from) or
//!   loses, cut into segments.
//! - [`sets`]: per stage, which replicas a key's reads and writes go to, and the dual-quorum
//!   write rule.
//! - [`driver`]: the state machine of one change: stages, segment streaming from a quorum of
//!   sources, barriers, cancel, checkpoints, resume after a crash and progress.
//! - [`pace`]: how fast streams may go, from the foreground latency they cause.
//! - [`messages`]: the driver's actions, checkpoints, failures and errors, as plain data.

pub mod driver;
pub mod messages;
pub mod pace;
pub mod placement;
pub mod plan;
pub mod progress;
pub mod sets;

/// Where one data movement stands; see the module diagram. Stages only move forward along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Planned and persisted; reads and writes use the old replicas only.
    Planned,
    /// Writes go to old and new replicas and need a quorum of each; reads use the old.
    DualWrite,
    /// As `DualWrite`, while the gaining nodes copy their ranges from a quorum of old replicas.
    Streaming,
    /// Writes still dual; reads switch to the new replicas.
    ReadNew,
    /// Reads and writes use the new replicas only.
    UseNew,
    /// Nodes that lost ranges evict the entries they no longer own.
    Cleanup,
    /// Done: the new ring is the ring.
    Completed,
    /// Cancelled or failed before `UseNew`: coordinators go back to the old replicas.
    Reverting,
    /// Gaining nodes evict what they copied or received and do not own under the old ring.
    CleanupTarget,
    /// Reverted: the old ring is still the ring.
    Cancelled,
}

impl Stage {
    /// Every stage, in the order of the diagram.
    pub const ALL: [Stage; 10] = [
        Stage::Planned,
        Stage::DualWrite,
        Stage::Streaming,
        Stage::ReadNew,
        Stage::UseNew,
        Stage::Cleanup,
        Stage::Completed,
        Stage::Reverting,
        Stage::CleanupTarget,
        Stage::Cancelled,
    ];

    /// The stage's name as stored and shown (`DUAL_WRITE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Planned => "PLANNED",
            Stage::DualWrite => "DUAL_WRITE",
            Stage::Streaming => "STREAMING",
            Stage::ReadNew => "READ_NEW",
            Stage::UseNew => "USE_NEW",
            Stage::Cleanup => "CLEANUP",
            Stage::Completed => "COMPLETED",
            Stage::Reverting => "REVERTING",
            Stage::CleanupTarget => "CLEANUP_TARGET",
            Stage::Cancelled => "CANCELLED",
        }
    }

    /// The stage named `name` by [`as_str`](Stage::as_str).
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for the two stages a change ends in.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Completed | Stage::Cancelled)
    }
}
