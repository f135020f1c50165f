//! Fuzzing harnesses for the HTTP/2 layer (test support: nothing in the server uses this).
//!
//! Each harness takes arbitrary bytes, drives one part of the layer with them and panics when
//! an invariant breaks. The cargo-fuzz targets in `fuzz/` call them, and
//! `tests/http2_fuzz_corpus.rs` replays the stored corpus and runs them on random inputs on
//! stable, so the same checks run in `cargo test`.
//!
//! - [`frames`]: the client preface and an empty SETTINGS, then the bytes as the client's
//!   stream, fed to a [`Conn`] in chunks whose sizes come from the first byte.
//! - [`hpack`]: the bytes split into header blocks decoded by one [`Decoder`] whose table size
//!   comes from the first byte; decoded lists are re-encoded and must decode the same.
//! - [`connection`]: the bytes as a script of operations on one connection: feed client bytes,
//!   answer streams (headers, data, trailers), reset them, drain, move a fake clock, and drain
//!   the output in pieces.
//!
//! The invariants checked after every operation (RFC 9113 unless noted):
//!
//! - the output is a sequence of whole frames, only of the types a server sends, each within
//!   the largest SETTINGS_MAX_FRAME_SIZE the client announced; a header block is not
//!   interleaved with other frames (§6.10); SETTINGS, PING and GOAWAY go on stream 0;
//! - no frame at all follows a GOAWAY with an error code, and [`Conn::failed`] is true exactly
//!   when one was sent; the last-stream id of successive GOAWAYs never increases (§6.8);
//! - RST_STREAM only names streams the client has opened (§6.4: never an idle stream); no
//!   HEADERS or DATA follows END_STREAM or RST_STREAM on a stream, no WINDOW_UPDATE follows
//!   RST_STREAM (§5.1);
//! - DATA only on streams that produced a [`Event::Request`], and within the flow-control
//!   credit the client granted (65,535 or the largest SETTINGS_INITIAL_WINDOW_SIZE it sent,
//!   plus its WINDOW_UPDATEs) per stream and per connection (§6.9); the server's own
//!   WINDOW_UPDATEs never return more than the client sent, and never carry 0;
//! - SETTINGS ACKs and PING ACKs never outnumber the client's SETTINGS and PINGs;
//! - the output stays within 3 bytes per client byte (the largest reply to a 9-byte frame
//!   is 26 bytes) plus what the application asked to send plus one GOAWAY;
//! - events: requests come on odd, strictly increasing stream ids that the client opened, with
//!   a non-empty `:path`; per stream, `Request`, then messages, at most one `BadMessage` and
//!   no message after it, at most one `End` and no message after it, at most one
//!   `Cancelled` and nothing after it or after the server's RST_STREAM;
//! - no stream is lost or leaked: a stream that neither a cancel nor the server's
//!   RST_STREAM or END_STREAM closed is open ([`Conn::is_open`], [`Conn::open_streams`]), and
//!   one that is also ended by the client (`End`) after the server's END_STREAM is gone;
//!   between the two (half-closed local) the connection may keep it or not;
//! - after [`Conn::failed`], no call produces an event or a byte;
//! - what [`Conn::recv`] leaves in the buffer is less than one frame (or a prefix of the
//!   preface), and nothing once the connection failed;
//! - [`Conn::check_timeouts`] returns a deadline in the future.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

use super::{
    blocks,
    frame::{self, flag, kind, setting, FrameHead, Reason, HEAD_LEN},
    hpack::{self as hpack_codec, Decoder},
    server::{Conn, Event, Limits},
};

/// Output bytes one GOAWAY with an error may take (header, ids, the longest reason text).
const GOAWAY_BUDGET: u64 = 128;

/// Feeds `data` to a new connection after the client preface and an empty SETTINGS frame.
///
/// `data[0]` picks the chunking: 0 feeds everything at once, otherwise chunk sizes are drawn
/// from a small generator seeded with it (1 to `2 * data[0]` bytes each).
pub fn frames(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else { return };
    let mut h = Harness::new();
    let mut start = frame::PREFACE.to_vec();
    frame::write_settings(&mut start, &[]);
    h.feed(&start);
    let mut rng = u32::from(seed) | 0x100;
    let mut rest = stream;
    while !rest.is_empty() {
        let n = if seed == 0 {
            rest.len()
        } else {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (rng >> 16) as usize % (2 * usize::from(seed))
        };
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        h.feed(chunk);
        h.advance(Duration::from_millis(1));
        rest = tail;
    }
    h.timeouts();
}

/// Decodes `data` as a sequence of header blocks with one decoder.
///
/// `data[0] & 7` picks the table size (0 to 65,536); then each block is a length (one byte,
/// or two when the first has its top bit set: 15 bits) followed by that many bytes.
pub fn hpack(data: &[u8]) {
    const SIZES: [usize; 8] = [0, 1, 32, 64, 100, 256, 4096, 65_536];
    let Some((&first, mut rest)) = data.split_first() else { return };
    let max_size = SIZES[usize::from(first & 7)];
    let mut decoder = Decoder::new(max_size);
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while let Some((&b, tail)) = rest.split_first() {
        let (len, tail) = if b & 0x80 == 0 {
            (usize::from(b), tail)
        } else {
            match tail.split_first() {
                Some((&lo, tail)) => (usize::from(b & 0x7f) << 8 | usize::from(lo), tail),
                None => (0, tail),
            }
        };
        let (block, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;

        fields.clear();
        let result = decoder.decode(block, |name, value| {
            // Indexed fields come from a table (an entry is at most the table size); literals
            // decode to at most 8/5 of their bytes (the shortest Huffman code has 5 bits).
            assert!(
                name.len() + value.len() <= max_size + 64 + 2 * block.len(),
                "a field of {} bytes from a block of {}",
                name.len() + value.len(),
                block.len()
            );
            fields.push((name.to_vec(), value.to_vec()));
        });
        assert!(fields.len() <= block.len(), "more fields than bytes");
        let (size, len) = (decoder.table_size(), decoder.table_len());
        assert!(size <= max_size, "table size {size} above the maximum {max_size}");
        assert!(len * 32 <= size, "{len} entries in a table of {size} octets");
        if result.is_err() {
            // The connection would close; the decoder must still be safe to use.
            continue;
        }
        // What decoded re-encodes (raw, then Huffman) to a block that decodes the same.
        for huffman in [false, true] {
            let mut again = Vec::new();
            for (name, value) in &fields {
                if huffman {
                    hpack_codec::encode_literal_huffman(name, value, &mut again);
                } else {
                    hpack_codec::encode_literal(name, value, &mut again);
                }
            }
            let mut decoded = Vec::with_capacity(fields.len());
            Decoder::new(0)
                .decode(&again, |n, v| decoded.push((n.to_vec(), v.to_vec())))
                .expect("a re-encoded block decodes");
            assert_eq!(decoded, fields, "re-encoded fields differ (huffman: {huffman})");
        }
    }
}

/// Runs `data` as a script of operations on one connection.
///
/// `data[0]` bit 0 set: the preface and an empty SETTINGS are fed first. Then each operation is
/// one byte, `op & 7` the operation and `op >> 3` its parameter `p`:
///
/// | op | operation |
/// |---|---|
/// | 0, 1 | feed the next `u16` (big-endian) bytes of the script |
/// | 2 | `send_headers(response headers)` on stream pick `p` (see below) |
/// | 3 | `send_data` on stream pick `p`; the next byte `b`: `(b & 0x7f)² · 4` bytes, END_STREAM when `b & 0x80` |
/// | 4 | `send_headers(trailers, end_stream)`: `grpc-status: 0`, or a Trailers-Only error when `p` is odd |
/// | 5 | `reset` stream pick `p` with CANCEL |
/// | 6 | advance the clock by `b² · 10` ms (next byte `b`), then `check_timeouts` |
/// | 7 | `p` odd: `go_away`; even: the I/O layer writes the next byte `b` × 64 bytes of output (255: all) |
///
/// Stream pick `p`: the `p`-th most recent stream that produced a `Request` event (closed ones
/// included: the calls must then refuse).
pub fn connection(data: &[u8]) {
    let Some((&mode, mut script)) = data.split_first() else { return };
    let mut h = Harness::new();
    if mode & 1 == 1 {
        let mut start = frame::PREFACE.to_vec();
        frame::write_settings(&mut start, &[]);
        h.feed(&start);
    }
    let next = |script: &mut &[u8]| -> u8 {
        let (&b, tail) = script.split_first().unwrap_or((&0, &[]));
        *script = tail;
        b
    };
    while let Some((&op, tail)) = script.split_first() {
        script = tail;
        let p = usize::from(op >> 3);
        match op & 7 {
            0 | 1 => {
                let n = usize::from(u16::from_be_bytes([next(&mut script), next(&mut script)]));
                let (bytes, tail) = script.split_at(n.min(script.len()));
                script = tail;
                h.feed(bytes);
            }
            2 => h.send_headers(p, blocks::response_headers(), false),
            3 => {
                let b = next(&mut script);
                let len = usize::from(b & 0x7f).pow(2) * 4;
                h.send_data(p, len, b & 0x80 != 0);
            }
            4 => {
                let block = if p % 2 == 0 {
                    blocks::ok_trailers().to_vec()
                } else {
                    let status = crate::rpc::status::Status::new(
                        crate::rpc::status::Code::UNAVAILABLE,
                        "fuzz",
                    );
                    blocks::trailers_only(&status)
                };
                h.send_headers(p, &block, true);
            }
            5 => h.reset(p),
            6 => {
                let b = u64::from(next(&mut script));
                h.advance(Duration::from_millis(b * b * 10));
                h.timeouts();
            }
            _ => {
                if p % 2 == 1 {
                    h.conn.go_away();
                    h.budget += 2 * 17;
                    h.check();
                } else {
                    let b = next(&mut script);
                    h.write_out(if b == 255 { usize::MAX } else { usize::from(b) * 64 });
                }
            }
        }
    }
    h.timeouts();
}

/// Splits a byte stream into frames as they complete.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    fn push(&mut self, bytes: &[u8], mut each: impl FnMut(FrameHead, &[u8])) {
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        while let Some(head) = FrameHead::parse(&self.buf[pos..]) {
            let end = pos + HEAD_LEN + head.len as usize;
            if self.buf.len() < end {
                break;
            }
            each(head, &self.buf[pos + HEAD_LEN..end]);
            pos = end;
        }
        self.buf.drain(..pos);
    }
}

/// What the client's bytes allow the server to do: a frame-level view, without its rules (a
/// frame the connection rejects only loosens the bounds).
struct Peer {
    frames: Frames,
    /// Preface bytes still to skip.
    preface_left: usize,
    max_headers_id: u32,
    max_initial_window: u64,
    max_frame: u32,
    conn_credit: u64,
    stream_credit: HashMap<u32, u64>,
    data_in: u64,
    stream_data_in: HashMap<u32, u64>,
    settings: u64,
    pings: u64,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            frames: Frames::default(),
            preface_left: frame::PREFACE.len(),
            max_headers_id: 0,
            max_initial_window: u64::from(frame::DEFAULT_WINDOW),
            max_frame: frame::DEFAULT_MAX_FRAME,
            conn_credit: u64::from(frame::DEFAULT_WINDOW),
            stream_credit: HashMap::new(),
            data_in: 0,
            stream_data_in: HashMap::new(),
            settings: 0,
            pings: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let skip = self.preface_left.min(bytes.len());
        self.preface_left -= skip;
        bytes = &bytes[skip..];
        let mut frames = std::mem::take(&mut self.frames);
        frames.push(bytes, |head, payload| self.frame(head, payload));
        self.frames = frames;
    }

    fn frame(&mut self, head: FrameHead, payload: &[u8]) {
        match head.kind {
            kind::HEADERS => self.max_headers_id = self.max_headers_id.max(head.stream),
            kind::DATA => {
                self.data_in += u64::from(head.len);
                *self.stream_data_in.entry(head.stream).or_default() += u64::from(head.len);
            }
            kind::SETTINGS if !head.has(flag::ACK) => {
                self.settings += 1;
                for entry in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([entry[0], entry[1]]);
                    let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                    match id {
                        setting::INITIAL_WINDOW_SIZE => {
                            self.max_initial_window = self.max_initial_window.max(value.into())
                        }
                        setting::MAX_FRAME_SIZE => {
                            self.max_frame = self.max_frame.max(value.min(frame::MAX_MAX_FRAME))
                        }
                        _ => {}
                    }
                }
            }
            kind::PING if !head.has(flag::ACK) => self.pings += 1,
            kind::WINDOW_UPDATE if payload.len() == 4 => {
                let inc = u64::from(
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff,
                );
                if head.stream == 0 {
                    self.conn_credit += inc;
                } else {
                    *self.stream_credit.entry(head.stream).or_default() += inc;
                }
            }
            _ => {}
        }
    }
}

/// Per-stream view of the events.
#[derive(Default)]
struct StreamSeen {
    ended: bool,
    bad: bool,
    cancelled: bool,
}

/// Where a requested stream stands, from the events and the output.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// The application can still reply.
    Open,
    /// The server sent END_STREAM; the client has not ended.
    HalfClosedLocal,
    Gone,
}

/// One connection, the client model, and everything seen so far.
struct Harness {
    conn: Conn,
    now: Instant,
    inbuf: BytesMut,
    fed: u64,
    peer: Peer,
    /// Output bytes the application's calls may have added.
    budget: u64,
    initial_out: u64,
    produced: u64,
    /// Bytes of `conn.output()` already checked.
    checked: usize,
    out_frames: Frames,
    failed: bool,
    events_seen: u64,
    // The output so far.
    error_goaway: bool,
    goaway_last: u32,
    /// Streams the server sent END_STREAM on, and RST_STREAM on.
    end_sent: HashSet<u32>,
    rst_sent: HashSet<u32>,
    open_block: Option<u32>,
    data_sent: HashMap<u32, u64>,
    conn_data_sent: u64,
    conn_wu: u64,
    stream_wu: HashMap<u32, u64>,
    settings_sent: u64,
    settings_acks: u64,
    ping_acks: u64,
    // The events so far.
    requests: Vec<u32>,
    seen: HashMap<u32, StreamSeen>,
    /// Requested streams in each class but `Gone`.
    open: usize,
    half_closed: usize,
}

impl Harness {
    fn new() -> Harness {
        let now = Instant::now();
        let mut conn = Conn::new(Limits::default(), now);
        let initial_out = conn.output().len() as u64;
        let mut h = Harness {
            conn,
            now,
            inbuf: BytesMut::new(),
            fed: 0,
            peer: Peer::new(),
            budget: 0,
            initial_out,
            produced: 0,
            checked: 0,
            out_frames: Frames::default(),
            failed: false,
            events_seen: 0,
            error_goaway: false,
            goaway_last: u32::MAX,
            end_sent: HashSet::new(),
            rst_sent: HashSet::new(),
            open_block: None,
            data_sent: HashMap::new(),
            conn_data_sent: 0,
            conn_wu: 0,
            stream_wu: HashMap::new(),
            settings_sent: 0,
            settings_acks: 0,
            ping_acks: 0,
            requests: Vec::new(),
            seen: HashMap::new(),
            open: 0,
            half_closed: 0,
        };
        h.check();
        h
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.fed += bytes.len() as u64;
        self.peer.push(bytes);
        self.inbuf.extend_from_slice(bytes);
        self.conn.recv(&mut self.inbuf, self.now);
        if self.conn.failed() {
            assert!(self.inbuf.is_empty(), "a failed connection keeps input");
        } else if self.fed < frame::PREFACE.len() as u64 {
            assert_eq!(&self.inbuf[..], &frame::PREFACE[..self.inbuf.len()], "preface kept");
        } else if let Some(head) = FrameHead::parse(&self.inbuf) {
            assert!(head.len <= frame::DEFAULT_MAX_FRAME, "an oversized frame was accepted");
            assert!(
                self.inbuf.len() < HEAD_LEN + head.len as usize,
                "recv left a complete frame in the buffer"
            );
        }
        self.check();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn timeouts(&mut self) {
        // A drain may start: GOAWAY and PING.
        self.budget += 2 * 17;
        if let Some(at) = self.conn.check_timeouts(self.now) {
            assert!(at > self.now, "check_timeouts asks to be called again in the past");
        }
        self.check();
    }

    /// The `p`-th most recent requested stream, and whether it is still open.
    fn pick(&self, p: usize) -> Option<(u32, bool)> {
        let id = *self.requests.iter().rev().nth(p % self.requests.len().max(1))?;
        let live = self.class(id) == Class::Open;
        assert_eq!(self.conn.is_open(id), live, "is_open({id}) disagrees with the events");
        Some((id, live))
    }

    fn send_headers(&mut self, p: usize, block: &[u8], end_stream: bool) {
        let Some((id, live)) = self.pick(p) else { return };
        let sent = self.conn.send_headers(id, block, end_stream);
        assert!(live || !sent, "send_headers accepted on closed stream {id}");
        if sent {
            let frames = block.len() / frame::DEFAULT_MAX_FRAME as usize + 1;
            self.budget += (block.len() + HEAD_LEN * frames + 13) as u64;
        }
        self.check();
    }

    fn send_data(&mut self, p: usize, len: usize, end_stream: bool) {
        let Some((id, live)) = self.pick(p) else { return };
        let data = Bytes::from(vec![0x5a; len]);
        let sent = self.conn.send_data(id, data, end_stream);
        assert!(live || !sent, "send_data accepted on closed stream {id}");
        if sent {
            // Frames carry at least one byte each, but for an empty final one.
            self.budget += (len + HEAD_LEN * (len + 1) + 13) as u64;
        }
        self.check();
    }

    fn reset(&mut self, p: usize) {
        let Some((id, _)) = self.pick(p) else { return };
        self.conn.reset(id, Reason::CANCEL);
        self.budget += 13;
        self.check();
    }

    /// The I/O layer writes (and drains) up to `n` bytes of output.
    fn write_out(&mut self, n: usize) {
        self.check();
        let out = self.conn.output();
        let n = n.min(out.len());
        out.drain(..n);
        self.checked -= n;
        self.check();
    }

    /// Checks everything new since the last call.
    fn check(&mut self) {
        let was_failed = self.failed;
        let events_before = self.events_seen;
        let produced_before = self.produced;

        while let Some(event) = self.conn.next_event() {
            self.events_seen += 1;
            self.event(event);
        }
        let out = self.conn.output();
        let new = out[self.checked..].to_vec();
        self.checked = out.len();
        self.produced += new.len() as u64;
        let mut frames = std::mem::take(&mut self.out_frames);
        frames.push(&new, |head, payload| self.out_frame(head, payload));
        assert!(frames.buf.is_empty(), "the output ends inside a frame");
        self.out_frames = frames;

        assert_eq!(self.conn.failed(), self.error_goaway, "failed() without an error GOAWAY");
        self.failed = self.conn.failed();
        if was_failed {
            assert_eq!(self.events_seen, events_before, "an event after the connection failed");
            assert_eq!(self.produced, produced_before, "output after the connection failed");
        }
        let (open, half) = (self.open, self.half_closed);
        let n = self.conn.open_streams();
        assert!(
            open <= n && n <= open + half,
            "{n} open streams; by the events and output {open}, and {half} half-closed"
        );
        let bound = self.initial_out + 3 * self.fed + GOAWAY_BUDGET + self.budget;
        assert!(
            self.produced <= bound,
            "{} output bytes for {} input bytes (bound {bound})",
            self.produced,
            self.fed
        );
    }

    fn event(&mut self, event: Event) {
        let max_message = Limits::default().max_message_bytes;
        match event {
            Event::Request { stream, head } => {
                assert!(stream % 2 == 1, "request on even stream {stream}");
                let last = self.requests.last().copied().unwrap_or(0);
                assert!(stream > last, "request on stream {stream} after {last}");
                assert!(stream <= self.peer.max_headers_id, "request on idle stream {stream}");
                assert!(
                    !self.end_sent.contains(&stream) && !self.rst_sent.contains(&stream),
                    "request on stream {stream}, which the server closed"
                );
                assert!(!head.path.is_empty(), "request with an empty :path");
                self.requests.push(stream);
                self.seen.insert(stream, StreamSeen::default());
                self.open += 1;
            }
            Event::Message { stream, message } => {
                let s = self.alive(stream, "Message");
                assert!(!s.ended && !s.bad, "message on stream {stream} after its end");
                assert!(message.len() <= max_message, "a message above the limit");
            }
            Event::BadMessage { stream, .. } => {
                let s = self.alive(stream, "BadMessage");
                assert!(!s.ended && !s.bad, "bad message on stream {stream} after its end");
                s.bad = true;
            }
            Event::End { stream, leftover, .. } => {
                let s = self.alive(stream, "End");
                assert!(!s.ended, "two ends on stream {stream}");
                assert!(!s.bad || leftover == 0, "leftover bytes after a bad message");
                self.transition(stream, |h| h.seen.get_mut(&stream).expect("seen").ended = true);
            }
            Event::Cancelled { stream } => {
                self.alive(stream, "Cancelled");
                self.transition(stream, |h| {
                    h.seen.get_mut(&stream).expect("seen").cancelled = true
                });
            }
        }
    }

    /// The class of requested stream `id`.
    fn class(&self, id: u32) -> Class {
        let Some(s) = self.seen.get(&id) else { return Class::Gone };
        let end_sent = self.end_sent.contains(&id);
        if s.cancelled || self.rst_sent.contains(&id) || (end_sent && s.ended) {
            Class::Gone
        } else if end_sent {
            Class::HalfClosedLocal
        } else {
            Class::Open
        }
    }

    /// Applies `change` to what is known of `id`, keeping the class counts.
    fn transition(&mut self, id: u32, change: impl FnOnce(&mut Harness)) {
        let before = self.class(id);
        change(self);
        let after = self.class(id);
        for (class, delta) in [(before, -1isize), (after, 1)] {
            if !self.seen.contains_key(&id) {
                continue;
            }
            match class {
                Class::Open => self.open = self.open.wrapping_add_signed(delta),
                Class::HalfClosedLocal => {
                    self.half_closed = self.half_closed.wrapping_add_signed(delta)
                }
                Class::Gone => {}
            }
        }
    }

    /// A stream an event may name: requested, not cancelled or reset, not gone.
    fn alive(&mut self, stream: u32, what: &str) -> &mut StreamSeen {
        assert!(
            self.seen.contains_key(&stream) && self.class(stream) != Class::Gone,
            "{what} on stream {stream}, which is not open"
        );
        self.seen.get_mut(&stream).expect("requested")
    }

    fn out_frame(&mut self, head: FrameHead, payload: &[u8]) {
        let s = head.stream;
        assert!(!self.error_goaway, "a frame after a GOAWAY with an error: {head:?}");
        assert!(head.len <= self.peer.max_frame, "frame above the peer's maximum: {head:?}");
        if let Some(block) = self.open_block {
            assert!(
                head.kind == kind::CONTINUATION && s == block,
                "a header block interrupted by {head:?}"
            );
        }
        match head.kind {
            kind::DATA => {
                assert!(self.seen.contains_key(&s), "DATA on stream {s} with no request");
                assert!(!self.end_sent.contains(&s), "DATA on stream {s} after END_STREAM");
                assert!(!self.rst_sent.contains(&s), "DATA on stream {s} after RST_STREAM");
                let sent = self.data_sent.entry(s).or_default();
                *sent += u64::from(head.len);
                let credit = self.peer.max_initial_window
                    + self.peer.stream_credit.get(&s).copied().unwrap_or(0);
                assert!(*sent <= credit, "{sent} DATA bytes on stream {s}, credit {credit}");
                self.conn_data_sent += u64::from(head.len);
                assert!(
                    self.conn_data_sent <= self.peer.conn_credit,
                    "{} DATA bytes on the connection, credit {}",
                    self.conn_data_sent,
                    self.peer.conn_credit
                );
                if head.has(flag::END_STREAM) {
                    self.transition(s, |h| _ = h.end_sent.insert(s));
                }
            }
            kind::HEADERS => {
                assert!(s % 2 == 1, "HEADERS on stream {s}");
                assert!(s <= self.peer.max_headers_id, "HEADERS on idle stream {s}");
                assert!(!self.end_sent.contains(&s), "HEADERS on stream {s} after END_STREAM");
                assert!(!self.rst_sent.contains(&s), "HEADERS on stream {s} after RST_STREAM");
                if !head.has(flag::END_HEADERS) {
                    self.open_block = Some(s);
                }
                if head.has(flag::END_STREAM) {
                    self.transition(s, |h| _ = h.end_sent.insert(s));
                }
            }
            kind::CONTINUATION => {
                assert_eq!(self.open_block, Some(s), "CONTINUATION outside a header block");
                if head.has(flag::END_HEADERS) {
                    self.open_block = None;
                }
            }
            kind::RST_STREAM => {
                assert!(s != 0 && payload.len() == 4, "malformed RST_STREAM");
                assert!(s <= self.peer.max_headers_id, "RST_STREAM on idle stream {s}");
                self.transition(s, |h| _ = h.rst_sent.insert(s));
            }
            kind::SETTINGS => {
                assert_eq!(s, 0, "SETTINGS on a stream");
                if head.has(flag::ACK) {
                    assert!(payload.is_empty(), "SETTINGS ACK with a payload");
                    self.settings_acks += 1;
                    assert!(self.settings_acks <= self.peer.settings, "unasked SETTINGS ACK");
                } else {
                    assert!(payload.len().is_multiple_of(6), "SETTINGS length");
                    self.settings_sent += 1;
                    assert_eq!(self.settings_sent, 1, "a second SETTINGS");
                }
            }
            kind::PING => {
                assert!(s == 0 && payload.len() == 8, "malformed PING");
                if head.has(flag::ACK) {
                    self.ping_acks += 1;
                    assert!(self.ping_acks <= self.peer.pings, "unasked PING ACK");
                }
            }
            kind::GOAWAY => {
                assert!(s == 0 && payload.len() >= 8, "malformed GOAWAY");
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                assert!(last <= self.goaway_last, "GOAWAY raised last-stream to {last}");
                self.goaway_last = last;
                if code != Reason::NO_ERROR.0 {
                    self.error_goaway = true;
                }
            }
            kind::WINDOW_UPDATE => {
                assert!(payload.len() == 4, "WINDOW_UPDATE length");
                let inc = u64::from(
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff,
                );
                assert!(inc > 0, "WINDOW_UPDATE of 0");
                if s == 0 {
                    self.conn_wu += inc;
                    let limits = Limits::default();
                    let extra = u64::from(limits.connection_window - frame::DEFAULT_WINDOW);
                    assert!(
                        self.conn_wu <= extra + self.peer.data_in,
                        "connection window grants exceed the data received"
                    );
                } else {
                    assert!(self.seen.contains_key(&s), "WINDOW_UPDATE on stream {s}, no request");
                    assert!(!self.rst_sent.contains(&s), "WINDOW_UPDATE on reset stream {s}");
                    let wu = self.stream_wu.entry(s).or_default();
                    *wu += inc;
                    let received = self.peer.stream_data_in.get(&s).copied().unwrap_or(0);
                    assert!(*wu <= received, "stream {s} window grants exceed its data");
                }
            }
            other => panic!("the server sent a frame of type {other:#x}"),
        }
    }
}
