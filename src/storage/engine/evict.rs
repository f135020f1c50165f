//! Eviction: removing records physically, tombstone or not, with nothing left behind. Data
//! movement's cleanup of the keys a node no longer owns.

use std::sync::atomic::Ordering;

use fjall::PersistMode;

use super::{format::storage_key, Durability, Engine, EngineError};

/// Records evicted per journal write. Eviction holds these keys' stripes while it reads and
/// removes them, so a chunk is kept small enough that writers on a request core wait little.
const EVICT_CHUNK: usize = 256;

impl Engine {
    /// Removes the records stored for `keys` (pairs of tenant id and key), whatever they hold,
    /// and returns how many it removed: absent keys and repeats are skipped. Nothing is left
    /// behind, so the keys vanish from [`Engine::read`], the scans and the counts.
    ///
    /// Every key is validated before anything is removed; one invalid key fails the call. The
    /// removal then goes in chunks of [`EVICT_CHUNK`] keys, each one journal write under its
    /// keys' stripe locks, like a write; an error part-way leaves the earlier chunks removed
    /// (evicting again is harmless). Durability is that of a write: in [`Durability::Sync`] mode
    /// the journal is `fdatasync`ed before this returns. Blocking: keep it off request cores.
    pub fn evict(&self, keys: &[(&str, &str)]) -> Result<u64, EngineError> {
        let mut skeys = keys
            .iter()
            .map(|(tenant_id, key)| storage_key(tenant_id, key).map(|(_, skey)| skey))
            .collect::<Result<Vec<_>, _>>()?;
        // Token order (storage keys start with the token), and no key twice.
        skeys.sort_unstable();
        skeys.dedup();
        let mut evicted = 0u64;
        for chunk in skeys.chunks(EVICT_CHUNK) {
            let removed = self.remove_checked(chunk, |_| true)? as u64;
            evicted += removed;
            self.evicted.fetch_add(removed, Ordering::Relaxed);
        }
        if evicted > 0 && self.durability == Durability::Sync {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(evicted)
    }

    /// Records removed by [`Engine::evict`] since the engine was opened.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::ring::key_token;
    use crate::storage::engine::tests::{fill, open, tomb, ver};
    use crate::storage::engine::{Durability, Engine, EngineConfig, EngineError};

    /// Every token of the ring: a wrapping scan from 0 to 0.
    fn scan_all(e: &Engine) -> Vec<(String, String, bool)> {
        let (entries, next) = e.scan_range(0, 0, &[], 10_000, true).unwrap();
        assert!(next.is_empty());
        entries.into_iter().map(|s| (s.tenant_id, s.key, s.version.tombstone)).collect()
    }

    #[test]
    fn evict_removes_present_keys_and_skips_absent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        fill(&e, 10);
        e.apply("other", "key-1", &ver(&[("a", 1)], 1, "a", "kept")).unwrap();

        let n = e.evict(&[("t", "key-1"), ("t", "key-2"), ("t", "absent"), ("t", "key-1")]);
        assert_eq!(n.unwrap(), 2, "two present keys, one absent, one repeat");
        assert_eq!(e.read("t", "key-1").unwrap(), None);
        assert_eq!(e.read("t", "key-2").unwrap(), None);
        assert!(e.read("t", "key-3").unwrap().is_some());
        assert!(e.read("other", "key-1").unwrap().is_some(), "another tenant's key stays");
        let s = e.stats().unwrap();
        assert_eq!((s.key_count, s.tombstone_count), (9, 0));
        assert_eq!(e.evicted_total(), 2);

        let scanned = scan_all(&e);
        assert_eq!(scanned.len(), 9);
        assert!(!scanned.iter().any(|(t, k, _)| t == "t" && (k == "key-1" || k == "key-2")));
        // A narrow scan over exactly the evicted key's token finds nothing either.
        let token = key_token("t", "key-1").0;
        let (entries, _) = e.scan_range(token.wrapping_sub(1), token, &[], 10, true).unwrap();
        assert!(entries.iter().all(|s| s.key != "key-1"), "{entries:?}");

        assert_eq!(e.evict(&[("t", "key-1"), ("t", "absent")]).unwrap(), 0);
        assert_eq!(e.evicted_total(), 2);
    }

    #[test]
    fn evict_removes_tombstones_without_leaving_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        e.apply("t", "gone", &ver(&[("a", 1)], 1, "a", "v")).unwrap();
        e.apply("t", "gone", &tomb(&[("a", 2)], 2, "a")).unwrap();
        e.apply("t", "live", &ver(&[("a", 1)], 1, "a", "v")).unwrap();
        let s = e.stats().unwrap();
        assert_eq!((s.key_count, s.tombstone_count), (2, 1));

        assert_eq!(e.evict(&[("t", "gone")]).unwrap(), 1);
        assert_eq!(e.read("t", "gone").unwrap(), None, "no tombstone is left");
        let s = e.stats().unwrap();
        assert_eq!((s.key_count, s.tombstone_count), (1, 0));
        assert_eq!(scan_all(&e), vec![("t".to_owned(), "live".to_owned(), false)]);
    }

    #[test]
    fn evict_validates_every_key_before_removing_any() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        fill(&e, 2);
        let long = "k".repeat(super::super::MAX_STORAGE_KEY_BYTES);
        let r = e.evict(&[("t", "key-0"), ("t", &long)]);
        assert!(matches!(r, Err(EngineError::KeyTooLarge { .. })), "{r:?}");
        assert!(e.read("t", "key-0").unwrap().is_some(), "nothing removed on a bad request");
        assert_eq!(e.stats().unwrap().key_count, 2);
    }

    #[test]
    fn evictions_span_chunks_and_survive_reopen_in_both_modes() {
        for durability in [Durability::default(), Durability::Sync] {
            let dir = tempfile::tempdir().unwrap();
            let config = EngineConfig { durability, cache_bytes: 8 << 20, ..Default::default() };
            let keys: Vec<String> = (0..600).map(|i| format!("key-{i}")).collect();
            {
                let e = Engine::open(dir.path(), config).unwrap();
                fill(&e, 700);
                let pairs: Vec<(&str, &str)> = keys.iter().map(|k| ("t", k.as_str())).collect();
                assert_eq!(e.evict(&pairs).unwrap(), 600, "{durability:?}");
                assert_eq!(e.stats().unwrap().key_count, 100);
            }
            let e = Engine::open(dir.path(), config).unwrap();
            assert_eq!(e.stats().unwrap().key_count, 100, "{durability:?}");
            assert_eq!(e.read("t", "key-599").unwrap(), None);
            assert!(e.read("t", "key-600").unwrap().is_some());
            assert_eq!(scan_all(&e).len(), 100);
        }
    }
}
