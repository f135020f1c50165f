//! Seeded simulation of data movement: the sans-IO migration driver
//! ([`pairdb::core::migration::driver::Migration`]) carried out against simulated storage
//! nodes while clients keep writing, deleting and reading.
//!
//! Run: `cargo test --test sim_migration` (50 seeds, 2 to 4 s in a debug build; 1,500 seeds
//! take about 70 s). Replay one seed: `SIM_SEED=<n> cargo test --test sim_migration --
//! --nocapture`; add `SIM_TRACE=1` to print every write, read, change, action, barrier, stream
//! page, cleanup, cancel, crash and failure. More seeds: `SIM_SEEDS=<count>`.
//!
//! # What is simulated
//!
//! - One `SmallRng::seed_from_u64(seed)` draws every choice; nothing reads a clock.
//! - Storage: 4 nodes to start (2 virtual nodes each, so plans have many small arcs), each an
//!   in-memory map `(token, tenant, key) -> Version` applying every write and stream entry
//!   with [`newest`], the merge rule. Evicting removes an entry physically.
//! - Tenants: `t1`, `t2`, `t3` at replication factors 1, 2 and 3 to start, 12 keys each.
//! - Clients: QUORUM writes and deletes (1 in 6), each stamped with the next sequence number
//!   (a one-actor clock, so a later write always dominates). A write is sent per its key's
//!   current [`key_sets`] write rule and delivered to those replicas one at a time, interleaved
//!   with everything else (half the writes at once); each replica misses it with probability
//!   0.2. It is ACKNOWLEDGED only when the rule's quorums acked (a [`DualQuorumWrite`] for the
//!   dual rule), and only then recorded in the ledger. Unacknowledged writes stay where they
//!   landed. QUORUM reads during the run use the current read set and a random quorum of it.
//! - Changes, one at a time, 6 per seed: add a node, remove a node (gracefully: it stays up as
//!   a source until the change ends), or change one tenant's replication factor (up or down,
//!   between 1 and 3).
//! - The driver process: its actions are drained right after every input. `Persist` is stored
//!   at once, in order (so before any later action is acted on); `WaitBarrier` switches every
//!   simulated coordinator's stage for the tenants of that driver, and the barrier is confirmed
//!   later, as a step, once no write of those tenants started under an older stage is still in
//!   flight (a write started before the change counts as PLANNED);
//!   `Stream` and `Cleanup` become tasks run one page / one node at a time, interleaved with
//!   everything else; `StopStream` drops the task. A crash drops every driver and every task
//!   (streams in flight are lost) and rebuilds the drivers with [`Migration::resume_from`]
//!   from the persisted checkpoints and the recomputed plans. The process may also die in the
//!   middle of a drain (before any one action, 1 in 500), so a resume sees only a prefix of
//!   what the driver asked to persist. Also injected: cancels, each change drawing the stage it
//!   may be cancelled in ([`Migration::handle_cancel`], which must refuse from USE_NEW on),
//!   [`Failure::Abort`] in that same stage (reverts before USE_NEW; recorded, and the change
//!   carries on, after), stream failures ([`Failure::Source`]; three on one source abort the
//!   change) and cleanup failures.
//! - Streaming pages through the source's entries in the segment's range in token order from
//!   the range start (3 entries a page, cursor = last token, tenant and key), sends the entries
//!   of the driver's tenants for which the target is in [`gaining`], and applies them to the
//!   target with the merge rule. Cleanup evicts, on its node, the entries of the driver's
//!   tenants in its ranges whose key the node does not hold under the `keep` side.
//!
//! # Several replication factors: one driver per factor, in lockstep
//!
//! A plan covers the tenants of one [`RfChange`]. A membership change with tenants at rf 1, 2
//! and 3 runs one [`Migration`] per distinct factor, each with its own plan, checkpoints and
//! coordinator stage for its tenants. They are kept in lockstep at the barriers: a barrier is
//! confirmed to the drivers only once every driver not yet ended awaits the barrier of the same
//! stage, and all of them are confirmed in the same step. So all of them pass READ_NEW ->
//! USE_NEW (the point of no return) together, a cancel is accepted by all or refused by all,
//! and when one driver aborts (a segment lost its sources) the others are cancelled too: the
//! whole change ends COMPLETED or CANCELLED, and the new ring (or the old) applies to every
//! tenant. Because the lockstep is the caller's, the sim does not crash in the middle of moving
//! several drivers together (start, barrier, cancel), and after a resume it finishes what a
//! crash cut short: one driver reverting cancels the others, a started change starts the
//! drivers still planned. Merging the plans instead would need one segment list across factors, which
//! [`Plan`] does not model; separate drivers use the API as it is.
//!
//! # Checked
//!
//! - During the run: every read returns the last acknowledged write of its key or a newer
//!   (unacknowledged) one, never an older one, and never a value for a key whose last
//!   acknowledged write is a delete unless a newer write was issued; each driver's
//!   `keys_migrated` never decreases (resumes included) and its `percentage` never decreases
//!   while the change moves forward (a revert may lower it: the 99 of READ_NEW is no longer
//!   true); a change never gets stuck (something to do until it ends).
//! - After each change ends: every key of the ledger, read at QUORUM from every quorum of its
//!   final read set, returns its last acknowledged write or a newer one (a delete: not found or
//!   a tombstone, or a newer write); no node outside a key's final placement holds any copy of
//!   it (cleanup evicted the losers, and a cancel evicted the gaining nodes' copies); at least
//!   a quorum of the final placement holds the acknowledged version or a newer one. "Exactly
//!   rf holders" is not checked: replicas miss writes on purpose and the sim runs no
//!   anti-entropy, so a live key may be held by fewer than rf nodes.
//!
//! # It finds bugs (each planted temporarily in the sim's model, then removed; 20 seeds)
//!
//! - Streams that send nothing: 20 of 20 seeds fail (acknowledged writes lost after a node
//!   removal, first at seed 0).
//! - Cleanup that evicts nothing: 20 of 20 (copies left outside the placement).
//! - Coordinators kept on the old replicas through DUAL_WRITE (writes not dual before
//!   streaming): 20 of 20 (reads older than the acknowledged write).
//! - Barriers confirmed without waiting for older writes in flight: 20 of 20 (copies left on
//!   losers by writes that landed after their cleanup).
//!
//! No bug of `core::migration` found: 1,500 seeds (about 7,100 completed and 1,900 cancelled
//! changes, 27,000 crashes of which 3,800 mid-drain, 1,300 refused cancels) pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};

use pairdb::core::ids::{NodeId, Token};
use pairdb::core::migration::driver::{
    Action, Checkpoint, Cursor, Failure, Limits, Migration, MigrationError, MigrationId,
};
use pairdb::core::migration::plan::{gaining, Plan, RfChange, SegmentId};
use pairdb::core::migration::sets::{key_sets, DualQuorumWrite, KeySets, Side, WriteRule};
use pairdb::core::migration::Stage;
use pairdb::core::quorum::Level;
use pairdb::core::ring::{key_token, Member, Ring, TokenRange};
use pairdb::core::vclock::VClock;
use pairdb::core::version::{newest, Version};

const DEFAULT_SEEDS: u64 = 50;
const VNODES: u32 = 2;
const START_NODES: usize = 4;
const MAX_NODES: usize = 6;
const TENANTS: [(&str, usize); 3] = [("t1", 1), ("t2", 2), ("t3", 3)];
const KEYS_PER_TENANT: usize = 12;
const CHANGES: usize = 6;
const PAGE: usize = 3;
const DROP: f64 = 0.2;
const DELETE: f64 = 1.0 / 6.0;
const MAX_STEPS: u64 = 200_000;
const ACTOR: &str = "w";
/// Chance that the driver process dies before carrying out one action.
const MID_DRAIN_CRASH: f64 = 0.002;

/// A stored entry's place: token order first, as storage lays keys out.
type Slot = (u64, String, String);

#[derive(Clone, Copy, Debug)]
struct Acked {
    seq: u64,
    deleted: bool,
}

/// A client write sent and not yet delivered to every replica.
#[derive(Clone, Debug)]
struct Pending {
    tenant: String,
    key: String,
    seq: u64,
    deleted: bool,
    /// The coordinator stage of its tenant when the write started (PLANNED outside a change): a
    /// barrier waits for writes of older stages.
    stage: Stage,
    rule: WriteRule,
    left: Vec<NodeId>,
    acks: Vec<NodeId>,
}

/// A stream or cleanup the driver asked for and the sim has not finished.
#[derive(Clone, Debug)]
enum Task {
    Stream {
        group: usize,
        segment: SegmentId,
        target: NodeId,
        source: NodeId,
        range: TokenRange,
        cursor: Option<Cursor>,
        keys: u64,
    },
    Cleanup {
        group: usize,
        node: NodeId,
        ranges: Vec<TokenRange>,
        keep: Side,
    },
}

/// One driver of a change: the tenants of one `RfChange`.
struct Group {
    id: MigrationId,
    rf: RfChange,
    tenants: Vec<String>,
    max_arcs: usize,
    limits: Limits,
    driver: Migration,
    /// What the driver asked to persist, in order.
    checkpoints: Vec<Checkpoint>,
    /// The stage every coordinator applies to this group's tenants.
    coord_stage: Stage,
    /// The barrier the sim was asked for and has not confirmed.
    barrier: Option<Stage>,
    total_keys: u64,
    last_keys: u64,
    last_pct: u8,
    reverting: bool,
}

struct Change {
    what: String,
    r0: Ring,
    r1: Ring,
    groups: Vec<Group>,
    started: bool,
    /// Drawn per change: the stage in which the operator may cancel it (and failures may abort
    /// it), if any, so that most changes run to the end and late stages get cancels too.
    cancels: Option<Stage>,
}

struct Sim {
    seed: u64,
    rng: SmallRng,
    trace: bool,
    ring: Ring,
    epoch: u64,
    next_node: usize,
    rf: BTreeMap<String, usize>,
    /// Every node that ever held data, removed ones included.
    stores: BTreeMap<NodeId, BTreeMap<Slot, Version>>,
    ledger: BTreeMap<(String, String), Acked>,
    seq: u64,
    next_id: u64,
    change: Option<Change>,
    tasks: Vec<Task>,
    pending: Vec<Pending>,
    /// The driver process died while draining; it is rebuilt at the end of the step.
    crash_now: bool,
    /// Several drivers are being moved in lockstep (start, barrier, cancel).
    atomic: bool,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    writes: u64,
    acked: u64,
    reads: u64,
    completed: u64,
    cancelled: u64,
    crashes: u64,
    mid_drain_crashes: u64,
    cancels_refused: u64,
    aborts: u64,
    pages: u64,
    steps: u64,
}

fn version(seq: u64, tombstone: bool) -> Version {
    Version {
        value: if tombstone { Bytes::new() } else { Bytes::from(format!("v{seq}")) },
        clock: VClock::from_entries([(ACTOR.to_string(), seq)]),
        timestamp_us: seq as i64,
        writer: ACTOR.to_string(),
        tombstone,
    }
}

fn seq_of(v: &Version) -> u64 {
    v.clock.counter(ACTOR)
}

fn merge_into(store: &mut BTreeMap<Slot, Version>, slot: Slot, v: &Version) {
    let merged = match store.get(&slot) {
        Some(stored) => newest(stored, v),
        None => v.clone(),
    };
    store.insert(slot, merged);
}

/// Position of `token` in `range`, 0 for the token just after its start.
fn pos(range: &TokenRange, token: u64) -> u64 {
    token.wrapping_sub(range.start_exclusive.0).wrapping_sub(1)
}

fn encode(slot: &Slot) -> Cursor {
    let mut bytes = slot.0.to_be_bytes().to_vec();
    bytes.extend_from_slice(slot.1.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(slot.2.as_bytes());
    Cursor(bytes)
}

fn decode(cursor: &Cursor) -> Slot {
    let token = u64::from_be_bytes(cursor.0[..8].try_into().expect("8 bytes"));
    let rest = &cursor.0[8..];
    let nul = rest.iter().position(|&b| b == 0).expect("separator");
    let tenant = String::from_utf8(rest[..nul].to_vec()).expect("utf8");
    let key = String::from_utf8(rest[nul + 1..].to_vec()).expect("utf8");
    (token, tenant, key)
}

fn pref(ring: &Ring, tenant: &str, key: &str, rf: usize) -> Vec<NodeId> {
    ring.preference_list(key_token(tenant, key), rf).to_vec()
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Self {
        let members = (0..START_NODES).map(|i| Member::new(format!("n{i}"), VNODES)).collect();
        let ring = Ring::new(1, members).expect("ring");
        let stores = (0..START_NODES).map(|i| (NodeId::from(format!("n{i}")), BTreeMap::new()));
        Self {
            seed,
            rng: SmallRng::seed_from_u64(seed),
            trace,
            ring,
            epoch: 1,
            next_node: START_NODES,
            rf: TENANTS.iter().map(|(t, rf)| (t.to_string(), *rf)).collect(),
            stores: stores.collect(),
            ledger: BTreeMap::new(),
            seq: 0,
            next_id: 0,
            change: None,
            tasks: Vec::new(),
            pending: Vec::new(),
            crash_now: false,
            atomic: false,
            stats: Stats::default(),
        }
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[seed {} step {}] {}", self.seed, self.stats.steps, what());
        }
    }

    fn fail(&self, what: String) -> String {
        format!("seed {} step {}: {what}", self.seed, self.stats.steps)
    }

    /// Where a key's requests go now.
    fn sets(&self, tenant: &str, key: &str) -> KeySets {
        if let Some(change) = &self.change {
            if let Some(g) = change.groups.iter().find(|g| g.tenants.iter().any(|t| t == tenant)) {
                let old = pref(&change.r0, tenant, key, g.rf.rf0);
                let new = pref(&change.r1, tenant, key, g.rf.rf1);
                return key_sets(g.coord_stage, &old, &new, Level::Quorum);
            }
        }
        let p = pref(&self.ring, tenant, key, self.rf[tenant]);
        key_sets(Stage::Planned, &p, &p, Level::Quorum)
    }

    fn random_key(&mut self) -> (String, String) {
        let t = TENANTS[self.rng.random_range(0..TENANTS.len())].0.to_string();
        let k = format!("k{}", self.rng.random_range(0..KEYS_PER_TENANT));
        (t, k)
    }

    /// Starts a client write: sent per the key's write rule now, delivered to its replicas one
    /// at a time later (or all at once, half the time).
    fn client_write(&mut self) {
        let (tenant, key) = self.random_key();
        self.seq += 1;
        let seq = self.seq;
        let deleted = self.rng.random_bool(DELETE);
        let sets = self.sets(&tenant, &key);
        let stage = self
            .change
            .as_ref()
            .and_then(|c| c.groups.iter().find(|g| g.tenants.contains(&tenant)))
            .map_or(Stage::Planned, |g| g.coord_stage);
        self.stats.writes += 1;
        let left = sets.write.replicas();
        self.log(|| {
            let del = if deleted { " delete" } else { "" };
            format!("write {tenant}/{key} #{seq}{del} at {stage:?} to {left:?}")
        });
        self.pending.push(Pending {
            tenant,
            key,
            seq,
            deleted,
            stage,
            rule: sets.write,
            left,
            acks: Vec::new(),
        });
        if self.rng.random_bool(0.5) {
            let i = self.pending.len() - 1;
            while i < self.pending.len() && self.pending[i].seq == seq {
                self.deliver(i);
            }
        }
    }

    /// Delivers pending write `i` to one more replica (or drops it there); decides the write
    /// once every replica was tried.
    fn deliver(&mut self, i: usize) {
        let p = &mut self.pending[i];
        let node = p.left.remove(self.rng.random_range(0..p.left.len()));
        if !self.rng.random_bool(DROP) {
            let slot = (key_token(&p.tenant, &p.key).0, p.tenant.clone(), p.key.clone());
            let store = self.stores.get_mut(&node).expect("store of a replica");
            merge_into(store, slot, &version(p.seq, p.deleted));
            p.acks.push(node);
        }
        if !p.left.is_empty() {
            return;
        }
        let p = self.pending.remove(i);
        let acked = match &p.rule {
            WriteRule::Single { required, .. } => p.acks.len() >= *required,
            WriteRule::Dual { .. } => {
                let mut w = DualQuorumWrite::from_rule(&p.rule, Instant::now()).expect("dual");
                let mut outcome = w.poll_outcome();
                for node in p.rule.replicas() {
                    if p.acks.contains(&node) {
                        w.handle_ack(&node);
                    } else {
                        w.handle_failure(&node);
                    }
                    outcome = outcome.or_else(|| w.poll_outcome());
                }
                matches!(outcome, Some(Ok(_)))
            }
        };
        if acked {
            self.stats.acked += 1;
            let entry = self.ledger.entry((p.tenant.clone(), p.key.clone()));
            let e = entry.or_insert(Acked { seq: p.seq, deleted: p.deleted });
            if e.seq < p.seq {
                *e = Acked { seq: p.seq, deleted: p.deleted };
            }
        }
        self.log(|| {
            format!("write {}/{} #{} acks {:?} acked {acked}", p.tenant, p.key, p.seq, p.acks)
        });
    }

    /// Delivers every pending write.
    fn flush(&mut self) {
        while !self.pending.is_empty() {
            self.deliver(0);
        }
    }

    /// A QUORUM read of the key from `replies`, checked against the ledger.
    fn check_read(&self, tenant: &str, key: &str, replies: &[NodeId]) -> Result<(), String> {
        let slot = (key_token(tenant, key).0, tenant.to_string(), key.to_string());
        let mut got: Option<Version> = None;
        for node in replies {
            if let Some(v) = self.stores[node].get(&slot) {
                got = Some(match got {
                    Some(g) => newest(&g, v),
                    None => v.clone(),
                });
            }
        }
        let Some(acked) = self.ledger.get(&(tenant.to_string(), key.to_string())) else {
            return Ok(());
        };
        match got {
            None if acked.deleted => Ok(()),
            None => Err(format!(
                "{tenant}/{key}: acknowledged write #{} lost: not found on {replies:?}",
                acked.seq
            )),
            Some(v) if seq_of(&v) < acked.seq => Err(format!(
                "{tenant}/{key}: read #{} (tombstone {}) from {replies:?}, older than the \
                 acknowledged {} #{}",
                seq_of(&v),
                v.tombstone,
                if acked.deleted { "delete" } else { "write" },
                acked.seq
            )),
            Some(_) => Ok(()),
        }
    }

    fn client_read(&mut self) -> Result<(), String> {
        let (tenant, key) = self.random_key();
        let sets = self.sets(&tenant, &key);
        let mut read = sets.read.clone();
        read.shuffle(&mut self.rng);
        read.truncate(sets.read_required);
        self.stats.reads += 1;
        self.log(|| format!("read {tenant}/{key} from {read:?}"));
        self.check_read(&tenant, &key, &read).map_err(|e| self.fail(e))
    }

    // ---- changes ----

    fn begin_change(&mut self) {
        let nodes: Vec<NodeId> = self.ring.members().iter().map(|m| m.id.clone()).collect();
        let choice = self.rng.random_range(0..3);
        let (what, r1, groups): (String, Ring, Vec<(RfChange, Vec<String>)>) =
            if choice == 0 && nodes.len() < MAX_NODES || choice == 1 && nodes.len() <= 3 {
                let id = NodeId::from(format!("n{}", self.next_node));
                self.next_node += 1;
                self.epoch += 1;
                let r1 = self.ring.with_member(self.epoch, Member::new(id.clone(), VNODES));
                self.stores.insert(id.clone(), BTreeMap::new());
                (format!("add {id}"), r1.expect("ring"), self.membership_groups())
            } else if choice == 1 {
                let id = nodes[self.rng.random_range(0..nodes.len())].clone();
                self.epoch += 1;
                let r1 = self.ring.without_member(self.epoch, &id).expect("ring");
                (format!("remove {id}"), r1, self.membership_groups())
            } else {
                let tenant = TENANTS[self.rng.random_range(0..TENANTS.len())].0.to_string();
                let rf0 = self.rf[&tenant];
                let mut rf1 = self.rng.random_range(1..=2);
                if rf1 >= rf0 {
                    rf1 += 1;
                }
                let rf = RfChange { rf0, rf1 };
                (format!("{tenant} rf {rf0} -> {rf1}"), self.ring.clone(), vec![(rf, vec![tenant])])
            };
        let r0 = self.ring.clone();
        let mut built = Vec::new();
        for (rf, tenants) in groups {
            self.next_id += 1;
            let max_arcs = self.rng.random_range(1..=6);
            let limits = Limits {
                max_active_segments: self.rng.random_range(1..=4),
                max_source_attempts: 3,
            };
            let plan = Plan::new(&r0, &r1, rf, max_arcs);
            let total_keys = self.estimate(&plan, &tenants, &r0, &r1);
            let mut driver = Migration::new(MigrationId(self.next_id), plan, limits);
            driver.set_total_keys(total_keys);
            built.push(Group {
                id: MigrationId(self.next_id),
                rf,
                tenants,
                max_arcs,
                limits,
                driver,
                checkpoints: Vec::new(),
                coord_stage: Stage::Planned,
                barrier: None,
                total_keys,
                last_keys: 0,
                last_pct: 0,
                reverting: false,
            });
        }
        self.log(|| {
            let g: Vec<String> = built
                .iter()
                .map(|g| {
                    format!(
                        "{:?} {:?} {:?}: {} segments, {} losers",
                        g.id,
                        g.rf,
                        g.tenants,
                        g.driver.plan().segments.len(),
                        g.driver.plan().losers().len()
                    )
                })
                .collect();
            format!("change {what}: {g:?}")
        });
        const AT: [Stage; 6] = [
            Stage::Planned,
            Stage::DualWrite,
            Stage::Streaming,
            Stage::ReadNew,
            Stage::UseNew,
            Stage::Cleanup,
        ];
        let cancels = self.rng.random_bool(0.5).then(|| AT[self.rng.random_range(0..AT.len())]);
        self.change = Some(Change { what, r0, r1, groups: built, started: false, cancels });
        for g in 0..self.groups_len() {
            self.drain(g);
        }
    }

    /// One group per distinct factor: every tenant keeps its factor.
    fn membership_groups(&self) -> Vec<(RfChange, Vec<String>)> {
        let mut by_rf: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (t, rf) in &self.rf {
            by_rf.entry(*rf).or_default().push(t.clone());
        }
        by_rf.into_iter().map(|(rf, tenants)| (RfChange::same(rf), tenants)).collect()
    }

    /// Keys to copy: per segment, the most any source holds of what it would send.
    fn estimate(&self, plan: &Plan, tenants: &[String], r0: &Ring, r1: &Ring) -> u64 {
        let mut total = 0;
        for s in &plan.segments {
            let most = s
                .sources
                .iter()
                .map(|src| self.sendable(src, &s.range, &s.target, plan.rf, tenants, r0, r1))
                .map(|v| v.len() as u64)
                .max()
                .unwrap_or(0);
            total += most;
        }
        total
    }

    /// The entries of `source` in `range` a stream to `target` sends, in stream order.
    #[allow(clippy::too_many_arguments)]
    fn sendable(
        &self,
        source: &NodeId,
        range: &TokenRange,
        target: &NodeId,
        rf: RfChange,
        tenants: &[String],
        r0: &Ring,
        r1: &Ring,
    ) -> Vec<(Slot, Version, bool)> {
        let mut entries: Vec<(Slot, Version, bool)> = self.stores[source]
            .iter()
            .filter(|(slot, _)| range.contains(Token(slot.0)))
            .map(|(slot, v)| {
                let send = tenants.contains(&slot.1) && {
                    let old = pref(r0, &slot.1, &slot.2, rf.rf0);
                    let new = pref(r1, &slot.1, &slot.2, rf.rf1);
                    gaining(&old, &new, rf).contains(&target)
                };
                (slot.clone(), v.clone(), send)
            })
            .collect();
        entries.sort_by(|a, b| {
            (pos(range, a.0 .0), &a.0 .1, &a.0 .2).cmp(&(pos(range, b.0 .0), &b.0 .1, &b.0 .2))
        });
        entries
    }

    fn groups_len(&self) -> usize {
        self.change.as_ref().map_or(0, |c| c.groups.len())
    }

    fn group(&mut self, g: usize) -> &mut Group {
        &mut self.change.as_mut().expect("a change").groups[g]
    }

    /// Carries out (or queues) every action the driver of group `g` has, then checks progress.
    fn drain(&mut self, g: usize) {
        if self.crash_now {
            return;
        }
        // Not while the drivers of a change are moved in lockstep (a crash there would leave
        // them a barrier apart, which only a lockstep-aware resume could mend).
        let may_crash = !self.atomic || self.groups_len() == 1;
        while let Some(action) = self.group(g).driver.poll_action() {
            if may_crash && self.rng.random_bool(MID_DRAIN_CRASH) {
                // The process dies before this action: what was persisted so far is all the
                // resumed driver gets.
                self.log(|| format!("group {g} crashes before {action:?}"));
                self.crash_now = true;
                self.stats.mid_drain_crashes += 1;
                return;
            }
            self.log(|| format!("group {g} action {action:?}"));
            match action {
                Action::Persist(c) => self.group(g).checkpoints.push(c),
                Action::WaitBarrier { stage } => {
                    let group = self.group(g);
                    group.coord_stage = stage;
                    group.barrier = Some(stage);
                }
                Action::Stream { segment, target, source, range, cursor, .. } => {
                    // Keys sent so far, as last persisted for this source.
                    let keys = self
                        .group(g)
                        .checkpoints
                        .iter()
                        .filter_map(|c| match c {
                            Checkpoint::Segment(s)
                                if s.segment == segment && s.source == source =>
                            {
                                Some(s.keys)
                            }
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0);
                    self.tasks.push(Task::Stream {
                        group: g,
                        segment,
                        target,
                        source,
                        range,
                        cursor,
                        keys,
                    });
                }
                Action::StopStream { segment, source } => self.tasks.retain(|t| {
                    !matches!(t, Task::Stream { group, segment: s, source: src, .. }
                        if *group == g && *s == segment && *src == source)
                }),
                Action::Cleanup { node, ranges, keep } => {
                    self.tasks.push(Task::Cleanup { group: g, node, ranges, keep })
                }
            }
        }
        let group = self.group(g);
        if group.driver.stage().is_terminal() {
            group.coord_stage = group.driver.stage();
        }
    }

    /// Progress invariants of every driver.
    fn check_progress(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        for g in 0..self.groups_len() {
            let group = self.group(g);
            let stage = group.driver.stage();
            if matches!(stage, Stage::Reverting | Stage::CleanupTarget | Stage::Cancelled) {
                group.reverting = true;
            }
            let keys = group.driver.keys_migrated();
            let pct = group.driver.percentage();
            if keys < group.last_keys {
                errors.push(format!(
                    "group {g} keys_migrated went down {} -> {keys} in {stage:?}",
                    group.last_keys
                ));
            }
            if !group.reverting && pct < group.last_pct {
                errors.push(format!(
                    "group {g} percentage went down {} -> {pct} in {stage:?}",
                    group.last_pct
                ));
            }
            if pct == 100 && stage != Stage::Completed {
                errors.push(format!("group {g} at 100% in {stage:?}"));
            }
            group.last_keys = keys;
            group.last_pct = pct;
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(self.fail(errors.join("; "))),
        }
    }

    /// What can happen to the change now, one of them drawn.
    fn change_step(&mut self) -> Result<(), String> {
        let change = self.change.as_ref().expect("a change");
        let grantable = self.grantable();
        let mut options: Vec<(u32, u8)> = Vec::new();
        if !change.started {
            options.push((10, 0));
        }
        if !self.tasks.is_empty() {
            options.push((70, 1));
        }
        if grantable.is_some() {
            options.push((15, 2));
        }
        if change.cancels.is_some_and(|at| change.groups.iter().any(|g| g.driver.stage() == at)) {
            options.push((6, 3));
            options.push((2, 7)); // abort
        }
        options.push((2, 4)); // crash
        if self.tasks.iter().any(|t| matches!(t, Task::Stream { .. })) {
            options.push((1, 5)); // stream failure
        }
        if self.tasks.iter().any(|t| matches!(t, Task::Cleanup { .. })) {
            options.push((2, 6)); // cleanup failure
        }
        let progressing = options.iter().any(|&(_, o)| o <= 2);
        if !progressing && !self.pending.is_empty() {
            // A barrier waits for writes in flight.
            let i = self.rng.random_range(0..self.pending.len());
            self.deliver(i);
            return Ok(());
        }
        if !progressing {
            let stages: Vec<(Stage, Option<Stage>)> =
                change.groups.iter().map(|g| (g.driver.stage(), g.barrier)).collect();
            return Err(self.fail(format!(
                "change {} stuck: nothing to do, drivers at {stages:?}",
                change.what
            )));
        }
        let total: u32 = options.iter().map(|o| o.0).sum();
        let mut pick = self.rng.random_range(0..total);
        let mut choice = 0;
        for (w, o) in options {
            if pick < w {
                choice = o;
                break;
            }
            pick -= w;
        }
        match choice {
            0 => {
                self.change.as_mut().expect("a change").started = true;
                self.log(|| "start".into());
                self.start_all()?;
            }
            1 => {
                let i = self.rng.random_range(0..self.tasks.len());
                self.run_task(i)?;
            }
            2 => {
                let stage = grantable.expect("grantable");
                self.log(|| format!("barrier {stage:?} confirmed to every driver"));
                self.atomic = true;
                for g in 0..self.groups_len() {
                    let group = self.group(g);
                    if group.barrier == Some(stage) {
                        group.barrier = None;
                        group.driver.handle_barrier(stage);
                        self.drain(g);
                    }
                }
                self.atomic = false;
            }
            3 => self.cancel("cancel")?,
            4 => self.crash()?,
            5 => {
                let streams: Vec<usize> = (0..self.tasks.len())
                    .filter(|&i| matches!(self.tasks[i], Task::Stream { .. }))
                    .collect();
                let i = streams[self.rng.random_range(0..streams.len())];
                let Task::Stream { group, segment, source, .. } = self.tasks.remove(i) else {
                    unreachable!()
                };
                self.log(|| format!("group {group} stream {segment:?} from {source} fails"));
                self.group(group).driver.handle_failure(Failure::Source { segment, source });
                self.drain(group);
                if matches!(self.group(group).driver.stage(), Stage::Reverting | Stage::Cancelled) {
                    self.cancel("abort of another driver")?;
                }
            }
            7 => {
                let g = self.rng.random_range(0..self.groups_len());
                let before = self.group(g).driver.stage();
                self.log(|| format!("group {g} aborts in {before:?}"));
                self.stats.aborts += 1;
                self.group(g).driver.handle_failure(Failure::Abort { reason: "sim".into() });
                self.drain(g);
                let after = self.group(g).driver.stage();
                let late = matches!(before, Stage::UseNew | Stage::Cleanup | Stage::Completed);
                let error = self.group(g).driver.error().map(str::to_string);
                if late && after != before || error.as_deref() != Some("sim") {
                    return Err(self.fail(format!(
                        "group {g}: abort in {before:?} went to {after:?}, error {error:?}"
                    )));
                }
                if matches!(after, Stage::Reverting | Stage::Cancelled) {
                    self.cancel("abort of another driver")?;
                }
            }
            _ => {
                let cleanups: Vec<usize> = (0..self.tasks.len())
                    .filter(|&i| matches!(self.tasks[i], Task::Cleanup { .. }))
                    .collect();
                let i = cleanups[self.rng.random_range(0..cleanups.len())];
                let Task::Cleanup { group, node, .. } = self.tasks.remove(i) else {
                    unreachable!()
                };
                self.log(|| format!("group {group} cleanup on {node} fails"));
                self.group(group).driver.handle_failure(Failure::Cleanup { node });
                self.drain(group);
            }
        }
        self.crash_if_asked()?;
        self.check_progress()?;
        self.finish_change_if_over()
    }

    /// The stage every driver not ended awaits a barrier for, when they all await the same.
    fn grantable(&self) -> Option<Stage> {
        let change = self.change.as_ref()?;
        let mut stage = None;
        for g in change.groups.iter().filter(|g| !g.driver.stage().is_terminal()) {
            let b = g.barrier?;
            if stage.is_some_and(|s| s != b) {
                return None;
            }
            stage = Some(b);
        }
        // Older requests drained: no write of a tenant of the change started at another stage
        // than its coordinators apply now (a write started before the change counts as
        // PLANNED: its `stage`).
        let drained = self.pending.iter().all(|p| {
            let group = change.groups.iter().find(|g| g.tenants.contains(&p.tenant));
            group.is_none_or(|g| g.coord_stage == p.stage)
        });
        stage.filter(|_| drained)
    }

    /// Starts every planned driver.
    fn start_all(&mut self) -> Result<(), String> {
        self.atomic = true;
        for g in 0..self.groups_len() {
            if self.group(g).driver.stage() != Stage::Planned {
                continue;
            }
            if let Err(e) = self.group(g).driver.start() {
                return Err(self.fail(format!("group {g}: start refused: {e}")));
            }
            self.drain(g);
        }
        self.atomic = false;
        Ok(())
    }

    fn cancel(&mut self, why: &str) -> Result<(), String> {
        self.atomic = true;
        let result = self.cancel_all(why);
        self.atomic = false;
        result
    }

    fn cancel_all(&mut self, why: &str) -> Result<(), String> {
        let mut results = Vec::new();
        for g in 0..self.groups_len() {
            let before = self.group(g).driver.stage();
            let result = self.group(g).driver.handle_cancel();
            let late = matches!(before, Stage::UseNew | Stage::Cleanup | Stage::Completed);
            match &result {
                Err(MigrationError::TooLateToCancel { .. }) if late => {
                    self.stats.cancels_refused += 1
                }
                Ok(()) if !late => {}
                other => {
                    return Err(
                        self.fail(format!("group {g}: cancel in {before:?} answered {other:?}"))
                    )
                }
            }
            results.push((before, result.is_ok()));
            self.drain(g);
        }
        self.log(|| format!("{why}: {results:?}"));
        let accepted: BTreeSet<bool> = results.iter().map(|r| r.1).collect();
        if accepted.len() > 1 {
            return Err(self.fail(format!("lockstep broken: cancel answered {results:?}")));
        }
        Ok(())
    }

    /// A crash that happened while draining.
    fn crash_if_asked(&mut self) -> Result<(), String> {
        while self.crash_now && self.change.is_some() {
            self.crash_now = false;
            self.crash()?;
        }
        self.crash_now = false;
        Ok(())
    }

    /// The driver process dies: drivers and tasks are lost, checkpoints kept.
    fn crash(&mut self) -> Result<(), String> {
        self.stats.crashes += 1;
        self.tasks.clear();
        let change = self.change.as_mut().expect("a change");
        let (r0, r1) = (change.r0.clone(), change.r1.clone());
        for group in &mut change.groups {
            let plan = Plan::new(&r0, &r1, group.rf, group.max_arcs);
            let resumed = Migration::resume_from(group.id, plan, group.limits, &group.checkpoints);
            let mut driver = resumed.map_err(|e| format!("resume_from refused: {e}"))?;
            driver.set_total_keys(group.total_keys);
            group.driver = driver;
            group.barrier = None;
        }
        self.log(|| "crash: drivers rebuilt from their checkpoints".into());
        for g in 0..self.groups_len() {
            self.drain(g);
        }
        // The lockstep is the caller's: a crash between one driver's revert and the others'
        // cancel, or between two drivers' start, is finished here.
        let change = self.change.as_ref().expect("a change");
        let stages: Vec<Stage> = change.groups.iter().map(|g| g.driver.stage()).collect();
        let reverting = stages
            .iter()
            .any(|s| matches!(s, Stage::Reverting | Stage::CleanupTarget | Stage::Cancelled));
        if reverting {
            self.cancel("resume: every driver reverts")?;
        } else if change.started {
            self.start_all()?;
        }
        Ok(())
    }

    fn run_task(&mut self, i: usize) -> Result<(), String> {
        let change = self.change.as_ref().expect("a change");
        let (r0, r1) = (change.r0.clone(), change.r1.clone());
        match self.tasks[i].clone() {
            Task::Stream { group, segment, target, source, range, cursor, keys } => {
                let (rf, tenants) = {
                    let g = self.group(group);
                    (g.rf, g.tenants.clone())
                };
                let after = cursor.as_ref().map(decode);
                let entries: Vec<(Slot, Version, bool)> = self
                    .sendable(&source, &range, &target, rf, &tenants, &r0, &r1)
                    .into_iter()
                    .filter(|(slot, _, _)| match &after {
                        None => true,
                        Some(c) => {
                            (pos(&range, slot.0), &slot.1, &slot.2) > (pos(&range, c.0), &c.1, &c.2)
                        }
                    })
                    .take(PAGE)
                    .collect();
                let last = entries.len() < PAGE;
                let mut sent = keys;
                for (slot, v, send) in &entries {
                    if *send {
                        let store = self.stores.get_mut(&target).expect("target store");
                        merge_into(store, slot.clone(), v);
                        sent += 1;
                    }
                }
                self.stats.pages += 1;
                let next = entries.last().map(|e| encode(&e.0)).or(cursor);
                self.log(|| {
                    let slots: Vec<String> = entries
                        .iter()
                        .map(|(s, v, send)| format!("{}/{}#{}{}", s.1, s.2, seq_of(v), send))
                        .collect();
                    format!("group {group} stream {segment:?} {source}->{target} page {slots:?}")
                });
                if let Some(c) = &next {
                    self.group(group).driver.handle_segment_progress(
                        segment,
                        &source,
                        sent,
                        c.clone(),
                    );
                }
                if last {
                    self.tasks.remove(i);
                    self.group(group).driver.handle_segment_done(segment, &source);
                } else if let Task::Stream { cursor, keys, .. } = &mut self.tasks[i] {
                    *cursor = next;
                    *keys = sent;
                }
                self.drain(group);
            }
            Task::Cleanup { group, node, ranges, keep } => {
                let (rf, tenants) = {
                    let g = self.group(group);
                    (g.rf, g.tenants.clone())
                };
                let store = self.stores.get_mut(&node).expect("cleanup store");
                let mut evicted = Vec::new();
                store.retain(|slot, _| {
                    let in_scope = tenants.contains(&slot.1)
                        && ranges.iter().any(|r| r.contains(Token(slot.0)));
                    if !in_scope {
                        return true;
                    }
                    let holders = match keep {
                        Side::New => pref(&r1, &slot.1, &slot.2, rf.rf1),
                        Side::Old => pref(&r0, &slot.1, &slot.2, rf.rf0),
                    };
                    let keep_it = holders.contains(&node);
                    if !keep_it {
                        evicted.push(format!("{}/{}", slot.1, slot.2));
                    }
                    keep_it
                });
                self.log(|| format!("group {group} cleanup {node} keep {keep:?}: {evicted:?}"));
                self.tasks.remove(i);
                self.group(group).driver.handle_cleanup_done(&node);
                self.drain(group);
            }
        }
        Ok(())
    }

    /// When every driver ended: the change applies (or not) and the end-of-change checks run.
    fn finish_change_if_over(&mut self) -> Result<(), String> {
        let change = self.change.as_ref().expect("a change");
        if !change.groups.iter().all(|g| g.driver.stage().is_terminal()) {
            return Ok(());
        }
        // Writes in flight land before the placement changes.
        self.flush();
        let change = self.change.as_ref().expect("a change");
        let ends: BTreeSet<Stage> = change.groups.iter().map(|g| g.driver.stage()).collect();
        if ends.len() > 1 {
            return Err(self.fail(format!("change {} ended as {ends:?}", change.what)));
        }
        if !self.tasks.is_empty() {
            return Err(self.fail(format!("tasks left after the change: {:?}", self.tasks)));
        }
        let change = self.change.take().expect("a change");
        let completed = ends.contains(&Stage::Completed);
        if completed {
            self.stats.completed += 1;
            self.ring = change.r1.clone();
            for g in &change.groups {
                for t in &g.tenants {
                    self.rf.insert(t.clone(), g.rf.rf1);
                }
            }
        } else {
            self.stats.cancelled += 1;
        }
        self.log(|| format!("change {} ended {ends:?}", change.what));
        self.check_final(&change.what)
    }

    fn check_final(&self, what: &str) -> Result<(), String> {
        let mut errors = Vec::new();
        for (tenant, key) in self.ledger.keys() {
            let sets = self.sets(tenant, key);
            for quorum in subsets(&sets.read, sets.read_required) {
                if let Err(e) = self.check_read(tenant, key, &quorum) {
                    errors.push(e);
                }
            }
            let acked = self.ledger[&(tenant.clone(), key.clone())];
            let slot = (key_token(tenant, key).0, tenant.clone(), key.clone());
            let holding = sets
                .read
                .iter()
                .filter(|n| self.stores[*n].get(&slot).is_some_and(|v| seq_of(v) >= acked.seq))
                .count();
            if holding < sets.read_required {
                errors.push(format!(
                    "{tenant}/{key}: only {holding} of {:?} hold #{} or newer",
                    sets.read, acked.seq
                ));
            }
        }
        for (node, store) in &self.stores {
            for slot in store.keys() {
                let placement = pref(&self.ring, &slot.1, &slot.2, self.rf[&slot.1]);
                if !placement.contains(node) {
                    errors.push(format!(
                        "{}/{}: copy left on {node}, outside its placement {placement:?}",
                        slot.1, slot.2
                    ));
                }
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        errors.truncate(8);
        Err(self.fail(format!("after change {what}: {}", errors.join("; "))))
    }

    fn run(&mut self) -> Result<(), String> {
        let mut changes = 0;
        // Some data before the first change.
        for _ in 0..60 {
            self.client_write();
        }
        self.flush();
        while changes < CHANGES || self.change.is_some() {
            self.stats.steps += 1;
            if self.stats.steps > MAX_STEPS {
                return Err(self.fail("too many steps".into()));
            }
            let r = self.rng.random_range(0..100);
            if r < 25 {
                self.client_write();
            } else if r < 40 && !self.pending.is_empty() {
                let i = self.rng.random_range(0..self.pending.len());
                self.deliver(i);
            } else if r < 50 {
                self.client_read()?;
            } else if self.change.is_some() {
                self.change_step()?;
            } else if changes < CHANGES {
                changes += 1;
                self.begin_change();
                self.crash_if_asked()?;
                self.check_progress()?;
                self.finish_change_if_over()?;
            }
        }
        Ok(())
    }
}

/// Every subset of `set` with `k` members.
fn subsets(set: &[NodeId], k: usize) -> Vec<Vec<NodeId>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    if set.len() < k {
        return Vec::new();
    }
    let mut with: Vec<Vec<NodeId>> = subsets(&set[1..], k - 1)
        .into_iter()
        .map(|mut s| {
            s.insert(0, set[0].clone());
            s
        })
        .collect();
    with.extend(subsets(&set[1..], k));
    with
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.parse().expect("SIM_SEED is a number")];
    }
    let count = std::env::var("SIM_SEEDS").map_or(DEFAULT_SEEDS, |s| s.parse().expect("number"));
    (0..count).collect()
}

#[test]
fn migrations_keep_every_acknowledged_write() {
    let trace = std::env::var("SIM_TRACE").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut totals = Stats::default();
    for seed in seeds() {
        let mut sim = Sim::new(seed, trace);
        if let Err(e) = sim.run() {
            failures.push(e);
        }
        totals.writes += sim.stats.writes;
        totals.acked += sim.stats.acked;
        totals.reads += sim.stats.reads;
        totals.completed += sim.stats.completed;
        totals.cancelled += sim.stats.cancelled;
        totals.crashes += sim.stats.crashes;
        totals.mid_drain_crashes += sim.stats.mid_drain_crashes;
        totals.cancels_refused += sim.stats.cancels_refused;
        totals.aborts += sim.stats.aborts;
        totals.pages += sim.stats.pages;
        totals.steps += sim.stats.steps;
    }
    eprintln!("{totals:?}");
    assert!(
        failures.is_empty(),
        "{} seeds failed (replay: SIM_SEED=<n> SIM_TRACE=1 cargo test --test sim_migration -- \
         --nocapture):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut sim = Sim::new(seed, false);
        let result = sim.run();
        (result, format!("{:?}", sim.stats), format!("{:?}", sim.stores))
    };
    assert_eq!(run(3), run(3));
}
