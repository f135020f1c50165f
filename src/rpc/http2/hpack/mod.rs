//! HPACK header compression for HTTP/2 (RFC 7541).
//!
//! This module depends only on `std` and contains no `unsafe` code.
//!
//! # Decoding
//!
//! A [`Decoder`] belongs to one connection and keeps the dynamic table across header blocks.
//! [`Decoder::decode`] takes one complete header block and hands each field to a callback as
//! two borrowed byte slices, `(name, value)`. The slices point into the block itself (raw
//! literals are never copied), into the static or dynamic table (indexed fields), or into two
//! scratch buffers inside the decoder (Huffman-coded literals). Nothing is allocated per field:
//! the scratch buffers and the dynamic table reuse their memory, so once a connection has
//! warmed up, decoding a block allocates nothing. A callback rather than an iterator or a
//! `Vec` of owned pairs keeps the borrows short and lets the caller copy only what it keeps.
//!
//! The dynamic table stores all entry bytes in one append-only arena with a ring of entry
//! descriptors (newest first), so an indexed lookup is O(1) and an insert is amortised O(1)
//! with no allocation once the arena has reached its working size (see `table.rs`).
//! Huffman strings are decoded with a table-driven decoder adapted from the h2 crate.
//!
//! # Encoding
//!
//! The encoder is a handful of stateless free functions ([`encode_indexed`],
//! [`encode_literal_indexed_name`], [`encode_literal`], [`encode_literal_huffman`],
//! [`encode_int`]) that append one representation to a `Vec<u8>`. It never inserts into the
//! peer's dynamic table and never emits a dynamic table size update. That costs some bytes
//! on repeated headers, but it means the encoder has no state to keep in sync with the peer,
//! needs no knowledge of the peer's SETTINGS_HEADER_TABLE_SIZE, cannot be made to hold
//! memory by the peer, and lets responses be encoded from any task without a lock. Every
//! index it emits refers to the [`STATIC_TABLE`], which every decoder has.
//!
//! # Limits are the caller's job
//!
//! The decoder bounds only what HPACK itself defines: integers (at most `u32::MAX`, at most
//! 5 continuation bytes), the dynamic table size (at most the size passed to
//! [`Decoder::new`]), and the input (a block cannot decode to more than about 8/5 of its
//! length per string). It does not limit the header list size or the number of fields: the
//! caller counts both in the callback (for example `name.len() + value.len() + 32` per field
//! against SETTINGS_MAX_HEADER_LIST_SIZE) and fails the request when they run over. Likewise
//! the caller validates names and values (lowercase names, pseudo-header rules) itself.
//! Any [`HpackError`] is a connection error of type COMPRESSION_ERROR (RFC 7540 §4.3).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod huffman;

mod decoder;
mod encoder;
mod table;

#[cfg(test)]
mod tests;

pub use decoder::Decoder;
pub use encoder::*;
pub use table::STATIC_TABLE;

/// Why a header block could not be decoded. Every variant means the connection must be closed
/// with COMPRESSION_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends in the middle of a representation (an integer or a string).
    Truncated,
    /// An integer is larger than `u32::MAX` or uses more than 5 continuation bytes.
    IntegerOverflow,
    /// An index is 0 or beyond the end of the static plus dynamic table; holds the index.
    BadIndex(usize),
    /// A Huffman-coded string has an invalid code, contains the EOS symbol, or ends with
    /// padding that is longer than 7 bits or not all one bits.
    BadHuffman,
    /// A dynamic table size update asks for more than the size we advertised.
    SizeUpdateTooLarge,
    /// A dynamic table size update comes after the first field of the block.
    SizeUpdateNotAtStart,
}

impl std::fmt::Display for HpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HpackError::Truncated => f.write_str("HPACK block ends inside a representation"),
            HpackError::IntegerOverflow => f.write_str("HPACK integer too large"),
            HpackError::BadIndex(i) => write!(f, "HPACK index {i} is not in the table"),
            HpackError::BadHuffman => f.write_str("invalid HPACK Huffman string"),
            HpackError::SizeUpdateTooLarge => {
                f.write_str("HPACK dynamic table size update above the advertised limit")
            }
            HpackError::SizeUpdateNotAtStart => {
                f.write_str("HPACK dynamic table size update after the first field of a block")
            }
        }
    }
}

impl std::error::Error for HpackError {}
