//! A one-shot, cross-core shutdown signal.
//!
//! SIGTERM/SIGINT arrive on a plain thread; every core's accept loop and connection tasks wait on
//! the same [`Shutdown`]. Only `trigger` and the registration of a waiting task take the lock:
//! nothing on a request path touches it (connection tasks register once and then only poll an
//! atomic flag).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
};

/// Cloneable handle on one shutdown signal.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    fired: AtomicBool,
    next_id: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal and wakes every waiter. Idempotent.
    pub fn trigger(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = match self.inner.wakers.lock() {
            Ok(mut map) => map.drain().map(|(_, w)| w).collect(),
            Err(poisoned) => poisoned.into_inner().drain().map(|(_, w)| w).collect(),
        };
        for w in wakers {
            w.wake();
        }
    }

    /// True once [`Shutdown::trigger`] ran.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Completes when the signal fires.
    pub fn wait(&self) -> Wait {
        Wait { inner: self.inner.clone(), id: None }
    }
}

/// Future returned by [`Shutdown::wait`].
pub struct Wait {
    inner: Arc<Inner>,
    id: Option<u64>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                self.id = Some(id);
                id
            }
        };
        {
            let mut map = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(&id) {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => {
                    map.insert(id, cx.waker().clone());
                }
            }
        }
        // Re-check after registering: `trigger` may have drained the map just before we inserted.
        if self.inner.fired.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Ok(mut map) = self.inner.wakers.lock() {
                map.remove(&id);
            }
        }
    }
}
