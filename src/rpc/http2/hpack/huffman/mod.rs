// Adapted from the h2 crate (https://github.com/hyperium/h2), MIT licence, Copyright (c) 2017 h2 authors
// (see ../LICENSE-h2). The decoder (fast 12-bit table plus the byte-wise `DECODE_TABLE` walk) and
// the encoder follow h2 0.4.20 `src/hpack/huffman/{decode,encode}.rs`, ported from `BytesMut`
// to `Vec<u8>` and to this module's error type; `encoded_len` and the tests are new.

//! The HPACK Huffman code (RFC 7541 §5.2 and Appendix B).
//!
//! [`decode`] is table driven: it looks up 12 bits of input at a time in a table built at
//! compile time, which yields one or two whole symbols for the common short codes (ASCII
//! letters and digits use 5 to 7 bits). Longer codes, and the last few bits of the input, are
//! decoded by walking a generated table one input byte at a time. Both tables come from h2.
//!
//! Decoding rejects everything RFC 7541 §5.2 calls an error: a code that is not in the table,
//! the EOS symbol, and padding that is longer than 7 bits or not made of one bits.

mod table;

use self::table::{DECODE_TABLE, ENCODE_CODES, ENCODE_CODE_LENGTHS};
use super::HpackError;

// DECODE_TABLE (in `table.rs`) is a series of 256-entry tables, walked one input byte at a
// time. A leaf entry (BRANCH bit clear) holds a decoded symbol and the number of bits its code
// used. A branch entry (BRANCH bit set) holds the index of the table for the next byte. No
// valid code leads back to table 0, so a branch to 0 means the input is not a valid code.
const BRANCH: u16 = 0x8000;
const TABLE_INDEX_MASK: u16 = 0x7f00;
const TABLE_WIDTH: usize = 256;

// Maps each possible 12-bit chunk of input to the symbol(s) it starts with. Entry layout (u32):
//
//   bits  0..8   first decoded byte
//   bits  8..16  second decoded byte (if any)
//   bits 16..24  number of symbols decoded: 1, 2, or 0, where 0 means the code is longer than
//                12 bits and the slow path must run
//   bits 24..32  how many of the 12 bits the decoded symbols used
const FAST_BITS: usize = 12;
static FAST_DECODE_TABLE: [u32; 1 << FAST_BITS] = build_fast_table();

const fn build_fast_table() -> [u32; 1 << FAST_BITS] {
    let mut table = [0; 1 << FAST_BITS];

    // First fill in every index that starts with one whole code.
    let mut a = 0;
    while a < 256 {
        let len1 = ENCODE_CODE_LENGTHS[a] as usize;
        let code1 = ENCODE_CODES[a] as usize;
        if len1 <= FAST_BITS {
            let rem = FAST_BITS - len1;
            let base = code1 << rem;
            let single = (1 << 16) | ((len1 as u32) << 24) | a as u32;
            let mut i = 0;
            while i < (1 << rem) {
                table[base + i] = single;
                i += 1;
            }
        }
        a += 1;
    }

    // Overwrite the indices where a second whole code fits right after the first.
    let mut a = 0;
    while a < 256 {
        let len1 = ENCODE_CODE_LENGTHS[a] as usize;
        let code1 = ENCODE_CODES[a] as usize;
        // A second code needs at least 5 more bits (the shortest code).
        if len1 + 5 <= FAST_BITS {
            let rem = FAST_BITS - len1;
            let mut b = 0;
            while b < 256 {
                let len2 = ENCODE_CODE_LENGTHS[b] as usize;
                let code2 = ENCODE_CODES[b] as usize;
                if len2 <= rem {
                    let rem2 = rem - len2;
                    let base = (code1 << rem) | (code2 << rem2);
                    let pair =
                        (2 << 16) | (((len1 + len2) as u32) << 24) | ((b as u32) << 8) | a as u32;
                    let mut i = 0;
                    while i < (1 << rem2) {
                        table[base + i] = pair;
                        i += 1;
                    }
                }
                b += 1;
            }
        }
        a += 1;
    }

    table
}

// Decodes one code of any length by walking DECODE_TABLE one input byte at a time, and writes
// the symbol to `dst[*o]`. Used for codes longer than FAST_BITS bits and for the tail of the
// input. `acc` holds `bits` valid bits, most significant first.
#[inline(always)]
fn decode_code_slow(
    acc: &mut u64,
    bits: &mut usize,
    dst: &mut [u8],
    o: &mut usize,
) -> Result<(), HpackError> {
    let mut table = 0;
    loop {
        let e = DECODE_TABLE[table * TABLE_WIDTH + (*acc >> 56) as usize];
        if e & BRANCH == 0 {
            let used = (e >> 8) as usize;
            if used > *bits {
                return Err(HpackError::BadHuffman);
            }
            dst[*o] = e as u8;
            *o += 1;
            *acc <<= used;
            *bits -= used;
            return Ok(());
        }
        if *bits < 8 {
            return Err(HpackError::BadHuffman);
        }
        table = ((e & TABLE_INDEX_MASK) >> 8) as usize;
        if table == 0 {
            // Also covers the EOS symbol, whose 30-bit code leads to no leaf.
            return Err(HpackError::BadHuffman);
        }
        *acc <<= 8;
        *bits -= 8;
    }
}

/// Decodes the Huffman-coded string `src` and appends the decoded bytes to `dst`.
///
/// Returns [`HpackError::BadHuffman`] if `src` contains a code that does not exist, the EOS
/// symbol, or padding that is 8 bits or longer or not all one bits. On error, `dst` is left as
/// it was before the call. `dst`'s spare capacity is reused, so a caller that clears and reuses
/// one buffer does not allocate once the buffer is big enough.
pub fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HpackError> {
    let base_len = dst.len();

    // Reserve the worst case output size. Every code is at least 5 bits, so `len` input bytes
    // cannot decode to more than `len * 8 / 5` output bytes. One more byte covers the fast path
    // always writing two bytes even when it decoded only one symbol.
    dst.resize(base_len + src.len() * 8 / 5 + 1, 0);
    match decode_into(src, &mut dst[base_len..]) {
        Ok(written) => {
            dst.truncate(base_len + written);
            Ok(())
        }
        Err(e) => {
            dst.truncate(base_len);
            Err(e)
        }
    }
}

// Decodes `src` into `out`, which must hold at least `src.len() * 8 / 5 + 1` bytes, and returns
// the number of bytes written.
fn decode_into(src: &[u8], out: &mut [u8]) -> Result<usize, HpackError> {
    let len = src.len();
    let mut o = 0;
    let mut acc: u64 = 0;
    let mut bits: usize = 0;
    let mut pos: usize = 0;

    'outer: loop {
        // Fill the bit buffer. While 8 or more input bytes remain, load the next 8 in one go and
        // count as many whole bytes as fit under the bits already in the buffer (bringing it to
        // 56-63 bits). The bytes that did not fit still land in the low end of `acc`; the next
        // refill ORs the same values over them, so no harm done.
        if let Some(chunk) = src.get(pos..pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            acc |= u64::from_be_bytes(word) >> bits;
            pos += (63 - bits) >> 3; // bytes now accounted for in `bits`
            bits |= 56; // equals bits + 8 * (bytes added)
        } else {
            while bits <= 56 && pos < len {
                acc |= u64::from(src[pos]) << (56 - bits);
                pos += 1;
                bits += 8;
            }
        }

        while bits >= FAST_BITS {
            let entry = FAST_DECODE_TABLE[(acc >> (64 - FAST_BITS)) as usize];
            let count = (entry >> 16) & 0xff;
            if count == 0 {
                // The next code is longer than 12 bits. Refill first if it might not be in the
                // buffer yet (the longest code is 30 bits), then decode it by walking
                // DECODE_TABLE.
                if bits < 30 && pos < len {
                    continue 'outer;
                }
                decode_code_slow(&mut acc, &mut bits, out, &mut o)?;
                continue;
            }
            let consumed = (entry >> 24) as usize;
            out[o] = entry as u8;
            out[o + 1] = (entry >> 8) as u8;
            o += count as usize;
            acc <<= consumed;
            bits -= consumed;
        }

        if pos >= len {
            break;
        }
    }

    // Tail: the input is exhausted and fewer than 12 bits remain.
    while bits > 0 {
        // The encoder pads the last byte with up to 7 one bits, which are valid only between
        // symbols. Anything else must decode.
        if bits < 8 && (acc >> (64 - bits)) == (1 << bits) - 1 {
            break;
        }
        decode_code_slow(&mut acc, &mut bits, out, &mut o)?;
    }
    Ok(o)
}

/// Returns how many bytes [`encode`] produces for `src`, padding included.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| usize::from(ENCODE_CODE_LENGTHS[usize::from(b)])).sum();
    bits.div_ceil(8)
}

/// Huffman-codes `src` and appends the result to `dst`, padding the last byte with one bits
/// (the start of the EOS code) as RFC 7541 §5.2 requires. Appends exactly
/// [`encoded_len`]`(src)` bytes.
pub fn encode(src: &[u8], dst: &mut Vec<u8>) {
    // `bits` holds `bits_len` (< 32 between iterations) pending bits, least significant last.
    // Codes are at most 30 bits, so the sum always fits in 64 bits.
    let mut bits = 0u64;
    let mut bits_len = 0;

    for &b in src {
        let nbits = usize::from(ENCODE_CODE_LENGTHS[usize::from(b)]);
        let code = u64::from(ENCODE_CODES[usize::from(b)]);

        bits = (bits << nbits) | code;
        bits_len += nbits;

        if bits_len >= 32 {
            let remaining = bits_len - 32;
            dst.extend_from_slice(&((bits >> remaining) as u32).to_be_bytes());
            bits_len = remaining;
            bits &= (1 << remaining) - 1;
        }
    }

    if bits_len != 0 {
        // Pad the final byte with the EOS prefix (all ones).
        let padding = (8 - bits_len % 8) % 8;
        bits = (bits << padding) | ((1 << padding) - 1);
        bits_len += padding;

        while bits_len != 0 {
            bits_len -= 8;
            dst.push((bits >> bits_len) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(src: &[u8]) -> Result<Vec<u8>, HpackError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    fn enc(src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(src, &mut out);
        out
    }

    // The simplest decoder we can write, used to double-check the real one: turn the input
    // into a string of '0'/'1' characters and repeatedly strip off the first code that matches.
    // No code is a prefix of another, so at most one can match. EOS is left out on purpose: an
    // encoded EOS is an error per RFC 7541 §5.2, and it cannot match as padding (30 bits).
    fn reference_decode(src: &[u8]) -> Result<Vec<u8>, HpackError> {
        let codes: Vec<String> = ENCODE_CODES
            .iter()
            .zip(ENCODE_CODE_LENGTHS.iter())
            .map(|(&code, &len)| format!("{code:0len$b}", len = len as usize))
            .collect();
        let bits: String = src.iter().map(|byte| format!("{byte:08b}")).collect();
        let mut out = Vec::new();
        let mut rest: &str = &bits;
        while let Some(sym) = (0..256).find(|&sym| rest.starts_with(&codes[sym])) {
            out.push(sym as u8);
            rest = &rest[codes[sym].len()..];
        }
        if rest.len() >= 8 || rest.contains('0') {
            return Err(HpackError::BadHuffman);
        }
        Ok(out)
    }

    #[test]
    fn rfc_c4_strings() {
        // RFC 7541 C.4.1 - C.4.3 Huffman-coded strings.
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"www.example.com",
                &[0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff],
            ),
            (b"no-cache", &[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]),
            (b"custom-key", &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f]),
            (b"custom-value", &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf]),
        ];
        for &(plain, coded) in cases {
            assert_eq!(enc(plain), coded);
            assert_eq!(encoded_len(plain), coded.len());
            assert_eq!(dec(coded).unwrap(), plain);
        }
    }

    #[test]
    fn single_symbols() {
        assert_eq!(dec(&[0b0011_1111]).unwrap(), b"o");
        assert_eq!(dec(&[7]).unwrap(), b"0");
        assert_eq!(dec(&[(0x21 << 2) + 3]).unwrap(), b"A");
        assert_eq!(dec(&[255, 160 + 15]).unwrap(), b"#");
        assert_eq!(dec(&[255, 255, 255, 240 + 3]).unwrap(), b"\n");
        assert_eq!(dec(&[]).unwrap(), b"");
    }

    #[test]
    fn appends_and_restores_on_error() {
        let mut out = b"abc".to_vec();
        decode(&enc(b"xyz"), &mut out).unwrap();
        assert_eq!(out, b"abcxyz");
        assert_eq!(decode(&[0x00], &mut out), Err(HpackError::BadHuffman));
        assert_eq!(out, b"abcxyz");
    }

    #[test]
    fn rejects_eos_and_bad_padding() {
        // EOS (30 one bits) padded to 32 bits.
        assert_eq!(dec(&[0xff, 0xff, 0xff, 0xff]), Err(HpackError::BadHuffman));
        // EOS after a valid symbol: 'a' is 00011, then 30 ones, then 5 bits of padding.
        let mut v = [0u8; 5];
        let bits: u64 = (0b00011u64 << 35) | (((1u64 << 30) - 1) << 5) | 0b11111;
        v.copy_from_slice(&bits.to_be_bytes()[3..]);
        assert_eq!(dec(&v), Err(HpackError::BadHuffman));
        // Eight bits of padding: a full byte of ones.
        assert_eq!(dec(&[0xff]), Err(HpackError::BadHuffman));
        // 'a' (00011) then eight one bits of padding, padded again: 00011111 11111111.
        assert_eq!(dec(&[0x1f, 0xff]), Err(HpackError::BadHuffman));
        // Padding that is not all ones: 'a' (00011) followed by 010.
        assert_eq!(dec(&[0b0001_1010]), Err(HpackError::BadHuffman));
        // Padding of zeros only.
        assert_eq!(dec(&[0]), Err(HpackError::BadHuffman));
        // Sanity: 'a' followed by 111 is valid.
        assert_eq!(dec(&[0b0001_1111]).unwrap(), b"a");
    }

    #[test]
    fn all_octets_and_max_expansion() {
        let src: Vec<u8> = (0..=u8::MAX).collect();
        assert_eq!(dec(&enc(&src)).unwrap(), src);
        for len in 0..100 {
            let src = vec![b'0'; len];
            assert_eq!(dec(&enc(&src)).unwrap(), src, "len={len}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(src in proptest::collection::vec(any::<u8>(), 0..300)) {
            let coded = enc(&src);
            prop_assert_eq!(coded.len(), encoded_len(&src));
            prop_assert_eq!(dec(&coded).unwrap(), src);
        }

        #[test]
        fn matches_reference(src in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(dec(&src), reference_decode(&src));
        }

        #[test]
        fn matches_reference_high_bytes(src in proptest::collection::vec(0xe0u8..=0xff, 0..40)) {
            prop_assert_eq!(dec(&src), reference_decode(&src));
        }

        #[test]
        fn matches_reference_mostly_valid(
            src in proptest::collection::vec(any::<u8>(), 0..40),
            cut in 0usize..8,
            flip in any::<u16>(),
        ) {
            // Valid encodings with a few bits damaged or cut off exercise the tail logic.
            let mut coded = enc(&src);
            let keep = coded.len().saturating_sub(cut);
            coded.truncate(keep);
            if !coded.is_empty() && flip & 1 == 1 {
                let i = usize::from(flip >> 4) % coded.len();
                coded[i] ^= 1 << ((flip >> 1) & 7);
            }
            prop_assert_eq!(dec(&coded), reference_decode(&coded));
        }
    }
}
