//! The driver loop of one data movement, on one core of the coordinator that owns it.
//!
//! ```text
//!   loop:
//!     drain the driver's actions: Persist -> fold into State (saved before any barrier or
//!       stream that follows), WaitBarrier -> remember, Stream -> spawn a stream task,
//!       StopStream -> raise its stop flag, Cleanup -> spawn a cleanup task
//!     terminal stage -> finish (membership / factor rewritten, status set), done
//!     awaited barrier reached (every live coordinator beat it, then one replica timeout to
//!       drain older requests) -> handle_barrier
//!     cancel requested in the record -> handle_cancel
//!     wait up to 200 ms for a task's event -> feed it to the driver
//! ```

mod finish;

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    coordinator::{
        migrate::{plan::plan_of, stream::*, State, METRICS},
        placement::ring_of,
        shard::{blocking, unix_now_secs, unix_now_us, Shard},
    },
    core::{
        ids::NodeId,
        migration::{
            driver::{Action, Failure, Limits, Migration, MigrationId},
            placement::Placement,
            plan::{RfChange, SegmentId},
            sets::Side,
            Stage,
        },
        ring::TokenRange,
    },
    meta::MigrationRecord,
};

/// How long a coordinator that never reported the running migration must have been silent
/// before a barrier stops waiting for it (it crashed, or was decommissioned).
pub const FORGET_COORDINATOR_MS: i64 = 10 * 60 * 1000;

/// Failed cleanups of one node (each after [`MAX_RETRIES`] calls) before it is given up.
const MAX_CLEANUP_FAILURES: u32 = 3;

/// Task events waiting for the driver loop. The tasks wait when it is full (counted in
/// `pairdb_migration_event_waits_total`): each task has at most one event outstanding per page.
const EVENTS_CAPACITY: usize = 1024;

/// Sends a task's event, waiting (and counting the wait) while the loop is behind.
async fn emit(tx: &flume::Sender<Tagged>, event: Tagged) {
    match tx.try_send(event) {
        Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {}
        Err(flume::TrySendError::Full(event)) => {
            crate::coordinator::migrate::MoveMetrics::add(&METRICS.event_waits, 1);
            let _ = tx.send_async(event).await;
        }
    }
}

/// What a stream or cleanup task reports.
enum Event {
    Progress { segment: SegmentId, source: NodeId, keys: u64, cursor: Vec<u8>, bytes: u64 },
    Done { segment: SegmentId, source: NodeId },
    Failed { segment: SegmentId, source: NodeId, reason: String },
    Cleaned { node: NodeId },
    CleanupFailed { node: NodeId, reason: String },
}

/// Raised to stop one stream.
type StopFlag = Rc<Cell<bool>>;

/// A task's event with the generation it was started in.
type Tagged = (u64, Event);

/// One running migration.
pub struct Runner {
    shard: Rc<Shard>,
    record: RefCell<MigrationRecord>,
    state: RefCell<State>,
    driver: RefCell<Migration>,
    placement: Arc<Placement>,
    groups: Vec<RfChange>,
    streamer: Rc<Streamer>,
    /// Events of the tasks, tagged with the generation they were started in.
    events: (flume::Sender<Tagged>, flume::Receiver<Tagged>),
    /// Bumped when a wiped target restarts the streaming: older tasks' events are dropped.
    generation: Cell<u64>,
    /// Targets' incarnation ids, and when they were last compared.
    incarnation_checked: Cell<Instant>,
    stops: RefCell<HashMap<(SegmentId, NodeId), StopFlag>>,
    rate: RefCell<Rate>,
    saved_at: Cell<Instant>,
    overdue_logged: Cell<bool>,
}

/// Keys and bytes per second, over the last few seconds.
struct Rate {
    samples: std::collections::VecDeque<(Instant, u64, u64)>,
}

impl Rate {
    fn add(&mut self, keys: u64, bytes: u64) {
        let now = Instant::now();
        self.samples.push_back((now, keys, bytes));
        while self.samples.front().is_some_and(|(t, _, _)| now - *t > Duration::from_secs(5)) {
            self.samples.pop_front();
        }
    }

    fn per_sec(&self) -> (f64, f64) {
        let Some((first, _, _)) = self.samples.front() else { return (0.0, 0.0) };
        let span = first.elapsed().as_secs_f64().max(1.0);
        let keys: u64 = self.samples.iter().map(|s| s.1).sum();
        let bytes: u64 = self.samples.iter().map(|s| s.2).sum();
        (keys as f64 / span, bytes as f64 / span)
    }
}

fn migration_number(id: &str) -> MigrationId {
    MigrationId(xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
}

impl Runner {
    /// Builds the runner of `record` (active, with a state), resuming from its checkpoints.
    pub fn new(shard: Rc<Shard>, record: MigrationRecord) -> Result<Rc<Runner>, String> {
        let state = State::decode(&record.state)?;
        let (plan, groups) = plan_of(&state)?;
        let cfg = &shard.shared.config.migration;
        let limits =
            Limits { max_active_segments: cfg.max_active_segments, max_source_attempts: 3 };
        let id = migration_number(&record.migration_id);
        let fresh = state.stage.is_empty() || state.stage == Stage::Planned.as_str();
        let driver = if fresh {
            Migration::new(id, plan, limits)
        } else {
            Migration::resume_from(id, plan, limits, &state.checkpoints(id))
                .map_err(|e| e.to_string())?
        };
        let placement = Arc::new(Placement {
            migration_id: record.migration_id.clone(),
            stage: driver.stage(),
            r0: Arc::new(ring_of(&state.old_members)?),
            r1: Arc::new(ring_of(&state.new_members)?),
            rf_change: state.rf_change.clone().map(Into::into),
        });
        let throttle = Throttle::new(cfg);
        throttle.govern(shard.shared.clone());
        let streamer = Rc::new(Streamer {
            shard: shard.clone(),
            throttle: throttle.clone(),
            slots: Rc::new(Slots::new(cfg.max_streams_per_node)),
            page_entries: cfg.page_entries,
        });
        let mut driver = driver;
        driver.set_total_keys(state.total_keys);
        Ok(Rc::new(Runner {
            shard,
            record: RefCell::new(record),
            state: RefCell::new(state),
            driver: RefCell::new(driver),
            placement,
            groups,
            streamer,
            events: flume::bounded(EVENTS_CAPACITY),
            generation: Cell::new(0),
            incarnation_checked: Cell::new(Instant::now()),
            stops: RefCell::new(HashMap::new()),
            rate: RefCell::new(Rate { samples: Default::default() }),
            saved_at: Cell::new(Instant::now()),
            overdue_logged: Cell::new(false),
        }))
    }

    /// Runs the migration to its end (COMPLETED or CANCELLED); errors of the metadata store are
    /// retried. Returns when done or when this coordinator stops owning it.
    pub async fn run(self: Rc<Self>) {
        if self.driver.borrow().stage() == Stage::Planned {
            self.estimate_total().await;
            let _ = self.driver.borrow_mut().start();
        }
        let mut barrier: Option<(Stage, Option<Instant>)> = None;
        let mut cancel_checked = Instant::now();
        loop {
            // Checkpoints are stored before any later action runs (the driver's contract): a
            // stage saved is a stage the followers route by.
            let mut must_save = false;
            let mut later = Vec::new();
            loop {
                let action = self.driver.borrow_mut().poll_action();
                let Some(action) = action else { break };
                match action {
                    Action::Persist(c) => {
                        let segment =
                            matches!(c, crate::core::migration::driver::Checkpoint::Segment(_));
                        if !segment && !later.is_empty() {
                            // A stage or cleanup checkpoint after other actions: those first,
                            // as ordered, then this one is saved below before anything else.
                            self.run_actions(std::mem::take(&mut later), &mut barrier);
                        }
                        must_save |= !segment;
                        self.state.borrow_mut().apply(&c);
                        if !segment {
                            self.save().await;
                            must_save = false;
                        }
                    }
                    other => later.push(other),
                }
            }
            self.run_actions(later, &mut barrier);
            let stage = self.driver.borrow().stage();
            if must_save || self.saved_at.get().elapsed() > Duration::from_millis(500) {
                self.save().await;
            }
            if stage.is_terminal() {
                self.finish(stage).await;
                return;
            }
            if let Some((want, since)) = barrier {
                match self.barrier_reached(want, since).await {
                    BarrierState::Reached => {
                        barrier = None;
                        self.state.borrow_mut().blocked_on.clear();
                        self.driver.borrow_mut().handle_barrier(want);
                        continue;
                    }
                    BarrierState::Draining(t) => barrier = Some((want, Some(t))),
                    BarrierState::Waiting => barrier = Some((want, None)),
                }
            }
            self.enforce_max_duration();
            self.check_targets().await;
            if cancel_checked.elapsed() > Duration::from_millis(300) {
                cancel_checked = Instant::now();
                if !self.check_cancel().await {
                    // Another coordinator took the migration over (this one was silent for
                    // longer than the takeover delay): stop without touching it.
                    tracing::warn!(migration = %self.record.borrow().migration_id, "another coordinator drives this migration now; stopping");
                    for stop in self.stops.borrow().values() {
                        stop.set(true);
                    }
                    return;
                }
            }
            let event = glommio::timer::timeout(Duration::from_millis(200), async {
                Ok(self.events.1.recv_async().await.ok())
            })
            .await
            .ok()
            .flatten();
            if let Some(event) = event {
                self.handle_current(event);
                // Take every event already queued before the next round of actions.
                while let Ok(event) = self.events.1.try_recv() {
                    self.handle_current(event);
                }
            }
        }
    }

    /// Runs actions other than `Persist`, in order.
    fn run_actions(
        self: &Rc<Self>,
        actions: Vec<Action>,
        barrier: &mut Option<(Stage, Option<Instant>)>,
    ) {
        for action in actions {
            match action {
                Action::Persist(c) => self.state.borrow_mut().apply(&c),
                Action::WaitBarrier { stage } => *barrier = Some((stage, None)),
                Action::Stream { segment, target, source, range, cursor, .. } => {
                    self.spawn_stream(segment, target, source, range, cursor.map(|c| c.0));
                }
                Action::StopStream { segment, source } => {
                    if let Some(stop) = self.stops.borrow_mut().remove(&(segment, source)) {
                        stop.set(true);
                    }
                }
                Action::Cleanup { node, ranges, keep } => self.spawn_cleanup(node, ranges, keep),
            }
        }
    }

    fn handle_current(&self, (generation, event): Tagged) {
        if generation == self.generation.get() {
            self.handle(event);
        }
    }

    fn handle(&self, event: Event) {
        let mut driver = self.driver.borrow_mut();
        match event {
            Event::Progress { segment, source, keys, cursor, bytes } => {
                self.rate.borrow_mut().add(0, bytes);
                let before = driver.keys_migrated();
                driver.handle_segment_progress(
                    segment,
                    &source,
                    keys,
                    crate::core::migration::driver::Cursor(cursor),
                );
                let after = driver.keys_migrated();
                self.rate.borrow_mut().add(after.saturating_sub(before), 0);
                self.state.borrow_mut().bytes += bytes;
            }
            Event::Done { segment, source } => {
                self.stops.borrow_mut().remove(&(segment, source.clone()));
                driver.handle_segment_done(segment, &source);
            }
            Event::Failed { segment, source, reason } => {
                self.stops.borrow_mut().remove(&(segment, source.clone()));
                tracing::warn!(segment = segment.0, %source, %reason, "migration stream failed");
                driver.handle_failure(Failure::Source { segment, source });
            }
            Event::Cleaned { node } => driver.handle_cleanup_done(&node),
            Event::CleanupFailed { node, reason } => {
                let mut st = self.state.borrow_mut();
                let failures = st.cleanup_failures.entry(node.as_str().to_owned()).or_default();
                *failures += 1;
                if *failures >= MAX_CLEANUP_FAILURES {
                    // Each failure already retried for about a minute: the node is gone. It
                    // owns none of these keys any more; what it still holds is reported.
                    tracing::error!(%node, %reason, "giving up the cleanup of a node that does not answer; it may hold stray copies");
                    st.uncleaned.push(node.as_str().to_owned());
                    drop(st);
                    driver.handle_cleanup_done(&node);
                } else {
                    tracing::warn!(%node, %reason, "migration cleanup failed; asking again");
                    drop(st);
                    driver.handle_failure(Failure::Cleanup { node });
                }
            }
        }
    }

    fn spawn_stream(
        self: &Rc<Self>,
        segment: SegmentId,
        target: NodeId,
        source: NodeId,
        range: TokenRange,
        cursor: Option<Vec<u8>>,
    ) {
        let stop = Rc::new(Cell::new(false));
        self.stops.borrow_mut().insert((segment, source.clone()), stop.clone());
        let keys0 = self
            .state
            .borrow()
            .sources
            .iter()
            .find(|p| p.segment == segment.0 && p.source == source.as_str())
            .map_or(0, |p| p.keys);
        let want = Want::Gains {
            placement: self.placement.clone(),
            group: self.groups[segment.0 as usize],
        };
        let (streamer, tx) = (self.streamer.clone(), self.events.0.clone());
        let generation = self.generation.get();
        glommio::spawn_local(async move {
            let mut cursor = cursor.unwrap_or_default();
            let mut keys = keys0;
            loop {
                if stop.get() {
                    return;
                }
                match streamer.page(&source, &target, &range, &cursor, &want, &stop).await {
                    Ok(page) => {
                        keys += page.keys;
                        match page.next {
                            Some(next) => {
                                cursor = next.clone();
                                let source = source.clone();
                                emit(
                                    &tx,
                                    (
                                        generation,
                                        Event::Progress {
                                            segment,
                                            source,
                                            keys,
                                            cursor: next,
                                            bytes: page.bytes,
                                        },
                                    ),
                                )
                                .await;
                            }
                            None => {
                                if page.keys > 0 || page.bytes > 0 {
                                    emit(
                                        &tx,
                                        (
                                            generation,
                                            Event::Progress {
                                                segment,
                                                source: source.clone(),
                                                keys,
                                                cursor: cursor.clone(),
                                                bytes: page.bytes,
                                            },
                                        ),
                                    )
                                    .await;
                                }
                                emit(&tx, (generation, Event::Done { segment, source })).await;
                                return;
                            }
                        }
                    }
                    Err(_) if stop.get() => return,
                    Err(reason) => {
                        emit(&tx, (generation, Event::Failed { segment, source, reason })).await;
                        return;
                    }
                }
            }
        })
        .detach();
    }

    fn spawn_cleanup(self: &Rc<Self>, node: NodeId, ranges: Vec<TokenRange>, keep: Side) {
        let (streamer, tx, placement) =
            (self.streamer.clone(), self.events.0.clone(), self.placement.clone());
        let generation = self.generation.get();
        glommio::spawn_local(async move {
            let stop = Cell::new(false);
            for range in ranges {
                let mut cursor = Vec::new();
                loop {
                    match streamer.evict_page(&node, &range, &cursor, &placement, keep, &stop).await
                    {
                        Ok(page) => match page.next {
                            Some(next) => cursor = next,
                            None => break,
                        },
                        Err(reason) => {
                            emit(&tx, (generation, Event::CleanupFailed { node, reason })).await;
                            return;
                        }
                    }
                }
            }
            emit(&tx, (generation, Event::Cleaned { node })).await;
        })
        .detach();
    }

    /// Sums, per segment, its first live source's key count times the share of the ring the
    /// segment covers: the estimate `percentage` divides by.
    async fn estimate_total(&self) {
        let plan = self.driver.borrow().plan().clone();
        let mut counts: HashMap<NodeId, u64> = HashMap::new();
        for s in &plan.segments {
            for n in &s.sources {
                if counts.contains_key(n) {
                    continue;
                }
                if let Some(link) = self.shard.link(n) {
                    let stats: Result<crate::proto::storage::StatsResponse, _> = link
                        .call(
                            "/pairdb.storage.v1.StorageService/Stats",
                            &crate::proto::storage::StatsRequest {},
                        )
                        .await;
                    if let Ok(st) = stats {
                        counts.insert(n.clone(), st.key_count + st.tombstone_count);
                    }
                }
            }
        }
        let mut total = 0f64;
        for s in &plan.segments {
            let keys = s.sources.iter().find_map(|n| counts.get(n)).copied().unwrap_or(0);
            let share = crate::core::migration::plan::width(&s.range) as f64 / 2f64.powi(64);
            total += keys as f64 * share;
        }
        let total = total.ceil() as u64;
        self.state.borrow_mut().total_keys = total;
        self.driver.borrow_mut().set_total_keys(total);
    }

    /// While streaming, about once a second: a target that answers a new incarnation id came
    /// back on a wiped data directory and lost what it was sent, so its segments start over.
    async fn check_targets(&self) {
        if self.driver.borrow().stage() != Stage::Streaming
            || self.incarnation_checked.get().elapsed() < Duration::from_secs(1)
        {
            return;
        }
        self.incarnation_checked.set(Instant::now());
        let targets = self.driver.borrow().plan().targets();
        let mut wiped = Vec::new();
        for target in targets {
            let Some(link) = self.shard.link(&target) else { continue };
            let reply: Result<crate::proto::storage::HealthCheckResponse, _> = link
                .call(
                    "/pairdb.storage.v1.StorageService/HealthCheck",
                    &crate::proto::storage::HealthCheckRequest {},
                )
                .await;
            let Ok(reply) = reply else { continue };
            if reply.incarnation_id.is_empty() {
                continue;
            }
            let before = self
                .state
                .borrow_mut()
                .incarnations
                .insert(target.as_str().to_owned(), reply.incarnation_id.clone());
            if before.is_some_and(|b| b != reply.incarnation_id) {
                wiped.push(target);
            }
        }
        if !wiped.is_empty() {
            self.restart_targets(&wiped);
        }
    }

    /// Forgets every segment streamed to `wiped` and rebuilds the driver from the remaining
    /// checkpoints; every stream in flight stops (the others resume from their cursors).
    fn restart_targets(&self, wiped: &[NodeId]) {
        tracing::warn!(targets = ?wiped, "a migration target lost its data directory; streaming its ranges again from the start");
        self.generation.set(self.generation.get() + 1);
        for (_, stop) in self.stops.borrow_mut().drain() {
            stop.set(true);
        }
        let (id, plan) = {
            let d = self.driver.borrow();
            (d.id(), d.plan().clone())
        };
        self.state.borrow_mut().sources.retain(|p| !wiped.iter().any(|w| w.as_str() == p.target));
        let cfg = &self.shard.shared.config.migration;
        let limits =
            Limits { max_active_segments: cfg.max_active_segments, max_source_attempts: 3 };
        let checkpoints = self.state.borrow().checkpoints(id);
        match Migration::resume_from(id, plan, limits, &checkpoints) {
            Ok(mut driver) => {
                driver.set_total_keys(self.state.borrow().total_keys);
                *self.driver.borrow_mut() = driver;
            }
            Err(e) => tracing::error!(error = %e, "cannot restart the wiped target's segments"),
        }
    }

    /// A migration past `migration.max_duration_secs` is reverted while it still can be (a
    /// longer one could outlive the storage nodes' tombstone grace and resurrect deletes); from
    /// USE_NEW on it can only go forward, and says so in the log.
    fn enforce_max_duration(&self) {
        let max = self.shard.shared.config.migration.max_duration_secs as i64;
        let age = unix_now_secs() - self.record.borrow().started_at;
        if age <= max {
            return;
        }
        let mut driver = self.driver.borrow_mut();
        match driver.stage() {
            Stage::Planned | Stage::DualWrite | Stage::Streaming | Stage::ReadNew => {
                tracing::error!(
                    age,
                    max,
                    "migration ran past migration.max_duration_secs; reverting"
                );
                driver.handle_failure(Failure::Abort {
                    reason: format!(
                        "ran for {age} s, past migration.max_duration_secs ({max} s): reverted so that no delete outlives the tombstone grace"
                    ),
                });
            }
            _ => {
                if !self.overdue_logged.replace(true) {
                    tracing::error!(age, max, "migration ran past migration.max_duration_secs after the point of no return; finishing it");
                }
            }
        }
    }

    /// Applies a cancel asked for in the record. False when the record names another owner.
    async fn check_cancel(&self) -> bool {
        let meta = self.shard.shared.meta.clone();
        let id = self.record.borrow().migration_id.clone();
        let Ok(Some(stored)) = blocking(move || meta.migration(&id)).await else { return true };
        if stored.owner_changed(&self.shard.shared.config.node_id) {
            return false;
        }
        if stored.cancel_requested && !self.record.borrow().cancel_requested {
            self.record.borrow_mut().cancel_requested = true;
            let result = self.driver.borrow_mut().handle_cancel();
            match result {
                Ok(()) => {
                    tracing::info!(migration = %stored.migration_id, "migration cancel requested; reverting")
                }
                Err(e) => {
                    tracing::warn!(migration = %stored.migration_id, error = %e, "cancel refused")
                }
            }
        }
        true
    }

    async fn barrier_reached(&self, stage: Stage, since: Option<Instant>) -> BarrierState {
        let drain = Duration::from_millis(self.shard.shared.config.replica_timeout_ms + 200);
        if let Some(t) = since {
            return if t.elapsed() >= drain {
                BarrierState::Reached
            } else {
                BarrierState::Draining(t)
            };
        }
        let meta = self.shard.shared.meta.clone();
        let Ok(beats) = blocking(move || meta.beats()).await else {
            return BarrierState::Waiting;
        };
        let cfg = &self.shard.shared.config;
        let now_ms = unix_now_us() / 1000;
        let id = self.record.borrow().migration_id.clone();
        // A coordinator that knows this migration fences itself once its lease runs out, so
        // it is passed over after the lease and a margin. One that never reported it (idle
        // coordinators serve through a metadata outage unfenced) is waited for until it has
        // been silent for FORGET_COORDINATOR_MS: it may still be serving by the old ring.
        let fenced = cfg.migration.coordinator_lease_ms as i64 + 1000;
        let mut behind: Vec<String> = beats
            .iter()
            .filter(|b| {
                let horizon = if b.migration_id == id { fenced } else { FORGET_COORDINATOR_MS };
                b.at_ms >= now_ms - horizon
            })
            .filter(|b| !(b.migration_id == id && b.stage == stage.as_str()))
            .map(|b| b.coordinator_id.clone())
            .collect();
        if !beats.iter().any(|b| b.coordinator_id == cfg.node_id) {
            behind.push(cfg.node_id.clone());
        }
        if behind.is_empty() {
            self.state.borrow_mut().blocked_on =
                format!("barrier: draining requests older than {}", stage.as_str());
            BarrierState::Draining(Instant::now())
        } else {
            behind.sort();
            self.state.borrow_mut().blocked_on = format!(
                "barrier: waiting for coordinator(s) {} to apply {}",
                behind.join(", "),
                stage.as_str()
            );
            BarrierState::Waiting
        }
    }

    /// Stores the state and progress; retried until the store answers.
    async fn save(&self) {
        self.refresh_progress();
        let record = {
            let mut r = self.record.borrow_mut();
            r.state = self.state.borrow().encode();
            // Never down, even when a wiped target's segments start over.
            r.keys_migrated = r.keys_migrated.max(self.driver.borrow().keys_migrated() as i64);
            r.total_keys = (self.state.borrow().total_keys.max(r.keys_migrated as u64)) as i64;
            r.status = MigrationRecord::IN_PROGRESS.into();
            r.clone()
        };
        self.put(record).await;
        self.saved_at.set(Instant::now());
    }

    async fn put(&self, record: MigrationRecord) {
        loop {
            let meta = self.shard.shared.meta.clone();
            let r = record.clone();
            match blocking(move || meta.put_migration(&r)).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot save migration state; retrying");
                    glommio::timer::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn refresh_progress(&self) {
        let driver = self.driver.borrow();
        let (kps, bps) = self.rate.borrow().per_sec();
        let mut st = self.state.borrow_mut();
        st.percentage = st.percentage.max(driver.percentage());
        st.keys_per_sec = kps;
        st.bytes_per_sec = bps;
        let (done, total) = driver.segments_done();
        st.segments_done = done as u64;
        st.segments_total = total as u64;
        let now = Instant::now();
        st.eta = driver
            .eta(now, kps, Duration::from_millis(self.shard.shared.config.replica_timeout_ms + 500))
            .map_or(0, |t| unix_now_secs() + (t - now).as_secs() as i64);
        METRICS.percentage.store(u64::from(st.percentage), std::sync::atomic::Ordering::Relaxed);
    }
}

enum BarrierState {
    Waiting,
    Draining(Instant),
    Reached,
}
