//! HTTP/2 attacks on the native server (`rpc.http2: native`), one test per attack.
//!
//! Each test starts one `pairdb storage` node (one core), keeps a normal client (our `Channel`,
//! its own connection) calling `HealthCheck` every 20 ms, runs one attack of
//! `tests/python/h2_attacks.py` (raw sockets, frames made by `hyperframe`, header blocks by hand,
//! replies decoded by `hpack`) and asserts:
//!
//! - the attacker got the defence's answer: the GOAWAY or RST_STREAM code, or HTTP 431;
//! - the node's memory stayed bounded: VmHWM (the peak RSS) after the attack minus VmRSS before
//!   it, against a bound stated per attack;
//! - the node did not spin: its CPU time (utime + stime) during the attack is at most the
//!   attack's wall time on one core, plus scheduler-tick slack, and it is idle again right after;
//! - the normal client's calls all succeeded, during the long attacks and after every attack;
//! - the defence's counter on the admin `/metrics` moved.
//!
//! The figures of every run are printed (`--nocapture` shows them). A missing python3 or
//! missing `h2`/`hyperframe`/`hpack` packages fails these tests with what to install: a skipped
//! attack test proves nothing.

mod common;

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{
    channel, output_with_timeout, repo_root, run_local, storage_path, StorageProcess, CALL_TIMEOUT,
};
use pairdb::proto::storage::{HealthCheckRequest, HealthCheckResponse};
use serde_json::Value;

const NATIVE: &str = "rpc:\n  http2: native\n";

/// GOAWAY / RST_STREAM codes (RFC 9113 §7).
const PROTOCOL_ERROR: u64 = 1;
const STREAM_CLOSED: u64 = 5;
const REFUSED_STREAM: u64 = 7;
const ENHANCE_YOUR_CALM: u64 = 11;

const MIB: u64 = 1 << 20;

/// The RSS bound of the flood attacks. What one attacked connection may hold: its read buffer
/// (64 KiB plus one frame), its unwritten output (4 MiB before it stops being read), one header
/// block (64 KiB), 1024 stream entries of a few hundred bytes, the recent-reset rings. Well under
/// 8 MiB; 32 MiB leaves room for the allocator keeping freed pages and for the debug build.
/// A leak per frame or per stream (tens of thousands of them here) would pass it easily.
const FLOOD_RSS_BOUND: u64 = 32 * MIB;

/// The RSS bound of the zero-window stall, whose replies of 1 MiB wait behind flow control as
/// the handlers' own buffers: up to `max_queued_bytes + max_output_bytes` (16 + 4 MiB) of them
/// (the server refuses what would pass that), one more taken while the backlog was under its
/// bound (1 MiB), the value the attack stores first (1 MiB, plus its copies in the write path),
/// and the 32 MiB of slack of the floods: 64 MiB. Without the bound the burst alone (150 replies
/// of 1 MiB) would queue 150 MiB.
const QUEUED_RSS_BOUND: u64 = 64 * MIB;

/// The RSS bound of the unread backlog, whose replies are copied into the connection's output
/// buffer (one `Vec`): its length stays under the same 20 MiB plus one reply, but a `Vec` grows by
/// doubling, so its capacity reaches 32 MiB and, while it moves from 16 to 32 MiB, both live
/// (48 MiB); plus the reply being copied (1 MiB), the stored value and the 32 MiB of slack: 96 MiB.
/// Without the bound the burst of 300 small requests, all read at once, would buffer 300 MiB.
const OUTPUT_RSS_BOUND: u64 = 96 * MIB;

/// CPU-tick granularity (10 ms at 100 Hz) on both readings, and the normal client's calls.
const CPU_SLACK_SECS: f64 = 0.3;

/// Most CPU the node may burn in the half second after an attack: it must be idle again.
const IDLE_CPU_SECS: f64 = 0.15;

/// One run: what the attacker saw, and what the node spent.
struct Outcome {
    report: Value,
    rss_before: u64,
    peak_growth: u64,
    calls_during: usize,
    calls_after: usize,
    metrics_before: String,
    metrics_after: String,
}

impl Outcome {
    /// How much the counter `name{labels}` grew during the attack.
    fn metric_delta(&self, name: &str, labels: &str) -> f64 {
        metric(&self.metrics_after, name, labels) - metric(&self.metrics_before, name, labels)
    }

    fn goaway(&self) -> Option<u64> {
        self.report["goaway"].as_u64()
    }

    fn rst(&self, code: u64) -> u64 {
        self.report["rst"][code.to_string()].as_u64().unwrap_or(0)
    }

    fn status(&self, status: &str) -> u64 {
        self.report["statuses"][status].as_u64().unwrap_or(0)
    }

    fn assert_rss_below(&self, bound: u64) {
        assert!(
            self.peak_growth < bound,
            "RSS grew by {} MiB (from {} MiB), over the bound of {} MiB; report {}",
            self.peak_growth / MIB,
            self.rss_before / MIB,
            bound / MIB,
            self.report
        );
    }
}

/// Runs `attack` against a fresh native node while a normal client calls it, and checks what
/// every attack must leave behind: no failed normal call, calls served after the attack, CPU
/// bounded and idle afterwards, the node alive.
fn attack(attack: &str, args: &[&str], timeout: Duration) -> Outcome {
    require_python_h2();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut node = StorageProcess::start_configured(
        &tmp.path().join("node"),
        &format!("attack-{attack}"),
        1,
        0,
        NATIVE,
    );
    let pid = node.pid();
    let client = NormalClient::start(node.addr);
    let metrics_before = scrape(node.admin);
    let rss_before = status_kib(pid, "VmRSS:") * 1024;
    let cpu_before = cpu_secs(pid);
    let started = Instant::now();

    let out = output_with_timeout(
        Command::new("python3")
            .arg(repo_root().join("tests/python/h2_attacks.py"))
            .arg(attack)
            .arg(node.addr.to_string())
            .args(args),
        timeout,
    );

    let ended = Instant::now();
    let cpu_used = cpu_secs(pid) - cpu_before;
    let wall_secs = ended.duration_since(started).as_secs_f64();
    let peak_growth = (status_kib(pid, "VmHWM:") * 1024).saturating_sub(rss_before);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "h2_attacks.py {attack} failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        out.status,
        node.log_tail()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("h2_attacks.py printed no JSON line ({e}):\n{stdout}"));

    // Idle again: the attacker is gone, only the normal client's calls remain.
    let idle_from = cpu_secs(pid);
    std::thread::sleep(Duration::from_millis(500));
    let idle_cpu_secs = cpu_secs(pid) - idle_from;
    let log = client.stop();
    node.assert_running();
    let metrics_after = scrape(node.admin);

    let outcome = Outcome {
        calls_during: log.ok.iter().filter(|t| **t >= started && **t <= ended).count(),
        calls_after: log.ok.iter().filter(|t| **t > ended).count(),
        report,
        rss_before,
        peak_growth,
        metrics_before,
        metrics_after,
    };
    eprintln!(
        "{attack}: rss before {} MiB, peak growth {:.1} MiB, cpu {:.2} s in {:.2} s wall, idle \
         cpu {:.2} s, normal calls {} during / {} after; attacker saw {}",
        rss_before / MIB,
        peak_growth as f64 / MIB as f64,
        cpu_used,
        wall_secs,
        idle_cpu_secs,
        outcome.calls_during,
        outcome.calls_after,
        outcome.report
    );
    assert!(
        log.errors.is_empty(),
        "the normal client's calls failed during {attack}: {:?}\nserver log:\n{}",
        log.errors,
        node.log_tail()
    );
    assert!(outcome.calls_after > 0, "no normal call succeeded after {attack}");
    // One core at most: the attack's wall time (which includes Python's start) on one core.
    assert!(
        cpu_used <= wall_secs + CPU_SLACK_SECS,
        "the node burnt {cpu_used:.2} s of CPU in {wall_secs:.2} s of {attack}"
    );
    assert!(
        idle_cpu_secs <= IDLE_CPU_SECS,
        "the node burnt {idle_cpu_secs:.2} s of CPU in the 0.5 s after {attack}: it spins"
    );
    outcome
}

#[test]
fn rapid_reset() {
    let o = attack("rapid_reset", &[], Duration::from_secs(30));
    // The reset budget: 4096 at once, 1024/s after that; then GOAWAY(ENHANCE_YOUR_CALM).
    assert_eq!(o.goaway(), Some(ENHANCE_YOUR_CALM), "{}", o.report);
    let opened = o.report["streams_opened"].as_u64().unwrap_or(0);
    assert!(opened > 4096, "the attacker stopped before the budget ran out: {}", o.report);
    assert!(o.metric_delta("pairdb_http2_stream_resets_total", "kind=\"peer\"") >= 4096.0);
    assert_eq!(
        o.metric_delta("pairdb_http2_connection_errors_total", "reason=\"reset_flood\""),
        1.0
    );
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn made_you_reset() {
    let o = attack("made_you_reset", &[], Duration::from_secs(30));
    // WINDOW_UPDATE of 0 on an open stream: RST_STREAM(PROTOCOL_ERROR); DATA after END_STREAM:
    // RST_STREAM(STREAM_CLOSED). Each costs a reset token; the budget ends the connection.
    assert!(o.rst(PROTOCOL_ERROR) > 0, "{}", o.report);
    assert!(o.rst(STREAM_CLOSED) > 0, "{}", o.report);
    assert_eq!(o.goaway(), Some(ENHANCE_YOUR_CALM), "{}", o.report);
    assert!(o.metric_delta("pairdb_http2_stream_resets_total", "kind=\"provoked\"") >= 4096.0);
    assert_eq!(
        o.metric_delta("pairdb_http2_connection_errors_total", "reason=\"reset_flood\""),
        1.0
    );
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn continuation_flood() {
    let o = attack("continuation_flood", &[], Duration::from_secs(30));
    // 1 KiB CONTINUATIONs: more than 16 of them ends the connection, whatever their size.
    assert_continuation_defence(&o);
}

#[test]
fn continuation_flood_zero_length() {
    let o = attack("continuation_zero", &[], Duration::from_secs(30));
    assert_continuation_defence(&o);
}

fn assert_continuation_defence(o: &Outcome) {
    assert_eq!(o.goaway(), Some(ENHANCE_YOUR_CALM), "{}", o.report);
    let sent = o.report["frames_sent"].as_u64().unwrap_or(0);
    // The GOAWAY came after at most 16 CONTINUATIONs (what was already in flight aside).
    assert!(o.report["goaway_debug"].as_str().unwrap_or_default().contains("header block"));
    assert!(sent >= 17, "{}", o.report);
    assert_eq!(
        o.metric_delta("pairdb_http2_connection_errors_total", "reason=\"continuation_flood\""),
        1.0
    );
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn hpack_bomb() {
    let o = attack("hpack_bomb", &[], Duration::from_secs(30));
    // 200 requests of 12,000 one-byte references to a 4 KiB table entry (48 MB decoded each):
    // each answered 431, the connection up, HPACK in sync (a normal call on it succeeds).
    let requests = o.report["requests"].as_u64().unwrap_or(0);
    assert_eq!(requests, 200, "{}", o.report);
    assert_eq!(o.status("431"), requests, "{}", o.report);
    assert_eq!(o.goaway(), None, "{}", o.report);
    assert_eq!(o.report["normal_call_after"], Value::Bool(true), "{}", o.report);
    assert_eq!(o.metric_delta("pairdb_http2_headers_too_large_total", ""), requests as f64);
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn header_list_too_large() {
    let o = attack("header_list", &[], Duration::from_secs(30));
    // 300 literal fields of 100 bytes (over both 256 fields and 16 KiB): 431 each, no GOAWAY.
    let requests = o.report["requests"].as_u64().unwrap_or(0);
    assert_eq!(requests, 100, "{}", o.report);
    assert_eq!(o.status("431"), requests, "{}", o.report);
    assert_eq!(o.goaway(), None, "{}", o.report);
    assert_eq!(o.report["normal_call_after"], Value::Bool(true), "{}", o.report);
    assert_eq!(o.metric_delta("pairdb_http2_headers_too_large_total", ""), requests as f64);
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn settings_flood() {
    let o = attack("settings_flood", &[], Duration::from_secs(30));
    assert_glitch_defence(&o);
}

#[test]
fn ping_flood() {
    let o = attack("ping_flood", &[], Duration::from_secs(30));
    assert_glitch_defence(&o);
}

#[test]
fn empty_data_flood() {
    let o = attack("empty_data_flood", &[], Duration::from_secs(30));
    assert_glitch_defence(&o);
}

/// The glitch budget: 1000 at once, 100/s after that; then GOAWAY(ENHANCE_YOUR_CALM).
fn assert_glitch_defence(o: &Outcome) {
    assert_eq!(o.goaway(), Some(ENHANCE_YOUR_CALM), "{}", o.report);
    assert!(o.report["frames_sent"].as_u64().unwrap_or(0) > 1000, "{}", o.report);
    assert!(o.metric_delta("pairdb_http2_glitches_total", "") >= 1000.0);
    assert_eq!(
        o.metric_delta("pairdb_http2_connection_errors_total", "reason=\"glitch_flood\""),
        1.0
    );
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn zero_window_stall() {
    // INITIAL_WINDOW_SIZE 0, a burst of 150 Reads of a 1 MiB value, then 16 more; held 3 s.
    let o = attack(
        "zero_window",
        &["--burst", "150", "--more", "16", "--hold", "3"],
        Duration::from_secs(40),
    );
    // The streams after the backlog grew are refused; the burst's replies over the backlog
    // bound are answered RESOURCE_EXHAUSTED (grpc-status 8) instead of being queued.
    assert!(o.rst(REFUSED_STREAM) >= 16, "{}", o.report);
    assert!(o.report["exhausted"].as_u64().unwrap_or(0) > 0, "{}", o.report);
    let started = o.report["replies_started"].as_u64().unwrap_or(0);
    assert!((16..=24).contains(&started), "replies held: {}", o.report);
    assert!(o.metric_delta("pairdb_http2_stream_resets_total", "kind=\"refused\"") >= 16.0);
    assert!(o.calls_during > 0, "no normal call was served during the stall");
    o.assert_rss_below(QUEUED_RSS_BOUND);
}

#[test]
fn outbound_backlog_unread() {
    // Windows wide open, a burst of 300 Reads of a 1 MiB value, then padded Reads until the
    // node stops reading; the attacker never reads its socket.
    let o = attack("backlog", &["--burst", "300", "--seconds", "4"], Duration::from_secs(40));
    assert_eq!(o.report["server_stopped_reading"], Value::Bool(true), "{}", o.report);
    assert!(o.calls_during > 0, "no normal call was served during the backlog");
    // No counter of its own: the defence is the bound on memory.
    o.assert_rss_below(OUTPUT_RSS_BOUND);
}

#[test]
fn stream_id_misuse() {
    let o = attack("stream_ids", &[], Duration::from_secs(30));
    let case = |name: &str| o.report["cases"][name]["goaway"].as_u64();
    assert_eq!(case("even"), Some(PROTOCOL_ERROR), "{}", o.report);
    assert_eq!(case("decreasing"), Some(PROTOCOL_ERROR), "{}", o.report);
    // A HEADERS on a stream that closed: a connection error of type STREAM_CLOSED (§5.1).
    assert_eq!(case("reused"), Some(STREAM_CLOSED), "{}", o.report);
    assert_eq!(o.metric_delta("pairdb_http2_connection_errors_total", "reason=\"protocol\""), 3.0);
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

#[test]
fn header_block_timeout() {
    // HEADERS without END_HEADERS, then silence: GOAWAY after the 10 s header timeout.
    let o = attack("header_timeout", &["--wait", "14"], Duration::from_secs(40));
    assert_eq!(o.goaway(), Some(ENHANCE_YOUR_CALM), "{}", o.report);
    let at = o.report["goaway_at"].as_f64().unwrap_or(0.0);
    // 10 s, plus the timer's and a busy core's lateness.
    assert!((9.5..13.5).contains(&at), "GOAWAY after {at} s: {}", o.report);
    assert!(o.calls_during > 0, "no normal call was served while the block was open");
    assert_eq!(o.metric_delta("pairdb_http2_connection_errors_total", "reason=\"timeout\""), 1.0);
    o.assert_rss_below(FLOOD_RSS_BOUND);
}

// ------------------------------------------------------------------------------------------------
// The normal client, the node's figures, Python.
// ------------------------------------------------------------------------------------------------

/// A client of our own on its own connection, calling HealthCheck every 20 ms.
struct NormalClient {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<CallLog>,
}

#[derive(Default)]
struct CallLog {
    ok: Vec<Instant>,
    errors: Vec<String>,
}

impl NormalClient {
    /// Starts calling, and returns once the first call succeeded.
    fn start(addr: SocketAddr) -> NormalClient {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            run_local(move || async move {
                let ch = channel(addr).await;
                let mut log = CallLog::default();
                while !flag.load(Ordering::Relaxed) {
                    let reply: Result<HealthCheckResponse, _> = ch
                        .unary(
                            &storage_path("HealthCheck"),
                            &HealthCheckRequest {},
                            Some(CALL_TIMEOUT),
                        )
                        .await;
                    match reply {
                        Ok(r) if r.status == "SERVING" => {
                            if log.ok.is_empty() {
                                let _ = ready_tx.send(());
                            }
                            log.ok.push(Instant::now());
                        }
                        Ok(r) => log.errors.push(format!("status {}", r.status)),
                        Err(e) => log.errors.push(e.to_string()),
                    }
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                log
            })
        });
        ready_rx.recv_timeout(CALL_TIMEOUT).expect("the normal client's first call");
        NormalClient { stop, thread }
    }

    fn stop(self) -> CallLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the normal client panicked")
    }
}

/// A `kB` line of /proc/PID/status, in KiB.
fn status_kib(pid: libc::pid_t, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// utime + stime of the process, in seconds.
fn cpu_secs(pid: libc::pid_t) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces): state is the first, utime the 12th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn scrape(admin: SocketAddr) -> String {
    let (status, text) = pairdb::admin::get(admin, "/metrics", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET /metrics on {admin}: {e}"));
    assert_eq!(status, 200, "/metrics answered {status}");
    text
}

/// Sums the samples of `name` whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Panics (never skips) when python3 or its HTTP/2 packages are missing.
fn require_python_h2() {
    let out = Command::new("python3").args(["-c", "import h2, hyperframe, hpack"]).output();
    let hint = "the HTTP/2 attack tests need python3 with h2, hyperframe and hpack: run \
                scripts/test, or `python3 -m pip install -r tests/python/requirements.txt`";
    match out {
        Err(e) => panic!("cannot run python3 ({e}); {hint}"),
        Ok(out) if !out.status.success() => {
            panic!("{hint}\npython3 said:\n{}", String::from_utf8_lossy(&out.stderr))
        }
        Ok(_) => {}
    }
}
