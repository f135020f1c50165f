//! gRPC message framing: the 5-byte prefix (compressed flag, big-endian u32 length) before every
//! protobuf message, as the gRPC HTTP/2 spec's "Length-Prefixed-Message".
//!
//! Pure functions over byte buffers, so that a message split across DATA frames or several
//! messages packed into one frame decode the same way. `Ok(None)` means "need more bytes", which is
//! normal. The length is checked against the limit before a single byte of the body is buffered,
//! so an oversized message costs nothing but its header.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Bytes before each message: flag (1) + length (4).
pub const PREFIX_LEN: usize = 5;

/// Default most bytes one message may have, as gRPC's own default: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why a byte stream is not a valid sequence of gRPC messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The compressed flag is set, but no `grpc-encoding` was negotiated.
    #[error("compressed message without a negotiated grpc-encoding")]
    Compressed,
    /// The compressed flag is neither 0 nor 1.
    #[error("invalid compressed flag {0}")]
    InvalidFlag(u8),
    /// The declared length exceeds the limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// Takes one complete message off the front of `buf`, or `Ok(None)` if more bytes are needed.
pub fn decode(buf: &mut BytesMut, max_message_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = peek_len(buf, max_message_bytes)? else { return Ok(None) };
    if buf.len() < PREFIX_LEN + len {
        buf.reserve(PREFIX_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(PREFIX_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Validates the prefix at the front of `buf` and returns the message length, or `Ok(None)` when
/// fewer than [`PREFIX_LEN`] bytes are there.
pub fn peek_len(buf: &[u8], max_message_bytes: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < PREFIX_LEN {
        return Ok(None);
    }
    match buf[0] {
        0 => {}
        1 => return Err(FrameError::Compressed),
        flag => return Err(FrameError::InvalidFlag(flag)),
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max_message_bytes {
        return Err(FrameError::TooLarge { len, max: max_message_bytes });
    }
    Ok(Some(len))
}

/// Appends `msg` with its prefix to `dst`.
pub fn encode<M: Message>(msg: &M, dst: &mut BytesMut) {
    let len = msg.encoded_len();
    dst.reserve(PREFIX_LEN + len);
    dst.put_u8(0);
    // A message over 4 GiB cannot be framed; callers cap sizes far below (DEFAULT_MAX_MESSAGE_BYTES).
    dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // `encode` only fails when the buffer lacks capacity, which `reserve` above rules out.
    msg.encode(dst).expect("reserved capacity");
}

/// `msg` with its prefix, as one buffer.
pub fn encode_to_bytes<M: Message>(msg: &M) -> Bytes {
    let mut dst = BytesMut::with_capacity(PREFIX_LEN + msg.encoded_len());
    encode(msg, &mut dst);
    dst.freeze()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::health::HealthCheckRequest;

    #[test]
    fn byte_exact_fixture() {
        let msg = HealthCheckRequest { service: "ab".into() };
        // field 1, wire type 2 (0x0a), length 2, "ab"
        assert_eq!(&encode_to_bytes(&msg)[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']);
        assert_eq!(&encode_to_bytes(&HealthCheckRequest::default())[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn partial_prefix_and_body_need_more() {
        let full = encode_to_bytes(&HealthCheckRequest { service: "service".into() });
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut buf, 1024), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_compressed_invalid_and_oversized() {
        let mut buf = BytesMut::from(&[1u8, 0, 0, 0, 1, 0][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::Compressed));
        let mut buf = BytesMut::from(&[7u8, 0, 0, 0, 1, 0][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::InvalidFlag(7)));
        // Only the header has arrived: the size is refused before the body is buffered.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 4, 1][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::TooLarge { len: 1025, max: 1024 }));
    }

    proptest! {
        #[test]
        fn packed_messages_split_anywhere_round_trip(
            services in prop::collection::vec(".{0,40}", 1..6),
            chunk in 1usize..17,
        ) {
            let mut wire = BytesMut::new();
            for s in &services {
                encode(&HealthCheckRequest { service: s.clone() }, &mut wire);
            }
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(msg) = decode(&mut buf, 1 << 20).unwrap() {
                    out.push(HealthCheckRequest::decode(msg).unwrap().service);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, services);
        }
    }
}
