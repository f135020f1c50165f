//! Range digests: what anti-entropy compares across the replicas of a token range.

use std::ops::Bound;

use xxhash_rust::xxh3::Xxh3;

use super::{format::parse_storage_key, scan::token_segments, Engine, EngineError};

/// Most records one digest examines (of every tenant in the range). A range holding more
/// answers an incomplete digest, and the caller splits it: this bounds one call's work.
pub const MAX_DIGEST_RECORDS: usize = 20_000;

/// The digest of one tenant's records in a token range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeDigest {
    /// The wrapping sum of the xxh3-64 of each matching record (storage key, then stored value).
    pub digest: u64,
    /// Matching records.
    pub entries: u64,
    /// False when the range held more than [`MAX_DIGEST_RECORDS`] records (of any tenant): the
    /// digest covers only the first ones.
    pub complete: bool,
}

impl Engine {
    /// The digest of `tenant_id`'s records (tombstones included) whose token lies in
    /// `(start_exclusive, end_inclusive]`, wrapping like [`Engine::scan_range`]. Two replicas
    /// holding the same versions of the same keys answer the same digest; the sum makes it
    /// independent of order. Reads up to [`MAX_DIGEST_RECORDS`] records: blocking, keep it off
    /// request cores.
    pub fn digest_range(
        &self,
        tenant_id: &str,
        start_exclusive: u64,
        end_inclusive: u64,
    ) -> Result<RangeDigest, EngineError> {
        self.digest_range_within(tenant_id, start_exclusive, end_inclusive, MAX_DIGEST_RECORDS)
    }

    pub(super) fn digest_range_within(
        &self,
        tenant_id: &str,
        start_exclusive: u64,
        end_inclusive: u64,
        max_records: usize,
    ) -> Result<RangeDigest, EngineError> {
        let mut out = RangeDigest { digest: 0, entries: 0, complete: true };
        let mut examined = 0usize;
        for (lo, hi) in token_segments(start_exclusive, end_inclusive) {
            let lower = Bound::Included(lo.to_be_bytes().to_vec());
            let upper = match hi.checked_add(1) {
                Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            for item in self.data.range::<Vec<u8>, _>((lower, upper)) {
                if examined == max_records {
                    out.complete = false;
                    return Ok(out);
                }
                examined += 1;
                let (k, v) = item.into_inner()?;
                let (_, tenant, _) = parse_storage_key(&k)?;
                if tenant != tenant_id {
                    continue;
                }
                let mut h = Xxh3::new();
                h.update(&k);
                h.update(&v);
                out.digest = out.digest.wrapping_add(h.digest());
                out.entries += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::vclock::VClock;
    use crate::core::version::Version;
    use crate::storage::engine::{Engine, EngineConfig};

    fn version(value: &[u8], counter: u64) -> Version {
        Version {
            value: value.to_vec().into(),
            clock: VClock::from_entries([("c1".to_owned(), counter)]),
            timestamp_us: 1_000 + counter as i64,
            tombstone: false,
            writer: "c1".into(),
        }
    }

    #[test]
    fn replicas_with_the_same_versions_agree_and_any_difference_shows() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let a = Engine::open(dirs[0].path(), EngineConfig::default()).unwrap();
        let b = Engine::open(dirs[1].path(), EngineConfig::default()).unwrap();
        // Written in different orders: the digest does not depend on it.
        for i in 0..50 {
            a.apply("t", &format!("k{i}"), &version(b"v", 1)).unwrap();
            b.apply("t", &format!("k{}", 49 - i), &version(b"v", 1)).unwrap();
        }
        // Another tenant's records in the same ranges are not part of t's digest.
        a.apply("u", "only-on-a", &version(b"x", 1)).unwrap();
        let full = |e: &Engine| e.digest_range("t", 7, 7).unwrap();
        assert_eq!(full(&a), full(&b));
        assert_eq!(full(&a).entries, 50);
        assert!(full(&a).complete);

        // A newer version on one replica changes the digest, not the count.
        b.apply("t", "k7", &version(b"v", 2)).unwrap();
        assert_ne!(full(&a).digest, full(&b).digest);
        assert_eq!(full(&a).entries, full(&b).entries);
        a.apply("t", "k7", &version(b"v", 2)).unwrap();
        assert_eq!(full(&a), full(&b));

        // A missing record changes both.
        b.evict(&[("t", "k9")]).unwrap();
        assert_eq!(full(&b).entries, 49);
        assert_ne!(full(&a).digest, full(&b).digest);

        // The two halves of the ring add up to the whole.
        let (lo, hi) =
            (a.digest_range("t", 0, 1 << 63).unwrap(), a.digest_range("t", 1 << 63, 0).unwrap());
        assert_eq!(lo.digest.wrapping_add(hi.digest), full(&a).digest);
        assert_eq!(lo.entries + hi.entries, 50);
    }

    #[test]
    fn a_range_beyond_the_examine_bound_is_reported_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        for i in 0..30 {
            e.apply("t", &format!("k{i}"), &version(b"v", 1)).unwrap();
        }
        let d = e.digest_range_within("t", 0, 0, 10).unwrap();
        assert!(!d.complete);
        assert_eq!(d.entries, 10);
        assert!(e.digest_range_within("t", 0, 0, 30).unwrap().complete);
    }
}
