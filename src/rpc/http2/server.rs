//! The server side of one HTTP/2 connection, as a sans-IO state machine.
//!
//! Bytes go in through [`Conn::recv`]; what they mean to the application comes out as
//! [`Event`]s (a request's head, each complete gRPC message, the end of the request, a cancel);
//! everything the connection must send (SETTINGS ACKs, PING ACKs, WINDOW_UPDATEs, replies,
//! RST_STREAM, GOAWAY) is appended to one output buffer, [`Conn::output`], which the I/O layer
//! writes with one `send` per executor turn. Nothing here allocates per frame in the steady
//! state beyond the `Bytes` slices that carry request bodies, and nothing takes a lock: one
//! connection lives on one core.
//!
//! The rules are RFC 9113's (frames, stream states, flow control both ways, header validation of
//! §8) and the gRPC HTTP/2 protocol's; what gRPC never needs (push, priorities, CONNECT,
//! HTTP/1.1 upgrade) is parsed and ignored or refused. Every resource a peer can make the server
//! spend has a bound in [`Limits`] and a counter in [`ConnStats`]:
//!
//! | attack | defence |
//! |---|---|
//! | rapid reset, provoked resets (MadeYouReset) | `reset budget`: every stream the peer resets before its reply, and every stream the server resets because of the peer, spends a token; empty → GOAWAY(ENHANCE_YOUR_CALM) |
//! | PING / SETTINGS / empty DATA / PRIORITY / unknown-frame floods | `glitch budget`, the same way |
//! | CONTINUATION flood | header block bytes and CONTINUATION frames per block capped; a block must complete within `header_timeout` |
//! | HPACK bomb, huge header lists | the decoded list size (RFC 9113 §6.5.2 accounting) and field count are capped per request: 431 and the stream ends; the block is still decoded so HPACK stays in sync, and no field is kept that the server does not use |
//! | too many streams | `max_concurrent_streams`: REFUSED_STREAM (counted as a reset) |
//! | zero-window stalls | bytes queued behind flow control are capped (new streams are refused above it), and a peer that does not open its window within `stall_timeout` is disconnected |
//! | unread replies | the I/O layer stops reading while [`Conn::wants_read`] is false, and answers RESOURCE_EXHAUSTED instead of a reply that [`Conn::backlog_full`] refuses |
//! | stream-id misuse | even, reused or decreasing ids are connection errors |

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use ahash::AHashMap;
use bytes::{Buf, Bytes, BytesMut};

use super::{
    frame::{self, flag, kind, setting, FrameHead, Reason, HEAD_LEN},
    hpack,
};
use crate::rpc::framing::{self, FrameError};

mod fields;

pub use fields::is_grpc_proto;
use fields::Fields;

/// The bounds of one connection. Every default has its reason next to it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Streams open at once; more are refused with REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// The stream window we advertise (SETTINGS_INITIAL_WINDOW_SIZE).
    pub stream_window: u32,
    /// The connection window we open right after the preface.
    pub connection_window: u32,
    /// Largest decoded header list (name + value + 32 per field, RFC 9113 §6.5.2).
    pub max_header_list_bytes: u32,
    /// Most fields in one header list: bounds the work of a block of tiny indexed fields.
    pub max_header_fields: usize,
    /// Largest encoded header block (HEADERS plus CONTINUATIONs).
    pub max_header_block_bytes: usize,
    /// Most CONTINUATION frames in one header block.
    pub max_continuation_frames: u32,
    /// Largest gRPC message accepted.
    pub max_message_bytes: usize,
    /// How long a started header block may take to complete.
    pub header_timeout: Duration,
    /// How long a connection with no stream may stay silent before it is drained (GOAWAY).
    pub idle_timeout: Duration,
    /// How long replies may wait behind a closed flow-control window.
    pub stall_timeout: Duration,
    /// Reply bytes queued behind flow control above which new streams are refused.
    pub max_queued_bytes: usize,
    /// Output bytes not yet written above which the connection stops reading.
    pub max_output_bytes: usize,
    /// Resets (peer or provoked) allowed in a burst, and refilled per second.
    pub reset_burst: u32,
    pub resets_per_sec: u32,
    /// Suspicious frames (pings without traffic, settings, empty data, priority, unknown)
    /// allowed in a burst, and refilled per second.
    pub glitch_burst: u32,
    pub glitches_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A pipelining client (h2load -m 32, a batching coordinator) keeps a core busy with
            // far fewer; 1024 bounds the memory of one connection.
            max_concurrent_streams: 1024,
            // 1 MiB: a 4 MiB message arrives in four round trips, not sixty-four.
            stream_window: 1 << 20,
            connection_window: 8 << 20,
            // gRPC's own default metadata limit is 8 KiB; 16 KiB leaves room.
            max_header_list_bytes: 16 << 10,
            max_header_fields: 256,
            // Four times the decoded limit: any honest encoding of an accepted list fits.
            max_header_block_bytes: 64 << 10,
            // nghttp2 allows 8; a 64 KiB block in 16 KiB frames needs 4.
            max_continuation_frames: 16,
            max_message_bytes: framing::DEFAULT_MAX_MESSAGE_BYTES,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(30),
            max_queued_bytes: 16 << 20,
            max_output_bytes: 4 << 20,
            // A coordinator whose replica deadlines expire during a storage stall cancels
            // hundreds of calls at once; a rapid-reset attacker sends tens of thousands.
            reset_burst: 4096,
            resets_per_sec: 1024,
            glitch_burst: 1000,
            glitches_per_sec: 100,
        }
    }
}

/// The request method, as far as a gRPC server cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Get,
    Head,
    Other,
}

/// The `content-type` of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// `application/grpc` or `application/grpc+proto`, with or without parameters.
    GrpcProto,
    /// Anything else (gRPC-Web, `+json`, text).
    Other,
    Missing,
}

/// What the server needs of a request's headers. Fields it does not use are decoded (HPACK
/// must stay in sync) and counted against the limits, but not kept.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub content_type: ContentType,
    /// The raw `grpc-timeout`, if sent.
    pub grpc_timeout: Option<Bytes>,
    /// The raw `grpc-encoding`, if sent.
    pub grpc_encoding: Option<Bytes>,
    /// The raw `authorization`, if sent.
    pub authorization: Option<Bytes>,
}

/// What the peer did, in order.
#[derive(Debug)]
pub enum Event {
    /// A new stream's headers. `end_stream` when it carries no body.
    Request { stream: u32, head: RequestHead },
    /// One complete gRPC message of the request body.
    Message { stream: u32, message: Bytes },
    /// The body's gRPC framing is invalid (compressed flag, too large); later data is dropped.
    BadMessage { stream: u32, error: FrameError },
    /// The client ended its side. `leftover` bytes of an incomplete message were left.
    End { stream: u32, leftover: usize, declared: Option<usize> },
    /// The stream is gone (reset by the peer, or by us for a protocol error): drop its work.
    Cancelled { stream: u32 },
}

/// Counts of what the connection refused or resisted, drained by the I/O layer into metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Streams the peer reset before their reply completed.
    pub peer_resets: u64,
    /// RST_STREAMs this side sent because of the peer (protocol errors, refusals).
    pub provoked_resets: u64,
    /// Streams refused: too many at once, or too much queued behind flow control.
    pub refused_streams: u64,
    /// Frames counted against the glitch budget.
    pub glitches: u64,
    /// Requests whose header list exceeded the limits (answered 431).
    pub headers_too_large: u64,
    /// Connection errors sent, by cause.
    pub goaway_reset_flood: u64,
    pub goaway_glitch_flood: u64,
    pub goaway_continuation_flood: u64,
    pub goaway_protocol: u64,
    pub goaway_timeout: u64,
}

impl ConnStats {
    fn is_zero(&self) -> bool {
        *self == ConnStats::default()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ConnStats) {
        self.peer_resets += other.peer_resets;
        self.provoked_resets += other.provoked_resets;
        self.refused_streams += other.refused_streams;
        self.glitches += other.glitches;
        self.headers_too_large += other.headers_too_large;
        self.goaway_reset_flood += other.goaway_reset_flood;
        self.goaway_glitch_flood += other.goaway_glitch_flood;
        self.goaway_continuation_flood += other.goaway_continuation_flood;
        self.goaway_protocol += other.goaway_protocol;
        self.goaway_timeout += other.goaway_timeout;
    }
}

/// A token bucket: `burst` tokens, refilled at `per_sec`.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl Budget {
    fn new(burst: u32, per_sec: u32, now: Instant) -> Budget {
        Budget { tokens: burst as f64, burst: burst as f64, per_sec: per_sec as f64, last: now }
    }

    /// Spends one token; false when none is left.
    fn spend(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 24-byte client preface.
    Preface,
    /// The preface arrived; the next frame must be SETTINGS.
    FirstSettings,
    Open,
    /// A connection error was sent; nothing more is read.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    None,
    /// GOAWAY(2^31-1) and a PING sent; new streams still accepted until the ACK.
    AwaitPing,
    /// The final GOAWAY names this last stream; later ones are ignored.
    Final(u32),
}

/// What is queued for a stream behind flow control.
#[derive(Debug)]
enum Pending {
    Data(Bytes, bool),
    Trailers(Vec<u8>),
}

#[derive(Debug)]
struct Stream {
    /// Bytes the peer may still send on this stream.
    recv_window: i64,
    /// Bytes received and not yet returned in a WINDOW_UPDATE.
    recv_unacked: u32,
    /// Bytes we may still send.
    send_window: i64,
    /// Body bytes of an incomplete message.
    body: BytesMut,
    /// The framing failed: further data is dropped.
    discard: bool,
    /// `content-length`, when the request had one, and the body bytes counted against it.
    content_length: Option<u64>,
    received: u64,
    recv_ended: bool,
    /// END_STREAM has been written.
    send_ended: bool,
    queue: VecDeque<Pending>,
    blocked: bool,
}

impl Stream {
    /// END_STREAM is queued behind flow control: nothing more may be sent. (Accepting more
    /// wrote frames after END_STREAM once it went out; found by fuzzing,
    /// fuzz/corpus/http2_connection/bug-headers-after-queued-end.)
    fn end_queued(&self) -> bool {
        matches!(self.queue.back(), Some(Pending::Data(_, true) | Pending::Trailers(_)))
    }
}

const DRAIN_PING: [u8; 8] = *b"pairdrn!";
/// How long a connection whose peer sent GOAWAY stays open once its last stream ended and the
/// peer fell silent: frames the peer sent after its GOAWAY (a PING) are still answered.
const PEER_GOAWAY_LINGER: Duration = Duration::from_secs(1);
const RECENT_RESETS: usize = 64;

/// One server connection's protocol state.
pub struct Conn {
    limits: Limits,
    phase: Phase,
    out: Vec<u8>,
    events: VecDeque<Event>,
    decoder: hpack::Decoder,
    streams: AHashMap<u32, Stream>,
    /// Highest stream id the peer opened.
    last_stream: u32,
    /// Highest stream id the peer opened after our final GOAWAY, which ignored it: frames
    /// for such streams are discarded (RFC 9113 §6.8), not errors on idle streams.
    last_ignored: u32,
    /// Streams this side reset recently: frames still in flight for them are ignored.
    recent_resets: VecDeque<u32>,
    /// Streams that ended normally recently: frames for them are STREAM_CLOSED errors.
    recent_closed: VecDeque<u32>,
    partial: Option<PartialBlock>,
    block: Vec<u8>,
    conn_recv_window: i64,
    conn_recv_unacked: u32,
    conn_send_window: i64,
    peer_initial_window: u32,
    peer_max_frame: u32,
    queued_bytes: usize,
    blocked: VecDeque<u32>,
    drain: Drain,
    peer_goaway: bool,
    resets: Budget,
    glitches: Budget,
    stream_frames_since_ping: bool,
    last_activity: Instant,
    last_window_progress: Instant,
    /// When the connection was accepted: the preface and SETTINGS must arrive within
    /// `header_timeout` of it.
    created: Instant,
    stats: ConnStats,
}

#[derive(Debug)]
struct PartialBlock {
    stream: u32,
    end_stream: bool,
    self_dependent: bool,
    frames: u32,
    started: Instant,
}

/// Why a frame ends the connection.
struct ConnError(Reason, &'static str);

impl Conn {
    /// A new connection; our SETTINGS and the connection window update are already in the
    /// output (the server may send them before the client's preface arrives).
    pub fn new(limits: Limits, now: Instant) -> Conn {
        let mut out = Vec::with_capacity(256);
        frame::write_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams),
                (setting::INITIAL_WINDOW_SIZE, limits.stream_window),
                (setting::MAX_HEADER_LIST_SIZE, limits.max_header_list_bytes),
                (setting::ENABLE_PUSH, 0),
            ],
        );
        let extra = limits.connection_window.saturating_sub(frame::DEFAULT_WINDOW);
        if extra > 0 {
            frame::write_window_update(&mut out, 0, extra);
        }
        Conn {
            phase: Phase::Preface,
            out,
            events: VecDeque::new(),
            decoder: hpack::Decoder::new(4096),
            streams: AHashMap::new(),
            last_stream: 0,
            last_ignored: 0,
            recent_resets: VecDeque::with_capacity(RECENT_RESETS),
            recent_closed: VecDeque::with_capacity(RECENT_RESETS),
            partial: None,
            block: Vec::new(),
            conn_recv_window: i64::from(limits.connection_window.max(frame::DEFAULT_WINDOW)),
            conn_recv_unacked: 0,
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            queued_bytes: 0,
            blocked: VecDeque::new(),
            drain: Drain::None,
            peer_goaway: false,
            resets: Budget::new(limits.reset_burst, limits.resets_per_sec, now),
            glitches: Budget::new(limits.glitch_burst, limits.glitches_per_sec, now),
            stream_frames_since_ping: true,
            last_activity: now,
            last_window_progress: now,
            created: now,
            stats: ConnStats::default(),
            limits,
        }
    }

    /// Bytes to write to the peer. The I/O layer writes them and drains what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The next event, in the order the peer caused them.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// False while the unwritten output is above its bound: the peer is not reading, so stop
    /// reading it (and stop taking new work from it).
    pub fn wants_read(&self) -> bool {
        self.phase != Phase::Failed && self.out.len() < self.limits.max_output_bytes
    }

    /// True once nothing more will happen: a connection error was sent, or a drain (ours, or
    /// the peer's GOAWAY followed by [`PEER_GOAWAY_LINGER`] of silence) finished its last
    /// stream. Write the output, then close.
    pub fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Failed => true,
            _ => self.streams.is_empty() && matches!(self.drain, Drain::Final(_)),
        }
    }

    /// True when the peer broke the protocol (a GOAWAY with an error was sent).
    pub fn failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// Takes the counters accumulated since the last call, if any changed.
    pub fn take_stats(&mut self) -> Option<ConnStats> {
        if self.stats.is_zero() {
            return None;
        }
        Some(std::mem::take(&mut self.stats))
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// True when a reply of `len` bytes must not be taken: the replies not yet written (the
    /// output plus what waits behind flow control) would pass `max_queued_bytes +
    /// max_output_bytes`. Refusing new streams bounds only what arrives after the backlog
    /// grew; the requests of one read (hundreds) are all accepted before any reply exists, so
    /// the I/O layer checks each reply too. One reply is always taken when nothing waits.
    pub fn backlog_full(&self, len: usize) -> bool {
        let backlog = self.out.len() + self.queued_bytes;
        backlog > 0 && backlog + len > self.limits.max_queued_bytes + self.limits.max_output_bytes
    }

    /// Starts a graceful drain: GOAWAY(2^31-1) and a PING; when the PING's ACK returns, the
    /// final GOAWAY names the last stream the server will serve. Streams in flight finish.
    pub fn go_away(&mut self) {
        if self.drain != Drain::None || self.phase == Phase::Failed {
            return;
        }
        frame::write_goaway(&mut self.out, (1 << 31) - 1, Reason::NO_ERROR, b"");
        frame::write_ping(&mut self.out, false, DRAIN_PING);
        self.drain = Drain::AwaitPing;
    }

    /// Checks the connection's timers; returns when to check again.
    pub fn check_timeouts(&mut self, now: Instant) -> Option<Instant> {
        if self.phase == Phase::Failed {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if matches!(self.phase, Phase::Preface | Phase::FirstSettings) {
            let due = self.created + self.limits.header_timeout;
            if now >= due {
                self.stats.goaway_timeout += 1;
                self.fail(Reason::SETTINGS_TIMEOUT, "no HTTP/2 preface and SETTINGS in time");
                return None;
            }
            consider(due);
        }
        if let Some(p) = &self.partial {
            let due = p.started + self.limits.header_timeout;
            if now >= due {
                self.stats.goaway_timeout += 1;
                self.fail(Reason::ENHANCE_YOUR_CALM, "header block not completed in time");
                return None;
            }
            consider(due);
        }
        if self.queued_bytes > 0 {
            let due = self.last_window_progress + self.limits.stall_timeout;
            if now >= due {
                self.stats.goaway_timeout += 1;
                self.fail(Reason::ENHANCE_YOUR_CALM, "flow-control window stayed closed");
                return None;
            }
            consider(due);
        }
        if self.streams.is_empty() && self.drain == Drain::None && self.phase == Phase::Open {
            let quiet =
                if self.peer_goaway { PEER_GOAWAY_LINGER } else { self.limits.idle_timeout };
            let due = self.last_activity + quiet;
            if now >= due && self.peer_goaway {
                // The peer said goodbye and has nothing more in flight: our final GOAWAY.
                frame::write_goaway(&mut self.out, self.last_stream, Reason::NO_ERROR, b"");
                self.drain = Drain::Final(self.last_stream);
            } else if now >= due {
                self.go_away();
            } else {
                consider(due);
            }
        }
        next
    }

    /// Consumes every complete frame at the front of `buf` (partial frames stay there).
    pub fn recv(&mut self, buf: &mut BytesMut, now: Instant) {
        if self.phase == Phase::Failed {
            buf.clear();
            return;
        }
        if self.phase == Phase::Preface {
            let n = buf.len().min(frame::PREFACE.len());
            if buf[..n] != frame::PREFACE[..n] {
                self.stats.goaway_protocol += 1;
                self.fail(Reason::PROTOCOL_ERROR, "invalid connection preface");
                buf.clear();
                return;
            }
            if n < frame::PREFACE.len() {
                return;
            }
            buf.advance(frame::PREFACE.len());
            self.phase = Phase::FirstSettings;
        }
        while let Some(head) = FrameHead::parse(buf) {
            if head.len > frame::DEFAULT_MAX_FRAME {
                self.stats.goaway_protocol += 1;
                self.fail(Reason::FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE");
                buf.clear();
                return;
            }
            let total = HEAD_LEN + head.len as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return;
            }
            self.last_activity = now;
            if self.phase == Phase::FirstSettings {
                if head.kind != kind::SETTINGS || head.has(flag::ACK) {
                    self.stats.goaway_protocol += 1;
                    self.fail(Reason::PROTOCOL_ERROR, "the first frame must be SETTINGS");
                    buf.clear();
                    return;
                }
                self.phase = Phase::Open;
            }
            // Large DATA payloads are handed on as slices of the read buffer; everything else is
            // parsed in place, and small messages are copied out, so that the read buffer is
            // not pinned by a slow call and can be reused without a new allocation.
            let result = if head.kind == kind::DATA && head.len as usize >= ZERO_COPY_BYTES {
                let mut shared = buf.split_to(total).freeze();
                shared.advance(HEAD_LEN);
                self.on_frame(head, &[], Some(shared), now)
            } else {
                let r = self.on_frame(head, &buf[HEAD_LEN..total], None, now);
                buf.advance(total);
                r
            };
            if let Err(ConnError(reason, why)) = result {
                if reason != Reason::ENHANCE_YOUR_CALM {
                    self.stats.goaway_protocol += 1;
                }
                self.fail(reason, why);
            }
            if self.phase == Phase::Failed {
                buf.clear();
                return;
            }
        }
    }

    fn fail(&mut self, reason: Reason, why: &'static str) {
        if self.phase == Phase::Failed {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_stream, reason, why.as_bytes());
        self.phase = Phase::Failed;
        for (id, _) in self.streams.drain() {
            self.events.push_back(Event::Cancelled { stream: id });
        }
        self.partial = None;
    }

    fn glitch(&mut self, now: Instant) -> Result<(), ConnError> {
        self.stats.glitches += 1;
        if self.glitches.spend(now) {
            Ok(())
        } else {
            self.stats.goaway_glitch_flood += 1;
            Err(ConnError(Reason::ENHANCE_YOUR_CALM, "too many control or empty frames"))
        }
    }

    fn spend_reset(&mut self, now: Instant) -> Result<(), ConnError> {
        if self.resets.spend(now) {
            Ok(())
        } else {
            self.stats.goaway_reset_flood += 1;
            Err(ConnError(Reason::ENHANCE_YOUR_CALM, "too many stream resets"))
        }
    }

    /// A stream error caused by the peer: RST_STREAM, the stream's work cancelled.
    fn stream_error(&mut self, id: u32, reason: Reason, now: Instant) -> Result<(), ConnError> {
        frame::write_rst(&mut self.out, id, reason);
        self.stats.provoked_resets += 1;
        self.forget_reset(id);
        if let Some(s) = self.streams.remove(&id) {
            self.unqueue(&s);
            self.events.push_back(Event::Cancelled { stream: id });
        }
        self.spend_reset(now)
    }

    fn forget_reset(&mut self, id: u32) {
        if self.recent_resets.len() == RECENT_RESETS {
            self.recent_resets.pop_front();
        }
        self.recent_resets.push_back(id);
    }

    fn forget_closed(&mut self, id: u32) {
        if self.recent_closed.len() == RECENT_RESETS {
            self.recent_closed.pop_front();
        }
        self.recent_closed.push_back(id);
    }

    fn unqueue(&mut self, s: &Stream) {
        for p in &s.queue {
            if let Pending::Data(d, _) = p {
                self.queued_bytes -= d.len();
            }
        }
    }

    fn on_frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        shared: Option<Bytes>,
        now: Instant,
    ) -> Result<(), ConnError> {
        if let Some(p) = &self.partial {
            if head.kind != kind::CONTINUATION || head.stream != p.stream {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "header block interrupted"));
            }
        }
        match head.kind {
            kind::DATA => self.on_data(head, payload, shared, now),
            kind::HEADERS => self.on_headers(head, payload, now),
            kind::CONTINUATION => self.on_continuation(head, payload, now),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                // A malformed PRIORITY is a stream error, but RST_STREAM must not name an idle
                // stream (RFC 9113 §6.4): for one, the error is the connection's (§5.4.1 allows
                // it). Found by fuzzing (fuzz/corpus/http2_frames/bug-rst-on-idle-priority).
                let idle = head.stream > self.last_stream;
                if payload.len() != 5 {
                    if idle {
                        return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PRIORITY length"));
                    }
                    return self.stream_error(head.stream, Reason::FRAME_SIZE_ERROR, now);
                }
                let dep = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                if dep == head.stream {
                    if idle {
                        return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on itself"));
                    }
                    return self.stream_error(head.stream, Reason::PROTOCOL_ERROR, now);
                }
                self.glitch(now)
            }
            kind::RST_STREAM => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if payload.len() != 4 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "RST_STREAM length"));
                }
                if head.stream > self.last_stream {
                    if head.stream <= self.last_ignored {
                        return Ok(());
                    }
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
                }
                match self.streams.remove(&head.stream) {
                    Some(s) => {
                        self.unqueue(&s);
                        // The peer closed it: any later frame but PRIORITY is a STREAM_CLOSED
                        // error (RFC 9113 §5.1); only after our own RST_STREAM are frames in
                        // flight ignored.
                        self.forget_closed(head.stream);
                        self.events.push_back(Event::Cancelled { stream: head.stream });
                        if s.send_ended {
                            // After our complete reply: no work was cut short.
                            return self.glitch(now);
                        }
                        self.stats.peer_resets += 1;
                        self.spend_reset(now)
                    }
                    None => self.glitch(now),
                }
            }
            kind::SETTINGS => self.on_settings(head, payload, now),
            kind::PUSH_PROMISE => Err(ConnError(Reason::PROTOCOL_ERROR, "clients cannot push")),
            kind::PING => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                let Ok(data) = <[u8; 8]>::try_from(payload) else {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING length"));
                };
                if head.has(flag::ACK) {
                    if data == DRAIN_PING && self.drain == Drain::AwaitPing {
                        frame::write_goaway(&mut self.out, self.last_stream, Reason::NO_ERROR, b"");
                        self.drain = Drain::Final(self.last_stream);
                    }
                    return Ok(());
                }
                frame::write_ping(&mut self.out, true, data);
                // Keepalive and BDP pings ride along with traffic; a ping after another with
                // nothing in between is what a flood looks like.
                if !std::mem::replace(&mut self.stream_frames_since_ping, false) {
                    return self.glitch(now);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "GOAWAY length"));
                }
                self.peer_goaway = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.on_window_update(head, payload, now),
            // Unknown frame types are ignored (RFC 9113 §4.1), but they cost a glitch.
            _ => self.glitch(now),
        }
    }

    fn on_settings(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS length"));
        }
        for entry in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match id {
                setting::ENABLE_PUSH if value > 1 => {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if i64::from(value) > frame::MAX_WINDOW {
                        return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE"));
                    }
                    let delta = i64::from(value) - i64::from(self.peer_initial_window);
                    self.peer_initial_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "window overflow"));
                        }
                    }
                    if delta > 0 {
                        self.last_window_progress = now;
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&value) {
                        return Err(ConnError(
                            Reason::PROTOCOL_ERROR,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value;
                }
                // HEADER_TABLE_SIZE: our encoder never uses the dynamic table, so any size is
                // fine. MAX_CONCURRENT_STREAMS: we never open streams. Unknown: ignored.
                _ => {}
            }
        }
        frame::write_settings_ack(&mut self.out);
        self.flush_blocked();
        self.glitch(now)
    }

    fn on_window_update(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ConnError> {
        let Ok(raw) = <[u8; 4]>::try_from(payload) else {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE length"));
        };
        let inc = i64::from(u32::from_be_bytes(raw) & 0x7fff_ffff);
        if head.stream == 0 {
            if inc == 0 {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.conn_send_window += inc;
            if self.conn_send_window > frame::MAX_WINDOW {
                return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "connection window overflow"));
            }
            self.last_window_progress = now;
            self.flush_blocked();
            return Ok(());
        }
        if head.stream > self.last_stream {
            if head.stream <= self.last_ignored {
                return Ok(());
            }
            return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"));
        }
        let Some(s) = self.streams.get_mut(&head.stream) else { return Ok(()) };
        if inc == 0 {
            return self.stream_error(head.stream, Reason::PROTOCOL_ERROR, now);
        }
        s.send_window += inc;
        if s.send_window > frame::MAX_WINDOW {
            return self.stream_error(head.stream, Reason::FLOW_CONTROL_ERROR, now);
        }
        self.last_window_progress = now;
        self.flush_stream(head.stream);
        Ok(())
    }

    fn on_data(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        shared: Option<Bytes>,
        now: Instant,
    ) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let payload = shared.as_deref().unwrap_or(payload);
        let Some((start, end)) = frame::strip_padding(&head, payload) else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "padding longer than the frame"));
        };
        self.stream_frames_since_ping = true;
        // Flow control counts the whole payload, padding included.
        let flow = head.len;
        self.conn_recv_window -= i64::from(flow);
        if self.conn_recv_window < 0 {
            return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "connection window exceeded"));
        }
        self.conn_recv_unacked += flow;
        if self.conn_recv_unacked >= self.limits.connection_window / 2 {
            frame::write_window_update(&mut self.out, 0, self.conn_recv_unacked);
            self.conn_recv_window += i64::from(self.conn_recv_unacked);
            self.conn_recv_unacked = 0;
        }
        let end_stream = head.has(flag::END_STREAM);
        let id = head.stream;
        let Some(s) = self.streams.get_mut(&id) else {
            if id > self.last_stream {
                if id <= self.last_ignored {
                    // A request that raced our final GOAWAY: its body is discarded too.
                    return Ok(());
                }
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            if self.recent_resets.contains(&id) {
                return Ok(());
            }
            return self.stream_error(id, Reason::STREAM_CLOSED, now);
        };
        if s.recv_ended {
            return self.stream_error(id, Reason::STREAM_CLOSED, now);
        }
        s.recv_window -= i64::from(flow);
        if s.recv_window < 0 {
            return self.stream_error(id, Reason::FLOW_CONTROL_ERROR, now);
        }
        let data = match &shared {
            Some(bytes) => Data::Shared(bytes.slice(start..end)),
            None => Data::Borrowed(&payload[start..end]),
        };
        s.received += data.len() as u64;
        if s.content_length.is_some_and(|cl| s.received > cl) {
            return self.stream_error(id, Reason::PROTOCOL_ERROR, now);
        }
        let empty = data.is_empty();
        if !s.discard {
            append_messages(s, id, data, self.limits.max_message_bytes, &mut self.events);
        }
        if !end_stream {
            s.recv_unacked += flow;
            if s.recv_unacked >= self.limits.stream_window / 2 {
                if s.send_ended {
                    // The reply is complete: rather than more window for data that is dropped
                    // anyway, ask the client to stop without error (RFC 9113 §8.1).
                    self.streams.remove(&id);
                    frame::write_rst(&mut self.out, id, Reason::NO_ERROR);
                    self.forget_reset(id);
                    return Ok(());
                }
                frame::write_window_update(&mut self.out, id, s.recv_unacked);
                s.recv_window += i64::from(s.recv_unacked);
                s.recv_unacked = 0;
            }
            if empty {
                return self.glitch(now);
            }
            return Ok(());
        }
        self.end_request(id, now)
    }

    /// The client ended its side of `id`.
    fn end_request(&mut self, id: u32, now: Instant) -> Result<(), ConnError> {
        let Some(s) = self.streams.get_mut(&id) else { return Ok(()) };
        if s.content_length.is_some_and(|cl| cl != s.received) {
            return self.stream_error(id, Reason::PROTOCOL_ERROR, now);
        }
        s.recv_ended = true;
        let leftover = if s.discard { 0 } else { s.body.len() };
        let declared = framing::peek_len(&s.body, usize::MAX).ok().flatten();
        self.events.push_back(Event::End { stream: id, leftover, declared });
        if s.send_ended {
            self.streams.remove(&id);
            self.forget_closed(id);
        }
        Ok(())
    }

    fn on_headers(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ConnError> {
        let id = head.stream;
        if id == 0 || id.is_multiple_of(2) {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0 or an even id"));
        }
        let Some((start, end)) = frame::strip_padding(&head, payload) else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "padding longer than the frame"));
        };
        let mut fragment = &payload[start..end];
        let mut self_dependent = false;
        if head.has(flag::PRIORITY) {
            if fragment.len() < 5 {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS priority fields"));
            }
            let dep = u32::from_be_bytes([fragment[0], fragment[1], fragment[2], fragment[3]])
                & 0x7fff_ffff;
            self_dependent = dep == id;
            fragment = &fragment[5..];
        }
        self.stream_frames_since_ping = true;
        let end_stream = head.has(flag::END_STREAM);
        if head.has(flag::END_HEADERS) {
            let mut block = std::mem::take(&mut self.block);
            block.clear();
            block.extend_from_slice(fragment);
            let result = self.on_block(id, end_stream, self_dependent, &block, now);
            self.block = block;
            return result;
        }
        if fragment.len() > self.limits.max_header_block_bytes {
            self.stats.goaway_continuation_flood += 1;
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "header block too large"));
        }
        self.block.clear();
        self.block.extend_from_slice(fragment);
        self.partial =
            Some(PartialBlock { stream: id, end_stream, self_dependent, frames: 0, started: now });
        Ok(())
    }

    fn on_continuation(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ConnError> {
        let Some(p) = self.partial.as_mut() else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
        };
        p.frames += 1;
        if p.frames > self.limits.max_continuation_frames
            || self.block.len() + payload.len() > self.limits.max_header_block_bytes
        {
            self.stats.goaway_continuation_flood += 1;
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "header block too large"));
        }
        self.block.extend_from_slice(payload);
        if !head.has(flag::END_HEADERS) {
            return Ok(());
        }
        let Some(p) = self.partial.take() else { unreachable!("checked above") };
        let block = std::mem::take(&mut self.block);
        let result = self.on_block(p.stream, p.end_stream, p.self_dependent, &block, now);
        self.block = block;
        self.block.clear();
        result
    }

    /// A complete header block: a new request, or the trailers of an open one.
    fn on_block(
        &mut self,
        id: u32,
        end_stream: bool,
        self_dependent: bool,
        block: &[u8],
        now: Instant,
    ) -> Result<(), ConnError> {
        let is_new = !self.streams.contains_key(&id);
        let mut fields = Fields::new(&self.limits, is_new);
        if self.decoder.decode(block, |name, value| fields.field(name, value)).is_err() {
            return Err(ConnError(Reason::COMPRESSION_ERROR, "invalid header block"));
        }
        if !is_new {
            // Trailers: they must end the stream and carry no pseudo-header.
            if self.streams.get(&id).is_some_and(|s| s.recv_ended) {
                return self.stream_error(id, Reason::STREAM_CLOSED, now);
            }
            if !end_stream || fields.malformed || fields.pseudo_seen {
                return self.stream_error(id, Reason::PROTOCOL_ERROR, now);
            }
            return self.end_request(id, now);
        }
        if id <= self.last_stream {
            if self.recent_closed.contains(&id) || self.recent_resets.contains(&id) {
                return Err(ConnError(Reason::STREAM_CLOSED, "HEADERS on a closed stream"));
            }
            return Err(ConnError(Reason::PROTOCOL_ERROR, "stream id not increasing"));
        }
        if let Drain::Final(last) = self.drain {
            if id > last {
                // After the final GOAWAY: ignored, the client retries elsewhere.
                self.last_ignored = self.last_ignored.max(id);
                return Ok(());
            }
        }
        self.last_stream = id;
        if self_dependent {
            return self.stream_error(id, Reason::PROTOCOL_ERROR, now);
        }
        if fields.malformed || !fields.complete() {
            return self.stream_error(id, Reason::PROTOCOL_ERROR, now);
        }
        if fields.too_large {
            self.stats.headers_too_large += 1;
            let mut block = Vec::with_capacity(8);
            hpack::encode_literal_indexed_name(8, b"431", &mut block);
            frame::write_headers(&mut self.out, id, &block, true, self.peer_max_frame);
            if !end_stream {
                frame::write_rst(&mut self.out, id, Reason::NO_ERROR);
                self.forget_reset(id);
            } else {
                self.forget_closed(id);
            }
            return Ok(());
        }
        if self.streams.len() >= self.limits.max_concurrent_streams as usize
            || self.queued_bytes > self.limits.max_queued_bytes
        {
            self.stats.refused_streams += 1;
            frame::write_rst(&mut self.out, id, Reason::REFUSED_STREAM);
            self.forget_reset(id);
            return self.spend_reset(now);
        }
        self.streams.insert(
            id,
            Stream {
                recv_window: i64::from(self.limits.stream_window),
                recv_unacked: 0,
                send_window: i64::from(self.peer_initial_window),
                body: BytesMut::new(),
                discard: false,
                content_length: fields.content_length,
                received: 0,
                recv_ended: false,
                send_ended: false,
                queue: VecDeque::new(),
                blocked: false,
            },
        );
        self.events.push_back(Event::Request { stream: id, head: fields.into_head() });
        if end_stream {
            return self.end_request(id, now);
        }
        Ok(())
    }

    // --------------------------------------------------------------------------------------
    // Sending.
    // --------------------------------------------------------------------------------------

    /// True while `stream` is open for sending.
    pub fn is_open(&self, stream: u32) -> bool {
        self.streams.get(&stream).is_some_and(|s| !s.send_ended)
    }

    /// Sends a header block (never flow-controlled). False when the stream is gone.
    pub fn send_headers(&mut self, stream: u32, block: &[u8], end_stream: bool) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else { return false };
        if s.send_ended || s.end_queued() {
            return false;
        }
        if s.queue.is_empty() {
            frame::write_headers(&mut self.out, stream, block, end_stream, self.peer_max_frame);
            if end_stream {
                self.finish_send(stream);
            }
        } else if end_stream {
            s.queue.push_back(Pending::Trailers(block.to_vec()));
        } else {
            // Headers after queued data would reorder the stream; callers never do this.
            return false;
        }
        true
    }

    /// Sends body bytes, as much as the windows allow now, the rest queued.
    pub fn send_data(&mut self, stream: u32, data: Bytes, end_stream: bool) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else { return false };
        if s.send_ended || s.end_queued() {
            return false;
        }
        self.queued_bytes += data.len();
        s.queue.push_back(Pending::Data(data, end_stream));
        self.flush_stream(stream);
        true
    }

    /// Resets `stream` (the application gave up on it, e.g. a deadline).
    pub fn reset(&mut self, stream: u32, reason: Reason) {
        if let Some(s) = self.streams.remove(&stream) {
            self.unqueue(&s);
            frame::write_rst(&mut self.out, stream, reason);
            self.forget_reset(stream);
        }
    }

    fn flush_blocked(&mut self) {
        for _ in 0..self.blocked.len() {
            let Some(id) = self.blocked.pop_front() else { break };
            if let Some(s) = self.streams.get_mut(&id) {
                s.blocked = false;
            }
            self.flush_stream(id);
        }
    }

    fn flush_stream(&mut self, id: u32) {
        let max_frame = self.peer_max_frame as i64;
        loop {
            let Some(s) = self.streams.get_mut(&id) else { return };
            let Some(front) = s.queue.front_mut() else { return };
            match front {
                Pending::Data(data, end) => {
                    let window = s.send_window.min(self.conn_send_window).min(max_frame);
                    if window <= 0 && !data.is_empty() {
                        if !s.blocked {
                            s.blocked = true;
                            self.blocked.push_back(id);
                        }
                        return;
                    }
                    let n = (data.len() as i64).min(window.max(0)) as usize;
                    let last = n == data.len();
                    let end_stream = last && *end;
                    frame::write_data(&mut self.out, id, &data[..n], end_stream);
                    s.send_window -= n as i64;
                    self.conn_send_window -= n as i64;
                    self.queued_bytes -= n;
                    if last {
                        s.queue.pop_front();
                        if end_stream {
                            self.finish_send(id);
                            return;
                        }
                    } else {
                        data.advance(n);
                    }
                }
                Pending::Trailers(block) => {
                    let block = std::mem::take(block);
                    s.queue.pop_front();
                    frame::write_headers(&mut self.out, id, &block, true, self.peer_max_frame);
                    self.finish_send(id);
                    return;
                }
            }
        }
    }

    /// END_STREAM went out on `id`: the stream closes once the client has ended too. Until then
    /// it is half-closed (local) (RFC 9113 §5.1): the client's frames are still checked (flow
    /// control, content-length, trailers) and still count against the stream limit, but their
    /// data is dropped; a client that keeps sending is told to stop with RST_STREAM(NO_ERROR)
    /// (§8.1) once its data would need a WINDOW_UPDATE (see `on_data`).
    fn finish_send(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        s.send_ended = true;
        if s.recv_ended {
            self.streams.remove(&id);
            self.forget_closed(id);
        } else {
            s.discard = true;
            s.body = BytesMut::new();
        }
    }
}

/// DATA frames of at least this size are handed on as slices of the read buffer; smaller ones are
/// copied.
const ZERO_COPY_BYTES: usize = 16 << 10;

/// A DATA payload: in place in the read buffer, or a shared slice of it.
enum Data<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl Data<'_> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Borrowed(b) => b,
            Data::Shared(b) => b,
        }
    }
}

/// Splits a stream's body into gRPC messages. A message that arrives whole in one DATA frame is
/// taken without buffering (as a slice of the read buffer when it is large).
fn append_messages(
    s: &mut Stream,
    id: u32,
    data: Data<'_>,
    max: usize,
    events: &mut VecDeque<Event>,
) {
    if s.body.is_empty() {
        if let Ok(Some(len)) = framing::peek_len(data.as_slice(), max) {
            if data.len() == framing::PREFIX_LEN + len {
                let message = match data {
                    Data::Shared(b) => b.slice(framing::PREFIX_LEN..),
                    Data::Borrowed(b) => Bytes::copy_from_slice(&b[framing::PREFIX_LEN..]),
                };
                events.push_back(Event::Message { stream: id, message });
                return;
            }
        }
    }
    s.body.extend_from_slice(data.as_slice());
    loop {
        match framing::decode(&mut s.body, max) {
            Ok(Some(message)) => events.push_back(Event::Message { stream: id, message }),
            Ok(None) => return,
            Err(error) => {
                s.discard = true;
                s.body = BytesMut::new();
                events.push_back(Event::BadMessage { stream: id, error });
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
