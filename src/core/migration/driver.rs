//! The driver of one data movement: which stage it is in, which segments to stream from which
//! sources, when to wait for a barrier, what to clean up, what to persist, and how far along it
//! is. Run by `coordinator::migrate::run`.
//!
//! [`Migration`] is a sans-IO state machine in the style of `core::quorum`: the caller feeds in
//! what happened (`start`, `handle_*`) and drains [`Migration::poll_action`] for what to do next,
//! in order. It never reads a clock; [`Migration::eta`] takes `now` and the observed rate.
//!
//! ```text
//!   new ──▶ PLANNED ──start──▶ DUAL_WRITE ──barrier──▶ STREAMING ──every segment done──▶
//!   READ_NEW ──barrier──▶ USE_NEW ──barrier──▶ CLEANUP ──every loser cleaned──▶ COMPLETED
//!
//!   cancel or failure in PLANNED                      ──▶ CANCELLED
//!   cancel or failure in DUAL_WRITE..=READ_NEW        ──▶ REVERTING ──barrier──▶ CLEANUP_TARGET
//!                                                         ──every target cleaned──▶ CANCELLED
//!   cancel in USE_NEW or later: refused (the old replicas no longer get writes); a failure
//!   there is recorded and the change carries on
//!
//!   per segment, in STREAMING (at most `max_active_segments` started and not done at once):
//!   Idle ──start──▶ every live source streams from its cursor ──q(sources) finished──▶ Done
//!   a source that fails restarts from its cursor; after `max_source_attempts` failures it is
//!   dead, and a segment left with fewer than q(sources) live sources fails the change
//! ```
//!
//! Entering a stage persists a [`Checkpoint::Stage`] before any action of the new stage (only
//! the [`Action::StopStream`]s of a revert, which end the old one, come first); entering one
//! that needs a barrier then asks for it ([`Action::WaitBarrier`]) and does nothing more until
//! [`Migration::handle_barrier`] confirms that every coordinator applied it and older requests
//! drained. Progress is persisted per page ([`Checkpoint::Segment`]) and per cleaned node, so
//! [`Migration::resume_from`] rebuilds a driver after a crash that re-runs the current barrier
//! and re-streams only unfinished segments, each source from its last cursor. Resent entries are
//! harmless: storage applies them by clock merge.
//!
//! A source that is also the segment's target (a factor decrease, where every new replica
//! counts as gaining) holds the range already and counts as finished without streaming.

use std::collections::VecDeque;

use crate::core::ids::NodeId;
use crate::core::quorum::Level;

pub use super::messages::{
    Action, Checkpoint, Cursor, Failure, Limits, MigrationError, MigrationId, SegmentCheckpoint,
};
use super::plan::{Plan, SegmentId};
use super::sets::Side;
use super::Stage;

#[derive(Clone, Debug)]
struct SourceState {
    node: NodeId,
    cursor: Option<Cursor>,
    keys: u64,
    finished: bool,
    running: bool,
    failures: u32,
}

#[derive(Clone, Debug)]
pub(super) struct SegmentState {
    sources: Vec<SourceState>,
    required: usize,
    started: bool,
    pub(super) done: bool,
}

impl SegmentState {
    fn finished(&self) -> usize {
        self.sources.iter().filter(|s| s.finished).count()
    }

    /// Keys counted once per segment: the most any one source sent.
    pub(super) fn keys(&self) -> u64 {
        self.sources.iter().map(|s| s.keys).max().unwrap_or(0)
    }
}

/// The state machine of one data movement; see the module doc.
#[derive(Clone, Debug)]
pub struct Migration {
    id: MigrationId,
    attempt: u32,
    plan: Plan,
    limits: Limits,
    pub(super) stage: Stage,
    awaiting_barrier: bool,
    pub(super) segments: Vec<SegmentState>,
    /// Nodes of the current cleanup stage, with whether they finished.
    cleanup: Vec<(NodeId, bool)>,
    actions: VecDeque<Action>,
    error: Option<String>,
    pub(super) total_keys: u64,
}

impl Migration {
    /// A planned change; the first action persists it. Call [`start`](Migration::start) once the
    /// plan is stored and the joining or leaving nodes are marked.
    ///
    /// # Panics
    ///
    /// When `plan`'s segment ids are not `0..len` in order, or `limits` allow no segment.
    pub fn new(id: MigrationId, plan: Plan, limits: Limits) -> Self {
        assert!(limits.max_active_segments > 0, "no segment may stream");
        let segments = plan
            .segments
            .iter()
            .enumerate()
            .map(|(i, segment)| {
                assert_eq!(segment.id, SegmentId(i as u32), "segments out of order");
                let sources = segment
                    .sources
                    .iter()
                    .map(|node| SourceState {
                        node: node.clone(),
                        cursor: None,
                        keys: 0,
                        finished: *node == segment.target,
                        running: false,
                        failures: 0,
                    })
                    .collect();
                let required = Level::Quorum.required(segment.sources.len()).max(1);
                SegmentState { sources, required, started: false, done: false }
            })
            .collect();
        let mut migration = Self {
            id,
            attempt: 0,
            plan,
            limits,
            stage: Stage::Planned,
            awaiting_barrier: false,
            segments,
            cleanup: Vec::new(),
            actions: VecDeque::new(),
            error: None,
            total_keys: 0,
        };
        for i in 0..migration.segments.len() {
            migration.check_segment_done(i);
        }
        migration.persist_stage();
        migration
    }

    /// Rebuilds the driver of `id` after a crash from everything it persisted, in the order it
    /// was persisted, and the same `plan` (a plan is a pure function of both rings and the
    /// factors, so it can be recomputed). The new driver runs as the next attempt: it re-runs the
    /// barrier of its stage, re-streams unfinished segments from their cursors and re-asks
    /// unfinished cleanups.
    pub fn resume_from(
        id: MigrationId,
        plan: Plan,
        limits: Limits,
        checkpoints: &[Checkpoint],
    ) -> Result<Self, MigrationError> {
        let mut migration = Self::new(id, plan, limits);
        migration.actions.clear();
        let mut attempt = 0;
        let mut cleaned: Vec<(NodeId, Side)> = Vec::new();
        for checkpoint in checkpoints {
            if checkpoint.migration() != id {
                return Err(MigrationError::WrongMigration {
                    want: id,
                    found: checkpoint.migration(),
                });
            }
            attempt = attempt.max(checkpoint.attempt());
            match checkpoint {
                Checkpoint::Stage { stage, error, .. } => {
                    migration.stage = *stage;
                    migration.error.clone_from(error);
                }
                Checkpoint::Segment(s) => migration.restore_segment(s),
                Checkpoint::Cleaned { node, keep, .. } => cleaned.push((node.clone(), *keep)),
            }
        }
        migration.attempt = attempt + 1;
        migration.persist_stage();
        migration.run_stage();
        if let Some(keep) = migration.cleanup_side() {
            for (node, done) in &mut migration.cleanup {
                *done = cleaned.contains(&(node.clone(), keep));
            }
            migration.actions.retain(|action| match action {
                Action::Cleanup { node, keep, .. } => !cleaned.contains(&(node.clone(), *keep)),
                _ => true,
            });
            migration.finish_cleanup();
        }
        Ok(migration)
    }

    fn restore_segment(&mut self, checkpoint: &SegmentCheckpoint) {
        let index = checkpoint.segment.0 as usize;
        let Some(segment) = self.segments.get_mut(index) else { return };
        let Some(source) = segment.sources.iter_mut().find(|s| s.node == checkpoint.source) else {
            return;
        };
        source.keys = source.keys.max(checkpoint.keys);
        if checkpoint.cursor.is_some() {
            source.cursor.clone_from(&checkpoint.cursor);
        }
        source.finished |= checkpoint.finished;
        self.check_segment_done(index);
    }

    /// The change's id.
    pub fn id(&self) -> MigrationId {
        self.id
    }

    /// The driver's attempt: 0 for a new change, one more on every resume.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The plan being carried out.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Why the change reverted, or what went wrong after the point of no return.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// True while the driver waits for [`handle_barrier`](Migration::handle_barrier).
    pub fn is_awaiting_barrier(&self) -> bool {
        self.awaiting_barrier
    }

    /// The next thing to do, in order; `None` when the driver waits for an input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Moves a planned change to DUAL_WRITE.
    pub fn start(&mut self) -> Result<(), MigrationError> {
        if self.stage != Stage::Planned {
            return Err(MigrationError::NotPlanned { stage: self.stage });
        }
        self.enter(Stage::DualWrite);
        Ok(())
    }

    /// Every coordinator applied `stage` and older requests drained. A barrier for any other
    /// stage than the one awaited is stale and ignored.
    pub fn handle_barrier(&mut self, stage: Stage) {
        if !self.awaiting_barrier || stage != self.stage {
            return;
        }
        self.awaiting_barrier = false;
        match stage {
            Stage::DualWrite => self.enter(Stage::Streaming),
            Stage::ReadNew => self.enter(Stage::UseNew),
            Stage::UseNew => self.enter(Stage::Cleanup),
            Stage::Reverting => self.enter(Stage::CleanupTarget),
            _ => {}
        }
    }

    /// `source` sent `keys` keys of `segment` so far and can resume after `cursor`. Counts
    /// never go down; reports for unknown, finished or done work are ignored.
    pub fn handle_segment_progress(
        &mut self,
        segment: SegmentId,
        source: &NodeId,
        keys: u64,
        cursor: Cursor,
    ) {
        if self.stage != Stage::Streaming {
            return;
        }
        let Some(state) = self.segments.get_mut(segment.0 as usize) else { return };
        if state.done {
            return;
        }
        let Some(s) = state.sources.iter_mut().find(|s| &s.node == source && !s.finished) else {
            return;
        };
        s.keys = s.keys.max(keys);
        s.cursor = Some(cursor);
        self.persist_source(segment, source);
    }

    /// `source` streamed all of `segment`. The segment is done once a quorum of its sources
    /// finished; the rest are stopped.
    pub fn handle_segment_done(&mut self, segment: SegmentId, source: &NodeId) {
        if self.stage != Stage::Streaming {
            return;
        }
        let index = segment.0 as usize;
        let Some(state) = self.segments.get_mut(index) else { return };
        if state.done {
            return;
        }
        let Some(s) = state.sources.iter_mut().find(|s| &s.node == source && !s.finished) else {
            return;
        };
        s.finished = true;
        s.running = false;
        self.persist_source(segment, source);
        if self.check_segment_done(index) {
            let stops: Vec<Action> = self.segments[index]
                .sources
                .iter_mut()
                .filter(|s| s.running)
                .map(|s| {
                    s.running = false;
                    Action::StopStream { segment, source: s.node.clone() }
                })
                .collect();
            self.actions.extend(stops);
        }
        self.schedule();
    }

    /// `node` finished the cleanup it was asked for.
    pub fn handle_cleanup_done(&mut self, node: &NodeId) {
        let Some(keep) = self.cleanup_side() else { return };
        let Some((_, done)) = self.cleanup.iter_mut().find(|(n, done)| n == node && !*done) else {
            return;
        };
        *done = true;
        let checkpoint = Checkpoint::Cleaned {
            migration: self.id,
            attempt: self.attempt,
            node: node.clone(),
            keep,
        };
        self.actions.push_back(Action::Persist(checkpoint));
        self.finish_cleanup();
    }

    /// Cancels the change: at once from PLANNED, by reverting from DUAL_WRITE to READ_NEW.
    /// Cancelling a change that is already reverting or cancelled changes nothing.
    pub fn handle_cancel(&mut self) -> Result<(), MigrationError> {
        match self.stage {
            Stage::Planned => self.enter(Stage::Cancelled),
            Stage::DualWrite | Stage::Streaming | Stage::ReadNew => self.revert(),
            Stage::Reverting | Stage::CleanupTarget | Stage::Cancelled => {}
            Stage::UseNew | Stage::Cleanup | Stage::Completed => {
                return Err(MigrationError::TooLateToCancel { stage: self.stage })
            }
        }
        Ok(())
    }

    /// Something went wrong; see [`Failure`].
    pub fn handle_failure(&mut self, failure: Failure) {
        match failure {
            Failure::Source { segment, source } => self.source_failed(segment, &source),
            Failure::Cleanup { node } => {
                let pending = self.cleanup.iter().any(|(n, done)| *n == node && !*done);
                if let (true, Some(keep)) = (pending, self.cleanup_side()) {
                    let action = self.cleanup_action(node, keep);
                    self.actions.push_back(action);
                }
            }
            Failure::Abort { reason } => self.abort(reason),
        }
    }

    fn source_failed(&mut self, segment: SegmentId, source: &NodeId) {
        if self.stage != Stage::Streaming {
            return;
        }
        let Some(state) = self.segments.get_mut(segment.0 as usize) else { return };
        if state.done {
            return;
        }
        let Some(s) = state.sources.iter_mut().find(|s| &s.node == source && s.running) else {
            return;
        };
        s.running = false;
        s.failures += 1;
        let max = self.limits.max_source_attempts;
        let live = state.sources.iter().filter(|s| s.finished || s.failures < max).count();
        if live < state.required {
            let reason =
                format!("segment {} has {live} live sources, needs {}", segment.0, state.required);
            self.abort(reason);
        } else {
            self.schedule();
        }
    }

    fn abort(&mut self, reason: String) {
        match self.stage {
            Stage::Planned => {
                self.error = Some(reason);
                self.enter(Stage::Cancelled);
            }
            Stage::DualWrite | Stage::Streaming | Stage::ReadNew => {
                self.error = Some(reason);
                self.revert();
            }
            _ => self.error = Some(reason),
        }
    }

    fn revert(&mut self) {
        let mut stops = Vec::new();
        for (i, state) in self.segments.iter_mut().enumerate() {
            for s in state.sources.iter_mut().filter(|s| s.running) {
                s.running = false;
                stops.push(Action::StopStream {
                    segment: SegmentId(i as u32),
                    source: s.node.clone(),
                });
            }
        }
        self.actions.extend(stops);
        self.enter(Stage::Reverting);
    }

    /// Moves to `stage`: persists it, then runs what the stage starts with.
    fn enter(&mut self, stage: Stage) {
        self.stage = stage;
        self.awaiting_barrier = false;
        self.persist_stage();
        self.run_stage();
    }

    /// What the current stage starts with: its barrier, its streams or its cleanups.
    fn run_stage(&mut self) {
        match self.stage {
            Stage::DualWrite | Stage::ReadNew | Stage::UseNew | Stage::Reverting => {
                self.awaiting_barrier = true;
                self.actions.push_back(Action::WaitBarrier { stage: self.stage });
            }
            Stage::Streaming => {
                for state in &mut self.segments {
                    for s in &mut state.sources {
                        s.running = false;
                    }
                    state.started = false;
                }
                self.schedule();
            }
            Stage::Cleanup | Stage::CleanupTarget => {
                let (nodes, keep) = if self.stage == Stage::Cleanup {
                    (self.plan.losers(), Side::New)
                } else {
                    (self.plan.targets(), Side::Old)
                };
                self.cleanup = nodes.iter().map(|n| (n.clone(), false)).collect();
                for node in nodes {
                    let action = self.cleanup_action(node, keep);
                    self.actions.push_back(action);
                }
                self.finish_cleanup();
            }
            Stage::Planned | Stage::Completed | Stage::Cancelled => {}
        }
    }

    fn cleanup_side(&self) -> Option<Side> {
        match self.stage {
            Stage::Cleanup => Some(Side::New),
            Stage::CleanupTarget => Some(Side::Old),
            _ => None,
        }
    }

    fn cleanup_action(&self, node: NodeId, keep: Side) -> Action {
        let ranges = match keep {
            Side::New => self.plan.lost_by(&node).map(|l| l.range).collect(),
            Side::Old => self.plan.gained_by(&node).map(|g| g.range).collect(),
        };
        Action::Cleanup { node, ranges, keep }
    }

    fn finish_cleanup(&mut self) {
        if self.cleanup.iter().all(|(_, done)| *done) {
            match self.stage {
                Stage::Cleanup => self.enter(Stage::Completed),
                Stage::CleanupTarget => self.enter(Stage::Cancelled),
                _ => {}
            }
        }
    }

    /// Marks segment `index` done when a quorum of its sources finished; true when it just was.
    fn check_segment_done(&mut self, index: usize) -> bool {
        let state = &mut self.segments[index];
        if !state.done && state.finished() >= state.required {
            state.done = true;
            return true;
        }
        false
    }

    /// In STREAMING: leaves when every segment is done, else (re)starts streams up to the cap.
    fn schedule(&mut self) {
        if self.stage != Stage::Streaming {
            return;
        }
        if self.segments.iter().all(|s| s.done) {
            self.enter(Stage::ReadNew);
            return;
        }
        let mut active = self.segments.iter().filter(|s| s.started && !s.done).count();
        let max = self.limits.max_source_attempts;
        for (i, state) in self.segments.iter_mut().enumerate() {
            if state.done {
                continue;
            }
            if !state.started {
                if active >= self.limits.max_active_segments {
                    continue;
                }
                state.started = true;
                active += 1;
            }
            let segment = &self.plan.segments[i];
            for s in &mut state.sources {
                if s.running || s.finished || s.failures >= max {
                    continue;
                }
                s.running = true;
                self.actions.push_back(Action::Stream {
                    segment: segment.id,
                    attempt: self.attempt,
                    target: segment.target.clone(),
                    source: s.node.clone(),
                    range: segment.range,
                    cursor: s.cursor.clone(),
                });
            }
        }
    }

    fn persist_stage(&mut self) {
        let checkpoint = Checkpoint::Stage {
            migration: self.id,
            attempt: self.attempt,
            stage: self.stage,
            error: self.error.clone(),
        };
        self.actions.push_back(Action::Persist(checkpoint));
    }

    fn persist_source(&mut self, segment: SegmentId, source: &NodeId) {
        let state = &self.segments[segment.0 as usize];
        // Invariant: callers found the source in this segment.
        let s = state.sources.iter().find(|s| &s.node == source).expect("source of segment");
        let checkpoint = SegmentCheckpoint {
            migration: self.id,
            attempt: self.attempt,
            segment,
            target: self.plan.segments[segment.0 as usize].target.clone(),
            source: source.clone(),
            cursor: s.cursor.clone(),
            keys: s.keys,
            finished: s.finished,
        };
        self.actions.push_back(Action::Persist(Checkpoint::Segment(checkpoint)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::core::ids::Token;
    use crate::core::migration::plan::{GainedRange, LostRange, RfChange, Segment};
    use crate::core::ring::TokenRange;

    const ID: MigrationId = MigrationId(7);

    /// One input fed to a driver.
    type Input = fn(&mut Migration);

    fn range(start: u64, end: u64) -> TokenRange {
        TokenRange { start_exclusive: Token(start), end_inclusive: Token(end) }
    }

    fn ids(names: &str) -> Vec<NodeId> {
        names.split_whitespace().map(NodeId::from).collect()
    }

    fn n(name: &str) -> NodeId {
        NodeId::from(name)
    }

    /// d joins: it gains `segments` segments of (10 i, 10 i + 10] from a b c, and a loses them.
    fn plan(segments: u32) -> Plan {
        let segments: Vec<Segment> = (0..segments)
            .map(|i| Segment {
                id: SegmentId(i),
                target: n("d"),
                range: range(u64::from(i) * 10, u64::from(i) * 10 + 10),
                sources: ids("a b c"),
            })
            .collect();
        let gained = segments
            .iter()
            .map(|s| GainedRange {
                target: s.target.clone(),
                range: s.range,
                sources: s.sources.clone(),
                arcs: 1,
            })
            .collect();
        let lost = segments.iter().map(|s| LostRange { node: n("a"), range: s.range }).collect();
        Plan { rf: RfChange::same(3), gained, lost, segments }
    }

    fn limits(max_active_segments: usize) -> Limits {
        Limits { max_active_segments, max_source_attempts: 3 }
    }

    /// Every pending action, in a short text form.
    fn drain(m: &mut Migration) -> Vec<String> {
        std::iter::from_fn(|| m.poll_action()).map(|a| show(&a)).collect()
    }

    /// Pending actions, kept whole.
    fn drain_actions(m: &mut Migration) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn show(action: &Action) -> String {
        match action {
            Action::Persist(Checkpoint::Stage { stage, attempt, .. }) => {
                format!("persist {stage:?}#{attempt}")
            }
            Action::Persist(Checkpoint::Segment(s)) => {
                let done = if s.finished { " done" } else { "" };
                format!("persist {} {} {}{done}", s.segment.0, s.source, s.keys)
            }
            Action::Persist(Checkpoint::Cleaned { node, keep, .. }) => {
                format!("persist cleaned {node} {keep:?}")
            }
            Action::WaitBarrier { stage } => format!("barrier {stage:?}"),
            Action::Stream { segment, source, target, cursor, .. } => {
                let from = match cursor {
                    Some(c) => format!(" from {}", String::from_utf8_lossy(&c.0)),
                    None => String::new(),
                };
                format!("stream {} {source}->{target}{from}", segment.0)
            }
            Action::StopStream { segment, source } => format!("stop {} {source}", segment.0),
            Action::Cleanup { node, ranges, keep } => {
                format!("cleanup {node} {keep:?} {}", ranges.len())
            }
        }
    }

    fn finish(m: &mut Migration, segment: u32, sources: &str) {
        for source in ids(sources) {
            m.handle_segment_done(SegmentId(segment), &source);
        }
    }

    /// A one-segment change driven along the happy path until it reaches `stage`, with its
    /// actions drained.
    fn at(stage: Stage) -> Migration {
        let mut m = Migration::new(ID, plan(1), limits(8));
        let steps: [(Stage, Input); 6] = [
            (Stage::Planned, |m| m.start().unwrap()),
            (Stage::DualWrite, |m| m.handle_barrier(Stage::DualWrite)),
            (Stage::Streaming, |m| finish(m, 0, "a b")),
            (Stage::ReadNew, |m| m.handle_barrier(Stage::ReadNew)),
            (Stage::UseNew, |m| m.handle_barrier(Stage::UseNew)),
            (Stage::Cleanup, |m| m.handle_cleanup_done(&n("a"))),
        ];
        for (from, step) in steps {
            if m.stage() == stage {
                break;
            }
            assert_eq!(m.stage(), from);
            step(&mut m);
        }
        assert_eq!(m.stage(), stage);
        drain(&mut m);
        m
    }

    #[test]
    fn happy_path_walks_every_stage() {
        let mut m = Migration::new(ID, plan(3), limits(2));
        assert_eq!(drain(&mut m), ["persist Planned#0"]);
        m.handle_barrier(Stage::DualWrite); // not awaited yet
        assert_eq!(m.stage(), Stage::Planned);
        m.start().unwrap();
        assert_eq!(m.start(), Err(MigrationError::NotPlanned { stage: Stage::DualWrite }));
        assert_eq!(drain(&mut m), ["persist DualWrite#0", "barrier DualWrite"]);
        m.handle_barrier(Stage::ReadNew); // stale
        assert!(drain(&mut m).is_empty());
        m.handle_barrier(Stage::DualWrite);
        #[rustfmt::skip]
        assert_eq!(drain(&mut m), [
            "persist Streaming#0",
            "stream 0 a->d", "stream 0 b->d", "stream 0 c->d",
            "stream 1 a->d", "stream 1 b->d", "stream 1 c->d",
        ]);
        m.handle_segment_progress(SegmentId(0), &n("a"), 5, Cursor(b"k5".to_vec()));
        m.handle_segment_done(SegmentId(0), &n("a"));
        assert_eq!(drain(&mut m), ["persist 0 a 5", "persist 0 a 5 done"]);
        m.handle_segment_done(SegmentId(0), &n("a")); // a duplicate
        m.handle_segment_done(SegmentId(0), &n("c"));
        #[rustfmt::skip]
        assert_eq!(drain(&mut m), [
            "persist 0 c 0 done", "stop 0 b",
            "stream 2 a->d", "stream 2 b->d", "stream 2 c->d",
        ]);
        finish(&mut m, 1, "b c");
        finish(&mut m, 2, "a b");
        #[rustfmt::skip]
        assert_eq!(drain(&mut m), [
            "persist 1 b 0 done", "persist 1 c 0 done", "stop 1 a",
            "persist 2 a 0 done", "persist 2 b 0 done", "stop 2 c",
            "persist ReadNew#0", "barrier ReadNew",
        ]);
        m.handle_barrier(Stage::ReadNew);
        assert_eq!(drain(&mut m), ["persist UseNew#0", "barrier UseNew"]);
        m.handle_barrier(Stage::UseNew);
        assert_eq!(drain(&mut m), ["persist Cleanup#0", "cleanup a New 3"]);
        m.handle_cleanup_done(&n("d")); // not cleaning
        m.handle_cleanup_done(&n("a"));
        assert_eq!(drain(&mut m), ["persist cleaned a New", "persist Completed#0"]);
        assert_eq!((m.percentage(), m.error()), (100, None));
    }

    #[test]
    fn each_transition() {
        #[rustfmt::skip]
        let cases: &[(Stage, Input, Stage)] = &[
            (Stage::Planned,   |m| m.start().unwrap(),                     Stage::DualWrite),
            (Stage::DualWrite, |m| m.handle_barrier(Stage::DualWrite),     Stage::Streaming),
            (Stage::DualWrite, |m| m.handle_barrier(Stage::UseNew),        Stage::DualWrite),
            (Stage::Streaming, |m| finish(m, 0, "a"),                      Stage::Streaming),
            (Stage::Streaming, |m| finish(m, 0, "a c"),                    Stage::ReadNew),
            (Stage::Streaming, |m| m.handle_barrier(Stage::Streaming),     Stage::Streaming),
            (Stage::ReadNew,   |m| m.handle_barrier(Stage::ReadNew),       Stage::UseNew),
            (Stage::ReadNew,   |m| finish(m, 0, "b"),                      Stage::ReadNew),
            (Stage::UseNew,    |m| m.handle_barrier(Stage::UseNew),        Stage::Cleanup),
            (Stage::Cleanup,   |m| m.handle_cleanup_done(&n("b")),         Stage::Cleanup),
            (Stage::Cleanup,   |m| m.handle_cleanup_done(&n("a")),         Stage::Completed),
            (Stage::Completed, |m| m.handle_barrier(Stage::Completed),     Stage::Completed),
        ];
        for (i, (from, input, to)) in cases.iter().enumerate() {
            let mut m = at(*from);
            input(&mut m);
            assert_eq!(m.stage(), *to, "case {i} from {from:?}");
        }
    }

    #[test]
    fn cancel_from_each_stage() {
        type Want = Result<&'static [&'static str], Stage>;
        #[rustfmt::skip]
        let cases: &[(Stage, Want)] = &[
            (Stage::Planned,   Ok(&["persist Cancelled#0"])),
            (Stage::DualWrite, Ok(&["persist Reverting#0", "barrier Reverting"])),
            (Stage::Streaming, Ok(&["stop 0 a", "stop 0 b", "stop 0 c",
                                    "persist Reverting#0", "barrier Reverting"])),
            (Stage::ReadNew,   Ok(&["persist Reverting#0", "barrier Reverting"])),
            (Stage::UseNew,    Err(Stage::UseNew)),
            (Stage::Cleanup,   Err(Stage::Cleanup)),
            (Stage::Completed, Err(Stage::Completed)),
        ];
        for (from, want) in cases {
            let mut m = at(*from);
            match want {
                Ok(actions) => {
                    m.handle_cancel().unwrap();
                    assert_eq!(drain(&mut m), *actions, "cancel in {from:?}");
                    if m.stage() == Stage::Reverting {
                        m.handle_barrier(Stage::Reverting);
                        assert_eq!(drain(&mut m), ["persist CleanupTarget#0", "cleanup d Old 1"]);
                        m.handle_cancel().unwrap(); // already reverting: no change
                        m.handle_cleanup_done(&n("d"));
                        assert_eq!(drain(&mut m), ["persist cleaned d Old", "persist Cancelled#0"]);
                    }
                    assert_eq!(m.stage(), Stage::Cancelled);
                    assert!(m.percentage() < 100);
                    m.handle_cancel().unwrap();
                    assert!(drain(&mut m).is_empty());
                }
                Err(stage) => {
                    let err = m.handle_cancel().unwrap_err();
                    assert_eq!(err, MigrationError::TooLateToCancel { stage: *stage });
                    assert_eq!(m.stage(), *from);
                }
            }
        }
    }

    #[test]
    fn failures() {
        // A source is retried from its cursor until it runs out of attempts.
        let mut m = at(Stage::Streaming);
        m.handle_segment_progress(SegmentId(0), &n("a"), 3, Cursor(b"k3".to_vec()));
        drain(&mut m);
        let fail = |m: &mut Migration, source: &str| {
            m.handle_failure(Failure::Source { segment: SegmentId(0), source: n(source) })
        };
        fail(&mut m, "a");
        assert_eq!(drain(&mut m), ["stream 0 a->d from k3"]);
        fail(&mut m, "a");
        fail(&mut m, "x"); // not a source
        fail(&mut m, "a");
        assert_eq!(drain(&mut m), ["stream 0 a->d from k3"]);
        fail(&mut m, "a"); // given up on: b and c are still a quorum
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.stage(), Stage::Streaming);
        fail(&mut m, "b");
        fail(&mut m, "b");
        fail(&mut m, "b");
        assert_eq!(m.stage(), Stage::Reverting);
        assert_eq!(m.error(), Some("segment 0 has 1 live sources, needs 2"));

        // An abort reverts before USE_NEW, and is only recorded from there on.
        #[rustfmt::skip]
        let cases: &[(Stage, Stage)] = &[
            (Stage::Planned,   Stage::Cancelled),
            (Stage::DualWrite, Stage::Reverting),
            (Stage::ReadNew,   Stage::Reverting),
            (Stage::UseNew,    Stage::UseNew),
            (Stage::Cleanup,   Stage::Cleanup),
        ];
        for (from, to) in cases {
            let mut m = at(*from);
            m.handle_failure(Failure::Abort { reason: "n lost quorum".into() });
            assert_eq!((m.stage(), m.error()), (*to, Some("n lost quorum")), "{from:?}");
        }

        // A failed cleanup is asked for again; a finished one is not.
        let mut m = at(Stage::Cleanup);
        m.handle_failure(Failure::Cleanup { node: n("a") });
        assert_eq!(drain(&mut m), ["cleanup a New 1"]);
        m.handle_failure(Failure::Cleanup { node: n("d") });
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn progress_never_decreases_and_reaches_100_only_when_completed() {
        let mut m = Migration::new(ID, plan(2), limits(8));
        m.set_total_keys(1_000);
        let t0 = Instant::now();
        let barrier = Duration::from_secs(10);
        assert_eq!(m.eta(t0, 100.0, barrier), Some(t0 + Duration::from_secs(10 + 30)));
        assert_eq!(m.eta(t0, 0.0, barrier), None);
        m.start().unwrap();
        m.handle_barrier(Stage::DualWrite);
        let report = |m: &mut Migration, seg: u32, source: &str, keys: u64| {
            m.handle_segment_progress(SegmentId(seg), &n(source), keys, Cursor(vec![]));
            (m.keys_migrated(), m.percentage())
        };
        #[rustfmt::skip]
        let steps: &[(u32, &str, u64, u64, u8)] = &[
            // segment, source, keys, keys migrated, percentage
            (0,         "a",    100,  100,           10),
            (0,         "b",    150,  150,           15), // the most any source sent
            (0,         "a",    120,  150,           15),
            (0,         "b",    50,   150,           15), // a lower report changes nothing
            (1,         "c",    400,  550,           55),
            (1,         "c",    2000, 2150,          99), // past the estimate: capped at 99
        ];
        for &(seg, source, keys, want_keys, want_pct) in steps {
            assert_eq!(report(&mut m, seg, source, keys), (want_keys, want_pct), "{steps:?}");
        }
        m.set_total_keys(3_000);
        assert_eq!(m.eta(t0, 85.0, barrier), Some(t0 + Duration::from_secs(10 + 20)));
        m.handle_failure(Failure::Source { segment: SegmentId(1), source: n("c") });
        assert_eq!(m.keys_migrated(), 2150);
        finish(&mut m, 0, "a b");
        finish(&mut m, 1, "a b");
        assert_eq!((m.stage(), m.percentage()), (Stage::ReadNew, 99));
        assert_eq!(m.segments_done(), (2, 2));
        assert_eq!(m.eta(t0, 0.0, barrier), Some(t0 + 2 * barrier));
        m.handle_barrier(Stage::ReadNew);
        m.handle_barrier(Stage::UseNew);
        assert_eq!(m.percentage(), 99);
        m.handle_cleanup_done(&n("a"));
        assert_eq!((m.stage(), m.percentage(), m.keys_migrated()), (Stage::Completed, 100, 2150));
        assert_eq!(m.eta(t0, 0.0, barrier), Some(t0));
    }

    #[test]
    fn resume_restreams_only_unfinished_segments() {
        let mut m = Migration::new(ID, plan(4), limits(3));
        m.start().unwrap();
        m.handle_barrier(Stage::DualWrite);
        finish(&mut m, 0, "a b");
        m.handle_segment_progress(SegmentId(1), &n("a"), 30, Cursor(b"k30".to_vec()));
        m.handle_segment_done(SegmentId(1), &n("b"));
        m.handle_segment_progress(SegmentId(2), &n("c"), 10, Cursor(b"k10".to_vec()));
        m.handle_segment_progress(SegmentId(2), &n("c"), 20, Cursor(b"k20".to_vec()));
        let keys = m.keys_migrated();
        // The crash: what the store holds is every checkpoint the driver asked for.
        let stored: Vec<Checkpoint> = drain_actions(&mut m)
            .into_iter()
            .filter_map(|a| match a {
                Action::Persist(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut r = Migration::resume_from(ID, plan(4), limits(3), &stored).unwrap();
        assert_eq!((r.stage(), r.attempt(), r.keys_migrated()), (Stage::Streaming, 1, keys));
        assert_eq!(r.segments_done(), (1, 4));
        #[rustfmt::skip]
        assert_eq!(drain(&mut r), [
            "persist Streaming#1",
            "stream 1 a->d from k30", "stream 1 c->d",
            "stream 2 a->d", "stream 2 b->d", "stream 2 c->d from k20",
            "stream 3 a->d", "stream 3 b->d", "stream 3 c->d",
        ]);
        let actions =
            drain_actions(&mut Migration::resume_from(ID, plan(4), limits(3), &stored).unwrap());
        assert!(actions
            .iter()
            .all(|a| !matches!(a, Action::Stream { attempt, .. } if *attempt != 1)));
        let other = Migration::resume_from(MigrationId(8), plan(4), limits(3), &stored);
        assert_eq!(
            other.unwrap_err(),
            MigrationError::WrongMigration { want: MigrationId(8), found: ID }
        );
    }

    #[test]
    fn resume_reruns_the_barrier_and_unfinished_cleanups() {
        fn stored(m: &mut Migration) -> Vec<Checkpoint> {
            drain_actions(m)
                .into_iter()
                .filter_map(|a| match a {
                    Action::Persist(c) => Some(c),
                    _ => None,
                })
                .collect()
        }
        // Crashed in READ_NEW waiting for its barrier.
        let mut m = Migration::new(ID, plan(1), limits(8));
        m.start().unwrap();
        m.handle_barrier(Stage::DualWrite);
        finish(&mut m, 0, "a b");
        let mut r = Migration::resume_from(ID, plan(1), limits(8), &stored(&mut m)).unwrap();
        assert_eq!(drain(&mut r), ["persist ReadNew#1", "barrier ReadNew"]);
        assert!(r.is_awaiting_barrier());

        // Crashed in CLEANUP with one of two losers done.
        let mut two = plan(1);
        two.lost.push(LostRange { node: n("b"), range: range(0, 10) });
        let mut m = Migration::new(ID, two.clone(), limits(8));
        m.start().unwrap();
        m.handle_barrier(Stage::DualWrite);
        finish(&mut m, 0, "a b");
        m.handle_barrier(Stage::ReadNew);
        m.handle_barrier(Stage::UseNew);
        m.handle_cleanup_done(&n("b"));
        let mut r = Migration::resume_from(ID, two.clone(), limits(8), &stored(&mut m)).unwrap();
        assert_eq!(drain(&mut r), ["persist Cleanup#1", "cleanup a New 1"]);
        r.handle_cleanup_done(&n("a"));
        assert_eq!(r.stage(), Stage::Completed);

        // Nothing stored yet: a planned change.
        let r = Migration::resume_from(ID, two, limits(8), &[]).unwrap();
        assert_eq!((r.stage(), r.attempt()), (Stage::Planned, 1));
    }

    #[test]
    fn a_target_among_its_sources_counts_as_finished() {
        // rf 3 -> 2: a keeps its copy and needs one more source for a quorum of a b c.
        let mut p = plan(1);
        p.segments[0].target = n("a");
        p.gained[0].target = n("a");
        let mut m = Migration::new(ID, p, limits(8));
        m.start().unwrap();
        drain(&mut m);
        m.handle_barrier(Stage::DualWrite);
        assert_eq!(drain(&mut m)[1..], ["stream 0 b->a", "stream 0 c->a"]);
        m.handle_segment_done(SegmentId(0), &n("c"));
        assert_eq!(m.stage(), Stage::ReadNew);
    }

    #[test]
    fn a_plan_without_segments_streams_nothing() {
        let mut m = Migration::new(ID, plan(0), limits(8));
        m.start().unwrap();
        m.handle_barrier(Stage::DualWrite);
        assert_eq!(m.stage(), Stage::ReadNew);
        m.handle_barrier(Stage::ReadNew);
        m.handle_barrier(Stage::UseNew);
        assert_eq!(m.stage(), Stage::Completed);
    }

    #[test]
    fn drives_a_real_plan_to_completion() {
        use crate::core::ring::{Member, Ring};
        #[rustfmt::skip]
        let cases: &[(&str, &str, usize, usize)] = &[
            // before,  after,     rf0, rf1
            ("a b c",   "a b c d", 3,   3),
            ("a b c d", "a b d",   3,   3),
            ("a b c d", "a b c d", 2,   3),
            ("a b c d", "a b c d", 3,   2),
        ];
        for &(before, after, rf0, rf1) in cases {
            let ring = |epoch, names: &str| {
                Ring::new(epoch, ids(names).into_iter().map(|id| Member::new(id, 4)).collect())
            };
            let (r0, r1) = (ring(1, before).unwrap(), ring(2, after).unwrap());
            let plan = Plan::new(&r0, &r1, RfChange { rf0, rf1 }, 4);
            assert!(!plan.segments.is_empty(), "{before} -> {after}");
            let mut m = Migration::new(ID, plan, Limits::default());
            m.start().unwrap();
            m.handle_barrier(Stage::DualWrite);
            let mut rounds = 0;
            while m.stage() == Stage::Streaming {
                rounds += 1;
                assert!(rounds < 1_000, "streaming does not end");
                for action in drain_actions(&mut m) {
                    if let Action::Stream { segment, source, .. } = action {
                        m.handle_segment_progress(segment, &source, 1, Cursor(vec![1]));
                        m.handle_segment_done(segment, &source);
                    }
                }
            }
            m.handle_barrier(Stage::ReadNew);
            m.handle_barrier(Stage::UseNew);
            for action in drain_actions(&mut m) {
                if let Action::Cleanup { node, keep: Side::New, .. } = action {
                    m.handle_cleanup_done(&node);
                }
            }
            assert_eq!(m.stage(), Stage::Completed, "{before} -> {after} rf {rf0}->{rf1}");
            assert_eq!(m.segments_done().0, m.segments_done().1);
        }
    }
}
