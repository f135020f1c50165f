//! Deterministic simulation of a coordinator driving the sans-IO machines of `pairdb::core`
//! against a simulated storage cluster, on a virtual clock and a simulated network.
//!
//! Run: `cargo test --test sim` (`simulation`: 500 seeds; `skewed_clocks_never_lose_a_write_to_
//! its_ancestor`: 200 seeds with skewed core clocks; together about 3 s in a debug build).
//! Replay one seed: `SIM_SEED=<n> cargo test --test sim <test> -- --nocapture` (a failure prints
//! its seeds and this line); add `SIM_TRACE=1` to print every client request, stamp, storage
//! apply, read reply, repair, answer and fault of that seed. More seeds: `SIM_SEEDS=<count>`.
//! Model knobs (default off, for the caveats below): `SIM_SKEW_US=<n>` sets coordinator core
//! `c`'s wall clock `c * n` microseconds ahead; `SIM_ACCEPT_EXPIRED=1` lets the coordinator start
//! attempts that arrive after their client deadline.
//!
//! # What is simulated
//!
//! - Time: a `std::time::Instant` base plus a virtual offset in microseconds. Nothing sleeps and
//!   nothing reads the real clock for a decision; an event queue ordered by `(time, seq)` drives
//!   everything, and one `SmallRng::seed_from_u64(seed)` draws every random choice, so a seed
//!   replays exactly (checked by `same_seed_same_run`).
//! - Storage: 5 nodes, replication factor 3, placement by the real [`Ring`] and [`key_token`].
//!   Each node is an in-memory map key -> [`Version`] applying writes and repairs with
//!   [`resolve`], the function the storage engine applies (`src/storage/engine.rs`). A node
//!   crashes (messages to it and its in-flight replies are lost; its data is kept, since acked
//!   writes are fsynced) and restarts; it may also refuse a write (an I/O error). Each seed
//!   draws 0 to 5 crashes and 0 to 5 partitions, 100 ms to 1.5 s each.
//! - Network: every message has a random latency (so messages reorder), some are lost, a few
//!   take a long tail past the request deadline, and a node can be partitioned for a while
//!   (cut from everyone, both ways, messages in flight included).
//! - Coordinator (3 cores, so 3 vector-clock actors, one drawn per request): per client request
//!   a [`WriteRequest`] (stamped by that core's [`Stamper`]) or a [`ReadRequest`], driven in the
//!   documented drain order, one timer per request from `poll_timeout`, one answer from
//!   `poll_outcome`. Read repairs go through a bounded [`RepairQueue`] (retries as timers);
//!   writes and repairs a replica missed become hints ([`owes_hint`]) in a bounded
//!   [`HintBuffer`], replayed to a node as repairs once [`NodeHealth`] (fed by probes) has it
//!   up. Nodes known down fail at once. Idempotent writes claim / complete / release in the
//!   [`EmbeddedIdempotencyStore`].
//! - Clients: 3, each the single writer of its own 3 keys, doing QUORUM writes (context: the
//!   clock of their last read or write of the key; 1 in 10 is a delete, which keeps its
//!   `key#seq` value in the sim so that reads can name it) and QUORUM reads of any key. Half the
//!   writes carry an idempotency key; those are retried after an attempt timeout, after a
//!   failure, and after "in progress". An attempt carries an absolute deadline and the
//!   coordinator refuses it once past, so a client that gives up knows no attempt of it will be
//!   stamped later (see the caveats for what happens without that).
//! - Bounds are small on purpose, so that drops happen: repair queue 4, hint buffer 4 keys.
//!
//! Faults run for the first 4 s of virtual time; then everything is healed and quiet, clients
//! stop and their requests end, hints are replayed until none is left (before the reads: a hint
//! of a write no replica took, replayed after the read, would make its replica differ again),
//! then every key is read once at QUORUM, one at a time, each read settled and its repairs
//! drained before the next (so no repair is dropped for want of a slot), and then the replicas
//! are compared. No anti-entropy.
//!
//! # Properties, checked on every seed
//!
//! 1. No acked QUORUM write is lost or reordered: a QUORUM read issued after a write's ack
//!    reached its client returns that write or a later one of the same (single) writer, never an
//!    older one, nor one never issued. Why the design guarantees it here: with rf 3, QUORUM
//!    writes and reads overlap on the fixed preference list (hints are kept by the coordinator,
//!    never written to substitute replicas); a write with the client's context dominates every
//!    version the client saw, and a write the client did not see (an earlier failed or
//!    timed-out one, whose partial copies may survive) is concurrent with it and loses on the
//!    timestamp, because it was stamped earlier on the same clock. Both assumptions, one clock
//!    and no attempt started after its client gave up, are what the caveats below relax.
//! 2. Replicas converge once faults stop: after the hint replay, a read of every key and the
//!    repairs drained, all replicas of a key hold the same version, no older than the last ack.
//! 3. Every request the coordinator receives is answered exactly once; every client request
//!    ends exactly once.
//! 4. An idempotent write is applied once: no attempt is stamped again after one completed, and
//!    every answer to it (the first, late ones, duplicates) carries the same version.
//! 5. Bounds: repair queue len <= capacity, hint buffer len <= capacity, event queue bounded,
//!    and each seed ends within a bounded number of steps.
//!
//! # It finds bugs (each planted temporarily, then removed; 500 seeds)
//!
//! - The coordinator answering a QUORUM write after one ack (`Level::One` for writes): property
//!   1 fails (a read after the ack returns an older write) on 111 of 500 seeds, the first at
//!   seed 4.
//! - The storage apply rule keeping the older version (`resolve(incoming, stored)`, arguments
//!   swapped): property 1 fails on 500 of 500 seeds, the first at seed 0, 243 ms in.
//! - Read repair dropped (`poll_repair` results discarded): property 2 fails (replicas of a key
//!   differ after the quiet period) on 428 of 500 seeds, the first at seed 0.
//! - A duplicate idempotent retry run again instead of answered (`Claim::Duplicate` ignored):
//!   property 4 fails on 337 of 500 seeds, the first at seed 0.
//! - In `src/core/quorum.rs`, QUORUM as `rf / 2` instead of `rf / 2 + 1`: property 1 fails on
//!   482 of 500 seeds, the first at seed 0.
//!
//! # What it found
//!
//! - `Stamper::stamp` stamped `timestamp_us` from the core's wall clock alone. With clocks
//!   skewed between cores (or coordinators), a write that follows another (its context holds
//!   it) could be stamped earlier than it; once a third, concurrent version (a failed write's
//!   leftover copy) is merged with the predecessor, the merged predecessor beats the successor
//!   on the timestamp and the acked successor is lost. `skewed_clocks_never_lose_a_write_to_its_
//!   ancestor` failed on 14 of 200 seeds (first: seed 8, k3#4 acked, then a read returns k3#3).
//!   Fixed in `src/core/write.rs`: the timestamp is raised to the largest counter of the context
//!   (a hybrid logical clock, as `tests/core_props.rs` already required of the write path),
//!   at most `MAX_CLOCK_LEAD_US` (1 s) past the wall clock, since contexts come from clients.
//!
//! 10,000 seeds of `simulation` pass.
//!
//! # Caveats the sim shows (properties hold only under these assumptions)
//!
//! - A write attempt started after its client gave up on it. gRPC deadlines are relative
//!   (`grpc-timeout` starts at arrival), so a request delayed in transit is still stamped on
//!   arrival: if its client already timed out and wrote again, the old write is stamped later,
//!   is concurrent with the new one (same context) and wins on the timestamp, replacing an acked
//!   write. `SIM_ACCEPT_EXPIRED=1` fails property 1 on 15 of 500 seeds (first: seed 29: k5#5
//!   delayed 543 ms in transit, its client gave up and deleted, k5#6 acked, then k5#5 arrives,
//!   is stamped 22 ms after the delete and wins). A client that times out must treat the write
//!   as possibly applied later, even after its next write.
//! - Clock skew larger than the time between a failed (partially applied) write and the
//!   client's next write lets the failed write win on the timestamp: the next write never saw
//!   it, so no stamping rule can order the two; this is last-writer-wins under skew. With core
//!   `c` `c * 50 ms` ahead, 7 of 200 seeds lose an acked write this way (counted by the skew
//!   test, not failed); `SIM_SKEW_US=5000` passes `simulation`'s 500 seeds, `=50000` fails 7,
//!   `=300000` fails 87 of them.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use pairdb::core::health::{HealthPolicy, NodeHealth};
use pairdb::core::hints::{owes_hint, HintBuffer};
use pairdb::core::idempotency::{fingerprint, Operation};
use pairdb::core::ids::NodeId;
use pairdb::core::quorum::Level;
use pairdb::core::read::ReadRequest;
use pairdb::core::repair::{RepairId, RepairPolicy, RepairQueue};
use pairdb::core::ring::{key_token, Member, Ring};
use pairdb::core::vclock::VClock;
use pairdb::core::version::{resolve, Resolution, Version};
use pairdb::core::write::{Stamper, WriteRequest};
// The idempotency store, through one line.
use pairdb::idempotency::{Claim, EmbeddedIdempotencyStore, IdempotencyConfig, IdempotencyKey};

/// Seeds run by default (`SIM_SEEDS` overrides).
const DEFAULT_SEEDS: u64 = 500;
/// Seeds of the clock-skew run.
const SKEW_SEEDS: u64 = 200;
const NODES: usize = 5;
const RF: usize = 3;
const CLIENTS: usize = 3;
const KEYS_PER_CLIENT: usize = 3;
const CORES: usize = 3;
const TENANT: &str = "sim";
/// Unix microseconds at virtual time zero, for the stamps.
const EPOCH_US: i64 = 1_700_000_000_000_000;

const MS: u64 = 1_000;
/// Faults (crashes, partitions, loss, refusals, long delays) happen before this.
const FAULT_PHASE: u64 = 4_000 * MS;
/// The quiet period must have converged by then.
const QUIET_LIMIT: u64 = FAULT_PHASE + 20_000 * MS;
/// The coordinator's deadline for one request to the replicas.
const REQUEST_TIMEOUT: u64 = 250 * MS;
/// How long a client waits for one attempt.
const ATTEMPT_TIMEOUT: u64 = 400 * MS;
/// How long a client keeps retrying one request.
const CLIENT_DEADLINE: u64 = 2_000 * MS;
const MAX_ATTEMPTS: u32 = 4;
const PROBE_EVERY: u64 = 250 * MS;
const PROBE_TIMEOUT: u64 = 150 * MS;
const HINT_REPLAY_EVERY: u64 = 500 * MS;
const REPAIR_CAPACITY: usize = 4;
const HINT_CAPACITY: usize = 4;
// The convergence pass reads one key at a time and waits for the read to settle and its
// repairs (at most one per replica) to drain before the next, so that none is dropped for want
// of a slot.
const _: () = assert!(RF <= REPAIR_CAPACITY);
/// Property 5: events queued at once.
const MAX_QUEUED: usize = 4_096;
/// Events per seed before it counts as not terminating.
const MAX_STEPS: u64 = 500_000;

const LOSS: f64 = 0.03;
const LONG_DELAY: f64 = 0.03;
const REFUSE: f64 = 0.02;

/// Placement, computed once for every seed, and the model's knobs.
struct World {
    keys: Vec<String>,
    /// Preference list of each key, as node indexes.
    replicas: HashMap<String, Vec<usize>>,
    /// `SIM_SKEW_US`: coordinator core `c` stamps with its wall clock `c * skew` ahead (0).
    skew_us: i64,
    /// `SIM_ACCEPT_EXPIRED=1`: the coordinator starts attempts that arrive past their deadline.
    accept_expired: bool,
    /// `SIM_TRACE=1`: print what happens (for replaying one seed).
    trace: bool,
    /// Property 1 tolerates losing an acked write to a write its writer never saw (a concurrent
    /// one, which can win on a skewed timestamp), but never to one it descends from.
    tolerate_concurrent: bool,
}

impl World {
    fn new() -> Self {
        let ring =
            Ring::new(1, (0..NODES).map(|i| Member::new(node_id(i), 16)).collect()).expect("ring");
        let keys: Vec<String> = (0..CLIENTS * KEYS_PER_CLIENT).map(|k| format!("k{k}")).collect();
        let replicas = keys
            .iter()
            .map(|k| {
                let list = ring.preference_list(key_token(TENANT, k), RF).to_vec();
                assert_eq!(list.len(), RF);
                (k.clone(), list.iter().map(node_index).collect())
            })
            .collect();
        let skew_us = std::env::var("SIM_SKEW_US")
            .map_or(0, |s| s.parse().unwrap_or_else(|_| panic!("SIM_SKEW_US={s}")));
        let accept_expired = std::env::var("SIM_ACCEPT_EXPIRED").is_ok_and(|v| v == "1");
        let trace = std::env::var("SIM_TRACE").is_ok_and(|v| v == "1");
        Self { keys, replicas, skew_us, accept_expired, trace, tolerate_concurrent: false }
    }
}

fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("s{i}"))
}

fn node_index(id: &NodeId) -> usize {
    id.as_str()[1..].parse().expect("node id s<n>")
}

fn owner_of(key: &str) -> usize {
    key[1..].parse::<usize>().expect("key k<n>") / KEYS_PER_CLIENT
}

/// The sequence number a client wrote into a value (`k3#17`).
fn seq_of(v: &Version) -> u64 {
    let text = std::str::from_utf8(&v.value).expect("utf-8 value");
    text.split_once('#').and_then(|(_, s)| s.parse().ok()).expect("value k<n>#<seq>")
}

/// The response an idempotent write stores: enough to rebuild the version answered.
fn encode_version(v: &Version) -> Bytes {
    let clock: Vec<String> = v.clock.entries().iter().map(|(a, n)| format!("{a}={n}")).collect();
    let value = std::str::from_utf8(&v.value).expect("utf-8 value");
    let kind = if v.tombstone { "delete" } else { "put" };
    Bytes::from(format!("{}|{}|{}|{kind}|{value}", v.timestamp_us, v.writer, clock.join(",")))
}

/// A version in a trace line: value, writer, timestamp.
fn brief(v: &Version) -> String {
    let kind = if v.tombstone { " (delete)" } else { "" };
    let value = String::from_utf8_lossy(&v.value);
    format!("{value}{kind} by {} @{}", v.writer, v.timestamp_us - EPOCH_US)
}

fn decode_version(b: &[u8]) -> Version {
    let text = std::str::from_utf8(b).expect("utf-8 response");
    let parts: Vec<&str> = text.splitn(5, '|').collect();
    let clock = parts[2].split(',').filter(|e| !e.is_empty()).map(|e| {
        let (a, n) = e.split_once('=').expect("actor=counter");
        (a.to_string(), n.parse().expect("counter"))
    });
    Version {
        value: Bytes::copy_from_slice(parts[4].as_bytes()),
        clock: VClock::from_entries(clock),
        timestamp_us: parts[0].parse().expect("timestamp"),
        writer: parts[1].to_string(),
        tombstone: parts[3] == "delete",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addr {
    Client(usize),
    Coord,
    Node(usize),
}

#[derive(Clone, Debug)]
enum ClientOp {
    Write { key: String, value: Bytes, delete: bool, ctx: Option<VClock>, idem: Option<String> },
    Read { key: String },
}

#[derive(Clone, Debug)]
enum Answer {
    Written(Version),
    Duplicate(Version),
    InProgress,
    Read(Option<Version>),
    Failed(String),
    Expired,
}

#[derive(Clone, Copy, Debug)]
enum Rpc {
    Write(u64),
    Repair(RepairId, u32),
}

#[derive(Clone, Debug)]
enum Body {
    Request { attempt: u64, deadline: u64, op: ClientOp },
    Answer { attempt: u64, answer: Answer },
    Write { rpc: Rpc, key: String, version: Version },
    Read { req: u64, key: String },
    Ack { rpc: Rpc },
    Refused { rpc: Rpc },
    ReadReply { req: u64, version: Option<Version> },
    Probe { id: u64 },
    ProbeReply { id: u64 },
}

#[derive(Debug)]
struct Msg {
    from: Addr,
    to: Addr,
    /// The sender's incarnation when it sent: a node that crashed since loses it.
    from_inc: u32,
    body: Body,
}

#[derive(Debug)]
enum Ev {
    Msg(Msg),
    ReqTimer(u64),
    RepairRpcTimeout(RepairId, u32),
    RepairWake,
    ProbeTick,
    ProbeTimeout(usize, u64),
    HintTick,
    ClientNext(usize),
    ClientAttemptTimer(usize, u64),
    ClientRetry(usize, u64),
    Crash(usize),
    Restart(usize),
    Partition(usize, u64),
    QuietStart,
    QuietCheck,
}

struct Sched {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Sched {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sched {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Node {
    data: HashMap<String, Version>,
    up: bool,
    inc: u32,
    partitioned_until: u64,
}

#[derive(Clone, Debug)]
enum Origin {
    Client { client: usize, attempt: u64 },
    Sweep { key: String, issued_at: u64 },
}

struct CoordWrite {
    origin: Origin,
    key: String,
    replicas: Vec<usize>,
    acked: BTreeSet<usize>,
    req: WriteRequest,
    idem: Option<(IdempotencyKey, u64, String)>,
    armed: Option<u64>,
}

struct CoordRead {
    origin: Origin,
    key: String,
    req: ReadRequest,
    armed: Option<u64>,
}

#[derive(Clone, Debug)]
struct RepairJob {
    node: usize,
    key: String,
    version: Version,
}

struct Pending {
    req_no: u64,
    op: ClientOp,
    /// The sequence number written, for writes.
    wseq: u64,
    issued_at: u64,
    deadline: u64,
    attempts: u32,
    /// The attempt whose answer or timeout the client is waiting for, if any.
    live: Option<u64>,
    sent: BTreeSet<u64>,
}

#[derive(Default)]
struct Client {
    ctx: HashMap<String, VClock>,
    next_seq: HashMap<String, u64>,
    req_no: u64,
    cur: Option<Pending>,
    finished: u64,
}

#[derive(Default)]
struct Ledger {
    /// Highest sequence number issued by the key's writer.
    max_issued: u64,
    /// Acks as the writer received them: (seq, virtual time, the acked version's clock).
    acked: Vec<(u64, u64, VClock)>,
}

impl Ledger {
    /// The newest write acked before `t`.
    fn required(&self, t: u64) -> u64 {
        self.acked.iter().filter(|(_, at, _)| *at < t).map(|(s, _, _)| *s).max().unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    steps: u64,
    writes_acked: u64,
    writes_failed: u64,
    writes_unknown: u64,
    reads_ok: u64,
    reads_failed: u64,
    duplicates: u64,
    in_progress: u64,
    expired: u64,
    lost: u64,
    crashes: u64,
    partitions: u64,
    hints_buffered: u64,
    hints_dropped: u64,
    hints_replayed: u64,
    repairs_queued: u64,
    repairs_done: u64,
    repairs_dropped: u64,
    /// Acked writes lost to a concurrent write (only counted with `tolerate_concurrent`).
    concurrent_losses: u64,
    max_queue: usize,
    max_repairs: usize,
    max_hints: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.writes_acked += o.writes_acked;
        self.writes_failed += o.writes_failed;
        self.writes_unknown += o.writes_unknown;
        self.reads_ok += o.reads_ok;
        self.reads_failed += o.reads_failed;
        self.duplicates += o.duplicates;
        self.in_progress += o.in_progress;
        self.expired += o.expired;
        self.lost += o.lost;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.hints_buffered += o.hints_buffered;
        self.hints_dropped += o.hints_dropped;
        self.hints_replayed += o.hints_replayed;
        self.repairs_queued += o.repairs_queued;
        self.repairs_done += o.repairs_done;
        self.repairs_dropped += o.repairs_dropped;
        self.concurrent_losses += o.concurrent_losses;
        self.max_queue = self.max_queue.max(o.max_queue);
        self.max_repairs = self.max_repairs.max(o.max_repairs);
        self.max_hints = self.max_hints.max(o.max_hints);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quiet {
    Faults,
    Draining,
    Sweeping,
    Done,
}

const REPAIR_POLICY: RepairPolicy =
    RepairPolicy { capacity: REPAIR_CAPACITY, max_attempts: 3, backoff: Duration::from_millis(50) };

struct Sim<'w> {
    world: &'w World,
    rng: SmallRng,
    base: Instant,
    now: u64,
    seq: u64,
    events: BinaryHeap<Reverse<Sched>>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    ledger: HashMap<String, Ledger>,
    // The coordinator.
    stampers: Vec<Stamper>,
    next_req: u64,
    writes: HashMap<u64, CoordWrite>,
    reads: HashMap<u64, CoordRead>,
    repairs: RepairQueue<RepairJob>,
    repair_attempts: HashMap<RepairId, u32>,
    repair_inflight: HashMap<(RepairId, u32), RepairJob>,
    repair_wake: Option<u64>,
    hints: HintBuffer<(usize, String), Version>,
    health: NodeHealth,
    probes: HashMap<usize, u64>,
    next_probe: u64,
    idem: EmbeddedIdempotencyStore,
    /// The first completed response of each idempotency key (property 4).
    idem_done: HashMap<String, Bytes>,
    /// The version each idempotent request was answered with, at the client (property 4).
    idem_answers: HashMap<String, Version>,
    /// The idempotency key each attempt of an idempotent write carried.
    attempt_idem: HashMap<u64, String>,
    /// The clock of every version stamped, by (value, writer, timestamp): what a stored version,
    /// merged or not, was first stamped as.
    stamps: HashMap<(Bytes, String, i64), VClock>,
    // Property 3.
    next_attempt: u64,
    arrived: BTreeSet<u64>,
    answers_sent: HashMap<u64, u32>,
    answers_received: HashMap<u64, u32>,
    // The quiet period.
    quiet: Quiet,
    sweep_next: usize,
    sweep_inflight: usize,
    faulty: bool,
    stats: Stats,
    violations: Vec<String>,
}

impl<'w> Sim<'w> {
    fn new(world: &'w World, seed: u64) -> Self {
        let mut sim = Sim {
            world,
            rng: SmallRng::seed_from_u64(seed),
            base: Instant::now(),
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            nodes: (0..NODES)
                .map(|_| Node { data: HashMap::new(), up: true, inc: 0, partitioned_until: 0 })
                .collect(),
            clients: (0..CLIENTS).map(|_| Client::default()).collect(),
            ledger: world.keys.iter().map(|k| (k.clone(), Ledger::default())).collect(),
            stampers: (0..CORES).map(|c| Stamper::new(format!("coord/{c}"))).collect(),
            next_req: 0,
            writes: HashMap::new(),
            reads: HashMap::new(),
            repairs: RepairQueue::new(REPAIR_POLICY),
            repair_attempts: HashMap::new(),
            repair_inflight: HashMap::new(),
            repair_wake: None,
            hints: HintBuffer::new(HINT_CAPACITY),
            health: NodeHealth::new(HealthPolicy::default()),
            probes: HashMap::new(),
            next_probe: 0,
            idem: EmbeddedIdempotencyStore::new(IdempotencyConfig {
                ttl: Duration::from_secs(3600),
                pending_timeout: Duration::from_secs(30),
                max_records: 10_000,
            }),
            idem_done: HashMap::new(),
            idem_answers: HashMap::new(),
            attempt_idem: HashMap::new(),
            stamps: HashMap::new(),
            next_attempt: 0,
            arrived: BTreeSet::new(),
            answers_sent: HashMap::new(),
            answers_received: HashMap::new(),
            quiet: Quiet::Faults,
            sweep_next: 0,
            sweep_inflight: 0,
            faulty: true,
            stats: Stats::default(),
            violations: Vec::new(),
        };
        // Faults of the first phase, drawn up front.
        for _ in 0..sim.rng.random_range(0..=5) {
            let node = sim.rng.random_range(0..NODES);
            let at = sim.rng.random_range(0..FAULT_PHASE - 500 * MS);
            let len = sim.rng.random_range(100 * MS..1_500 * MS);
            sim.schedule_at(at, Ev::Crash(node));
            sim.schedule_at((at + len).min(FAULT_PHASE), Ev::Restart(node));
        }
        for _ in 0..sim.rng.random_range(0..=5) {
            let node = sim.rng.random_range(0..NODES);
            let at = sim.rng.random_range(0..FAULT_PHASE - 500 * MS);
            let len = sim.rng.random_range(100 * MS..1_500 * MS);
            sim.schedule_at(at, Ev::Partition(node, (at + len).min(FAULT_PHASE)));
        }
        sim.schedule_at(FAULT_PHASE, Ev::QuietStart);
        sim.schedule_at(0, Ev::ProbeTick);
        sim.schedule_at(HINT_REPLAY_EVERY, Ev::HintTick);
        for c in 0..CLIENTS {
            let at = sim.rng.random_range(0..20 * MS);
            sim.schedule_at(at, Ev::ClientNext(c));
        }
        sim
    }

    fn instant(&self, t: u64) -> Instant {
        self.base + Duration::from_micros(t)
    }

    fn micros(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.base).as_micros()).expect("virtual time fits")
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.world.trace {
            eprintln!("{:>9.3} ms  {}", self.now as f64 / MS as f64, what());
        }
    }

    fn violation(&mut self, what: String) {
        self.violations.push(format!("at {} ms: {what}", self.now / MS));
    }

    fn schedule_at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse(Sched { at, seq: self.seq, ev }));
        self.stats.max_queue = self.stats.max_queue.max(self.events.len());
        if self.events.len() > MAX_QUEUED {
            let len = self.events.len();
            self.violation(format!("event queue holds {len} > {MAX_QUEUED}"));
        }
    }

    fn schedule(&mut self, after: u64, ev: Ev) {
        self.schedule_at(self.now + after, ev);
    }

    /// True when `a` cannot talk now: a crashed or partitioned node.
    fn cut(&self, a: Addr) -> bool {
        match a {
            Addr::Node(i) => !self.nodes[i].up || self.nodes[i].partitioned_until > self.now,
            Addr::Client(_) | Addr::Coord => false,
        }
    }

    fn send(&mut self, from: Addr, to: Addr, body: Body) {
        if self.cut(from) || self.cut(to) || (self.faulty && self.rng.random_bool(LOSS)) {
            self.stats.lost += 1;
            return;
        }
        let delay = if self.faulty && self.rng.random_bool(LONG_DELAY) {
            self.rng.random_range(100 * MS..600 * MS)
        } else {
            self.rng.random_range(500..15 * MS)
        };
        let from_inc = match from {
            Addr::Node(i) => self.nodes[i].inc,
            _ => 0,
        };
        self.schedule(delay, Ev::Msg(Msg { from, to, from_inc, body }));
    }

    /// Runs the seed to its end; `Err` carries the first violations.
    fn run(mut self) -> Result<(Stats, u64), String> {
        while let Some(Reverse(Sched { at, ev, .. })) = self.events.pop() {
            debug_assert!(at >= self.now, "time goes forward");
            self.now = at;
            self.stats.steps += 1;
            if self.stats.steps > MAX_STEPS {
                self.violation(format!("no end after {MAX_STEPS} steps"));
            }
            self.handle(ev);
            self.pump_repairs();
            if !self.violations.is_empty() || self.quiet == Quiet::Done {
                break;
            }
        }
        if self.violations.is_empty() && self.quiet != Quiet::Done {
            self.violation("the event queue ran dry before the end".into());
        }
        if !self.violations.is_empty() {
            return Err(self.violations.iter().take(5).cloned().collect::<Vec<_>>().join("\n"));
        }
        Ok((self.stats, self.fingerprint()))
    }

    /// A digest of the end state, to check that a seed replays exactly.
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.stats.steps.hash(&mut h);
        self.now.hash(&mut h);
        for key in &self.world.keys {
            for node in &self.nodes {
                node.data.get(key).map(encode_version).hash(&mut h);
            }
        }
        h.finish()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Msg(m) => self.deliver(m),
            Ev::ReqTimer(id) => {
                let at = self.instant(self.now);
                if let Some(mut w) = self.writes.remove(&id) {
                    w.req.handle_timeout(at);
                    self.drive_write(id, w);
                } else if let Some(mut r) = self.reads.remove(&id) {
                    r.req.handle_timeout(at);
                    self.drive_read(id, r);
                }
            }
            Ev::RepairRpcTimeout(id, att) => {
                if let Some(job) = self.repair_inflight.remove(&(id, att)) {
                    self.repair_failed(id, job);
                }
            }
            Ev::RepairWake => self.repair_wake = None,
            Ev::ProbeTick => {
                for i in 0..NODES {
                    self.next_probe += 1;
                    let id = self.next_probe;
                    self.probes.insert(i, id);
                    self.send(Addr::Coord, Addr::Node(i), Body::Probe { id });
                    self.schedule(PROBE_TIMEOUT, Ev::ProbeTimeout(i, id));
                }
                self.schedule(PROBE_EVERY, Ev::ProbeTick);
            }
            Ev::ProbeTimeout(i, id) => {
                if self.probes.get(&i) == Some(&id) {
                    self.probes.remove(&i);
                    self.probe_result(i, false);
                }
            }
            Ev::HintTick => {
                self.replay_hints();
                self.schedule(HINT_REPLAY_EVERY, Ev::HintTick);
            }
            Ev::ClientNext(c) => self.client_next(c),
            Ev::ClientAttemptTimer(c, attempt) => self.client_attempt_timer(c, attempt),
            Ev::ClientRetry(c, req_no) => {
                let retry = match &self.clients[c].cur {
                    Some(p) => p.req_no == req_no && p.live.is_none(),
                    None => false,
                };
                if retry {
                    self.client_retry_or_give_up(c, false);
                }
            }
            Ev::Crash(i) => {
                if self.nodes[i].up {
                    self.trace(|| format!("s{i} crashes"));
                    self.stats.crashes += 1;
                    self.nodes[i].up = false;
                    self.nodes[i].inc += 1;
                }
            }
            Ev::Restart(i) => {
                self.trace(|| format!("s{i} restarts"));
                self.nodes[i].up = true;
            }
            Ev::Partition(i, until) => {
                self.trace(|| format!("s{i} partitioned until {} ms", until / MS));
                self.stats.partitions += 1;
                self.nodes[i].partitioned_until = self.nodes[i].partitioned_until.max(until);
            }
            Ev::QuietStart => {
                self.faulty = false;
                for node in &mut self.nodes {
                    node.up = true;
                    node.partitioned_until = 0;
                }
                self.quiet = Quiet::Draining;
                self.schedule(20 * MS, Ev::QuietCheck);
            }
            Ev::QuietCheck => self.quiet_check(),
        }
    }

    fn deliver(&mut self, m: Msg) {
        let stale = match m.from {
            Addr::Node(i) => self.nodes[i].inc != m.from_inc,
            _ => false,
        };
        if stale || self.cut(m.from) || self.cut(m.to) {
            self.stats.lost += 1;
            return;
        }
        match m.to {
            Addr::Node(i) => self.node_recv(i, m.body),
            Addr::Coord => self.coord_recv(m.from, m.body),
            Addr::Client(c) => self.client_recv(c, m.body),
        }
    }

    // ---- storage nodes ----

    fn node_recv(&mut self, i: usize, body: Body) {
        let me = Addr::Node(i);
        match body {
            Body::Write { rpc, key, version } => {
                if self.faulty && self.rng.random_bool(REFUSE) {
                    self.send(me, Addr::Coord, Body::Refused { rpc });
                    return;
                }
                let data = &mut self.nodes[i].data;
                let keep = match data.get(&key) {
                    None => Some(version),
                    Some(stored) => match resolve(stored, &version) {
                        Resolution::TakeIncoming => Some(version),
                        Resolution::KeepStored => None,
                        Resolution::Merged(v) => Some(v),
                    },
                };
                let what = match (&keep, data.get(&key)) {
                    (Some(v), _) => format!("takes {}", brief(v)),
                    (None, Some(stored)) => format!("keeps {}", brief(stored)),
                    (None, None) => unreachable!("a node with nothing takes the write"),
                };
                if let Some(v) = keep {
                    data.insert(key.clone(), v);
                }
                self.trace(|| format!("s{i} {rpc:?} of {key}: {what}"));
                // Applied (and, on a real node, fsynced) before the ack is sent.
                self.send(me, Addr::Coord, Body::Ack { rpc });
            }
            Body::Read { req, key } => {
                let version = self.nodes[i].data.get(&key).cloned();
                self.send(me, Addr::Coord, Body::ReadReply { req, version });
            }
            Body::Probe { id } => self.send(me, Addr::Coord, Body::ProbeReply { id }),
            other => panic!("storage node got {other:?}"),
        }
    }

    // ---- the coordinator ----

    fn coord_recv(&mut self, from: Addr, body: Body) {
        let node = match from {
            Addr::Node(i) => Some(i),
            _ => None,
        };
        match body {
            Body::Request { attempt, deadline, op } => {
                let Addr::Client(client) = from else { panic!("request from {from:?}") };
                if !self.arrived.insert(attempt) {
                    self.violation(format!("attempt {attempt} arrived twice"));
                }
                let origin = Origin::Client { client, attempt };
                if self.now > deadline && !self.world.accept_expired {
                    self.stats.expired += 1;
                    self.answer(&origin, Answer::Expired);
                    return;
                }
                match op {
                    ClientOp::Write { key, value, delete, ctx, idem } => {
                        self.start_write(origin, key, value, delete, ctx, idem)
                    }
                    ClientOp::Read { key } => self.start_read(origin, key),
                }
            }
            Body::Ack { rpc: Rpc::Write(id) } => {
                let i = node.expect("ack from a node");
                if let Some(mut w) = self.writes.remove(&id) {
                    w.req.handle_ack(&node_id(i));
                    w.acked.insert(i);
                    self.drive_write(id, w);
                }
            }
            Body::Refused { rpc: Rpc::Write(id) } => {
                let i = node.expect("refusal from a node");
                if let Some(mut w) = self.writes.remove(&id) {
                    w.req.handle_failure(&node_id(i), "INTERNAL: I/O error");
                    self.drive_write(id, w);
                }
            }
            Body::Ack { rpc: Rpc::Repair(id, att) } => {
                if self.repair_inflight.remove(&(id, att)).is_some() {
                    self.repairs.handle_result(id, true, self.instant(self.now));
                    self.repair_attempts.remove(&id);
                    self.stats.repairs_done += 1;
                }
            }
            Body::Refused { rpc: Rpc::Repair(id, att) } => {
                if let Some(job) = self.repair_inflight.remove(&(id, att)) {
                    self.repair_failed(id, job);
                }
            }
            Body::ReadReply { req, version } => {
                let i = node.expect("reply from a node");
                if let Some(mut r) = self.reads.remove(&req) {
                    self.trace(|| {
                        let v = version.as_ref().map_or("none".into(), brief);
                        let clock = version.as_ref().map(|v| v.clock.entries().to_vec());
                        format!("read {req} of {}: s{i} replies {v} {clock:?}", r.key)
                    });
                    r.req.handle_reply(&node_id(i), version);
                    self.drive_read(req, r);
                }
            }
            Body::ProbeReply { id } => {
                let i = node.expect("probe reply from a node");
                if self.probes.get(&i) == Some(&id) {
                    self.probes.remove(&i);
                    self.probe_result(i, true);
                }
            }
            other => panic!("coordinator got {other:?}"),
        }
    }

    fn answer(&mut self, origin: &Origin, answer: Answer) {
        match *origin {
            Origin::Client { client, attempt } => {
                self.trace(|| format!("coordinator answers attempt {attempt}: {answer:?}"));
                let n = {
                    let n = self.answers_sent.entry(attempt).or_default();
                    *n += 1;
                    *n
                };
                if n > 1 {
                    self.violation(format!("attempt {attempt} answered {n} times"));
                }
                self.send(Addr::Coord, Addr::Client(client), Body::Answer { attempt, answer });
            }
            Origin::Sweep { ref key, issued_at } => {
                self.sweep_inflight -= 1;
                match answer {
                    Answer::Read(v) => {
                        let key = key.clone();
                        self.check_read(&key, issued_at, v.as_ref(), "convergence read");
                    }
                    Answer::Failed(e) => self.violation(format!("a quiet-period read failed: {e}")),
                    other => self.violation(format!("a quiet-period read answered {other:?}")),
                }
            }
        }
    }

    fn start_write(
        &mut self,
        origin: Origin,
        key: String,
        value: Bytes,
        delete: bool,
        ctx: Option<VClock>,
        idem: Option<String>,
    ) {
        let mut claimed = None;
        if let Some(idem_key) = &idem {
            let idem_key = idem_key.clone();
            let ik = IdempotencyKey::new(TENANT, &key, &idem_key);
            let op = if delete { Operation::Delete } else { Operation::Write };
            let fp = fingerprint(op, Level::Quorum, &value, ctx.as_ref());
            match self.idem.claim(&ik, fp, self.instant(self.now)) {
                Claim::Claimed => claimed = Some((ik, fp, idem_key)),
                Claim::InProgress => {
                    self.stats.in_progress += 1;
                    self.answer(&origin, Answer::InProgress);
                    return;
                }
                Claim::Duplicate(resp) => {
                    self.stats.duplicates += 1;
                    let first = self.idem_done.get(&idem_key).cloned();
                    if first.as_ref() != Some(&resp) {
                        self.violation(format!(
                            "duplicate of {idem_key} answers {resp:?}, first outcome {first:?}"
                        ));
                    }
                    self.answer(&origin, Answer::Duplicate(decode_version(&resp)));
                    return;
                }
                Claim::Conflict => {
                    self.violation(format!("idempotency conflict on a retry of {idem_key}"));
                    return;
                }
                Claim::Unavailable => {}
            }
        }
        if let Some(idem_key) = &idem {
            if self.idem_done.contains_key(idem_key) {
                self.violation(format!("{idem_key} is stamped again after it completed"));
            }
        }
        let core = self.rng.random_range(0..CORES);
        let wall = i64::try_from(self.now).expect("virtual time fits");
        let skew = self.world.skew_us * i64::try_from(core).expect("core index");
        let now_us = EPOCH_US + wall + skew;
        let version = self.stampers[core].stamp(ctx, value, delete, now_us);
        let stamp = (version.value.clone(), version.writer.clone(), version.timestamp_us);
        self.stamps.insert(stamp, version.clock.clone());
        self.trace(|| format!("coordinator stamps {origin:?} as {}", brief(&version)));
        let replicas = self.world.replicas[&key].clone();
        let deadline = self.instant(self.now + REQUEST_TIMEOUT);
        let req = WriteRequest::new(
            replicas.iter().map(|&i| node_id(i)).collect(),
            Level::Quorum,
            RF,
            version,
            deadline,
        );
        self.next_req += 1;
        let id = self.next_req;
        let w = CoordWrite {
            origin,
            key,
            replicas,
            acked: BTreeSet::new(),
            req,
            idem: claimed,
            armed: None,
        };
        self.drive_write(id, w);
    }

    /// The drain order after `new` and every `handle_*`: sends, outcome, timer.
    fn drive_write(&mut self, id: u64, mut w: CoordWrite) {
        let sends: Vec<NodeId> = std::iter::from_fn(|| w.req.poll_send()).collect();
        for n in sends {
            if self.health.is_up(&n) {
                let body = Body::Write {
                    rpc: Rpc::Write(id),
                    key: w.key.clone(),
                    version: w.req.version().clone(),
                };
                self.send(Addr::Coord, Addr::Node(node_index(&n)), body);
            } else {
                w.req.handle_failure(&n, "UNAVAILABLE: storage node is down");
            }
        }
        if let Some(outcome) = w.req.poll_outcome() {
            let version = w.req.version().clone();
            let answer = match outcome {
                Ok(_) => {
                    if let Some((ik, fp, idem_key)) = &w.idem {
                        let resp = encode_version(&version);
                        self.idem.complete(ik, *fp, resp.clone(), self.instant(self.now));
                        if self.idem_done.insert(idem_key.clone(), resp).is_some() {
                            self.violation(format!("{idem_key} completed twice"));
                        }
                    }
                    Answer::Written(version)
                }
                Err(e) => {
                    if let Some((ik, fp, _)) = &w.idem {
                        self.idem.release(ik, *fp);
                    }
                    Answer::Failed(e.to_string())
                }
            };
            self.answer(&w.origin, answer);
        }
        if w.req.is_settled() {
            // Every replica acked, failed or timed out: the misses owe hints.
            for &r in &w.replicas {
                if !w.acked.contains(&r) && owes_hint(false, false) {
                    self.hint(r, w.key.clone(), w.req.version().clone());
                }
            }
            return;
        }
        if let Some(t) = w.req.poll_timeout() {
            let t = self.micros(t);
            if w.armed != Some(t) {
                w.armed = Some(t);
                self.schedule_at(t, Ev::ReqTimer(id));
            }
        }
        self.writes.insert(id, w);
    }

    fn start_read(&mut self, origin: Origin, key: String) {
        let replicas = self.world.replicas[&key].iter().map(|&i| node_id(i)).collect();
        let deadline = self.instant(self.now + REQUEST_TIMEOUT);
        let req = ReadRequest::new(replicas, Level::Quorum, RF, deadline);
        self.next_req += 1;
        let id = self.next_req;
        self.drive_read(id, CoordRead { origin, key, req, armed: None });
    }

    /// The drain order: sends, outcome, repairs, timer.
    fn drive_read(&mut self, id: u64, mut r: CoordRead) {
        let sends: Vec<NodeId> = std::iter::from_fn(|| r.req.poll_send()).collect();
        for n in sends {
            if self.health.is_up(&n) {
                let body = Body::Read { req: id, key: r.key.clone() };
                self.send(Addr::Coord, Addr::Node(node_index(&n)), body);
            } else {
                r.req.handle_failure(&n, "UNAVAILABLE: storage node is down");
            }
        }
        if let Some(outcome) = r.req.poll_outcome() {
            let answer = match outcome {
                Ok(o) => Answer::Read(o.newest),
                Err(e) => Answer::Failed(e.to_string()),
            };
            self.answer(&r.origin, answer);
        }
        while let Some(repair) = r.req.poll_repair() {
            let job = RepairJob {
                node: node_index(&repair.node),
                key: r.key.clone(),
                version: repair.version,
            };
            self.enqueue_repair(job);
        }
        if r.req.is_settled() {
            return;
        }
        if let Some(t) = r.req.poll_timeout() {
            let t = self.micros(t);
            if r.armed != Some(t) {
                r.armed = Some(t);
                self.schedule_at(t, Ev::ReqTimer(id));
            }
        }
        self.reads.insert(id, r);
    }

    fn enqueue_repair(&mut self, job: RepairJob) {
        self.trace(|| {
            let clock = job.version.clock.entries().to_vec();
            format!("repair of {} to s{}: {} {clock:?}", job.key, job.node, brief(&job.version))
        });
        if self.repairs.handle_enqueue(job) {
            self.stats.repairs_queued += 1;
        } else {
            self.stats.repairs_dropped += 1;
        }
        let len = self.repairs.len();
        self.stats.max_repairs = self.stats.max_repairs.max(len);
        if len > REPAIR_CAPACITY {
            self.violation(format!("repair queue holds {len} > {REPAIR_CAPACITY}"));
        }
    }

    /// Sends every repair due, then arms the wakeup for the next retry.
    fn pump_repairs(&mut self) {
        let now = self.instant(self.now);
        let mut due = Vec::new();
        while let Some((id, job)) = self.repairs.poll_send(now) {
            due.push((id, job.clone()));
        }
        for (id, job) in due {
            let att = {
                let a = self.repair_attempts.entry(id).or_default();
                *a += 1;
                *a
            };
            if !self.health.is_up(&node_id(job.node)) {
                self.repair_failed(id, job);
                continue;
            }
            let body = Body::Write {
                rpc: Rpc::Repair(id, att),
                key: job.key.clone(),
                version: job.version.clone(),
            };
            self.send(Addr::Coord, Addr::Node(job.node), body);
            self.repair_inflight.insert((id, att), job);
            self.schedule(REQUEST_TIMEOUT, Ev::RepairRpcTimeout(id, att));
        }
        if let Some(t) = self.repairs.poll_timeout() {
            let t = self.micros(t);
            if self.repair_wake.is_none_or(|w| t < w) {
                self.repair_wake = Some(t);
                self.schedule_at(t, Ev::RepairWake);
            }
        }
    }

    /// A repair send failed: the queue retries it or drops it, and the replica owes a hint.
    fn repair_failed(&mut self, id: RepairId, job: RepairJob) {
        self.repairs.handle_result(id, false, self.instant(self.now));
        if self.repair_attempts.get(&id).is_some_and(|&a| a >= REPAIR_POLICY.max_attempts) {
            self.repair_attempts.remove(&id);
        }
        if owes_hint(false, false) {
            self.hint(job.node, job.key, job.version);
        }
    }

    fn hint(&mut self, node: usize, key: String, version: Version) {
        match self.hints.handle_missed((node, key), version) {
            pairdb::core::hints::Admitted::Dropped => self.stats.hints_dropped += 1,
            _ => self.stats.hints_buffered += 1,
        }
        let len = self.hints.len();
        self.stats.max_hints = self.stats.max_hints.max(len);
        if len > HINT_CAPACITY {
            self.violation(format!("hint buffer holds {len} > {HINT_CAPACITY}"));
        }
    }

    /// Hints of nodes that are up become repairs, while the repair queue has room.
    fn replay_hints(&mut self) {
        let mut held = self.hints.take();
        held.sort_by(|a, b| a.0.cmp(&b.0)); // the buffer's order is a random hasher's
        for ((node, key), version) in held {
            if self.health.is_up(&node_id(node)) && self.repairs.len() < REPAIR_CAPACITY {
                self.stats.hints_replayed += 1;
                self.enqueue_repair(RepairJob { node, key, version });
            } else {
                self.hints.handle_missed((node, key), version);
            }
        }
    }

    fn probe_result(&mut self, i: usize, ok: bool) {
        self.health.handle_probe(self.instant(self.now), &node_id(i), ok);
        while let Some((_, up)) = self.health.poll_change() {
            if up {
                self.replay_hints();
            }
        }
    }

    // ---- the quiet period ----

    fn quiet_check(&mut self) {
        if self.now > QUIET_LIMIT {
            let state = format!(
                "{:?}: client ops {}, writes {}, reads {}, repairs {}, in flight {}, hints {}, \
                 down {:?}",
                self.quiet,
                self.clients.iter().filter(|c| c.cur.is_some()).count(),
                self.writes.len(),
                self.reads.len(),
                self.repairs.len(),
                self.repair_inflight.len(),
                self.hints.len(),
                (0..NODES).filter(|&i| !self.health.is_up(&node_id(i))).collect::<Vec<_>>()
            );
            self.violation(format!("no convergence in the quiet period ({state})"));
            return;
        }
        let drained = self.writes.is_empty()
            && self.reads.is_empty()
            && self.repairs.is_empty()
            && self.repair_inflight.is_empty()
            && self.hints.is_empty();
        match self.quiet {
            Quiet::Draining => {
                let clients_idle = self.clients.iter().all(|c| c.cur.is_none());
                let all_up = (0..NODES).all(|i| self.health.is_up(&node_id(i)));
                if clients_idle && all_up && drained && self.now >= FAULT_PHASE + 1_000 * MS {
                    self.quiet = Quiet::Sweeping;
                }
            }
            Quiet::Sweeping => {
                if self.sweep_inflight == 0
                    && self.reads.is_empty()
                    && self.repairs.is_empty()
                    && self.repair_inflight.is_empty()
                    && self.sweep_next < self.world.keys.len()
                {
                    let key = self.world.keys[self.sweep_next].clone();
                    self.sweep_next += 1;
                    self.sweep_inflight += 1;
                    self.start_read(Origin::Sweep { key: key.clone(), issued_at: self.now }, key);
                }
                if self.sweep_next == self.world.keys.len() && self.sweep_inflight == 0 && drained {
                    self.final_checks();
                    self.quiet = Quiet::Done;
                    return;
                }
            }
            Quiet::Faults | Quiet::Done => unreachable!("checks run in the quiet period"),
        }
        self.schedule(20 * MS, Ev::QuietCheck);
    }

    fn final_checks(&mut self) {
        // 2. Convergence, and no acked write lost.
        for key in &self.world.keys {
            let held: Vec<Option<&Version>> =
                self.world.replicas[key].iter().map(|&i| self.nodes[i].data.get(key)).collect();
            if held.iter().any(|v| *v != held[0]) {
                let shown: Vec<String> = held
                    .iter()
                    .map(|v| v.map(encode_version).map_or("none".into(), |b| format!("{b:?}")))
                    .collect();
                self.violations
                    .push(format!("replicas of {key} differ after the quiet period: {shown:?}"));
                continue;
            }
            let required = self.ledger[key].required(u64::MAX);
            let got = held[0].map_or(0, seq_of);
            if got < required {
                if self.world.tolerate_concurrent && !self.lost_to_ancestor(key, u64::MAX, held[0])
                {
                    self.stats.concurrent_losses += 1;
                    continue;
                }
                self.violations.push(format!(
                    "{key} converged to write {got}, older than the acked {required}"
                ));
            }
        }
        // 3. Exactly one answer per request that arrived; every client request ended once.
        for attempt in &self.arrived {
            let sent = self.answers_sent.get(attempt).copied().unwrap_or(0);
            if sent != 1 {
                self.violations.push(format!("attempt {attempt} arrived and got {sent} answers"));
            }
        }
        for (c, client) in self.clients.iter().enumerate() {
            if client.finished != client.req_no {
                self.violations.push(format!(
                    "client {c} issued {} requests, {} ended",
                    client.req_no, client.finished
                ));
            }
        }
    }

    // ---- clients ----

    fn client_next(&mut self, c: usize) {
        if self.now >= FAULT_PHASE {
            return;
        }
        let write = self.rng.random_bool(0.55);
        let client = &mut self.clients[c];
        client.req_no += 1;
        let req_no = client.req_no;
        let (op, wseq) = if write {
            let key =
                format!("k{}", c * KEYS_PER_CLIENT + self.rng.random_range(0..KEYS_PER_CLIENT));
            let seq = client.next_seq.entry(key.clone()).or_default();
            *seq += 1;
            let seq = *seq;
            self.ledger.get_mut(&key).expect("key").max_issued = seq;
            let idem = self.rng.random_bool(0.5).then(|| format!("c{c}-{req_no}"));
            let op = ClientOp::Write {
                value: Bytes::from(format!("{key}#{seq}")),
                delete: self.rng.random_bool(0.1),
                ctx: client.ctx.get(&key).cloned(),
                key,
                idem,
            };
            (op, seq)
        } else {
            let key = self.world.keys[self.rng.random_range(0..self.world.keys.len())].clone();
            (ClientOp::Read { key }, 0)
        };
        client.cur = Some(Pending {
            req_no,
            op,
            wseq,
            issued_at: self.now,
            deadline: self.now + CLIENT_DEADLINE,
            attempts: 0,
            live: None,
            sent: BTreeSet::new(),
        });
        self.client_send_attempt(c);
    }

    fn client_send_attempt(&mut self, c: usize) {
        self.next_attempt += 1;
        let attempt = self.next_attempt;
        let now = self.now;
        let p = self.clients[c].cur.as_mut().expect("a request in progress");
        p.attempts += 1;
        p.live = Some(attempt);
        p.sent.insert(attempt);
        let deadline = (now + ATTEMPT_TIMEOUT).min(p.deadline);
        let op = p.op.clone();
        if let ClientOp::Write { idem: Some(idem), .. } = &op {
            self.attempt_idem.insert(attempt, idem.clone());
        }
        self.trace(|| format!("client {c} sends attempt {attempt}: {op:?}"));
        self.send(Addr::Client(c), Addr::Coord, Body::Request { attempt, deadline, op });
        self.schedule_at(deadline, Ev::ClientAttemptTimer(c, attempt));
    }

    fn client_attempt_timer(&mut self, c: usize, attempt: u64) {
        let live = self.clients[c].cur.as_ref().is_some_and(|p| p.live == Some(attempt));
        if live {
            // The attempt's deadline has passed: the coordinator will not start it any more.
            self.clients[c].cur.as_mut().expect("request").live = None;
            self.client_retry_or_give_up(c, true);
        }
    }

    /// Retries an idempotent write while attempts and time are left; otherwise ends the request
    /// without knowing its outcome.
    fn client_retry_or_give_up(&mut self, c: usize, unknown: bool) {
        let p = self.clients[c].cur.as_ref().expect("request");
        let idempotent = matches!(&p.op, ClientOp::Write { idem: Some(_), .. });
        if idempotent && p.attempts < MAX_ATTEMPTS && self.now < p.deadline {
            self.client_send_attempt(c);
            return;
        }
        match p.op {
            ClientOp::Write { .. } if unknown => self.stats.writes_unknown += 1,
            ClientOp::Write { .. } => self.stats.writes_failed += 1,
            ClientOp::Read { .. } => self.stats.reads_failed += 1,
        }
        self.client_finish(c);
    }

    fn client_finish(&mut self, c: usize) {
        self.trace(|| format!("client {c} ends its request"));
        let client = &mut self.clients[c];
        client.cur = None;
        client.finished += 1;
        let think = self.rng.random_range(MS..40 * MS);
        self.schedule(think, Ev::ClientNext(c));
    }

    fn client_recv(&mut self, c: usize, body: Body) {
        let Body::Answer { attempt, answer } = body else { panic!("client got {body:?}") };
        self.trace(|| format!("client {c} gets attempt {attempt}: {answer:?}"));
        let n = {
            let n = self.answers_received.entry(attempt).or_default();
            *n += 1;
            *n
        };
        if n > 1 {
            self.violation(format!("attempt {attempt} answered twice at the client"));
        }
        // 4: every answer of an idempotent write, late or not, carries the same version.
        if let Answer::Written(v) | Answer::Duplicate(v) = &answer {
            if let Some(idem) = self.attempt_idem.get(&attempt).cloned() {
                match self.idem_answers.get(&idem) {
                    Some(first) if first != v => self.violation(format!(
                        "{idem} answered {} after {}",
                        encode_version(v).escape_ascii(),
                        encode_version(first).escape_ascii()
                    )),
                    Some(_) => {}
                    None => {
                        self.idem_answers.insert(idem, v.clone());
                    }
                }
            }
        }
        let Some(p) = self.clients[c].cur.as_ref() else { return };
        if !p.sent.contains(&attempt) {
            return; // an answer to a request that already ended
        }
        let current = p.live == Some(attempt);
        let (key, wseq, issued_at) = match &p.op {
            ClientOp::Write { key, .. } | ClientOp::Read { key } => {
                (key.clone(), p.wseq, p.issued_at)
            }
        };
        match answer {
            Answer::Written(v) | Answer::Duplicate(v) => {
                let delete = matches!(p.op, ClientOp::Write { delete: true, .. });
                if seq_of(&v) != wseq || v.tombstone != delete {
                    self.violation(format!(
                        "write {key}#{wseq} answered with {}",
                        encode_version(&v).escape_ascii()
                    ));
                }
                self.stats.writes_acked += 1;
                let ledger = self.ledger.get_mut(&key).expect("key");
                ledger.acked.push((wseq, self.now, v.clock.clone()));
                self.clients[c].ctx.insert(key, v.clock);
                self.client_finish(c);
            }
            Answer::Read(v) => {
                self.stats.reads_ok += 1;
                self.check_read(&key, issued_at, v.as_ref(), "read");
                if owner_of(&key) == c {
                    if let Some(v) = v {
                        self.clients[c].ctx.insert(key, v.clock);
                    }
                }
                self.client_finish(c);
            }
            Answer::InProgress if current => {
                let p = self.clients[c].cur.as_mut().expect("request");
                p.live = None;
                let req_no = p.req_no;
                self.schedule(50 * MS, Ev::ClientRetry(c, req_no));
            }
            Answer::Failed(_) | Answer::Expired if current => {
                self.clients[c].cur.as_mut().expect("request").live = None;
                self.client_retry_or_give_up(c, false);
            }
            // A late "in progress" or failure of an earlier attempt: the current one decides.
            Answer::InProgress | Answer::Failed(_) | Answer::Expired => {}
        }
    }

    /// Property 1: a read issued at `issued_at` returns the newest write acked before it, or a
    /// later one the writer issued.
    fn check_read(&mut self, key: &str, issued_at: u64, v: Option<&Version>, what: &str) {
        let ledger = &self.ledger[key];
        let required = ledger.required(issued_at);
        let max = ledger.max_issued;
        let got = v.map_or(0, seq_of);
        if got < required {
            if self.world.tolerate_concurrent && !self.lost_to_ancestor(key, issued_at, v) {
                self.stats.concurrent_losses += 1;
                return;
            }
            self.violation(format!(
                "{what} of {key} issued at {} ms returned write {got}, but write {required} was \
                 acked before it (lost or reordered acked write)",
                issued_at / MS
            ));
        } else if got > max {
            self.violation(format!("{what} of {key} returned write {got}, never issued"));
        }
    }
}

impl Sim<'_> {
    /// Whether a read at `issued_at` returning `v` lost an acked write to a version that write
    /// descends from (its writer had seen it): never allowed, skew or not. Reading nothing
    /// after an ack, or a version never stamped, counts as such a loss too.
    fn lost_to_ancestor(&self, key: &str, issued_at: u64, v: Option<&Version>) -> bool {
        let Some(v) = v else { return true };
        let got = seq_of(v);
        let Some(stamped) = self.stamps.get(&(v.value.clone(), v.writer.clone(), v.timestamp_us))
        else {
            return true;
        };
        self.ledger[key]
            .acked
            .iter()
            .filter(|(seq, at, _)| *at < issued_at && *seq > got)
            .any(|(_, _, acked)| acked.descends(stamped))
    }
}

fn run_seed(world: &World, seed: u64) -> Result<(Stats, u64), String> {
    Sim::new(world, seed).run()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{name}={s}: not a number")))
}

/// Runs `SIM_SEED` alone, or `SIM_SEEDS` (default `default_seeds`) seeds from 0, and fails with
/// every failing seed and how to replay the first; returns the summed stats and whether it ran
/// the full set.
fn run_seeds(world: &World, default_seeds: u64, test: &str) -> (Stats, bool) {
    let single = env_u64("SIM_SEED");
    let seeds: Vec<u64> = match single {
        Some(s) => vec![s],
        None => (0..env_u64("SIM_SEEDS").unwrap_or(default_seeds)).collect(),
    };
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        match run_seed(world, seed) {
            Ok((stats, _)) => total.add(&stats),
            Err(e) => failures.push((seed, e)),
        }
    }
    eprintln!(
        "{test}: {} seeds in {:.2?}, {} failed; {total:?}",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    if let Some((seed, e)) = failures.first() {
        let all: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
        panic!(
            "{} of {} seeds failed: {all:?}\nfirst, seed {seed}:\n{e}\nreplay: SIM_SEED={seed} \
             cargo test --test sim {test} -- --nocapture (SIM_TRACE=1 to trace it)",
            failures.len(),
            seeds.len()
        );
    }
    (total, single.is_none())
}

#[test]
fn simulation() {
    let (total, full) = run_seeds(&World::new(), DEFAULT_SEEDS, "simulation");
    if full {
        // The run exercised what it claims to.
        assert!(total.writes_acked > 0 && total.reads_ok > 0, "{total:?}");
        assert!(total.writes_failed + total.writes_unknown > 0, "no write failed: {total:?}");
        assert!(total.duplicates > 0 && total.in_progress > 0, "{total:?}");
        assert!(total.expired > 0, "no attempt arrived past its deadline: {total:?}");
        assert!(total.repairs_done > 0 && total.hints_replayed > 0, "{total:?}");
        assert!(total.repairs_dropped > 0 && total.hints_dropped > 0, "no bound was hit");
        assert!(total.crashes > 0 && total.partitions > 0 && total.lost > 0, "{total:?}");
    }
}

/// Coordinator cores whose wall clocks disagree (core `c` runs `c * 50 ms` ahead). Last writer
/// wins then may lose an acked write to a concurrent one its writer never saw, stamped on a
/// clock ahead (the Dynamo caveat; counted, not failed). What must still hold: an acked write
/// never loses to a version it descends from, which needs `Stamper` to stamp no earlier than
/// the context (a hybrid logical clock); all other properties as in `simulation`.
#[test]
fn skewed_clocks_never_lose_a_write_to_its_ancestor() {
    let mut world = World::new();
    world.skew_us = 50_000;
    world.tolerate_concurrent = true;
    let (total, full) = run_seeds(&world, SKEW_SEEDS, "skewed_clocks");
    if full {
        assert!(total.concurrent_losses > 0, "the skew never mattered: {total:?}");
    }
}

#[test]
fn same_seed_same_run() {
    let world = World::new();
    let a = run_seed(&world, 7).expect("seed 7 passes");
    let b = run_seed(&world, 7).expect("seed 7 passes");
    assert_eq!(a.1, b.1, "seed 7 ran twice to different ends");
    assert_eq!(a.0.steps, b.0.steps);
}
