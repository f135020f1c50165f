//! The accept loop every server of a core shares (gRPC, the HTTP/JSON API): accept until
//! shutdown, refuse connections past a per-core limit, serve each accepted connection on a task
//! of its own, then wait for the open ones to drain.
//!
//! With an [`AcceptGate`], the cores share one listening socket and a core takes a connection
//! only while it serves no more connections than any other core ([`may_accept`]), so that client
//! connections spread evenly over the cores. Without one, each core accepts on its own
//! SO_REUSEPORT socket, where the kernel's hash of the addresses decides: 8 connections on 2 cores
//! land 6 + 2 or worse about a third of the time, and since a connection never moves, one core
//! then serves three quarters of the load (docs/PERFORMANCE.md, "uneven connections"). The gate
//! hands no connection from core to core: a core that is ahead simply does not ask the kernel for
//! the next one, and the socket's queue waits for a core that does.

use std::{
    cell::Cell,
    future::Future,
    pin::pin,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use glommio::net::{TcpListener, TcpStream};

use crate::runtime::shutdown::Shutdown;

/// Whether the core in slot `core` may take the next connection: it serves no more than the
/// fewest any core serves. Some core always may (the one with the fewest), so a connection never
/// waits for lack of an eligible core, only for that core's next look (see [`AcceptGate`]).
pub fn may_accept(open: &[usize], core: usize) -> bool {
    let fewest = open.iter().copied().min().unwrap_or(0);
    open.get(core).is_none_or(|&mine| mine <= fewest)
}

/// The open connections of every core sharing one listening socket (see the module's text).
#[derive(Debug)]
pub struct Spread {
    open: Box<[AtomicUsize]>,
    /// Slots handed out by [`Spread::gate`].
    next: AtomicUsize,
    /// Times a core stood back from accepting because another core served fewer.
    deferred: AtomicU64,
}

impl Spread {
    /// A spread over `cores` slots.
    pub fn new(cores: usize) -> Arc<Self> {
        Arc::new(Spread {
            open: (0..cores.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            next: AtomicUsize::new(0),
            deferred: AtomicU64::new(0),
        })
    }

    /// The gate of the next slot (one per core; past the last slot, slots are shared).
    pub fn gate(self: &Arc<Self>) -> AcceptGate {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.open.len();
        AcceptGate { spread: self.clone(), slot }
    }

    /// Open connections per slot, now.
    pub fn open(&self) -> Vec<usize> {
        self.open.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    /// Times a core stood back from accepting so far.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
}

/// One core's place in a [`Spread`].
#[derive(Debug, Clone)]
pub struct AcceptGate {
    spread: Arc<Spread>,
    slot: usize,
}

impl AcceptGate {
    /// How long a core that stands back first waits before it looks again; it doubles up to
    /// [`AcceptGate::LONGEST_WAIT`] while the core stays ahead. A core ahead is woken by nothing
    /// but its timer (no cross-core wake-up on the request path), so the first wait is short, for
    /// connections that arrive in a burst, and the longest keeps an idle core's polling at about
    /// 125 wake-ups a second while the count of connections is odd.
    pub const FIRST_WAIT: Duration = Duration::from_millis(1);
    /// See [`AcceptGate::FIRST_WAIT`].
    pub const LONGEST_WAIT: Duration = Duration::from_millis(8);

    /// This gate's slot, in the order the gates were handed out.
    pub fn slot(&self) -> usize {
        self.slot
    }

    fn may_accept(&self) -> bool {
        may_accept(&self.spread.open(), self.slot)
    }

    fn opened(&self) {
        self.spread.open[self.slot].fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.spread.open[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts on `listener` until `shutdown` fires, serving each connection with `serve` on a task
/// of its own; at most `max_connections` open at once (more are closed at once, logged under
/// `server`). With a `gate`, accepts only while this core serves no more connections than any
/// other core sharing the listener. Returns once the open connections finished or
/// `drain_timeout` passed.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    server: &'static str,
    max_connections: usize,
    gate: Option<AcceptGate>,
    shutdown: &Shutdown,
    drain_timeout: Duration,
    mut serve: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let open = Rc::new(Cell::new(0usize));
    let mut stop = pin!(shutdown.wait());
    'accept: loop {
        if let Some(gate) = gate.as_ref().filter(|g| !g.may_accept()) {
            gate.spread.deferred.fetch_add(1, Ordering::Relaxed);
            let mut wait = AcceptGate::FIRST_WAIT;
            while !gate.may_accept() {
                let stopped = futures_lite::future::or(
                    async {
                        glommio::timer::sleep(wait).await;
                        false
                    },
                    async {
                        (&mut stop).await;
                        true
                    },
                )
                .await;
                if stopped {
                    break 'accept;
                }
                wait = (wait * 2).min(AcceptGate::LONGEST_WAIT);
            }
        }
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            (&mut stop).await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::warn!(server, error = %e, "accept failed");
                // Out of descriptors or memory: back off instead of spinning on the error.
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= max_connections {
            tracing::warn!(server, limit = max_connections, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        if let Some(gate) = &gate {
            gate.opened();
        }
        let connection = serve(stream);
        let open = open.clone();
        let gate = gate.clone();
        glommio::spawn_local(async move {
            connection.await;
            open.set(open.get() - 1);
            if let Some(gate) = gate {
                gate.closed();
            }
        })
        .detach();
    }
    drop(listener);
    let deadline = Instant::now() + drain_timeout;
    while open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_core_with_the_fewest_connections_may_accept() {
        assert!(may_accept(&[0, 0], 0));
        assert!(may_accept(&[0, 0], 1));
        assert!(!may_accept(&[1, 0], 0));
        assert!(may_accept(&[1, 0], 1));
        assert!(may_accept(&[4, 4, 5], 1));
        assert!(!may_accept(&[4, 4, 5], 2));
        // Some core always may.
        for open in [[3, 1, 2], [0, 7, 7], [2, 2, 2]] {
            assert!((0..3).any(|core| may_accept(&open, core)));
        }
    }

    #[test]
    fn cores_accepting_in_turn_end_up_even() {
        // Whichever eligible core the kernel hands each connection to, the counts never differ
        // by more than one.
        let spread = Spread::new(3);
        let gates: Vec<_> = (0..3).map(|_| spread.gate()).collect();
        for n in 0..30usize {
            // The kernel's choice among the eligible: a fixed, uneven pattern.
            let eligible: Vec<_> = gates.iter().filter(|g| g.may_accept()).collect();
            eligible[n * 7 % eligible.len()].opened();
            let open = spread.open();
            assert!(open.iter().max().unwrap() - open.iter().min().unwrap() <= 1, "{open:?}");
        }
        assert_eq!(spread.open(), vec![10, 10, 10]);
        gates[1].closed();
        assert!(gates[1].may_accept());
        assert!(!gates[0].may_accept());
    }
}
