//! One glommio executor per core, each pinned to one CPU the process may run on.
//!
//! Placement honours the process's CPU affinity (so `taskset -c 1 pairdb ...` keeps every
//! executor on CPU 1) instead of glommio's own view of all online CPUs; with more executors than
//! allowed CPUs they wrap around. Each executor runs the same async entry point with its core
//! index; whatever a core owns (connections, caches, the ring copy) it builds itself inside that
//! future, so nothing on a request path is shared between threads.

use std::{future::Future, time::Duration};

use glommio::{LocalExecutorBuilder, Placement};

thread_local! {
    /// The core index of the executor running on this thread (set by [`run_per_core`]).
    static CURRENT_CORE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// The CPU of every core of the pool this thread belongs to, by core index.
    static POOL_CPUS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The CPU each core of the calling executor's pool is pinned to, by core index; empty outside
/// [`run_per_core`].
pub fn pool_cpus() -> Vec<usize> {
    POOL_CPUS.with(|c| c.borrow().clone())
}

/// The core index of the calling executor, when it was started by [`run_per_core`]: for code
/// that needs it (metric labels) but is not handed it.
pub fn current_core() -> Option<usize> {
    CURRENT_CORE.get()
}

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask sized for the kernel API; `sched_getaffinity(0, ..)` only
    // writes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
                .collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Options for [`run_per_core`].
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Executors to start; 0 means one per allowed CPU.
    pub cores: usize,
    /// Thread name prefix; threads are named `{name}-{core}`.
    pub name: String,
    /// Busy-poll this long before parking an idle executor. Zero (the default) parks at once and
    /// leaves the CPU to other processes; a short spin cuts cross-core wake-up latency at the
    /// price of CPU (see docs/PERFORMANCE.md).
    pub spin_before_park: Duration,
    /// Pin each executor to its CPU (the default). False leaves the threads to the kernel's
    /// scheduler, within the affinity mask: for a load generator that shares the CPUs with the
    /// server it measures, where a pinned generator thread and a pinned server core would
    /// contend for one CPU while another idles (docs/PERFORMANCE.md).
    pub pin: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { cores: 0, name: "pairdb".into(), spin_before_park: Duration::ZERO, pin: true }
    }
}

impl PoolConfig {
    /// The number of executors that will run.
    pub fn effective_cores(&self) -> usize {
        if self.cores == 0 {
            allowed_cpus().len().max(1)
        } else {
            self.cores
        }
    }
}

/// Runs `entry(core)` on one pinned executor per core and returns when all of them finished.
pub fn run_per_core<F, Fut>(config: &PoolConfig, entry: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cpus = allowed_cpus();
    let cores = config.effective_cores();
    let mut handles = Vec::with_capacity(cores);
    let core_cpus: Vec<usize> =
        (0..cores).map(|core| cpus.get(core % cpus.len().max(1)).copied().unwrap_or(0)).collect();
    for (core, &cpu) in core_cpus.iter().enumerate() {
        let entry = entry.clone();
        let pool_cpus_for_thread = core_cpus.clone();
        let placement = if config.pin { Placement::Fixed(cpu) } else { Placement::Unbound };
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("{}-{core}", config.name))
            // Each executor's io_uring registered buffers are locked memory; 1 MiB per core
            // keeps PairDB within the common 8 MiB RLIMIT_MEMLOCK even with several cores and
            // processes on one host (tuning/ explains raising the limit).
            .io_memory(1 << 20);
        if !config.spin_before_park.is_zero() {
            builder = builder.spin_before_park(config.spin_before_park);
        }
        let handle = builder
            .spawn(move || {
                CURRENT_CORE.set(Some(core));
                POOL_CPUS.with(|c| *c.borrow_mut() = pool_cpus_for_thread.clone());
                entry(core)
            })
            .map_err(|e| anyhow::anyhow!("starting executor for core {core} on cpu {cpu}: {e}"))?;
        handles.push(handle);
    }
    for (core, handle) in handles.into_iter().enumerate() {
        handle.join().map_err(|e| anyhow::anyhow!("executor for core {core} failed: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_are_pinned_unless_told_not_to_be() {
        let allowed = allowed_cpus();
        for pin in [true, false] {
            let (tx, rx) = std::sync::mpsc::channel();
            let config =
                PoolConfig { cores: 2, name: "pool-test".into(), pin, ..Default::default() };
            run_per_core(&config, move |core| {
                let tx = tx.clone();
                async move {
                    // `allowed_cpus` reads the calling thread's own mask.
                    tx.send((core, allowed_cpus())).unwrap();
                }
            })
            .unwrap();
            let mut seen: Vec<(usize, Vec<usize>)> = rx.try_iter().collect();
            seen.sort();
            assert_eq!(seen.len(), 2);
            for (core, cpus) in seen {
                if pin {
                    // Core i on the i-th allowed CPU, wrapping around.
                    assert_eq!(cpus, vec![allowed[core % allowed.len()]], "core {core}");
                } else {
                    assert_eq!(cpus, allowed, "core {core} unpinned");
                }
            }
        }
    }
}
