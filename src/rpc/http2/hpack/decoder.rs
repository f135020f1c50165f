//! The HPACK decoder: one per connection, it keeps the dynamic table across header blocks.

use super::huffman;
use super::table::{DynamicTable, NameSrc, STATIC};
use super::HpackError;

/// Largest integer the decoder accepts (RFC 7541 §5.1 leaves the limit to implementations).
/// Lengths and indices above it cannot be valid anyway, since blocks are far smaller.
const MAX_INT: u64 = u32::MAX as u64;

/// Most continuation bytes an integer may have: 5 bytes carry 35 bits, enough for `MAX_INT`
/// with a prefix of any width.
const MAX_CONTINUATION_BYTES: usize = 5;

/// Decodes the integer (RFC 7541 §5.1) that starts at `buf[0]` with a `prefix_bits`-bit prefix.
/// Returns the value and the number of bytes it used.
#[inline]
pub(super) fn decode_int(buf: &[u8], prefix_bits: u8) -> Result<(usize, usize), HpackError> {
    debug_assert!((1..=8).contains(&prefix_bits));
    let mask = (0xffu16 >> (8 - prefix_bits)) as u8;
    let first = match buf.first() {
        Some(&b) => b & mask,
        None => return Err(HpackError::Truncated),
    };
    if first < mask {
        return Ok((usize::from(first), 1));
    }
    let mut value = u64::from(mask);
    for i in 0..MAX_CONTINUATION_BYTES {
        let b = match buf.get(1 + i) {
            Some(&b) => b,
            None => return Err(HpackError::Truncated),
        };
        value += u64::from(b & 0x7f) << (7 * i);
        if value > MAX_INT {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return usize::try_from(value)
                .map(|v| (v, 2 + i))
                .map_err(|_| HpackError::IntegerOverflow);
        }
    }
    Err(HpackError::IntegerOverflow)
}

/// Reads one string literal (RFC 7541 §5.2) at `block[*pos..]` and advances `*pos` past it.
/// A raw string is returned as a slice of `block`; a Huffman-coded one is decoded into
/// `scratch` (cleared first) and returned from there.
#[inline]
fn read_string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], HpackError> {
    let rest = block.get(*pos..).unwrap_or_default();
    let huffman_coded = match rest.first() {
        Some(&b) => b & 0x80 != 0,
        None => return Err(HpackError::Truncated),
    };
    let (len, n) = decode_int(rest, 7)?;
    let raw = rest.get(n..).and_then(|r| r.get(..len)).ok_or(HpackError::Truncated)?;
    *pos += n + len;
    if huffman_coded {
        scratch.clear();
        huffman::decode(raw, scratch)?;
        Ok(scratch)
    } else {
        Ok(raw)
    }
}

/// An HPACK decoder for one HTTP/2 connection.
///
/// It holds the dynamic table, which persists from one header block to the next, the maximum
/// table size this side advertised, and two scratch buffers that Huffman-coded names and
/// values are decoded into. The scratch buffers keep their capacity, so in the steady state
/// decoding a block allocates nothing.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the largest size update the peer may send.
    max_table_size: usize,
    scratch_name: Vec<u8>,
    scratch_value: Vec<u8>,
}

impl Decoder {
    /// Creates a decoder for a new connection.
    ///
    /// `max_table_size` is the SETTINGS_HEADER_TABLE_SIZE this side advertises (the RFC default
    /// is 4096). It is both the initial maximum size of the dynamic table and the upper bound
    /// for the dynamic table size updates the peer may send. If a connection advertises less
    /// than 4096, the caller must make sure the peer has acknowledged the setting (or sent a
    /// matching size update) before relying on the smaller value; this decoder simply enforces
    /// the value it was given.
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            scratch_name: Vec::new(),
            scratch_value: Vec::new(),
        }
    }

    /// Decodes one complete header block (the HEADERS or PUSH_PROMISE payload followed by any
    /// CONTINUATION payloads, already concatenated and stripped of padding and priority).
    ///
    /// Calls `field(name, value)` for every field, in order. The slices point into `block`, the
    /// static table, the dynamic table or the decoder's scratch buffers, so they are only valid
    /// during the call; copy what you keep. No validation of names or values (for example,
    /// uppercase names or pseudo-header order) and no size limits are applied here: the
    /// caller enforces those in the callback.
    ///
    /// Literal fields with incremental indexing are added to the dynamic table, evicting old
    /// entries as RFC 7541 §4.4 requires. Dynamic table size updates are accepted only before
    /// the first field of the block (several in a row are allowed) and only up to the size
    /// given to [`Decoder::new`].
    ///
    /// On error the decoder's state is unspecified (it stays memory-safe and will not panic
    /// if used again, but its table may differ from the peer's): the caller must close the
    /// connection with COMPRESSION_ERROR. Fields before the error have already been passed
    /// to `field`.
    pub fn decode<F: FnMut(&[u8], &[u8])>(
        &mut self,
        block: &[u8],
        mut field: F,
    ) -> Result<(), HpackError> {
        let Decoder { table, max_table_size, scratch_name, scratch_value } = self;
        let mut pos = 0;
        let mut seen_field = false;

        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed header field (§6.1): 1xxxxxxx.
                let (index, n) = decode_int(&block[pos..], 7)?;
                pos += n;
                let (name, value) = lookup(table, index)?;
                field(name, value);
                seen_field = true;
                continue;
            }
            if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): 001xxxxx.
                if seen_field {
                    return Err(HpackError::SizeUpdateNotAtStart);
                }
                let (size, n) = decode_int(&block[pos..], 5)?;
                pos += n;
                if size > *max_table_size {
                    return Err(HpackError::SizeUpdateTooLarge);
                }
                table.set_max_size(size);
                continue;
            }

            // Literal header field (§6.2): with incremental indexing 01xxxxxx (6-bit prefix),
            // without indexing 0000xxxx or never indexed 0001xxxx (4-bit prefix).
            let indexing = first & 0x40 != 0;
            let prefix = if indexing { 6 } else { 4 };
            let (name_index, n) = decode_int(&block[pos..], prefix)?;
            pos += n;
            let name_src = match name_index {
                0 => NameSrc::Bytes(read_string(block, &mut pos, scratch_name)?),
                1..=61 => NameSrc::Bytes(STATIC[name_index - 1].0),
                _ => {
                    let i = name_index - 62;
                    if i >= table.len() {
                        return Err(HpackError::BadIndex(name_index));
                    }
                    NameSrc::Dynamic(i)
                }
            };
            let value = read_string(block, &mut pos, scratch_value)?;
            let name = match name_src {
                NameSrc::Bytes(b) => b,
                NameSrc::Dynamic(i) => lookup(table, i + 62)?.0,
            };
            field(name, value);
            seen_field = true;
            if indexing {
                table.insert(name_src, value);
            }
        }
        Ok(())
    }

    /// Returns the current size of the dynamic table in RFC 7541 octets (the sum over entries
    /// of name length + value length + 32).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Returns the number of entries in the dynamic table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        self.table.check_invariants();
    }

    /// Returns the dynamic table entries, newest first (tests only).
    #[cfg(test)]
    pub(super) fn table_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..self.table.len())
            .filter_map(|i| self.table.get(i))
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }
}

/// Looks up HPACK index `index` (1-based; static table first, then the dynamic table).
#[inline]
fn lookup(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
    match index {
        1..=61 => Ok(STATIC[index - 1]),
        0 => Err(HpackError::BadIndex(0)),
        _ => table.get(index - 62).ok_or(HpackError::BadIndex(index)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_c1_integers() {
        // C.1.1: 10 with a 5-bit prefix; the top 3 bits of the first byte are ignored.
        assert_eq!(decode_int(&[0b0000_1010], 5), Ok((10, 1)));
        assert_eq!(decode_int(&[0b1110_1010], 5), Ok((10, 1)));
        // C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(decode_int(&[0b0001_1111, 0b1001_1010, 0b0000_1010], 5), Ok((1337, 3)));
        // Trailing bytes are not consumed.
        assert_eq!(decode_int(&[31, 154, 10, 111, 22], 5), Ok((1337, 3)));
        // C.1.3: 42 starting at an octet boundary (8-bit prefix).
        assert_eq!(decode_int(&[0b0010_1010], 8), Ok((42, 1)));
    }

    #[test]
    fn integer_edges() {
        assert_eq!(decode_int(&[0x7f, 0x00], 7), Ok((127, 2)));
        assert_eq!(decode_int(&[0x7e], 7), Ok((126, 1)));
        assert_eq!(decode_int(&[0xff, 0x80, 0x01], 7), Ok((255, 3)));
        assert_eq!(decode_int(&[0xff, 0x00], 8), Ok((255, 2)));
        assert_eq!(decode_int(&[0xfe], 1), Ok((0, 1)));
        // Redundant zero continuation bytes are allowed, up to the limit of 5.
        assert_eq!(decode_int(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00], 5), Ok((31, 6)));
        // The largest accepted value, u32::MAX = 255 + 0xFFFF_FF00.
        let max = [0xff, 0x80, 0xfe, 0xff, 0xff, 0x0f];
        assert_eq!(decode_int(&max, 8), Ok((u32::MAX as usize, 6)));
    }

    #[test]
    fn integer_overflow_and_truncation() {
        // One more than u32::MAX.
        assert_eq!(
            decode_int(&[0xff, 0x81, 0xfe, 0xff, 0xff, 0x0f], 8),
            Err(HpackError::IntegerOverflow)
        );
        // Six continuation bytes.
        assert_eq!(
            decode_int(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Err(HpackError::IntegerOverflow)
        );
        // Large continuation values overflow early rather than reading on.
        assert_eq!(
            decode_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], 5),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(decode_int(&[], 5), Err(HpackError::Truncated));
        assert_eq!(decode_int(&[0x1f], 5), Err(HpackError::Truncated));
        assert_eq!(decode_int(&[0x1f, 0x9a], 5), Err(HpackError::Truncated));
    }

    #[test]
    fn read_string_raw_and_huffman() {
        let mut scratch = Vec::new();
        let block = [0x03, b'a', b'b', b'c', 0x82, 0x1f, 0xff];
        let mut pos = 0;
        assert_eq!(read_string(&block, &mut pos, &mut scratch), Ok(&b"abc"[..]));
        assert_eq!(pos, 4);
        // 0x82: Huffman, 2 bytes: 'a' then eight one bits: invalid padding.
        assert_eq!(read_string(&block, &mut pos, &mut scratch), Err(HpackError::BadHuffman));
        let mut pos = 0;
        assert_eq!(read_string(&block[..3], &mut pos, &mut scratch), Err(HpackError::Truncated));
        let mut pos = 3;
        assert_eq!(read_string(&block[..3], &mut pos, &mut scratch), Err(HpackError::Truncated));
    }
}
