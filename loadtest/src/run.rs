//! Running the load: one glommio executor per `--threads`, each with its share of the connections,
//! and the main thread printing progress and merging the results.
//!
//! ```text
//!   main thread                      executor t (pinned, one per allowed CPU)
//!   -----------                      ----------------------------------------
//!   spawn executors ───────────────▶ connect its connections
//!                                    barrier (all connected, or all give up)
//!                                    [prefill its share of the keys; barrier]
//!                                    start = shared instant; ticker sends Tick every second
//!   print a line per second ◀─────── closed loop: M workers per connection, send → reply → send
//!                                    open loop: send at start + offset(n), reply or not
//!                                    stop sending at warmup + duration; drain in-flight calls
//!   merge, report ◀───────────────── Done(stats)
//! ```
//!
//! Executors share nothing on the request path: each counts into its own `Rc<RefCell<..>>` and
//! ships whole histograms over a std channel once a second and once at the end. The only blocking
//! calls on an executor are the two barriers before any load starts.
//!
//! Every phase is bounded: connects time out (2 s), every call carries `--timeout`, sending stops
//! at the end of the window, and the drain waits at most `--timeout` plus [`DRAIN_SLACK`].

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Barrier, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use glommio::sync::Semaphore;
use pairdb::{
    rpc::{Channel, ClientConfig, Code, Status},
    runtime::pool::{self, PoolConfig},
};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::{
    schedule::{self, Schedule, LATE_AFTER},
    stats::{OpKind, Outcome, Progress, Second, ThreadStats},
    workload::{Mix, Target, Workload},
    zipf::KeyChooser,
};

/// Lead time between the last barrier and the first send, so every executor starts on time.
const START_LEAD: Duration = Duration::from_millis(20);
/// Least time between two reconnect attempts of one connection; failed calls in between fail fast
/// with UNAVAILABLE, and closed-loop workers pause this long so a dead server is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// How long past `--timeout` the drain waits for in-flight calls before abandoning them.
const DRAIN_SLACK: Duration = Duration::from_secs(1);
/// Writers per connection while prefilling.
const PREFILL_WORKERS_PER_CONNECTION: usize = 16;
/// Open loop: sends due before the end may still leave this long after it (a timer wakes a little
/// late); past it the generator gives up and counts the rest as never sent.
const SEND_GRACE: Duration = Duration::from_millis(10);
/// The open-loop generator yields to the reply tasks after this many back-to-back sends.
const SENDS_BETWEEN_YIELDS: u32 = 64;

/// A validated run configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub addrs: Vec<SocketAddr>,
    pub target: Target,
    pub tenant: String,
    pub key_prefix: String,
    pub threads: usize,
    pub connections: usize,
    /// Closed loop: outstanding calls per connection.
    pub inflight: usize,
    /// Open loop when set: total sends per second.
    pub rate: Option<f64>,
    /// Open loop: most outstanding calls per executor.
    pub max_inflight: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub keys: u64,
    pub chooser: KeyChooser,
    pub value_size: usize,
    pub mix: Mix,
    pub consistency: crate::workload::Consistency,
    pub timeout: Duration,
    pub prefill: bool,
    /// Send a fresh idempotency key with every coordinator write and delete.
    pub idempotency_keys: bool,
    pub spin_before_park: Duration,
    /// Open loop: wake for sends only at multiples of this (zero: at each send's own time).
    pub send_tick: Duration,
    /// Pin each executor to a CPU (`--no-pin` clears it).
    pub pin: bool,
    pub seed: u64,
    pub quiet: bool,
}

/// What an executor tells the main thread.
enum Msg {
    ConnectFailed { thread: usize, error: String },
    Prefilled { thread: usize, written: u64, errors: u64, took: Duration },
    Tick { second: u64, progress: Box<Progress> },
    Done { stats: Box<ThreadStats> },
}

/// State the executors share before the load starts.
struct Shared {
    barrier: Barrier,
    connect_failed: AtomicBool,
    start: OnceLock<Instant>,
}

/// The merged results of a run.
pub struct Outcomes {
    pub stats: ThreadStats,
    pub measured: Duration,
    /// One entry per whole second of the run, warmup included (so bounded by its length).
    pub timeline: Vec<Second>,
}

/// Runs the load described by `cfg` and returns the merged stats.
pub fn run(cfg: Config) -> anyhow::Result<Outcomes> {
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        barrier: Barrier::new(cfg.threads),
        connect_failed: AtomicBool::new(false),
        start: OnceLock::new(),
    });
    let (tx, rx) = mpsc::channel::<Msg>();
    let pool_cfg = PoolConfig {
        cores: cfg.threads,
        name: "loadtest".into(),
        spin_before_park: cfg.spin_before_park,
        pin: cfg.pin,
    };
    let entry_cfg = cfg.clone();
    let executors = std::thread::spawn(move || {
        pool::run_per_core(&pool_cfg, move |thread| {
            executor_main(thread, entry_cfg.clone(), shared.clone(), tx.clone())
        })
    });

    let mut merged = ThreadStats::default();
    let mut connect_error = None;
    let mut ticks = TickPrinter::new(&cfg);
    // Ends when every executor has finished and dropped its sender.
    for msg in rx {
        match msg {
            Msg::ConnectFailed { thread, error } => {
                eprintln!("executor {thread}: {error}");
                connect_error.get_or_insert(error);
            }
            Msg::Prefilled { thread, written, errors, took } => {
                if !cfg.quiet {
                    eprintln!(
                        "executor {thread}: prefilled {written} keys in {:.1} s ({errors} errors)",
                        took.as_secs_f64()
                    );
                }
            }
            Msg::Tick { second, progress } => ticks.add(second, *progress),
            Msg::Done { stats } => merged.merge(&stats),
        }
    }
    match executors.join() {
        Ok(result) => result?,
        Err(_) => bail!("an executor thread panicked"),
    }
    if let Some(error) = connect_error {
        bail!("could not connect to {:?}: {error}", cfg.addrs);
    }
    Ok(Outcomes { stats: merged, measured: cfg.duration, timeline: ticks.timeline })
}

/// Prints one line per second once every executor has reported that second.
struct TickPrinter {
    threads: usize,
    warmup: Duration,
    quiet: bool,
    pending: std::collections::BTreeMap<u64, (usize, Progress)>,
    so_far: Progress,
    in_warmup: bool,
    /// Every printed second, summarized (one per second of the run).
    timeline: Vec<Second>,
}

impl TickPrinter {
    fn new(cfg: &Config) -> TickPrinter {
        TickPrinter {
            threads: cfg.threads,
            warmup: cfg.warmup,
            quiet: cfg.quiet,
            pending: Default::default(),
            so_far: Progress::default(),
            in_warmup: !cfg.warmup.is_zero(),
            timeline: Vec::new(),
        }
    }

    fn add(&mut self, second: u64, progress: Progress) {
        let entry = self.pending.entry(second).or_insert_with(|| (0, Progress::default()));
        entry.0 += 1;
        entry.1.merge(&progress);
        while let Some(first) = self.pending.first_entry() {
            if first.get().0 < self.threads {
                break;
            }
            let (second, (_, progress)) = first.remove_entry();
            self.print(second, &progress);
        }
    }

    fn print(&mut self, second: u64, progress: &Progress) {
        // The tick at `second` covers (second - 1, second].
        let warmup = Duration::from_secs(second) <= self.warmup;
        if self.in_warmup && !warmup {
            self.in_warmup = false;
            self.so_far = Progress::default();
        }
        self.so_far.merge(progress);
        self.timeline.push(Second::of(second, warmup, progress));
        if self.quiet {
            return;
        }
        let p99_ms = |p: &Progress| {
            if p.latency_us.is_empty() {
                0.0
            } else {
                p.latency_us.value_at_quantile(0.99) as f64 / 1000.0
            }
        };
        // The second's worst call: a stall shows here even when it is too short to move a p99.
        let max_ms = progress.latency_us.max() as f64 / 1000.0;
        eprintln!(
            "[{second:>4} s] {:<6} {:>9} calls/s  {:>6} errors  p99 so far {:.3} ms (this second {:.3} ms, max {max_ms:.3} ms)",
            if warmup { "warmup" } else { "run" },
            progress.completed,
            progress.errors,
            p99_ms(&self.so_far),
            p99_ms(progress),
        );
    }
}

/// The absolute times of one run.
#[derive(Clone, Copy)]
struct Phases {
    start: Instant,
    measure_start: Instant,
    run_end: Instant,
}

/// One connection and its reconnect state.
struct Conn {
    addr: SocketAddr,
    channel: RefCell<Channel>,
    reconnecting: Cell<bool>,
    last_attempt: Cell<Instant>,
}

/// Everything an executor's tasks share.
struct Executor {
    cfg: Arc<Config>,
    client: ClientConfig,
    workload: Workload,
    rng: RefCell<SmallRng>,
    stats: RefCell<ThreadStats>,
    progress: RefCell<Progress>,
    phases: Cell<Option<Phases>>,
    in_flight: Cell<usize>,
}

impl Executor {
    /// Picks the next operation and key.
    fn next_request(&self) -> (OpKind, String) {
        let mut rng = self.rng.borrow_mut();
        let kind = self.cfg.mix.pick(rng.random_range(0..100));
        let key = self.workload.key(self.cfg.chooser.next(&mut *rng));
        (kind, key)
    }

    /// Makes one call on `conn`, reconnecting it first if it was lost.
    async fn call(&self, conn: &Conn, kind: OpKind, key: String) -> Outcome {
        let Some(channel) = self.channel(conn).await else {
            return self.failed(Status::unavailable("connection lost; waiting to reconnect"));
        };
        self.in_flight.set(self.in_flight.get() + 1);
        let reply = self.workload.call(&channel, kind, key).await;
        self.in_flight.set(self.in_flight.get() - 1);
        reply.unwrap_or_else(|status| self.failed(status))
    }

    /// Keeps the first message of each status code, so the report can say what went wrong.
    fn failed(&self, status: Status) -> Outcome {
        let mut stats = self.stats.borrow_mut();
        stats.error_samples.entry(status.code.0).or_insert_with(|| status.to_string());
        Outcome::Error(status.code)
    }

    /// Counts an open-loop reply's latency from its actual send, under the same window rule.
    fn record_from_send(&self, intended: Instant, latency: Duration, outcome: Outcome) {
        if self.in_window(intended) {
            self.stats.borrow_mut().record_from_send(latency, outcome);
        }
    }

    async fn channel(&self, conn: &Conn) -> Option<Channel> {
        let channel = conn.channel.borrow().clone();
        if !channel.is_closed() {
            return Some(channel);
        }
        if conn.reconnecting.get() || conn.last_attempt.get().elapsed() < RECONNECT_PAUSE {
            return None;
        }
        conn.reconnecting.set(true);
        conn.last_attempt.set(Instant::now());
        let fresh = Channel::connect(conn.addr, &self.client).await.ok();
        conn.reconnecting.set(false);
        if let Some(c) = &fresh {
            *conn.channel.borrow_mut() = c.clone();
        }
        fresh
    }

    /// Counts a finished call; only calls meant to start inside the window enter the stats.
    fn record(&self, kind: OpKind, started: Instant, latency: Duration, outcome: Outcome) {
        self.progress.borrow_mut().record(kind, latency, outcome);
        if self.in_window(started) {
            self.stats.borrow_mut().record(kind, latency, outcome);
        }
    }

    /// Whether a call meant to start at `started` belongs to the measurement window.
    fn in_window(&self, started: Instant) -> bool {
        self.phases.get().is_some_and(|p| started >= p.measure_start && started < p.run_end)
    }
}

async fn executor_main(
    thread: usize,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
) {
    let client = ClientConfig::default();
    let mut conns = Vec::new();
    for index in schedule::connections_of(thread, cfg.threads, cfg.connections) {
        let addr = cfg.addrs[index % cfg.addrs.len()];
        match Channel::connect(addr, &client).await {
            Ok(channel) => conns.push(Rc::new(Conn {
                addr,
                channel: RefCell::new(channel),
                reconnecting: Cell::new(false),
                last_attempt: Cell::new(Instant::now()),
            })),
            Err(status) => {
                shared.connect_failed.store(true, Ordering::SeqCst);
                let _ = tx.send(Msg::ConnectFailed { thread, error: status.to_string() });
                break;
            }
        }
    }
    // Blocking is fine here: no load is running yet, and every executor reaches this point
    // within the connect timeout.
    shared.barrier.wait();
    if shared.connect_failed.load(Ordering::SeqCst) {
        return;
    }
    let value: Vec<u8> = {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        (0..cfg.value_size).map(|_| rng.random()).collect()
    };
    let ex = Rc::new(Executor {
        workload: Workload::new(
            cfg.target,
            cfg.tenant.clone(),
            cfg.key_prefix.clone(),
            value.into(),
            cfg.consistency,
            cfg.timeout,
            thread,
        )
        .with_idempotency_keys(cfg.idempotency_keys.then(|| {
            // Unique across runs and executors: a key reused from an earlier run would be
            // answered as a duplicate without writing.
            format!("lt-{:x}-{thread}-", cfg.seed)
        })),
        rng: RefCell::new(SmallRng::seed_from_u64(
            cfg.seed ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )),
        client,
        stats: RefCell::new(ThreadStats::default()),
        progress: RefCell::new(Progress::default()),
        phases: Cell::new(None),
        in_flight: Cell::new(0),
        cfg: cfg.clone(),
    });
    if cfg.prefill {
        let began = Instant::now();
        let (written, errors) = prefill(&ex, &conns, thread).await;
        let _ = tx.send(Msg::Prefilled { thread, written, errors, took: began.elapsed() });
        shared.barrier.wait();
        *ex.progress.borrow_mut() = Progress::default();
    }
    let start = *shared.start.get_or_init(|| Instant::now() + START_LEAD);
    let phases = Phases {
        start,
        measure_start: start + cfg.warmup,
        run_end: start + cfg.warmup + cfg.duration,
    };
    ex.phases.set(Some(phases));
    let ticker = glommio::spawn_local(tick(ex.clone(), phases, tx.clone()));
    sleep_until(start).await;
    match cfg.rate {
        None => closed_loop(&ex, &conns, phases).await,
        Some(rate) => open_loop(&ex, &conns, phases, thread, rate).await,
    }
    ticker.await;
    let stats = Box::new(ex.stats.borrow().clone());
    let _ = tx.send(Msg::Done { stats });
}

/// Sends this second's progress, every second until the run ends.
async fn tick(ex: Rc<Executor>, phases: Phases, tx: mpsc::Sender<Msg>) {
    for second in 1.. {
        let at = phases.start + Duration::from_secs(second);
        if at > phases.run_end {
            break;
        }
        sleep_until(at).await;
        let progress = std::mem::take(&mut *ex.progress.borrow_mut());
        let _ = tx.send(Msg::Tick { second, progress: Box::new(progress) });
    }
}

/// `--inflight` workers per connection, each sending its next call when the last one returns.
async fn closed_loop(ex: &Rc<Executor>, conns: &[Rc<Conn>], phases: Phases) {
    let mut workers = Vec::new();
    for conn in conns {
        for _ in 0..ex.cfg.inflight {
            let (ex, conn) = (ex.clone(), conn.clone());
            workers.push(glommio::spawn_local(async move {
                loop {
                    let sent = Instant::now();
                    if sent >= phases.run_end {
                        break;
                    }
                    let (kind, key) = ex.next_request();
                    let outcome = ex.call(&conn, kind, key).await;
                    ex.record(kind, sent, sent.elapsed(), outcome);
                    if outcome == Outcome::Error(Code::UNAVAILABLE)
                        && conn.channel.borrow().is_closed()
                    {
                        glommio::timer::sleep(RECONNECT_PAUSE).await;
                    }
                }
            }));
        }
    }
    // Workers stop sending at the end of the run; then their last calls get the drain's time.
    // (Dropping a glommio task handle cancels the task, so this deadline must not come early.)
    let drain_end = phases.run_end + ex.cfg.timeout + DRAIN_SLACK;
    let drain = drain_end.saturating_duration_since(Instant::now());
    let drained = glommio::timer::timeout(drain, async {
        for w in workers {
            w.await;
        }
        Ok(())
    })
    .await;
    if drained.is_err() {
        abandon(ex);
    }
}

/// Sends on schedule, whether or not replies keep up; latency counts from the intended send time.
async fn open_loop(
    ex: &Rc<Executor>,
    conns: &[Rc<Conn>],
    phases: Phases,
    thread: usize,
    total_rate: f64,
) {
    let per_thread: Vec<usize> = (0..ex.cfg.threads)
        .map(|t| schedule::connections_of(t, ex.cfg.threads, ex.cfg.connections).len())
        .collect();
    let rate = schedule::split_rate(total_rate, &per_thread)[thread];
    let sched = Schedule::new(rate, schedule::phase(thread, total_rate));
    let sends = sched.scheduled_before(phases.run_end - phases.start);
    let warmup_sends = sched.scheduled_before(phases.measure_start - phases.start);
    let max_inflight = ex.cfg.max_inflight as u64;
    let slots = Rc::new(Semaphore::new(max_inflight));
    let (mut n, mut next_conn, mut since_yield) = (0u64, 0usize, 0u32);
    while n < sends {
        let offset = sched.offset(n);
        let intended = phases.start + offset;
        let now = Instant::now();
        if intended > now {
            let wake = phases.start + schedule::wake_at(offset, ex.cfg.send_tick);
            glommio::timer::sleep(wake - now).await;
            continue;
        }
        if now >= phases.run_end + SEND_GRACE {
            break;
        }
        // A full in-flight set makes the generator fall behind; the wait counts as latency.
        let permit = match slots.try_acquire_static_permit(1) {
            Ok(p) => p,
            Err(_) => {
                let wait = (phases.run_end + SEND_GRACE).saturating_duration_since(now);
                match glommio::timer::timeout(wait, slots.acquire_static_permit(1)).await {
                    Ok(p) => p,
                    Err(_) => break,
                }
            }
        };
        let lag = Instant::now().saturating_duration_since(intended);
        if n >= warmup_sends {
            let mut stats = ex.stats.borrow_mut();
            stats.late += u64::from(lag > LATE_AFTER);
            stats.max_lag = stats.max_lag.max(lag);
        }
        let (kind, key) = ex.next_request();
        let (ex2, conn) = (ex.clone(), conns[next_conn % conns.len()].clone());
        next_conn += 1;
        glommio::spawn_local(async move {
            let sent = Instant::now();
            let outcome = ex2.call(&conn, kind, key).await;
            ex2.record(kind, intended, intended.elapsed(), outcome);
            ex2.record_from_send(intended, sent.elapsed(), outcome);
            drop(permit);
        })
        .detach();
        n += 1;
        since_yield += 1;
        if since_yield >= SENDS_BETWEEN_YIELDS {
            since_yield = 0;
            glommio::yield_if_needed().await;
        }
    }
    ex.stats.borrow_mut().unsent += sends - n.max(warmup_sends).min(sends);
    let drain = ex.cfg.timeout + DRAIN_SLACK;
    if glommio::timer::timeout(drain, slots.acquire(max_inflight)).await.is_err() {
        abandon(ex);
    }
}

/// Counts calls still unanswered after the drain; they are reported apart from the errors.
fn abandon(ex: &Executor) {
    ex.stats.borrow_mut().abandoned += ex.in_flight.get() as u64;
}

/// Writes every key of this executor's connections once; returns (written, errors).
async fn prefill(ex: &Rc<Executor>, conns: &[Rc<Conn>], thread: usize) -> (u64, u64) {
    let cfg = &ex.cfg;
    let workers_per_conn = PREFILL_WORKERS_PER_CONNECTION.max(cfg.inflight);
    let stride = (cfg.connections * workers_per_conn) as u64;
    let counts = Rc::new(Cell::new((0u64, 0u64)));
    let mut tasks = Vec::new();
    for (i, global) in
        schedule::connections_of(thread, cfg.threads, cfg.connections).into_iter().enumerate()
    {
        for w in 0..workers_per_conn {
            let (ex, conn, counts) = (ex.clone(), conns[i].clone(), counts.clone());
            let first = (global * workers_per_conn + w) as u64;
            tasks.push(glommio::spawn_local(async move {
                let mut index = first;
                while index < ex.cfg.keys {
                    let key = ex.workload.key(index);
                    let outcome = ex.call(&conn, OpKind::Write, key).await;
                    // Read the counts only after the await: other workers add to them meanwhile.
                    let (ok, err) = counts.get();
                    counts.set(match outcome {
                        Outcome::Error(_) => (ok, err + 1),
                        _ => (ok + 1, err),
                    });
                    index += stride;
                }
            }));
        }
    }
    for t in tasks {
        t.await;
    }
    counts.get()
}

async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        glommio::timer::sleep(at - now).await;
    }
}
