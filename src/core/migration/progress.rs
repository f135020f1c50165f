//! Progress of a [`Migration`]: keys migrated (never decreasing), the percentage (100 only once
//! COMPLETED) and the estimated completion. Split from `driver.rs`, which owns the state these
//! read; nothing here changes a migration except the caller's total-keys estimate.

use std::time::{Duration, Instant};

use super::driver::{Migration, SegmentState};
use super::Stage;

impl Migration {
    /// Keys copied so far, each (target, segment) counted once. Never decreases.
    pub fn keys_migrated(&self) -> u64 {
        self.segments.iter().map(SegmentState::keys).sum()
    }

    /// Segments done, out of how many.
    pub fn segments_done(&self) -> (usize, usize) {
        (self.segments.iter().filter(|s| s.done).count(), self.segments.len())
    }

    /// The caller's estimate of the keys to copy (from source key counts and range widths);
    /// refine it as segments finish.
    pub fn set_total_keys(&mut self, total: u64) {
        self.total_keys = total;
    }

    /// How far along, 0 to 100: 100 only once COMPLETED, at most 99 before; 99 once streaming
    /// is over and only barriers and cleanup are left.
    pub fn percentage(&self) -> u8 {
        match self.stage {
            Stage::Completed => 100,
            Stage::ReadNew | Stage::UseNew | Stage::Cleanup => 99,
            _ => {
                let migrated = self.keys_migrated();
                let total = self.total_keys.max(migrated);
                if total == 0 {
                    return 0;
                }
                (u128::from(migrated) * 100 / u128::from(total)).min(99) as u8
            }
        }
    }

    /// When the change should complete: `now`, plus the keys left at `keys_per_sec` (the
    /// caller's moving average), plus `per_barrier` for each barrier still ahead. `None` when the
    /// rate is unknown while keys are left, or the change is reverting or cancelled.
    pub fn eta(&self, now: Instant, keys_per_sec: f64, per_barrier: Duration) -> Option<Instant> {
        // Barriers ahead: DUAL_WRITE's, READ_NEW's and USE_NEW's.
        let barriers_left: u32 = match self.stage {
            Stage::Planned | Stage::DualWrite => 3,
            Stage::Streaming | Stage::ReadNew => 2,
            Stage::UseNew => 1,
            Stage::Cleanup | Stage::Completed => 0,
            Stage::Reverting | Stage::CleanupTarget | Stage::Cancelled => return None,
        };
        let left = match self.stage {
            Stage::Planned | Stage::DualWrite | Stage::Streaming => {
                self.total_keys.saturating_sub(self.keys_migrated())
            }
            _ => 0,
        };
        let copying = if left == 0 {
            Duration::ZERO
        } else if keys_per_sec.is_finite() && keys_per_sec > 0.0 {
            Duration::try_from_secs_f64(left as f64 / keys_per_sec).ok()?
        } else {
            return None;
        };
        now.checked_add(copying)?.checked_add(per_barrier.checked_mul(barriers_left)?)
    }
}
