//! Paging through the records of a token range: what data movement reads.

use std::ops::Bound;

use super::{
    format::{decode_header, decode_version, parse_storage_key},
    Engine, EngineError,
};
use crate::core::version::Version;

/// Page size `scan_range` uses when given 0, as the storage proto's `ScanRangeRequest.limit`.
pub const DEFAULT_SCAN_LIMIT: usize = 1000;

/// Largest page `scan_range` returns, whatever the caller asks for: bounds one call's memory.
pub const MAX_SCAN_LIMIT: usize = 10_000;

/// A page of `scan_range` examines at most `limit * SCAN_EXAMINE_FACTOR` records, so a range full
/// of skipped tombstones still returns promptly (with fewer entries and a cursor).
const SCAN_EXAMINE_FACTOR: usize = 8;

/// The token segments of `(start_exclusive, end_inclusive]`, inclusive on both ends, in scan
/// order: one, or two when the range wraps around the ring (`start_exclusive >= end_inclusive`;
/// equal bounds are the whole ring).
pub(super) fn token_segments(start_exclusive: u64, end_inclusive: u64) -> Vec<(u64, u64)> {
    let mut segments = Vec::with_capacity(2);
    if start_exclusive < end_inclusive {
        segments.push((start_exclusive + 1, end_inclusive));
    } else {
        if start_exclusive < u64::MAX {
            segments.push((start_exclusive + 1, u64::MAX));
        }
        segments.push((0, end_inclusive));
    }
    segments
}

/// One record of a [`Engine::scan_range`] page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEntry {
    /// The key's tenant.
    pub tenant_id: String,
    /// The user's key.
    pub key: String,
    /// The key's ring token.
    pub token: u64,
    /// The stored version (possibly a tombstone).
    pub version: Version,
}

impl Engine {
    /// One page of the records whose token lies in `(start_exclusive, end_inclusive]`, in
    /// storage-key order; when `start_exclusive >= end_inclusive` the range wraps:
    /// `(start, u64::MAX] ∪ [0, end]` (so `start == end` is the whole ring).
    ///
    /// `cursor` is empty for the first page, then the previous page's `next_cursor`, which is
    /// empty when the range is exhausted. A page holds at most `limit` entries (0 means
    /// [`DEFAULT_SCAN_LIMIT`], capped at [`MAX_SCAN_LIMIT`]) and may hold fewer, even none, with a
    /// non-empty cursor when it skipped many tombstones: keep paging until the cursor is empty.
    /// Pages see writes made between calls; a key written during a scan may or may not appear.
    pub fn scan_range(
        &self,
        start_exclusive: u64,
        end_inclusive: u64,
        cursor: &[u8],
        limit: usize,
        include_tombstones: bool,
    ) -> Result<(Vec<ScanEntry>, Vec<u8>), EngineError> {
        self.scan_range_within(
            start_exclusive,
            end_inclusive,
            cursor,
            limit,
            include_tombstones,
            usize::MAX,
        )
    }

    /// [`Engine::scan_range`], with pages also cut at about `max_page_bytes`: a record that
    /// would take the page's stored bytes (keys and encoded values) past the budget starts the
    /// next page instead, unless the page is still empty. Without it a page of `limit` large
    /// values could not fit in one reply and the range could never be scanned.
    pub fn scan_range_within(
        &self,
        start_exclusive: u64,
        end_inclusive: u64,
        cursor: &[u8],
        limit: usize,
        include_tombstones: bool,
        max_page_bytes: usize,
    ) -> Result<(Vec<ScanEntry>, Vec<u8>), EngineError> {
        let limit = if limit == 0 { DEFAULT_SCAN_LIMIT } else { limit.min(MAX_SCAN_LIMIT) };
        let max_examined = limit.saturating_mul(SCAN_EXAMINE_FACTOR);

        let segments = token_segments(start_exclusive, end_inclusive);

        let mut first = 0;
        let mut resume: Option<Vec<u8>> = None;
        if !cursor.is_empty() {
            let (token, _, _) =
                parse_storage_key(cursor).map_err(|_| EngineError::InvalidCursor)?;
            first = segments
                .iter()
                .position(|&(lo, hi)| lo <= token && token <= hi)
                .ok_or(EngineError::InvalidCursor)?;
            resume = Some(cursor.to_vec());
        }

        let mut entries = Vec::new();
        let mut examined = 0;
        let mut page_bytes = 0usize;
        let mut last_key: Vec<u8> = Vec::new();
        for (n, &(lo, hi)) in segments.iter().enumerate().skip(first) {
            let lower = match (n == first, resume.take()) {
                (true, Some(c)) => Bound::Excluded(c),
                _ => Bound::Included(lo.to_be_bytes().to_vec()),
            };
            let upper = match hi.checked_add(1) {
                Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            for item in self.data.range::<Vec<u8>, _>((lower, upper)) {
                if entries.len() == limit || examined == max_examined {
                    // Another record is in range: hand out a cursor to it.
                    return Ok((entries, last_key));
                }
                let (k, v) = item.into_inner()?;
                let record_bytes = k.len() + v.len();
                if !entries.is_empty() && page_bytes.saturating_add(record_bytes) > max_page_bytes {
                    // `last_key` is the previous record: the cursor resumes at this one.
                    return Ok((entries, last_key));
                }
                examined += 1;
                last_key.clear();
                last_key.extend_from_slice(&k);
                let (tombstone, _) = decode_header(&v)?;
                if tombstone && !include_tombstones {
                    continue;
                }
                let (token, tenant_id, key) = parse_storage_key(&k)?;
                page_bytes += record_bytes;
                entries.push(ScanEntry {
                    tenant_id: tenant_id.to_owned(),
                    key: key.to_owned(),
                    token,
                    version: decode_version(&v)?,
                });
            }
        }
        Ok((entries, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ring::key_token;
    use crate::storage::engine::tests::{fill, open, tomb, ver};

    fn scan_all(e: &Engine, start: u64, end: u64, limit: usize, tombstones: bool) -> Vec<u64> {
        let mut cursor = Vec::new();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let (page, next) = e.scan_range(start, end, &cursor, limit, tombstones).unwrap();
            assert!(page.len() <= limit);
            out.extend(page.iter().map(|en| en.token));
            if next.is_empty() {
                return out;
            }
            cursor = next;
        }
        panic!("scan did not finish");
    }

    #[test]
    fn scan_range_pages_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let tokens = fill(&e, 200);
        let (a, b) = (tokens[40], tokens[150]);

        // Plain range (a, b], paged by 7.
        let want: Vec<u64> = tokens.iter().copied().filter(|&t| t > a && t <= b).collect();
        assert_eq!(scan_all(&e, a, b, 7, false), want);

        // Wrapping range (b, a]: the tail of the ring, then its head.
        let mut want: Vec<u64> = tokens.iter().copied().filter(|&t| t > b).collect();
        want.extend(tokens.iter().copied().filter(|&t| t <= a));
        assert_eq!(scan_all(&e, b, a, 7, false), want);

        // start == end is the whole ring; a single page that fits says it is the last.
        assert_eq!(scan_all(&e, a, a, 1000, false).len(), 200);
        let (page, next) = e.scan_range(a, a, &[], 1000, false).unwrap();
        assert_eq!((page.len(), next.is_empty()), (200, true));

        // Entries carry tenant and key.
        let (page, _) = e.scan_range(a, b, &[], 1, false).unwrap();
        assert_eq!(page[0].tenant_id, "t");
        assert_eq!(key_token("t", &page[0].key).0, page[0].token);

        // A cursor from outside the range is refused.
        let (_, cur) = e.scan_range(a, b, &[], 1, false).unwrap();
        assert!(matches!(
            e.scan_range(b, tokens[199], &cur, 1, false),
            Err(EngineError::InvalidCursor)
        ));
    }

    #[test]
    fn scan_range_pages_are_cut_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        let value = "x".repeat(1000);
        for i in 0..10 {
            e.apply("t", &format!("big-{i}"), &ver(&[("a", 1)], 1, "a", &value)).unwrap();
        }
        let mut cursor = Vec::new();
        let mut pages = Vec::new();
        loop {
            let (page, next) = e.scan_range_within(7, 7, &cursor, 1000, false, 2500).unwrap();
            pages.push(page.len());
            if next.is_empty() {
                break;
            }
            cursor = next;
        }
        // A record takes a little over 1000 bytes: two fit in 2500.
        assert_eq!(pages, [2, 2, 2, 2, 2]);
        // A record larger than the whole budget still goes, alone on its page.
        let (page, next) = e.scan_range_within(7, 7, &[], 1000, false, 10).unwrap();
        assert_eq!((page.len(), next.is_empty()), (1, false));
    }

    #[test]
    fn scan_range_skips_tombstones_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path());
        fill(&e, 50);
        for i in 0..50 {
            e.apply("t", &format!("key-{i}"), &tomb(&[("a", 2)], 2, "a")).unwrap();
        }
        e.apply("t", "live", &ver(&[("a", 1)], 1, "a", "v")).unwrap();
        // limit 1 examines at most 8 records a page, so this also pages through empty pages.
        assert_eq!(scan_all(&e, 0, 0, 1, false), vec![key_token("t", "live").0]);
        assert_eq!(scan_all(&e, 0, 0, 1, true).len(), 51);
    }
}
