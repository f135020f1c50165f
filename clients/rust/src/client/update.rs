//! Read-modify-write ([`Client::update`], [`Client::update_with`]) and the per-(tenant, key)
//! locks that serialize it among the clones of one client.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use super::{Client, ReadOptions, Shared, WriteOptions, Written};
use crate::error::{Error, Result};

/// The update locks of one client and its clones, by (tenant, key).
pub(super) type KeyLocks = Mutex<HashMap<(Arc<str>, String), Arc<tokio::sync::Mutex<()>>>>;

impl Client {
    /// Read-modify-write of `key` at QUORUM: see [`Client::update_with`].
    pub async fn update<F>(&self, key: impl Into<String>, f: F) -> Result<Option<Written>>
    where
        F: FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    {
        self.update_with(key, WriteOptions::default(), f).await
    }

    /// Read-modify-write: reads `key` (with its vector clock), calls `f` with the current value
    /// (`None` when the key has no live version) and, if `f` returns a new value, writes it with
    /// the clock it read as causal context. Returns the write, or `None` when `f` returned
    /// `None` (nothing is written).
    ///
    /// `options` apply to both the read and the write (consistency, deadline of each); a given
    /// [`WriteOptions::context`] is replaced by the clock read, and a given idempotency key is
    /// used for the write.
    ///
    /// # What it guarantees
    ///
    /// - The new version supersedes the version read: it carries that version's clock, so a
    ///   replica never keeps the old value because of timestamps (a writer whose clock runs
    ///   behind still replaces what it read).
    /// - Updates of the same key through one [`Client`] (and its clones, from any number of
    ///   tasks) run one after the other: each reads after the previous one's write was
    ///   acknowledged. With QUORUM (or ALL) reads and writes, R + W > N, so the read sees that
    ///   write and no update is lost: two tasks each incrementing a counter N times end at 2N.
    /// - The write is retried like any write (same idempotency key); `f` is called once.
    ///
    /// # What it does not guarantee
    ///
    /// - Updates from other clients or processes are not serialized with these: PairDB has no
    ///   compare-and-set. Two updates that read the same version are both accepted; one of them
    ///   wins by the winner rule (timestamp, then writer id) and the other's change is lost,
    ///   with no error to either writer. Keep one writer per key (or one `Client`) when updates
    ///   must not be lost.
    /// - With consistency ONE the read may miss the previous write, and so lose it.
    /// - A deleted key reads as absent without its tombstone's clock, so the first write after a
    ///   delete is blind (ordered against the tombstone by timestamp).
    /// - If the write fails, `f` has run but nothing may have been written (or, for a
    ///   [`Error::QuorumNotReached`], some replicas may hold the new value).
    pub async fn update_with<F>(
        &self,
        key: impl Into<String>,
        options: WriteOptions,
        f: F,
    ) -> Result<Option<Written>>
    where
        F: FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    {
        let key = key.into();
        let _guard = self.lock_key(&key).await;
        let mut read = ReadOptions::new();
        read.consistency = options.consistency;
        read.timeout = options.timeout;
        let current = match self.get_with(key.clone(), read).await {
            Ok(v) => Some(v),
            Err(Error::KeyNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let Some(value) = f(current.as_ref().map(|v| v.value.as_slice())) else {
            return Ok(None);
        };
        let mut write = options;
        write.context = current.map(|v| v.clock);
        self.put_with(key, value, write).await.map(Some)
    }

    /// Holds the update lock of (tenant, key) among this client's clones.
    async fn lock_key(&self, key: &str) -> KeyGuard {
        let map_key = (self.tenant.clone(), key.to_owned());
        let lock = {
            let mut locks = self.shared.key_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(map_key.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        KeyGuard { shared: self.shared.clone(), key: map_key, lock, guard: Some(guard) }
    }
}

/// Releases an update lock, and forgets it when no one else holds or waits for it. (A waiter
/// cancelled while waiting leaves the entry behind; the next update of that key removes it.)
struct KeyGuard {
    shared: Arc<Shared>,
    key: (Arc<str>, String),
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.shared.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else holds or waits (waiters clone it under the
        // map's mutex, which we hold).
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn update_locks_serialize_per_tenant_and_key_and_are_forgotten() {
        let c = Client::connect("127.0.0.1:1").unwrap();
        let held = c.lock_key("k").await;
        // Another key, or the same key of another tenant, is not blocked.
        drop(c.lock_key("other").await);
        drop(c.with_tenant("t2").lock_key("k").await);
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { drop(c2.lock_key("k").await) });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "the same key waits");
        assert_eq!(c.shared.key_locks.lock().unwrap().len(), 1);
        drop(held);
        waiter.await.unwrap();
        assert!(c.shared.key_locks.lock().unwrap().is_empty(), "no lock outlives its users");
    }
}
