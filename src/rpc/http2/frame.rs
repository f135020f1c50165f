//! HTTP/2 frames (RFC 9113 §4 and §6): the 9-byte frame header, the frame types and flags this
//! layer knows, and writers that append encoded frames to a connection's output buffer.
//!
//! Parsing is split in two: [`FrameHead::parse`] reads the fixed header, and the connection
//! interprets the payload by type, because what a malformed payload means (stream or connection
//! error) depends on the connection's state.

/// Length of every frame header.
pub const HEAD_LEN: usize = 9;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The smallest SETTINGS_MAX_FRAME_SIZE (and the default).
pub const DEFAULT_MAX_FRAME: u32 = 16_384;

/// The largest SETTINGS_MAX_FRAME_SIZE a peer may announce.
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;

/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The default initial window of a stream and of the connection.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes of RST_STREAM and GOAWAY (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    /// The RFC's name of the code, for logs.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("UNKNOWN")
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// The fixed 9-byte header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length.
    pub len: u32,
    /// Frame type ([`kind`]).
    pub kind: u8,
    /// Flags ([`flag`]).
    pub flags: u8,
    /// Stream id (the reserved bit cleared).
    pub stream: u32,
}

impl FrameHead {
    /// Reads a frame header from the first 9 bytes of `buf`; `None` if fewer are there.
    pub fn parse(buf: &[u8]) -> Option<FrameHead> {
        let h: &[u8; HEAD_LEN] = buf.get(..HEAD_LEN)?.try_into().ok()?;
        Some(FrameHead {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    /// True when `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Appends this header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let len = self.len.to_be_bytes();
        out.extend_from_slice(&[len[1], len[2], len[3], self.kind, self.flags]);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
    }
}

/// Strips the padding of a DATA or HEADERS payload (RFC 9113 §6.1): `None` when the pad length
/// is not smaller than the payload (a connection error of type PROTOCOL_ERROR).
pub fn strip_padding(head: &FrameHead, payload: &[u8]) -> Option<(usize, usize)> {
    if !head.has(flag::PADDED) {
        return Some((0, payload.len()));
    }
    let pad = *payload.first()? as usize;
    if pad >= payload.len() {
        return None;
    }
    Some((1, payload.len() - pad))
}

/// Appends a SETTINGS frame with `values`.
pub fn write_settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    FrameHead { len: (values.len() * 6) as u32, kind: kind::SETTINGS, flags: 0, stream: 0 }
        .write(out);
    for (id, value) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a SETTINGS acknowledgement.
pub fn write_settings_ack(out: &mut Vec<u8>) {
    FrameHead { len: 0, kind: kind::SETTINGS, flags: flag::ACK, stream: 0 }.write(out);
}

/// Appends a PING (or its ACK) carrying `data`.
pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    let flags = if ack { flag::ACK } else { 0 };
    FrameHead { len: 8, kind: kind::PING, flags, stream: 0 }.write(out);
    out.extend_from_slice(&data);
}

/// Appends a WINDOW_UPDATE.
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    FrameHead { len: 4, kind: kind::WINDOW_UPDATE, flags: 0, stream }.write(out);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

/// Appends a RST_STREAM.
pub fn write_rst(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    FrameHead { len: 4, kind: kind::RST_STREAM, flags: 0, stream }.write(out);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

/// Appends a GOAWAY.
pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &[u8]) {
    FrameHead { len: 8 + debug.len() as u32, kind: kind::GOAWAY, flags: 0, stream: 0 }.write(out);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug);
}

/// Appends a DATA frame.
pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    FrameHead { len: data.len() as u32, kind: kind::DATA, flags, stream }.write(out);
    out.extend_from_slice(data);
}

/// Appends a header block as HEADERS plus as many CONTINUATION frames as `max_frame` needs.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: u32,
) {
    let max = max_frame.max(DEFAULT_MAX_FRAME) as usize;
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    FrameHead { len: first.len() as u32, kind: kind::HEADERS, flags, stream }.write(out);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { flag::END_HEADERS } else { 0 };
        FrameHead { len: chunk.len() as u32, kind: kind::CONTINUATION, flags, stream }.write(out);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_clears_the_reserved_bit() {
        let head = FrameHead { len: 0x01_02_03, kind: kind::HEADERS, flags: 0x25, stream: 7 };
        let mut out = Vec::new();
        head.write(&mut out);
        assert_eq!(out, [1, 2, 3, 1, 0x25, 0, 0, 0, 7]);
        assert_eq!(FrameHead::parse(&out), Some(head));
        out[5] |= 0x80;
        assert_eq!(FrameHead::parse(&out).unwrap().stream, 7);
        assert_eq!(FrameHead::parse(&out[..8]), None);
    }

    #[test]
    fn padding_must_be_shorter_than_the_payload() {
        let padded = FrameHead { len: 4, kind: kind::DATA, flags: flag::PADDED, stream: 1 };
        assert_eq!(strip_padding(&padded, &[2, b'a', 0, 0]), Some((1, 2)));
        assert_eq!(strip_padding(&padded, &[3, 0, 0, 0]), Some((1, 1)));
        assert_eq!(strip_padding(&padded, &[4, 0, 0, 0]), None);
        assert_eq!(strip_padding(&padded, &[]), None);
        let plain = FrameHead { flags: 0, ..padded };
        assert_eq!(strip_padding(&plain, &[9, 9]), Some((0, 2)));
    }

    #[test]
    fn large_header_blocks_continue() {
        let block = vec![0x82; 40_000];
        let mut out = Vec::new();
        write_headers(&mut out, 3, &block, true, DEFAULT_MAX_FRAME);
        let first = FrameHead::parse(&out).unwrap();
        assert_eq!((first.kind, first.len, first.flags), (kind::HEADERS, 16_384, flag::END_STREAM));
        let second = FrameHead::parse(&out[9 + 16_384..]).unwrap();
        assert_eq!((second.kind, second.flags), (kind::CONTINUATION, 0));
        let third = FrameHead::parse(&out[2 * (9 + 16_384)..]).unwrap();
        assert_eq!(
            (third.kind, third.len, third.flags),
            (kind::CONTINUATION, 7_232, flag::END_HEADERS)
        );
        assert_eq!(out.len(), 3 * 9 + 40_000);
    }
}
