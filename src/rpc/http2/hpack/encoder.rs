//! The HPACK encoder: free functions that append one representation to a `Vec<u8>`.
//!
//! The encoder is stateless. It never adds entries to the peer's dynamic table (no literal
//! "with incremental indexing") and never emits a dynamic table size update, so it does not
//! need to track the peer's SETTINGS_HEADER_TABLE_SIZE: indices it emits always refer to the
//! static table, which every decoder has.

use super::huffman;

/// Appends the integer `value` (RFC 7541 §5.1) with a `prefix_bits`-bit prefix (1 to 8).
///
/// The bits of `first_byte_flags` above the prefix are kept in the first byte (for example
/// `0x80` for an indexed field with a 7-bit prefix); its bits inside the prefix are ignored.
pub fn encode_int(value: usize, prefix_bits: u8, first_byte_flags: u8, dst: &mut Vec<u8>) {
    debug_assert!((1..=8).contains(&prefix_bits), "prefix_bits must be 1..=8");
    let prefix_bits = prefix_bits.clamp(1, 8);
    let mask = (0xffu16 >> (8 - prefix_bits)) as u8;
    let flags = first_byte_flags & !mask;
    if value < usize::from(mask) {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | mask);
    let mut rest = value - usize::from(mask);
    while rest >= 0x80 {
        dst.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    dst.push(rest as u8);
}

/// Appends an indexed header field (RFC 7541 §6.1, `1xxxxxxx`) for `index`.
///
/// Since this encoder never inserts into the peer's dynamic table, `index` should be a static
/// table index, 1 to 61 (see [`STATIC_TABLE`](super::STATIC_TABLE)).
pub fn encode_indexed(index: usize, dst: &mut Vec<u8>) {
    debug_assert!((1..=61).contains(&index), "not a static table index: {index}");
    encode_int(index, 7, 0x80, dst);
}

/// Appends a literal header field without indexing whose name is the static table entry
/// `name_index` (1 to 61) and whose value is `value`, sent raw (RFC 7541 §6.2.2, `0000xxxx`).
pub fn encode_literal_indexed_name(name_index: usize, value: &[u8], dst: &mut Vec<u8>) {
    debug_assert!((1..=61).contains(&name_index), "not a static table index: {name_index}");
    encode_int(name_index, 4, 0x00, dst);
    encode_raw_string(value, dst);
}

/// Appends a literal header field never indexed (RFC 7541 §6.2.3, `0001xxxx`) whose name is the
/// static table entry `name_index` (1 to 61): for secrets, which no decoder or intermediary may
/// keep in a table. `value` is sent raw.
pub fn encode_literal_never_indexed_name(name_index: usize, value: &[u8], dst: &mut Vec<u8>) {
    debug_assert!((1..=61).contains(&name_index), "not a static table index: {name_index}");
    encode_int(name_index, 4, 0x10, dst);
    encode_raw_string(value, dst);
}

/// Appends a literal header field without indexing with a new name (RFC 7541 §6.2.2, first
/// byte `0x00`); `name` and `value` are sent raw.
pub fn encode_literal(name: &[u8], value: &[u8], dst: &mut Vec<u8>) {
    dst.push(0x00);
    encode_raw_string(name, dst);
    encode_raw_string(value, dst);
}

/// Like [`encode_literal`], but `name` and `value` are each Huffman-coded when that makes them
/// shorter, and sent raw otherwise.
pub fn encode_literal_huffman(name: &[u8], value: &[u8], dst: &mut Vec<u8>) {
    dst.push(0x00);
    encode_string_huffman(name, dst);
    encode_string_huffman(value, dst);
}

fn encode_raw_string(s: &[u8], dst: &mut Vec<u8>) {
    encode_int(s.len(), 7, 0x00, dst);
    dst.extend_from_slice(s);
}

fn encode_string_huffman(s: &[u8], dst: &mut Vec<u8>) {
    let coded_len = huffman::encoded_len(s);
    if coded_len < s.len() {
        encode_int(coded_len, 7, 0x80, dst);
        dst.reserve(coded_len);
        huffman::encode(s, dst);
    } else {
        encode_raw_string(s, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(value: usize, prefix_bits: u8, flags: u8) -> Vec<u8> {
        let mut v = Vec::new();
        encode_int(value, prefix_bits, flags, &mut v);
        v
    }

    #[test]
    fn rfc_c1_integers() {
        assert_eq!(int(10, 5, 0), [0b0000_1010]);
        assert_eq!(int(1337, 5, 0), [0b0001_1111, 0b1001_1010, 0b0000_1010]);
        assert_eq!(int(42, 8, 0), [0b0010_1010]);
    }

    #[test]
    fn integer_edges_and_flags() {
        assert_eq!(int(30, 5, 0xff), [0xfe]);
        assert_eq!(int(31, 5, 0xe0), [0xff, 0x00]);
        assert_eq!(int(127, 7, 0x80), [0xff, 0x00]);
        assert_eq!(int(128, 7, 0x80), [0xff, 0x01]);
        assert_eq!(int(254, 8, 0), [0xfe]);
        assert_eq!(int(255, 8, 0), [0xff, 0x00]);
        assert_eq!(int(0, 1, 0xfe), [0xfe]);
        for prefix in 1..=8u8 {
            for value in (0..2000).chain([u32::MAX as usize - 1, u32::MAX as usize]) {
                let v = int(value, prefix, 0);
                assert_eq!(super::super::decoder::decode_int(&v, prefix), Ok((value, v.len())));
            }
        }
    }

    #[test]
    fn representations() {
        let mut v = Vec::new();
        encode_indexed(2, &mut v);
        assert_eq!(v, [0x82]);
        v.clear();
        encode_literal_indexed_name(4, b"/x", &mut v);
        assert_eq!(v, [0x04, 0x02, b'/', b'x']);
        v.clear();
        encode_literal(b"k", b"", &mut v);
        assert_eq!(v, [0x00, 0x01, b'k', 0x00]);
        v.clear();
        // RFC 7541 C.4.3 strings: "custom-key" Huffman-codes to 8 bytes.
        encode_literal_huffman(b"custom-key", b"\xff", &mut v);
        assert_eq!(
            v,
            [0x00, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x01, 0xff],
            "0xff codes to 26 bits, so it is sent raw"
        );
    }
}
