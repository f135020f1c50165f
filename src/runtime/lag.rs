//! Executor poll lag: how late a core gets to a task that asked to run now.
//!
//! One small task per core sleeps [`PROBE_INTERVAL`] and records how much later than asked it
//! woke. A core that runs a long task, sleeps its thread (a blocking call, a stalled engine) or
//! is starved by the kernel shows it here as lag, whatever request suffered from it: the metric
//! exists so that a stall cannot hide behind a healthy median. The probe costs one timer wake-up
//! per interval per core.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    metrics::{Hist, Sample},
    runtime::shutdown::Shutdown,
};

/// How often the probe asks to run: often enough that a 10 ms stall is seen within a few probes,
/// rarely enough that an idle core wakes only 50 times a second for it.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// One core's poll lag.
#[derive(Default)]
pub struct PollLag {
    hist: RefCell<Hist>,
    /// The worst lag since the last scrape, µs.
    worst_us: Cell<u64>,
}

impl PollLag {
    /// The probe woke `late` after it asked to.
    pub fn record(&self, late: Duration) {
        self.hist.borrow_mut().record_duration(late);
        let us = late.as_micros().min(u128::from(u64::MAX)) as u64;
        self.worst_us.set(self.worst_us.get().max(us));
    }

    /// This core's samples (labelled with `core`); the worst lag restarts at every scrape.
    pub fn samples(&self, core: usize, out: &mut Vec<Sample>) {
        out.push(
            Sample::latency(
                "pairdb_executor_poll_lag_seconds",
                "How late a core ran a task that asked to run: long tasks, blocked threads, starvation.",
                &self.hist.borrow(),
            )
            .label("core", core.to_string()),
        );
        out.push(
            Sample::gauge(
                "pairdb_executor_poll_lag_max_seconds",
                "The worst poll lag of the core since the previous scrape.",
                self.worst_us.replace(0) as f64 / 1e6,
            )
            .label("core", core.to_string()),
        );
    }
}

/// Probes this core's lag until shutdown.
pub async fn probe(lag: Rc<PollLag>, shutdown: Shutdown) {
    probe_with(lag, shutdown, |_| {}).await
}

/// [`probe`], handing every sample to `also` as well.
pub async fn probe_with(lag: Rc<PollLag>, shutdown: Shutdown, also: impl Fn(Duration)) {
    while !shutdown.is_triggered() {
        let asked = Instant::now();
        glommio::timer::sleep(PROBE_INTERVAL).await;
        let late = asked.elapsed().saturating_sub(PROBE_INTERVAL);
        lag.record(late);
        also(late);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{merge, render};

    #[test]
    fn worst_lag_restarts_at_each_scrape() {
        let lag = PollLag::default();
        lag.record(Duration::from_millis(3));
        lag.record(Duration::from_millis(40));
        let mut out = Vec::new();
        lag.samples(1, &mut out);
        let text = render(&merge(out));
        assert!(text.contains("pairdb_executor_poll_lag_max_seconds{core=\"1\"} 0.04"), "{text}");
        assert!(text.contains("pairdb_executor_poll_lag_seconds_count{core=\"1\"} 2"), "{text}");
        let mut out = Vec::new();
        lag.samples(1, &mut out);
        let text = render(&merge(out));
        assert!(text.contains("pairdb_executor_poll_lag_max_seconds{core=\"1\"} 0"), "{text}");
    }
}
