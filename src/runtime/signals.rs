//! SIGTERM and SIGINT, turned into a [`Shutdown`] trigger; SIGHUP, which re-reads the TLS
//! certificates (`rpc.tls`, see [`crate::config::tls::reload_all`]).
//!
//! The signals are blocked in the calling thread before any executor starts (threads inherit
//! the mask), and one plain thread waits for them with `sigwait`. So no executor is ever
//! interrupted by a handler, and the request cores never see signal state.

use std::io;

use crate::runtime::shutdown::Shutdown;

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it starts later), then
/// starts a thread that triggers `shutdown` on the first SIGINT or SIGTERM and re-reads the TLS
/// certificates on every SIGHUP. Call it first thing in `main`.
pub fn install(shutdown: Shutdown) -> io::Result<()> {
    // SAFETY: sigset manipulation on a local, zeroed set; pthread_sigmask only changes this
    // thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new().name("pairdb-signals".into()).spawn(move || {
        let mut signal: libc::c_int = 0;
        loop {
            // SAFETY: `set` was initialised above and outlives the call; `signal` is a valid out
            // slot.
            let rc = unsafe { libc::sigwait(&set, &mut signal) };
            if rc == 0 && signal == libc::SIGHUP {
                let (reloaded, failed) = crate::config::tls::reload_all();
                tracing::info!(reloaded, failed, "SIGHUP: TLS certificates read again");
                continue;
            }
            if rc == 0 {
                tracing::info!(signal, "shutdown requested");
            }
            shutdown.trigger();
            return;
        }
    })?;
    Ok(())
}
