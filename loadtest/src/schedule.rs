//! Open-loop send schedule: when each request is meant to leave, independent of replies.
//!
//! The total rate is split over the executors in proportion to their connections, and each
//! executor's schedule is shifted by `thread / total_rate` so the executors interleave instead of
//! firing together. Latency is measured from the *intended* send time, not the actual one: when the
//! generator falls behind (a slow server holds every in-flight slot), the wait counts against the
//! server, which is the coordinated-omission correction of wrk2 and HdrHistogram.
//!
//! Times are offsets from the run's start, so the math is pure and testable with made-up values.

use std::time::Duration;

/// A send later than this after its intended time counts as "late" in the report.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// One executor's evenly spaced send times.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    interval_ns: f64,
    phase_ns: f64,
}

impl Schedule {
    /// `rate_per_sec` sends a second, the first at `phase` after the start.
    pub fn new(rate_per_sec: f64, phase: Duration) -> Schedule {
        assert!(rate_per_sec > 0.0, "an open-loop schedule needs a positive rate");
        Schedule { interval_ns: 1e9 / rate_per_sec, phase_ns: phase.as_nanos() as f64 }
    }

    /// The intended send time of request `n` (0-based), as an offset from the start.
    pub fn offset(&self, n: u64) -> Duration {
        // Computed from n each time rather than accumulated, so rounding never drifts.
        Duration::from_nanos((self.phase_ns + n as f64 * self.interval_ns) as u64)
    }

    /// How many requests are scheduled strictly before `elapsed`.
    pub fn scheduled_before(&self, elapsed: Duration) -> u64 {
        let t = elapsed.as_nanos() as f64 - self.phase_ns;
        if t <= 0.0 {
            return 0;
        }
        let n = (t / self.interval_ns).ceil() as u64;
        // Float rounding can put the boundary one either way; settle it with `offset` itself.
        if n > 0 && self.offset(n - 1) >= elapsed {
            n - 1
        } else if self.offset(n) < elapsed {
            n + 1
        } else {
            n
        }
    }
}

/// When an executor waiting for a send meant at `intended` (an offset from the start) wakes:
/// at that time itself, or with a `tick`, at the next multiple of the tick, so that every send
/// falling due in one tick leaves together after a single wake-up. The latency still counts from
/// each send's intended time, so the wait for the tick is charged to the measured latency.
pub fn wake_at(intended: Duration, tick: Duration) -> Duration {
    let tick_ns = tick.as_nanos();
    if tick_ns == 0 {
        return intended;
    }
    let ns = intended.as_nanos().div_ceil(tick_ns) * tick_ns;
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Each executor's share of `total_rate`, in proportion to the connections it drives.
pub fn split_rate(total_rate: f64, connections_per_thread: &[usize]) -> Vec<f64> {
    let total: usize = connections_per_thread.iter().sum();
    connections_per_thread.iter().map(|&c| total_rate * c as f64 / total.max(1) as f64).collect()
}

/// Executor `thread`'s offset: one total-rate interval per executor, so sends interleave.
pub fn phase(thread: usize, total_rate: f64) -> Duration {
    Duration::from_nanos((thread as f64 * 1e9 / total_rate) as u64)
}

/// Connections of `thread` when `connections` are dealt round-robin over `threads` executors.
pub fn connections_of(thread: usize, threads: usize, connections: usize) -> Vec<usize> {
    (0..connections).filter(|c| c % threads == thread).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_evenly_spaced_after_the_phase() {
        let s = Schedule::new(1000.0, Duration::from_micros(250));
        //          n   offset
        for (n, us) in [(0, 250), (1, 1250), (2, 2250), (1000, 1_000_250)] {
            assert_eq!(s.offset(n), Duration::from_micros(us), "n={n}");
        }
    }

    #[test]
    fn a_tick_wakes_at_its_next_multiple_and_no_tick_at_the_send_itself() {
        let us = Duration::from_micros;
        assert_eq!(wake_at(us(1_234), Duration::ZERO), us(1_234));
        assert_eq!(wake_at(us(1_234), us(500)), us(1_500));
        assert_eq!(wake_at(us(1_500), us(500)), us(1_500));
        assert_eq!(wake_at(us(1_501), us(500)), us(2_000));
        assert_eq!(wake_at(Duration::ZERO, us(500)), Duration::ZERO);
        // Ten sends 100 µs apart with a 500 µs tick: two wake-ups, five sends each.
        let sched = Schedule::new(10_000.0, us(50));
        let wakes: std::collections::BTreeSet<_> =
            (0..10).map(|n| wake_at(sched.offset(n), us(500))).collect();
        assert_eq!(wakes.into_iter().collect::<Vec<_>>(), [us(500), us(1_000)]);
    }

    #[test]
    fn scheduled_before_counts_strictly_earlier_sends() {
        let s = Schedule::new(1000.0, Duration::ZERO);
        //     elapsed_us  scheduled
        for (us, want) in [(0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (10_000_000, 10_000)] {
            assert_eq!(s.scheduled_before(Duration::from_micros(us)), want, "at {us} us");
        }
        let shifted = Schedule::new(1000.0, Duration::from_micros(500));
        assert_eq!(shifted.scheduled_before(Duration::from_micros(500)), 0);
        assert_eq!(shifted.scheduled_before(Duration::from_micros(501)), 1);
    }

    #[test]
    fn scheduled_before_agrees_with_offset_at_awkward_rates() {
        for rate in [3.0, 7.0, 33_333.0, 123_457.0] {
            let s = Schedule::new(rate, Duration::from_nanos(17));
            for n in [1u64, 2, 999, 123_456] {
                let at = s.offset(n);
                assert_eq!(s.scheduled_before(at), n, "rate {rate}, n {n}");
                assert_eq!(s.scheduled_before(at + Duration::from_nanos(1)), n + 1);
            }
        }
    }

    #[test]
    fn split_schedules_add_up_to_the_total_rate() {
        let total_rate = 10_000.0;
        let per_thread = connections_of(0, 3, 8).len();
        assert_eq!(per_thread, 3);
        let conns: Vec<usize> = (0..3).map(|t| connections_of(t, 3, 8).len()).collect();
        assert_eq!(conns, [3, 3, 2]);
        let rates = split_rate(total_rate, &conns);
        assert!((rates.iter().sum::<f64>() - total_rate).abs() < 1e-6);
        let window = Duration::from_secs(10);
        let sent: u64 = rates
            .iter()
            .enumerate()
            .map(|(t, &r)| Schedule::new(r, phase(t, total_rate)).scheduled_before(window))
            .sum();
        assert!(sent.abs_diff(100_000) <= 3, "{sent}");
    }

    #[test]
    fn phases_interleave_executors() {
        assert_eq!(phase(0, 1000.0), Duration::ZERO);
        assert_eq!(phase(3, 1000.0), Duration::from_millis(3));
    }
}
