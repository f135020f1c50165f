//! What one executor counts, how executors' counts merge, and the final report.
//!
//! Latencies go into HdrHistograms in microseconds (1 µs to 60 s, 3 significant digits), one per
//! operation type, and are merged across executors before any percentile is taken: percentiles of
//! per-executor percentiles would be meaningless. Only replies (OK and misses) are recorded in the
//! histograms; failed calls are counted by gRPC status instead, so a burst of timeouts shows up as
//! errors rather than as a tail that hides the real service time.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use pairdb::rpc::Code;
use serde::{Deserialize, Serialize};

/// Largest latency the histograms hold; longer ones saturate to it.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// The operations the generator mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Read a key.
    Read = 0,
    /// Write a value.
    Write = 1,
    /// Delete a key.
    Delete = 2,
}

impl OpKind {
    /// All kinds, in report order.
    pub const ALL: [OpKind; 3] = [OpKind::Read, OpKind::Write, OpKind::Delete];

    /// Lowercase name used in the report.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Delete => "delete",
        }
    }
}

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An OK reply with the data asked for.
    Ok,
    /// The key was absent: NOT_FOUND from a coordinator, `found = false` (or a tombstone) from a
    /// storage node. Expected when reading keys that were never written, so not an error.
    Miss,
    /// Any other gRPC status, including client-side deadline and transport failures.
    Error(Code),
}

/// A fresh latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Counters and latencies of one operation type.
#[derive(Clone)]
pub struct OpStats {
    /// Latencies of replies (OK and misses), µs.
    pub latency_us: Histogram<u64>,
    /// OK replies.
    pub ok: u64,
    /// Misses (see [`Outcome::Miss`]).
    pub misses: u64,
    /// Failed calls by gRPC status code.
    pub errors: BTreeMap<i32, u64>,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats { latency_us: new_histogram(), ok: 0, misses: 0, errors: BTreeMap::new() }
    }

    fn record(&mut self, latency: Duration, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Miss => self.misses += 1,
            Outcome::Error(code) => {
                *self.errors.entry(code.0).or_default() += 1;
                return;
            }
        }
        self.latency_us.saturating_record(latency_us(latency));
    }

    fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides, so adding cannot fail.
        self.latency_us.add(&other.latency_us).expect("histograms share bounds");
        self.ok += other.ok;
        self.misses += other.misses;
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Everything one executor measured inside the measurement window.
#[derive(Clone)]
pub struct ThreadStats {
    /// Per operation type, indexed by `OpKind as usize`.
    pub ops: [OpStats; 3],
    /// Open loop: sends later than [`crate::schedule::LATE_AFTER`] after their intended time.
    pub late: u64,
    /// Open loop: the largest gap between intended and actual send.
    pub max_lag: Duration,
    /// Open loop: latencies of replies (OK and misses, every operation type) counted from the
    /// moment each call actually left rather than from its intended send time, µs. The gap to
    /// the operations' latencies is what the generator's own lateness adds to them.
    pub from_send_us: Histogram<u64>,
    /// Open loop: scheduled sends that never left because the generator was too far behind when
    /// the run ended.
    pub unsent: u64,
    /// Calls still unanswered when the drain gave up on them (neither replies nor errors).
    pub abandoned: u64,
    /// The first error message seen for each status code.
    pub error_samples: BTreeMap<i32, String>,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            ops: [OpStats::new(), OpStats::new(), OpStats::new()],
            late: 0,
            max_lag: Duration::ZERO,
            from_send_us: new_histogram(),
            unsent: 0,
            abandoned: 0,
            error_samples: BTreeMap::new(),
        }
    }
}

impl ThreadStats {
    /// Records one finished call.
    pub fn record(&mut self, kind: OpKind, latency: Duration, outcome: Outcome) {
        self.ops[kind as usize].record(latency, outcome);
    }

    /// Records one open-loop reply's latency counted from its actual send; errors are left out,
    /// as in the operations' latencies.
    pub fn record_from_send(&mut self, latency: Duration, outcome: Outcome) {
        if !matches!(outcome, Outcome::Error(_)) {
            self.from_send_us.saturating_record(latency_us(latency));
        }
    }

    /// Adds another executor's counts.
    pub fn merge(&mut self, other: &ThreadStats) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
        self.late += other.late;
        self.max_lag = self.max_lag.max(other.max_lag);
        self.from_send_us.add(&other.from_send_us).expect("histograms share bounds");
        self.unsent += other.unsent;
        self.abandoned += other.abandoned;
        for (code, message) in &other.error_samples {
            self.error_samples.entry(*code).or_insert_with(|| message.clone());
        }
    }
}

/// One second of one executor's progress: every call, warmup included.
pub struct Progress {
    /// Calls finished (any outcome).
    pub completed: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Latencies of replies, µs.
    pub latency_us: Histogram<u64>,
    /// Per operation type (indexed by `OpKind as usize`): calls finished, any outcome.
    pub op_completed: [u64; 3],
    /// Per operation type: calls that failed.
    pub op_errors: [u64; 3],
    /// Per operation type: latencies of replies, µs; allocated on the type's first reply.
    pub op_latency_us: [Option<Histogram<u64>>; 3],
    /// Failed calls by gRPC status code.
    pub errors_by_status: BTreeMap<i32, u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            completed: 0,
            errors: 0,
            latency_us: new_histogram(),
            op_completed: [0; 3],
            op_errors: [0; 3],
            op_latency_us: [None, None, None],
            errors_by_status: BTreeMap::new(),
        }
    }
}

impl Progress {
    /// Records one finished call.
    pub fn record(&mut self, kind: OpKind, latency: Duration, outcome: Outcome) {
        let k = kind as usize;
        self.completed += 1;
        self.op_completed[k] += 1;
        if let Outcome::Error(code) = outcome {
            self.errors += 1;
            self.op_errors[k] += 1;
            *self.errors_by_status.entry(code.0).or_default() += 1;
        } else {
            let us = latency_us(latency);
            self.latency_us.saturating_record(us);
            self.op_latency_us[k].get_or_insert_with(new_histogram).saturating_record(us);
        }
    }

    /// Adds another second's (or executor's) counts.
    pub fn merge(&mut self, other: &Progress) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.latency_us.add(&other.latency_us).expect("histograms share bounds");
        for k in 0..3 {
            self.op_completed[k] += other.op_completed[k];
            self.op_errors[k] += other.op_errors[k];
            if let Some(theirs) = &other.op_latency_us[k] {
                self.op_latency_us[k]
                    .get_or_insert_with(new_histogram)
                    .add(theirs)
                    .expect("histograms share bounds");
            }
        }
        for (code, n) in &other.errors_by_status {
            *self.errors_by_status.entry(*code).or_default() += n;
        }
    }
}

/// One operation type's part of one second of the timeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecondOp {
    /// Calls finished in the second, any outcome.
    pub completed: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Latencies of the second's replies.
    pub latency: Percentiles,
}

/// One second of the run, every executor merged: the report's per-second timeline.
///
/// A second counts the calls that *finished* in it (what the progress lines show), so the warmup
/// and the drain of calls sent just before the end are attributed by completion time, unlike the
/// totals, which count calls sent inside the measurement window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the load started (warmup included); this entry covers (second - 1, second].
    pub second: u64,
    /// Whether the second lies in the warmup.
    pub warmup: bool,
    /// Calls finished, any outcome.
    pub completed: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Failed calls by gRPC status name.
    pub errors_by_status: BTreeMap<String, u64>,
    /// Latencies of every reply of the second.
    pub latency: Percentiles,
    /// Per operation type that finished a call in the second.
    pub operations: BTreeMap<String, SecondOp>,
}

impl Second {
    /// Summarizes one merged second.
    pub fn of(second: u64, warmup: bool, p: &Progress) -> Second {
        let mut operations = BTreeMap::new();
        for kind in OpKind::ALL {
            let k = kind as usize;
            if p.op_completed[k] == 0 {
                continue;
            }
            let latency = match &p.op_latency_us[k] {
                Some(h) => Percentiles::of(h),
                None => Percentiles::of(&new_histogram()),
            };
            operations.insert(
                kind.name().to_owned(),
                SecondOp { completed: p.op_completed[k], errors: p.op_errors[k], latency },
            );
        }
        Second {
            second,
            warmup,
            completed: p.completed,
            errors: p.errors,
            errors_by_status: p
                .errors_by_status
                .iter()
                .map(|(code, n)| (Code(*code).name().into_owned(), *n))
                .collect(),
            latency: Percentiles::of(&p.latency_us),
            operations,
        }
    }
}

/// One point of a latency percentile curve.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub latency_us: u64,
}

/// The percentile curve of `h`: from the median to 99.999% in steps of a tenth of a "nine"
/// (`1 - 10^(-k/10)`), then the maximum (percentile 100). Empty when `h` is.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    // 1 - 10^-0.3 is 49.9%: start at the median itself instead.
    let quantiles =
        std::iter::once(0.5).chain((4..=50).map(|k| 1.0 - 10f64.powf(-k as f64 / 10.0)));
    let mut points: Vec<CurvePoint> = quantiles
        .map(|q| CurvePoint { percentile: q * 100.0, latency_us: h.value_at_quantile(q) })
        .collect();
    points.push(CurvePoint { percentile: 100.0, latency_us: h.max() });
    points
}

/// The percentile curves of a run: `all`, and each operation type that has replies.
pub fn percentile_curves(stats: &ThreadStats) -> BTreeMap<String, Vec<CurvePoint>> {
    let mut all = new_histogram();
    let mut curves = BTreeMap::new();
    for kind in OpKind::ALL {
        let h = &stats.ops[kind as usize].latency_us;
        all.add(h).expect("histograms share bounds");
        if !h.is_empty() {
            curves.insert(kind.name().to_owned(), percentile_curve(h));
        }
    }
    curves.insert("all".to_owned(), percentile_curve(&all));
    curves
}

fn latency_us(latency: Duration) -> u64 {
    (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

/// Latency percentiles of one operation type, µs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    /// Percentiles of `h`, zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles {
                p50_us: 0,
                p95_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
                mean_us: 0.0,
            };
        }
        Percentiles {
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// One operation type's part of the report.
#[derive(Debug, Serialize, Deserialize)]
pub struct OpReport {
    pub count: u64,
    pub ok: u64,
    pub misses: u64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub ok_per_sec: f64,
    pub latency: Percentiles,
}

/// Open-loop schedule keeping.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// Target rate, requests per second.
    pub target_rate: f64,
    /// Sends more than 1 ms after their intended time.
    pub late: u64,
    /// Largest send lag, µs.
    pub max_lag_us: u64,
    /// Scheduled sends that never left.
    pub unsent: u64,
    /// Latencies of every reply counted from its actual send instead of its intended send time:
    /// without the generator's own lateness (what an uncorrected, closed-loop style measurement
    /// would report). Absent in reports of older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_from_send: Option<Percentiles>,
}

/// The final report: the run's settings and what was measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub settings: serde_json::Value,
    /// Length of the measurement window, seconds (warmup excluded).
    pub measured_secs: f64,
    /// Calls finished in the window, any outcome.
    pub completed: u64,
    pub completed_per_sec: f64,
    pub ok: u64,
    pub ok_per_sec: f64,
    pub misses: u64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// The first message seen for each failing status.
    pub error_samples: BTreeMap<String, String>,
    /// Calls still unanswered when the drain gave up.
    pub abandoned: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleReport>,
    pub operations: BTreeMap<String, OpReport>,
    /// Every operation type's latencies merged.
    pub latency_all: Percentiles,
}

impl Report {
    /// Builds the report from the merged stats of every executor.
    pub fn build(
        settings: serde_json::Value,
        stats: &ThreadStats,
        measured: Duration,
        target_rate: Option<f64>,
    ) -> Report {
        let secs = measured.as_secs_f64().max(1e-9);
        let per_sec = |n: u64| (n as f64 / secs * 10.0).round() / 10.0;
        let mut all = new_histogram();
        let mut errors_by_status = BTreeMap::new();
        let mut operations = BTreeMap::new();
        let (mut ok, mut misses, mut errors) = (0, 0, 0);
        for kind in OpKind::ALL {
            let s = &stats.ops[kind as usize];
            all.add(&s.latency_us).expect("histograms share bounds");
            let by_status: BTreeMap<String, u64> =
                s.errors.iter().map(|(code, n)| (Code(*code).name().into_owned(), *n)).collect();
            for (name, n) in &by_status {
                *errors_by_status.entry(name.clone()).or_default() += n;
            }
            ok += s.ok;
            misses += s.misses;
            errors += s.error_count();
            let count = s.ok + s.misses + s.error_count();
            if count == 0 {
                continue;
            }
            operations.insert(
                kind.name().to_owned(),
                OpReport {
                    count,
                    ok: s.ok,
                    misses: s.misses,
                    errors: s.error_count(),
                    errors_by_status: by_status,
                    ok_per_sec: per_sec(s.ok),
                    latency: Percentiles::of(&s.latency_us),
                },
            );
        }
        let completed = ok + misses + errors;
        Report {
            settings,
            measured_secs: measured.as_secs_f64(),
            completed,
            completed_per_sec: per_sec(completed),
            ok,
            ok_per_sec: per_sec(ok),
            misses,
            errors,
            errors_by_status,
            error_samples: stats
                .error_samples
                .iter()
                .map(|(code, message)| (Code(*code).name().into_owned(), message.clone()))
                .collect(),
            abandoned: stats.abandoned,
            schedule: target_rate.map(|target_rate| ScheduleReport {
                target_rate,
                late: stats.late,
                max_lag_us: stats.max_lag.as_micros() as u64,
                unsent: stats.unsent,
                latency_from_send: Some(Percentiles::of(&stats.from_send_us)),
            }),
            operations,
            latency_all: Percentiles::of(&all),
        }
    }

    /// The report as text for a terminal.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "measured {:.1} s: {} calls ({:.0}/s), ok {} ({:.0}/s), misses {}, errors {}",
            self.measured_secs,
            self.completed,
            self.completed_per_sec,
            self.ok,
            self.ok_per_sec,
            self.misses,
            self.errors
        );
        if !self.errors_by_status.is_empty() {
            let list: Vec<String> =
                self.errors_by_status.iter().map(|(code, n)| format!("{code} {n}")).collect();
            let _ = writeln!(out, "errors by status: {}", list.join(", "));
            for (code, message) in &self.error_samples {
                let _ = writeln!(out, "  first {code}: {message}");
            }
        }
        if self.abandoned > 0 {
            let _ = writeln!(out, "abandoned at drain (no reply): {}", self.abandoned);
        }
        if let Some(s) = &self.schedule {
            let _ = writeln!(
                out,
                "schedule: target {:.0}/s, {} sends late by > 1 ms (max lag {:.3} ms), {} never sent",
                s.target_rate,
                s.late,
                s.max_lag_us as f64 / 1000.0,
                s.unsent
            );
            if let Some(l) = &s.latency_from_send {
                let _ = writeln!(
                    out,
                    "from the actual send (without the generator's lateness): p50 {:.3} p99 {:.3} \
                     p99.9 {:.3} max {:.3} ms",
                    l.p50_us as f64 / 1000.0,
                    l.p99_us as f64 / 1000.0,
                    l.p999_us as f64 / 1000.0,
                    l.max_us as f64 / 1000.0
                );
            }
        }
        let _ = writeln!(
            out,
            "{:<7} {:>10} {:>10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "count",
            "ok/s",
            "misses",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        let row = |out: &mut String,
                   name: &str,
                   count: u64,
                   ok_per_sec: f64,
                   misses: u64,
                   errors: u64,
                   p: &Percentiles| {
            let ms = |us: u64| us as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{name:<7} {count:>10} {ok_per_sec:>10.0} {misses:>8} {errors:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                ms(p.p50_us),
                ms(p.p95_us),
                ms(p.p99_us),
                ms(p.p999_us),
                ms(p.max_us)
            );
        };
        for (name, op) in &self.operations {
            row(&mut out, name, op.count, op.ok_per_sec, op.misses, op.errors, &op.latency);
        }
        row(
            &mut out,
            "all",
            self.completed,
            self.ok_per_sec,
            self.misses,
            self.errors,
            &self.latency_all,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_threads_give_one_histogram_and_status_counts() {
        let mut a = ThreadStats::default();
        let mut b = ThreadStats::default();
        for us in 1..=100 {
            a.record(OpKind::Read, Duration::from_micros(us), Outcome::Ok);
            b.record(OpKind::Read, Duration::from_micros(100 + us), Outcome::Miss);
        }
        a.record(OpKind::Write, Duration::from_secs(1), Outcome::Error(Code::UNAVAILABLE));
        b.record(OpKind::Write, Duration::from_secs(1), Outcome::Error(Code::UNAVAILABLE));
        b.record(OpKind::Write, Duration::from_micros(5), Outcome::Ok);
        a.merge(&b);
        let report = Report::build(serde_json::Value::Null, &a, Duration::from_secs(2), None);
        assert_eq!((report.completed, report.ok, report.misses, report.errors), (203, 101, 100, 2));
        assert_eq!(report.errors_by_status["UNAVAILABLE"], 2);
        let read = &report.operations["read"];
        assert_eq!(read.latency.p50_us, 100);
        assert_eq!(read.latency.max_us, 200);
        assert_eq!(read.ok_per_sec, 50.0);
        // Errors are counted, not timed: the write histogram holds the one OK reply.
        assert_eq!(report.operations["write"].latency.max_us, 5);
        assert!(!report.operations.contains_key("delete"));
        assert!(report.human().contains("UNAVAILABLE 2"));
    }

    #[test]
    fn latency_from_send_leaves_out_the_generators_lateness_and_the_errors() {
        // Two executors: each call waited 2 ms for its send, then took 300 µs to be answered.
        let (mut a, mut b) = (ThreadStats::default(), ThreadStats::default());
        for s in [&mut a, &mut b] {
            s.record(OpKind::Read, Duration::from_micros(2_300), Outcome::Ok);
            s.record_from_send(Duration::from_micros(300), Outcome::Ok);
            s.record(OpKind::Write, Duration::from_micros(2_300), Outcome::Miss);
            s.record_from_send(Duration::from_micros(300), Outcome::Miss);
            s.record(OpKind::Write, Duration::from_secs(1), Outcome::Error(Code::UNAVAILABLE));
            s.record_from_send(Duration::from_secs(1), Outcome::Error(Code::UNAVAILABLE));
        }
        a.merge(&b);
        let report = Report::build(serde_json::Value::Null, &a, Duration::from_secs(1), Some(4.0));
        let from_send = report.schedule.as_ref().and_then(|s| s.latency_from_send.clone());
        let from_send = from_send.expect("an open-loop report has latencies from the send");
        assert!((2_300..2_310).contains(&report.latency_all.max_us)); // 3 significant digits
        assert_eq!((from_send.p50_us, from_send.max_us), (300, 300));
        assert!(report.human().contains("from the actual send"));
        // A closed-loop report has no schedule, and a report of an older build reads back.
        let closed = Report::build(serde_json::Value::Null, &a, Duration::from_secs(1), None);
        assert!(closed.schedule.is_none());
        let mut json = serde_json::to_value(&report).unwrap();
        json["schedule"].as_object_mut().unwrap().remove("latency_from_send");
        let old: Report = serde_json::from_value(json).unwrap();
        assert!(old.schedule.unwrap().latency_from_send.is_none());
    }

    #[test]
    fn progress_keeps_operations_and_statuses_apart_and_a_second_summarizes_them() {
        let mut a = Progress::default();
        let mut b = Progress::default();
        for us in 1..=100 {
            a.record(OpKind::Read, Duration::from_micros(us), Outcome::Ok);
            b.record(OpKind::Write, Duration::from_micros(1000 + us), Outcome::Ok);
        }
        a.record(OpKind::Write, Duration::from_secs(1), Outcome::Error(Code::DEADLINE_EXCEEDED));
        b.record(OpKind::Read, Duration::from_millis(2), Outcome::Error(Code::UNAVAILABLE));
        b.record(OpKind::Read, Duration::from_millis(2), Outcome::Error(Code::UNAVAILABLE));
        a.merge(&b);
        let second = Second::of(3, false, &a);
        assert_eq!((second.second, second.completed, second.errors), (3, 203, 3));
        assert_eq!(second.errors_by_status["UNAVAILABLE"], 2);
        assert_eq!(second.errors_by_status["DEADLINE_EXCEEDED"], 1);
        let (read, write) = (&second.operations["read"], &second.operations["write"]);
        assert_eq!((read.completed, read.errors, read.latency.max_us), (102, 2, 100));
        assert_eq!((write.completed, write.errors, write.latency.p50_us), (101, 1, 1050));
        // Failed calls are not timed: the slow error does not reach the latencies.
        assert_eq!(second.latency.max_us, 1100);
        assert!(!second.operations.contains_key("delete"));
    }

    #[test]
    fn percentile_curve_rises_from_the_median_to_the_maximum() {
        let mut h = new_histogram();
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let curve = percentile_curve(&h);
        assert_eq!(curve.first().map(|p| p.latency_us), Some(h.value_at_quantile(0.5)));
        assert_eq!(curve.last().map(|p| (p.percentile, p.latency_us)), Some((100.0, h.max())));
        assert!(h.max() >= 10_000);
        assert!(curve.windows(2).all(|w| w[0].percentile < w[1].percentile));
        assert!(curve.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
        assert!(percentile_curve(&new_histogram()).is_empty());
        let mut stats = ThreadStats::default();
        stats.record(OpKind::Write, Duration::from_micros(7), Outcome::Ok);
        let curves = percentile_curves(&stats);
        assert_eq!(curves.keys().collect::<Vec<_>>(), ["all", "write"]);
    }
}
