//! Thread priorities: background threads (the storage engine's flush and compaction workers)
//! run at a lower CPU priority than the request cores, so that on a busy host a memtable flush
//! takes the CPU the executors leave idle instead of queueing requests behind it (measured in
//! docs/PERFORMANCE.md, "Background threads at a lower priority").

/// Sets the nice value of every thread of this process whose name starts with `prefix`; returns
/// how many were changed. Linux threads are tasks, so `setpriority` on a thread id changes that
/// thread only. Raising a nice value needs no privilege; a failure is logged and skipped. Linux
/// keeps the first 15 bytes of a thread name: `prefix` must not be longer.
pub fn lower_threads_named(prefix: &str, nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    let mut changed = 0;
    for task in tasks.filter_map(Result::ok) {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<libc::id_t>().ok()) else {
            continue;
        };
        // SAFETY: setpriority takes plain integers and touches no memory of ours.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0 {
            changed += 1;
        } else {
            tracing::debug!(tid, nice, error = %std::io::Error::last_os_error(), "setpriority failed");
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_only_the_named_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("prio-test".into())
            .spawn(move || {
                // SAFETY: gettid has no arguments and cannot fail.
                let tid = unsafe { libc::gettid() };
                ready_tx.send(tid).unwrap();
                rx.recv().ok();
            })
            .unwrap();
        let tid = ready_rx.recv().unwrap();
        assert_eq!(lower_threads_named("prio-test", 7), 1);
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Field 19 of stat is the nice value; fields after the ")" of the name start at 3.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i32 = after.split(' ').nth(16).unwrap().parse().unwrap();
        assert_eq!(nice, 7, "{stat}");
        // This thread (the test's) keeps its own priority.
        assert_eq!(lower_threads_named("no-such-thread-name", 7), 0);
        tx.send(()).unwrap();
        worker.join().unwrap();
    }
}
