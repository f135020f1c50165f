//! Spreading one port's connections evenly over the cores.
//!
//! Every core listens on the port with SO_REUSEPORT and the kernel picks a listener by hashing the
//! connection's addresses: random, so a client with 8 connections to a 2-core coordinator lands
//! 6 + 2 or 7 + 1 about a third of the time, and since a connection lives its whole life on its
//! core, one core then serves 3/4 of the load while the other idles (measured in
//! docs/PERFORMANCE.md: the p50 of the same open-loop load tripled on such a split). ScyllaDB's
//! Seastar fixes this by default ("connection distribution"): a new connection goes to the core
//! that serves the fewest. So does this: each core keeps a count of the connections it serves
//! in a table every core reads; a core that accepts a connection while another core serves fewer
//! hands it to that core, which serves it from then on. A handoff costs one message between two
//! cores per connection, never per request. Connection counts, not load, decide: cheap, and
//! right for clients whose connections carry similar load (a pool, a load generator).

use std::{
    net::TcpStream as StdTcpStream,
    os::fd::{AsRawFd, FromRawFd, RawFd},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use glommio::{
    channels::shared_channel::{
        self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
    },
    net::TcpStream,
};

/// Connections in flight between two cores at most; a full channel keeps the connection where
/// it was accepted.
const HANDOFF_QUEUE: usize = 64;

/// One core's ends of the channels, before it joined.
struct Ends {
    /// To each other core (None: itself).
    senders: Vec<Option<SharedSender<RawFd>>>,
    /// From each other core (None: itself).
    receivers: Vec<Option<SharedReceiver<RawFd>>>,
}

/// The cores of one port: their connection counts and the channels between them.
pub struct Balancer {
    counts: Vec<AtomicUsize>,
    ends: Mutex<Vec<Option<Ends>>>,
}

impl Balancer {
    /// A balancer for `cores` cores, each of which must [`Balancer::join`] once.
    pub fn new(cores: usize) -> Arc<Self> {
        let cores = cores.max(1);
        let mut ends: Vec<Ends> = (0..cores)
            .map(|_| Ends {
                senders: (0..cores).map(|_| None).collect(),
                receivers: (0..cores).map(|_| None).collect(),
            })
            .collect();
        for from in 0..cores {
            for to in 0..cores {
                if from != to {
                    let (tx, rx) = shared_channel::new_bounded(HANDOFF_QUEUE);
                    ends[from].senders[to] = Some(tx);
                    ends[to].receivers[from] = Some(rx);
                }
            }
        }
        Arc::new(Self {
            counts: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            ends: Mutex::new(ends.into_iter().map(Some).collect()),
        })
    }

    /// Core `core`'s handle, connected on the calling executor. None when the core already
    /// joined or is out of range (the caller then serves without balancing).
    pub async fn join(self: &Arc<Self>, core: usize) -> Option<CoreBalance> {
        let ends = self.ends.lock().ok()?.get_mut(core)?.take()?;
        // Each end's `connect` waits for its peer's: connect all of them at once, or two cores
        // would each wait on its senders before connecting the receivers the other waits for.
        let senders =
            futures_util::future::join_all(ends.senders.into_iter().map(|s| async move {
                match s {
                    Some(s) => Some(s.connect().await),
                    None => None,
                }
            }));
        let receivers = futures_util::future::join_all(
            ends.receivers.into_iter().flatten().map(|r| r.connect()),
        );
        let (senders, receivers) = futures_util::future::join(senders, receivers).await;
        Some(CoreBalance { shared: self.clone(), core, senders, receivers })
    }

    /// Connections each core serves now.
    pub fn counts(&self) -> Vec<usize> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

/// One core's part of a [`Balancer`].
pub struct CoreBalance {
    shared: Arc<Balancer>,
    core: usize,
    senders: Vec<Option<ConnectedSender<RawFd>>>,
    receivers: Vec<ConnectedReceiver<RawFd>>,
}

impl CoreBalance {
    /// Decides where a connection this core just accepted is served, and counts it there: this
    /// core unless another serves fewer.
    fn place(&self) -> usize {
        let counts = &self.shared.counts;
        let mine = counts[self.core].load(Ordering::Relaxed);
        let (least, fewest) = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.load(Ordering::Relaxed)))
            .min_by_key(|&(i, n)| (n, i != self.core))
            .unwrap_or((self.core, mine));
        let target = if fewest < mine { least } else { self.core };
        counts[target].fetch_add(1, Ordering::Relaxed);
        target
    }

    /// Takes a connection accepted here: Some(stream) to serve on this core, None when it went
    /// to a core that serves fewer.
    pub fn route(&self, stream: TcpStream) -> Option<TcpStream> {
        let target = self.place();
        if target == self.core {
            return Some(stream);
        }
        let Some(Some(sender)) = self.senders.get(target) else {
            self.moved(target, self.core);
            return Some(stream);
        };
        // glommio's stream cannot give its descriptor up: hand over a duplicate and close ours.
        // SAFETY: dup of a descriptor we own; the result is checked.
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        if fd < 0 {
            self.moved(target, self.core);
            return Some(stream);
        }
        match sender.try_send(fd) {
            Ok(()) => {
                drop(stream);
                None
            }
            Err(_) => {
                // SAFETY: `fd` is the duplicate made above, owned here and not sent.
                drop(unsafe { StdTcpStream::from_raw_fd(fd) });
                self.moved(target, self.core);
                Some(stream)
            }
        }
    }

    /// A connection counted for `from` stays on `to` instead.
    fn moved(&self, from: usize, to: usize) {
        self.shared.counts[from].fetch_sub(1, Ordering::Relaxed);
        self.shared.counts[to].fetch_add(1, Ordering::Relaxed);
    }

    /// The next connection another core handed to this one (already counted here). Pending
    /// forever when no other core can send any more (one core, or all others gone).
    pub async fn handed(&mut self) -> TcpStream {
        loop {
            if self.receivers.is_empty() {
                return std::future::pending().await;
            }
            let (got, index, _) =
                futures_util::future::select_all(self.receivers.iter().map(|r| Box::pin(r.recv())))
                    .await;
            match got {
                // SAFETY: a connected TCP socket's descriptor that the sending core duplicated
                // for us and no longer uses.
                Some(fd) => return unsafe { TcpStream::from_raw_fd(fd) },
                None => {
                    // That core's sender is gone (its server stopped): stop listening to it.
                    self.receivers.remove(index);
                }
            }
        }
    }

    /// This core's count, for the tasks of its connections to decrement when they end.
    pub fn counter(&self) -> CoreCount {
        CoreCount { shared: self.shared.clone(), core: self.core }
    }
}

/// Decrements one core's connection count.
pub struct CoreCount {
    shared: Arc<Balancer>,
    core: usize,
}

impl CoreCount {
    /// A connection served by this core ended (or was refused after it was counted).
    pub fn closed(&self) {
        self.shared.counts[self.core].fetch_sub(1, Ordering::Relaxed);
    }
}
