//! How fast a migration (or anti-entropy) may stream, decided from what the foreground traffic
//! feels: the [`Pacer`]. Pure: it is fed windows of foreground latency and page latencies, and
//! answers with a byte rate, or a pause.
//!
//! # The rule
//!
//! 1. **Calibrate.** With nothing streaming, the pacer watches [`PaceConfig::calibration_windows`]
//!    windows of foreground traffic and keeps the median of their p99 latency as the baseline
//!    (the same for the executors' poll lag). Streams are paused meanwhile.
//! 2. **Stream, additive-increase / multiplicative-decrease.** After each window:
//!    - a window whose foreground p99 (or poll-lag p99) is above the baseline times
//!      `1 + tolerance`, plus [`PaceConfig::slack`], halves the rate (never below the floor);
//!    - any other window raises the rate by a quarter, but to no more than twice what the
//!      streams actually moved in that window (so that the rate stays a real limit and a backoff
//!      bites at once, not after the rate has fallen from a cap the streams never reached), and
//!      never above the cap;
//!    - a window with fewer than [`PaceConfig::min_ops`] foreground operations has no
//!      foreground to protect: it counts as good.
//! 3. **Recalibrate.** The foreground may change while a migration runs (a load shift, a
//!    compaction), so every [`PaceConfig::recalibrate_every`] windows the pacer pauses the
//!    streams and measures the baseline again.
//!
//! A target's page slower than the configured backoff latency halves the rate as well (the
//! target is the node the foreground shares with the streams). The floor keeps every migration
//! moving, however busy the foreground: a migration must finish well inside the tombstone grace.

use std::time::Duration;

/// The pacer's settings.
#[derive(Clone, Debug)]
pub struct PaceConfig {
    /// Highest rate, bytes per second.
    pub cap: f64,
    /// Lowest rate, bytes per second: the migration always progresses at least this fast.
    pub floor: f64,
    /// How far above the baseline the foreground p99 may go before the rate halves (0.25: 25%).
    pub tolerance: f64,
    /// Added to the allowed p99: below this, a rise is noise, not harm.
    pub slack: Duration,
    /// Windows measured, streams paused, for a baseline.
    pub calibration_windows: u32,
    /// Streaming windows between two calibrations.
    pub recalibrate_every: u32,
    /// Fewer foreground operations than this in a window: nothing to protect.
    pub min_ops: u64,
    /// How long a window lasts (to turn the bytes streamed in one into a rate).
    pub window: Duration,
}

impl PaceConfig {
    /// The defaults for a cap, a floor and a tolerance: four windows of calibration, one every
    /// 120 streaming windows (a minute at the coordinator's 500 ms window), 1 ms of slack and 50
    /// operations per window.
    pub fn new(cap: f64, floor: f64, tolerance: f64) -> Self {
        let cap = cap.max(1.0);
        Self {
            cap,
            floor: floor.clamp(1.0, cap),
            tolerance: tolerance.max(0.0),
            slack: Duration::from_millis(1),
            calibration_windows: 4,
            recalibrate_every: 120,
            min_ops: 50,
            window: Duration::from_millis(500),
        }
    }
}

/// One window of foreground traffic, and what the streams moved in it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    /// Foreground operations completed in the window.
    pub ops: u64,
    /// Their p99 latency.
    pub p99: Duration,
    /// The p99 of the executors' poll lag in the window (queueing before a request runs).
    pub lag_p99: Duration,
    /// Bytes the streams moved in the window.
    pub streamed: u64,
}

/// What a window did to the rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Still calibrating (streams paused).
    Calibrating,
    /// Calibration ended with these baselines (p99, poll-lag p99); streams resume.
    Calibrated { p99: Duration, lag_p99: Duration },
    /// The foreground suffered: the rate halved.
    Backoff,
    /// The foreground is fine: the rate grew (or stayed at its cap).
    Increase,
}

#[derive(Clone, Debug)]
enum Mode {
    Calibrating { p99s: Vec<Duration>, lags: Vec<Duration>, seen: u32 },
    Streaming { windows: u32 },
}

/// The foreground-driven rate of one migration's streams; see the module doc.
#[derive(Clone, Debug)]
pub struct Pacer {
    cfg: PaceConfig,
    rate: f64,
    mode: Mode,
    baseline: Option<(Duration, Duration)>,
    backoffs: u64,
    /// No foreground windows come: a fast page wins back a sixteenth of the cap instead.
    unpaced: bool,
}

impl Pacer {
    /// A pacer that calibrates first, then starts at four times the floor.
    pub fn new(cfg: PaceConfig) -> Self {
        let rate = (cfg.floor * 4.0).min(cfg.cap);
        Self { cfg, rate, mode: calibrating(), baseline: None, backoffs: 0, unpaced: false }
    }

    /// A pacer fed no foreground windows: it starts at the cap, a slow page halves the rate and
    /// each fast one wins back a sixteenth of the cap.
    pub fn unpaced(cfg: PaceConfig) -> Self {
        let rate = cfg.cap;
        let mode = Mode::Streaming { windows: 0 };
        Self { cfg, rate, mode, baseline: None, backoffs: 0, unpaced: true }
    }

    /// The current rate, bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// True while calibrating: streams must not send.
    pub fn paused(&self) -> bool {
        matches!(self.mode, Mode::Calibrating { .. })
    }

    /// The baselines of the last calibration (p99, poll-lag p99), once there was one.
    pub fn baseline(&self) -> Option<(Duration, Duration)> {
        self.baseline
    }

    /// Rate halvings so far.
    pub fn backoffs(&self) -> u64 {
        self.backoffs
    }

    /// The foreground latency the pacer protects: above this p99 (and the matching poll lag) it
    /// backs off. `None` before the first calibration.
    pub fn limits(&self) -> Option<(Duration, Duration)> {
        self.baseline.map(|(p99, lag)| (self.allowed(p99), self.allowed(lag)))
    }

    fn allowed(&self, base: Duration) -> Duration {
        base.mul_f64(1.0 + self.cfg.tolerance) + self.cfg.slack
    }

    /// Feeds one window; see the module doc.
    pub fn on_window(&mut self, w: Window) -> Verdict {
        match &mut self.mode {
            Mode::Calibrating { p99s, lags, seen } => {
                *seen += 1;
                if w.ops >= self.cfg.min_ops {
                    p99s.push(w.p99);
                    lags.push(w.lag_p99);
                }
                // Enough windows, or twice as many without enough traffic to measure: with no
                // foreground there is nothing to protect, and a zero baseline says so.
                let enough = p99s.len() as u32 >= self.cfg.calibration_windows
                    || *seen >= 2 * self.cfg.calibration_windows;
                if !enough {
                    return Verdict::Calibrating;
                }
                let (p99, lag_p99) = (median(p99s), median(lags));
                self.baseline = Some((p99, lag_p99));
                self.mode = Mode::Streaming { windows: 0 };
                Verdict::Calibrated { p99, lag_p99 }
            }
            Mode::Streaming { windows } => {
                *windows += 1;
                if *windows >= self.cfg.recalibrate_every {
                    self.mode = calibrating();
                }
                let hurt = w.ops >= self.cfg.min_ops
                    && self.limits().is_some_and(|(p99, lag)| w.p99 > p99 || w.lag_p99 > lag);
                if hurt {
                    self.back_off();
                    return Verdict::Backoff;
                }
                let grown = self.rate * 1.25;
                let moved_per_sec = w.streamed as f64 / self.cfg.window.as_secs_f64().max(1e-3);
                let reach = (2.0 * moved_per_sec).max(self.cfg.floor * 4.0);
                self.rate = grown.min(reach).min(self.cfg.cap).max(self.cfg.floor);
                Verdict::Increase
            }
        }
    }

    /// A page's write to its target took `latency`; above `backoff_latency` the rate halves.
    pub fn on_page(&mut self, latency: Duration, backoff_latency: Duration) -> bool {
        if latency > backoff_latency {
            self.back_off();
            return true;
        }
        if self.unpaced {
            self.rate = (self.rate + self.cfg.cap / 16.0).min(self.cfg.cap);
        }
        false
    }

    fn back_off(&mut self) {
        self.backoffs += 1;
        self.rate = (self.rate / 2.0).max(self.cfg.floor);
    }
}

fn calibrating() -> Mode {
    Mode::Calibrating { p99s: Vec::new(), lags: Vec::new(), seen: 0 }
}

/// The median (the upper one of an even count); zero for none.
fn median(v: &mut [Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn window(ops: u64, p99_ms: u64, streamed: u64) -> Window {
        Window { ops, p99: MS * p99_ms as u32, lag_p99: MS, streamed }
    }

    fn calibrated(p99_ms: u64) -> Pacer {
        let mut p = Pacer::new(PaceConfig::new(64e6, 256e3, 0.25));
        for _ in 0..3 {
            assert_eq!(p.on_window(window(1000, p99_ms, 0)), Verdict::Calibrating);
            assert!(p.paused());
        }
        assert!(matches!(p.on_window(window(1000, p99_ms, 0)), Verdict::Calibrated { .. }));
        assert!(!p.paused());
        p
    }

    #[test]
    fn the_baseline_is_the_median_of_the_calibration_windows() {
        let mut p = Pacer::new(PaceConfig::new(64e6, 256e3, 0.25));
        for ms in [10, 2, 3] {
            p.on_window(window(1000, ms, 0));
        }
        let v = p.on_window(window(1000, 4, 0));
        assert_eq!(v, Verdict::Calibrated { p99: 4 * MS, lag_p99: MS });
        // 4 ms * 1.25 + 1 ms slack.
        assert_eq!(p.limits().unwrap().0, 6 * MS);
    }

    #[test]
    fn a_hurt_foreground_halves_the_rate_down_to_the_floor_and_never_below() {
        let mut p = calibrated(4);
        let start = p.rate();
        assert_eq!(p.on_window(window(1000, 7, 0)), Verdict::Backoff);
        assert_eq!(p.rate(), start / 2.0);
        for _ in 0..20 {
            p.on_window(window(1000, 50, 0));
        }
        assert_eq!(p.rate(), 256e3);
        assert_eq!(p.backoffs(), 21);
    }

    #[test]
    fn a_poll_lag_rise_alone_backs_off_too() {
        let mut p = calibrated(4);
        let w = Window { ops: 1000, p99: 4 * MS, lag_p99: 5 * MS, streamed: 0 };
        assert_eq!(p.on_window(w), Verdict::Backoff);
    }

    #[test]
    fn the_rate_grows_only_up_to_twice_what_the_streams_moved_and_the_cap() {
        let mut p = calibrated(4);
        // The streams moved 1 MB in the half-second window, 2 MB/s: the rate may not run past
        // 4 MB/s.
        for _ in 0..50 {
            assert_eq!(p.on_window(window(1000, 4, 1_000_000)), Verdict::Increase);
        }
        assert_eq!(p.rate(), 4e6);
        // Streams that keep up with the rate let it grow by a quarter per window.
        let r = p.rate();
        p.on_window(window(1000, 4, (r / 2.0) as u64));
        assert_eq!(p.rate(), r * 1.25);
        // Moving 100 MB a window, the cap holds.
        for _ in 0..50 {
            p.on_window(window(1000, 4, 100_000_000));
        }
        assert_eq!(p.rate(), 64e6);
    }

    #[test]
    fn a_window_without_foreground_is_good_and_no_foreground_calibrates_to_zero() {
        let mut p = Pacer::new(PaceConfig::new(64e6, 256e3, 0.25));
        for _ in 0..7 {
            assert_eq!(p.on_window(window(3, 100, 0)), Verdict::Calibrating);
        }
        assert_eq!(
            p.on_window(window(3, 100, 0)),
            Verdict::Calibrated { p99: Duration::ZERO, lag_p99: Duration::ZERO }
        );
        assert_eq!(p.on_window(window(3, 100, 10_000_000)), Verdict::Increase);
    }

    #[test]
    fn it_recalibrates_after_the_configured_number_of_windows() {
        let mut p = calibrated(4);
        for _ in 0..119 {
            p.on_window(window(1000, 4, 1_000_000));
            assert!(!p.paused());
        }
        p.on_window(window(1000, 4, 1_000_000));
        assert!(p.paused());
        for _ in 0..3 {
            p.on_window(window(1000, 20, 0));
        }
        assert_eq!(
            p.on_window(window(1000, 20, 0)),
            Verdict::Calibrated { p99: 20 * MS, lag_p99: MS }
        );
    }

    #[test]
    fn unpaced_starts_at_the_cap_and_fast_pages_win_the_rate_back() {
        let mut p = Pacer::unpaced(PaceConfig::new(64e6, 256e3, 0.0));
        assert!(!p.paused());
        assert_eq!(p.rate(), 64e6);
        assert!(p.on_page(60 * MS, 50 * MS));
        assert_eq!(p.rate(), 32e6);
        p.on_page(MS, 50 * MS);
        assert_eq!(p.rate(), 36e6);
    }

    #[test]
    fn a_slow_page_halves_the_rate() {
        let mut p = calibrated(4);
        let r = p.rate();
        assert!(!p.on_page(10 * MS, 50 * MS));
        assert!(p.on_page(60 * MS, 50 * MS));
        assert_eq!(p.rate(), r / 2.0);
    }
}
