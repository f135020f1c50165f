//! The HPACK static table (RFC 7541 Appendix A) and the decoder's dynamic table (§2.3.2, §4).

use std::collections::VecDeque;

/// The HPACK static table, RFC 7541 Appendix A, as `(name, value)` pairs.
///
/// HPACK index `i` (1 to 61) is `STATIC_TABLE[i - 1]`; for example index 8 is `:status 200`,
/// index 4 is `:path /` and index 31 is `content-type` (empty value).
pub const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The static table as a `static`, so indexing it at run time reads one shared copy.
pub(super) static STATIC: [(&[u8], &[u8]); 61] = STATIC_TABLE;

/// Per-entry overhead that RFC 7541 §4.1 adds to `name.len() + value.len()`.
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// Where a new dynamic table entry's name comes from.
pub(super) enum NameSrc<'a> {
    /// Bytes outside the dynamic table (the static table, the block, a scratch buffer).
    Bytes(&'a [u8]),
    /// The name of the dynamic table entry at this 0-based position (0 = newest).
    Dynamic(usize),
}

/// Position of one entry's bytes in [`DynamicTable::buf`]: the name starts at `off`, the value
/// follows it directly.
#[derive(Clone, Copy, Debug)]
struct Entry {
    off: usize,
    name_len: usize,
    value_len: usize,
}

impl Entry {
    fn rfc_size(&self) -> usize {
        self.name_len + self.value_len + ENTRY_OVERHEAD
    }
}

/// The decoder's dynamic table.
///
/// Entry bytes live in one `Vec<u8>` used as an append-only arena: a new entry's name and
/// value are appended at the end, and because HPACK always evicts the oldest entry, the live
/// bytes are always one contiguous run `buf[start..]` where `start` is the offset of the oldest
/// live entry. Evicting an entry only drops its descriptor. When the dead prefix becomes larger
/// than the live bytes, the live bytes are moved to the front (`compact`), so the arena stays
/// below about twice the table size and each byte is copied O(1) times on average. The
/// descriptors sit in a `VecDeque`, newest first, so a lookup by index is O(1). Once the `Vec`
/// and the `VecDeque` have grown to their working size, inserting allocates nothing.
#[derive(Debug)]
pub(super) struct DynamicTable {
    buf: Vec<u8>,
    entries: VecDeque<Entry>,
    /// Sum of the RFC sizes of the live entries.
    size: usize,
    /// The current maximum size, as set by the last size update (or the initial value).
    max_size: usize,
}

impl DynamicTable {
    pub(super) fn new(max_size: usize) -> DynamicTable {
        DynamicTable { buf: Vec::new(), entries: VecDeque::new(), size: 0, max_size }
    }

    /// Current size in RFC 7541 octets.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the entry at 0-based position `i` (0 = the newest, HPACK index 62).
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(i)?;
        let name_end = e.off + e.name_len;
        Some((&self.buf[e.off..name_end], &self.buf[name_end..name_end + e.value_len]))
    }

    /// Applies a dynamic table size update: sets the maximum size and evicts as needed.
    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
        self.maybe_compact();
    }

    /// Inserts a new entry as RFC 7541 §4.4 says: evict oldest entries until it fits, or, if it
    /// is larger than the maximum size, empty the table and drop it.
    pub(super) fn insert(&mut self, name: NameSrc<'_>, value: &[u8]) {
        let name_len = match name {
            NameSrc::Bytes(b) => b.len(),
            NameSrc::Dynamic(i) => match self.entries.get(i) {
                Some(e) => e.name_len,
                // The decoder only passes indices it has checked; do nothing rather than panic.
                None => return,
            },
        };
        let entry_size = name_len.saturating_add(value.len()).saturating_add(ENTRY_OVERHEAD);
        if entry_size > self.max_size {
            self.clear();
            return;
        }

        // Append the bytes before evicting anything: a name taken from an entry that the
        // eviction below removes is still intact in the arena (§4.4 warns about this case).
        let off = self.buf.len();
        match name {
            NameSrc::Bytes(b) => self.buf.extend_from_slice(b),
            NameSrc::Dynamic(i) => {
                let src = self.entries[i].off;
                self.buf.extend_from_within(src..src + name_len);
            }
        }
        self.buf.extend_from_slice(value);

        self.evict_to(self.max_size - entry_size);
        self.entries.push_front(Entry { off, name_len, value_len: value.len() });
        self.size += entry_size;
        self.maybe_compact();
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.buf.clear();
        self.size = 0;
    }

    /// Evicts the oldest entries until the size is at most `target`.
    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.rfc_size(),
                None => {
                    // Unreachable while `size` is the sum of the entries; stay consistent.
                    self.size = 0;
                }
            }
        }
    }

    /// Moves the live bytes to the front of the arena once the dead prefix outgrows them.
    fn maybe_compact(&mut self) {
        let start = match self.entries.back() {
            Some(oldest) => oldest.off,
            None => {
                self.buf.clear();
                return;
            }
        };
        let live = self.buf.len() - start;
        if start > live {
            self.buf.copy_within(start.., 0);
            self.buf.truncate(live);
            for e in self.entries.iter_mut() {
                e.off -= start;
            }
        }
    }

    /// Checks the internal invariants (tests only).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let sum: usize = self.entries.iter().map(Entry::rfc_size).sum();
        assert_eq!(sum, self.size);
        assert!(self.size <= self.max_size);
        // Newest first, contiguous, ending at the end of the arena.
        let mut end = self.buf.len();
        for e in &self.entries {
            assert_eq!(e.off + e.name_len + e.value_len, end);
            end = e.off;
        }
        // The arena stays within twice the live bytes (plus nothing when empty).
        let live = self.buf.len() - end;
        assert!(end <= live, "dead prefix {end} > live {live}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(t: &DynamicTable) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..t.len()).map(|i| t.get(i).map(|(n, v)| (n.to_vec(), v.to_vec())).unwrap()).collect()
    }

    #[test]
    fn static_table_spot_checks() {
        assert_eq!(STATIC_TABLE[0], (&b":authority"[..], &b""[..]));
        assert_eq!(STATIC_TABLE[3], (&b":path"[..], &b"/"[..]));
        assert_eq!(STATIC_TABLE[7], (&b":status"[..], &b"200"[..]));
        assert_eq!(STATIC_TABLE[15], (&b"accept-encoding"[..], &b"gzip, deflate"[..]));
        assert_eq!(STATIC_TABLE[30], (&b"content-type"[..], &b""[..]));
        assert_eq!(STATIC_TABLE[60], (&b"www-authenticate"[..], &b""[..]));
    }

    #[test]
    fn insert_evict_and_lookup() {
        let mut t = DynamicTable::new(100);
        t.insert(NameSrc::Bytes(b"aaaa"), b"1111"); // 40
        t.insert(NameSrc::Bytes(b"bbbb"), b"2222"); // 80
        t.check_invariants();
        assert_eq!(t.size(), 80);
        assert_eq!(t.get(0).unwrap(), (&b"bbbb"[..], &b"2222"[..]));
        assert_eq!(t.get(1).unwrap(), (&b"aaaa"[..], &b"1111"[..]));
        assert!(t.get(2).is_none());
        // Evicts "aaaa".
        t.insert(NameSrc::Bytes(b"cccc"), b"3333");
        t.check_invariants();
        assert_eq!(
            entries(&t),
            vec![(b"cccc".to_vec(), b"3333".to_vec()), (b"bbbb".to_vec(), b"2222".to_vec())]
        );
        // Too large for the table: empties it.
        t.insert(NameSrc::Bytes(&[b'x'; 60]), b"123456789");
        t.check_invariants();
        assert_eq!((t.len(), t.size()), (0, 0));
        // Exactly the table size fits.
        t.insert(NameSrc::Bytes(&[b'x'; 60]), b"12345678");
        assert_eq!((t.len(), t.size()), (1, 100));
        t.check_invariants();
    }

    #[test]
    fn name_from_entry_being_evicted() {
        // RFC 7541 §4.4: the new entry's name refers to the entry that adding it evicts.
        let mut t = DynamicTable::new(50);
        t.insert(NameSrc::Bytes(b"name"), b"v1"); // 38
        t.insert(NameSrc::Dynamic(0), b"v2"); // evicts the only entry, whose name it uses
        t.check_invariants();
        assert_eq!(entries(&t), vec![(b"name".to_vec(), b"v2".to_vec())]);
        for i in 0..100u8 {
            t.insert(NameSrc::Dynamic(0), &[i; 3]);
            t.check_invariants();
            assert_eq!(entries(&t), vec![(b"name".to_vec(), vec![i; 3])]);
        }
    }

    #[test]
    fn size_updates_evict() {
        let mut t = DynamicTable::new(4096);
        for i in 0..10u8 {
            t.insert(NameSrc::Bytes(&[i]), &[i]); // 34 each
        }
        assert_eq!(t.size(), 340);
        t.set_max_size(100);
        t.check_invariants();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0).unwrap().0, &[9]);
        t.set_max_size(0);
        assert_eq!((t.len(), t.size()), (0, 0));
        t.insert(NameSrc::Bytes(b""), b"");
        assert_eq!(t.len(), 0);
        t.set_max_size(32);
        t.insert(NameSrc::Bytes(b""), b"");
        assert_eq!((t.len(), t.size()), (1, 32));
        t.check_invariants();
    }

    #[test]
    fn arena_stays_bounded_and_reuses_memory() {
        let mut t = DynamicTable::new(256);
        for i in 0..10_000usize {
            let value = vec![(i % 251) as u8; i % 40];
            t.insert(NameSrc::Bytes(b"key"), &value);
            t.check_invariants();
            assert_eq!(t.get(0).unwrap().1, &value[..]);
        }
        assert!(t.buf.capacity() <= 4 * 256, "capacity {}", t.buf.capacity());
    }
}
