//! What the foreground traffic feels, for background work that must not hurt it: every core
//! records each key-value operation's latency and its executor's poll lag into its own slot of
//! atomic log-scale buckets, and a reader (the migration pacer, `core::migration::pace`) sums the
//! slots into a [`Snapshot`] and takes the difference of two snapshots as a window.
//!
//! Each slot is written by its own core only (a relaxed, uncontended `fetch_add`), so recording
//! takes no lock and shares no cache line with another core's writes. The buckets are a quarter
//! of an octave wide: a p99 read from them is at most 25% high, never low.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Exact buckets below this many microseconds.
const LINEAR: usize = 16;
/// Buckets in all: 16 exact ones, then four per octave from 16 µs to 2^38 µs.
pub const BUCKETS: usize = LINEAR + 4 * 34;

/// Process-wide foreground latency: one slot per core.
pub struct Foreground {
    slots: Box<[Slot]>,
}

#[repr(align(64))]
struct Slot {
    ops: [AtomicU64; BUCKETS],
    lag: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            ops: std::array::from_fn(|_| AtomicU64::new(0)),
            lag: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Foreground {
    /// Slots for `cores` cores.
    pub fn new(cores: usize) -> Self {
        Self { slots: (0..cores.max(1)).map(|_| Slot::new()).collect() }
    }

    /// A key-value operation on `core` took `took`.
    pub fn record_op(&self, core: usize, took: Duration) {
        if let Some(s) = self.slots.get(core) {
            s.ops[bucket(took)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `core`'s executor ran a task `late` after it asked to.
    pub fn record_lag(&self, core: usize, late: Duration) {
        if let Some(s) = self.slots.get(core) {
            s.lag[bucket(late)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Everything recorded so far, summed over the cores.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot { ops: [0; BUCKETS], lag: [0; BUCKETS] };
        for s in self.slots.iter() {
            for i in 0..BUCKETS {
                snap.ops[i] += s.ops[i].load(Ordering::Relaxed);
                snap.lag[i] += s.lag[i].load(Ordering::Relaxed);
            }
        }
        snap
    }
}

/// Cumulative bucket counts at one moment.
#[derive(Clone)]
pub struct Snapshot {
    ops: [u64; BUCKETS],
    lag: [u64; BUCKETS],
}

/// What happened between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// Operations completed.
    pub ops: u64,
    /// Their p99 (a bucket's upper bound).
    pub p99: Duration,
    /// The p99 of the poll-lag samples.
    pub lag_p99: Duration,
}

impl Snapshot {
    /// The window from `earlier` to `self`.
    pub fn since(&self, earlier: &Snapshot) -> Delta {
        let diff = |a: &[u64; BUCKETS], b: &[u64; BUCKETS]| -> [u64; BUCKETS] {
            std::array::from_fn(|i| a[i].saturating_sub(b[i]))
        };
        let ops = diff(&self.ops, &earlier.ops);
        let lag = diff(&self.lag, &earlier.lag);
        Delta { ops: ops.iter().sum(), p99: quantile(&ops, 0.99), lag_p99: quantile(&lag, 0.99) }
    }
}

/// The bucket of `d`, in microseconds: exact below 16, else a quarter octave.
fn bucket(d: Duration) -> usize {
    let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
    if us < LINEAR as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 4
    let sub = ((us >> (octave - 2)) & 3) as usize;
    (LINEAR + (octave - 4) * 4 + sub).min(BUCKETS - 1)
}

/// The largest value bucket `i` holds, µs.
fn upper(i: usize) -> u64 {
    if i < LINEAR {
        return i as u64;
    }
    let (octave, sub) = (4 + (i - LINEAR) / 4, ((i - LINEAR) % 4) as u64);
    ((5 + sub) << (octave - 2)) - 1
}

/// The `q` quantile of bucket counts (zero when empty).
fn quantile(counts: &[u64; BUCKETS], q: f64) -> Duration {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Duration::ZERO;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Duration::from_micros(upper(i));
        }
    }
    Duration::from_micros(upper(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_and_are_at_most_a_quarter_wide() {
        for us in [0u64, 1, 15, 16, 17, 19, 20, 99, 100, 1_000, 12_345, 1_000_000, 60_000_000] {
            let b = bucket(Duration::from_micros(us));
            assert!(upper(b) >= us, "{us} µs above its bucket's upper bound {}", upper(b));
            assert!(b == 0 || upper(b - 1) < us, "{us} µs belongs in an earlier bucket");
            assert!(
                upper(b) as f64 <= (us as f64 * 1.25).max(us as f64 + 1.0),
                "{us}: {}",
                upper(b)
            );
        }
        assert_eq!(bucket(Duration::from_secs(1 << 40)), BUCKETS - 1);
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots_summed_over_cores() {
        let f = Foreground::new(2);
        for _ in 0..1000 {
            f.record_op(0, Duration::from_micros(500));
        }
        let before = f.snapshot();
        for _ in 0..98 {
            f.record_op(0, Duration::from_micros(1_000));
        }
        f.record_op(1, Duration::from_millis(40));
        f.record_op(1, Duration::from_millis(80));
        f.record_lag(1, Duration::from_millis(3));
        let d = f.snapshot().since(&before);
        assert_eq!(d.ops, 100);
        // The 99th of 100 values is the 40 ms one.
        assert!(d.p99 >= Duration::from_millis(40) && d.p99 <= Duration::from_millis(50));
        assert!(d.lag_p99 >= Duration::from_millis(3) && d.lag_p99 < Duration::from_millis(4));
        // A core index out of range is ignored, not a panic.
        f.record_op(7, Duration::from_millis(1));
        assert_eq!(f.snapshot().since(&f.snapshot()).ops, 0);
    }
}
