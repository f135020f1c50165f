//! The client side of one HTTP/2 connection, as a sans-IO state machine: unary gRPC calls only
//! (what the coordinator's fan-out to storage nodes needs).
//!
//! [`ClientConn::start`] appends a call's HEADERS and DATA to the output; [`ClientConn::recv`]
//! consumes the server's bytes and yields each finished call as a [`Done`]. Flow control is
//! obeyed both ways (request bodies wait for window; response windows are replenished in
//! batches), SETTINGS, PING and GOAWAY are handled, and every call that can no longer finish
//! (reset, connection lost, beyond a GOAWAY) finishes with a status.

use std::collections::VecDeque;

use ahash::AHashMap;
use bytes::{Buf, Bytes, BytesMut};
use percent_encoding::percent_decode;

use super::{
    frame::{self, flag, kind, setting, FrameHead, Reason, HEAD_LEN},
    hpack,
};
use crate::rpc::{
    framing::{self, FrameError},
    status::{Code, Status, ERROR_CODE_HEADER, RETRY_AFTER_HEADER},
};

/// Bounds of a client connection.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Largest reply message accepted.
    pub max_message_bytes: usize,
    /// The stream window we advertise.
    pub stream_window: u32,
    /// The connection window we open.
    pub connection_window: u32,
}

/// A finished call.
#[derive(Debug)]
pub struct Done {
    pub stream: u32,
    pub result: Result<Bytes, Status>,
}

#[derive(Debug, Default)]
struct Call {
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    /// The request body not yet sent (flow control).
    pending: Option<Bytes>,
    blocked: bool,
    headers_seen: bool,
    http_status: u16,
    grpc: bool,
    body: BytesMut,
    message: Option<Bytes>,
    error: Option<Status>,
    status: Option<Status>,
}

/// One client connection's protocol state.
pub struct ClientConn {
    limits: ClientLimits,
    out: Vec<u8>,
    decoder: hpack::Decoder,
    calls: AHashMap<u32, Call>,
    next_stream: u32,
    done: VecDeque<Done>,
    partial: Option<(u32, bool)>,
    block: Vec<u8>,
    conn_send_window: i64,
    conn_recv_window: i64,
    conn_recv_unacked: u32,
    peer_initial_window: u32,
    peer_max_frame: u32,
    peer_max_streams: u32,
    blocked: VecDeque<u32>,
    /// The server's GOAWAY: no new calls; calls above this id fail.
    goaway: Option<u32>,
    failed: Option<String>,
    authority_block: Vec<u8>,
    user_agent: &'static [u8],
    /// The encoded `authorization` field of every call, empty when none is sent.
    authorization_block: Vec<u8>,
}

impl ClientConn {
    /// A new connection to `authority`; the preface and SETTINGS are already in the output.
    pub fn new(limits: ClientLimits, authority: &str) -> ClientConn {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(frame::PREFACE);
        frame::write_settings(
            &mut out,
            &[(setting::ENABLE_PUSH, 0), (setting::INITIAL_WINDOW_SIZE, limits.stream_window)],
        );
        let extra = limits.connection_window.saturating_sub(frame::DEFAULT_WINDOW);
        if extra > 0 {
            frame::write_window_update(&mut out, 0, extra);
        }
        let mut authority_block = Vec::with_capacity(authority.len() + 2);
        hpack::encode_literal_indexed_name(1, authority.as_bytes(), &mut authority_block);
        ClientConn {
            out,
            decoder: hpack::Decoder::new(4096),
            calls: AHashMap::new(),
            next_stream: 1,
            done: VecDeque::new(),
            partial: None,
            block: Vec::new(),
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            conn_recv_window: i64::from(limits.connection_window.max(frame::DEFAULT_WINDOW)),
            conn_recv_unacked: 0,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_max_streams: u32::MAX,
            blocked: VecDeque::new(),
            goaway: None,
            failed: None,
            authority_block,
            authorization_block: Vec::new(),
            user_agent: concat!("pairdb/", env!("CARGO_PKG_VERSION")).as_bytes(),
            limits,
        }
    }

    /// Sends `authorization: {value}` on every call from now on, as a literal never indexed
    /// (RFC 7541 §6.2.3), so that neither this side nor any intermediary keeps it in a table.
    pub fn set_authorization(&mut self, value: &[u8]) {
        self.authorization_block.clear();
        // 23: `authorization` in the static table.
        hpack::encode_literal_never_indexed_name(23, value, &mut self.authorization_block);
    }

    /// Bytes to write to the server.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The next finished call.
    pub fn next_done(&mut self) -> Option<Done> {
        self.done.pop_front()
    }

    /// Why the connection is unusable, once it is (protocol error, GOAWAY, ids exhausted).
    pub fn closed_reason(&self) -> Option<String> {
        if let Some(why) = &self.failed {
            return Some(why.clone());
        }
        if self.goaway.is_some() {
            return Some("the server sent GOAWAY".into());
        }
        if self.next_stream >= (1 << 31) - 1 {
            return Some("stream ids exhausted".into());
        }
        None
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// True when another call may start now (the server's stream limit allows it).
    pub fn can_start(&self) -> bool {
        self.closed_reason().is_none()
            && (self.calls.len() as u64) < u64::from(self.peer_max_streams)
    }

    /// Starts a unary call of `path` with an already framed request; returns its stream id.
    pub fn start(
        &mut self,
        path: &str,
        framed: Bytes,
        timeout: Option<&[u8]>,
    ) -> Result<u32, Status> {
        if let Some(why) = self.closed_reason() {
            return Err(Status::unavailable(format!("connection unusable: {why}")));
        }
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = Vec::with_capacity(96 + path.len());
        hpack::encode_indexed(3, &mut block); // :method POST
        hpack::encode_indexed(6, &mut block); // :scheme http
        hpack::encode_literal_indexed_name(4, path.as_bytes(), &mut block);
        block.extend_from_slice(&self.authority_block);
        hpack::encode_literal_indexed_name(31, b"application/grpc", &mut block);
        hpack::encode_literal(b"te", b"trailers", &mut block);
        hpack::encode_literal_indexed_name(58, self.user_agent, &mut block);
        if let Some(t) = timeout {
            hpack::encode_literal(b"grpc-timeout", t, &mut block);
        }
        block.extend_from_slice(&self.authorization_block);
        frame::write_headers(&mut self.out, id, &block, false, self.peer_max_frame);
        self.calls.insert(
            id,
            Call {
                send_window: i64::from(self.peer_initial_window),
                recv_window: i64::from(self.limits.stream_window),
                pending: Some(framed),
                ..Call::default()
            },
        );
        self.flush_call(id);
        Ok(id)
    }

    /// Abandons a call (its caller stopped waiting): RST_STREAM(CANCEL).
    pub fn cancel(&mut self, id: u32) {
        if self.calls.remove(&id).is_some() && self.failed.is_none() {
            frame::write_rst(&mut self.out, id, Reason::CANCEL);
        }
    }

    /// Ends every call with `status` (the connection is gone).
    pub fn fail_all(&mut self, why: &str) {
        if self.failed.is_none() {
            self.failed = Some(why.to_owned());
        }
        let mut ids: Vec<u32> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.calls.remove(&id);
            self.done.push_back(Done {
                stream: id,
                result: Err(Status::unavailable(format!("transport: {why}"))),
            });
        }
    }

    fn protocol_error(&mut self, reason: Reason, why: &str) {
        frame::write_goaway(&mut self.out, 0, reason, why.as_bytes());
        self.fail_all(&format!("protocol error from the server: {why}"));
    }

    /// Consumes every complete frame at the front of `buf`.
    pub fn recv(&mut self, buf: &mut BytesMut) {
        while self.failed.is_none() {
            let Some(head) = FrameHead::parse(buf) else { return };
            if head.len > frame::DEFAULT_MAX_FRAME {
                self.protocol_error(Reason::FRAME_SIZE_ERROR, "frame larger than 16384");
                return;
            }
            let total = HEAD_LEN + head.len as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return;
            }
            // Large DATA payloads stay where they are, as shared slices; everything else is
            // parsed in place and small replies are copied out, so that the read buffer is not
            // pinned and is reused without new allocations.
            if head.kind == kind::DATA && head.len as usize >= ZERO_COPY_BYTES {
                let mut shared = buf.split_to(total).freeze();
                shared.advance(HEAD_LEN);
                self.on_data(head, &shared.clone(), Some(shared));
            } else {
                self.on_frame(head, &buf[HEAD_LEN..total]);
                buf.advance(total);
            }
        }
        buf.clear();
    }

    fn on_frame(&mut self, head: FrameHead, payload: &[u8]) {
        if let Some((stream, _)) = self.partial {
            if head.kind != kind::CONTINUATION || head.stream != stream {
                return self.protocol_error(Reason::PROTOCOL_ERROR, "header block interrupted");
            }
        }
        match head.kind {
            kind::DATA => self.on_data(head, payload, None),
            kind::HEADERS => {
                let Some((start, end)) = frame::strip_padding(&head, payload) else {
                    return self.protocol_error(Reason::PROTOCOL_ERROR, "bad padding");
                };
                let mut fragment = &payload[start..end];
                if head.has(flag::PRIORITY) {
                    if fragment.len() < 5 {
                        return self.protocol_error(Reason::FRAME_SIZE_ERROR, "HEADERS priority");
                    }
                    fragment = &fragment[5..];
                }
                self.block.clear();
                self.block.extend_from_slice(fragment);
                if head.has(flag::END_HEADERS) {
                    self.on_block(head.stream, head.has(flag::END_STREAM));
                } else {
                    self.partial = Some((head.stream, head.has(flag::END_STREAM)));
                }
            }
            kind::CONTINUATION => {
                let Some((stream, end_stream)) = self.partial else {
                    return self.protocol_error(Reason::PROTOCOL_ERROR, "stray CONTINUATION");
                };
                if self.block.len() + payload.len() > 256 << 10 {
                    return self
                        .protocol_error(Reason::ENHANCE_YOUR_CALM, "header block too large");
                }
                self.block.extend_from_slice(payload);
                if head.has(flag::END_HEADERS) {
                    self.partial = None;
                    self.on_block(stream, end_stream);
                }
            }
            kind::RST_STREAM => {
                if payload.len() != 4 {
                    return self.protocol_error(Reason::FRAME_SIZE_ERROR, "RST_STREAM length");
                }
                let reason =
                    Reason(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]));
                if let Some(call) = self.calls.remove(&head.stream) {
                    // NO_ERROR after a complete reply: the server just does not need our body.
                    let result = match (reason, call.status.is_some()) {
                        (Reason::NO_ERROR, true) => finish(call, self.limits.max_message_bytes),
                        (Reason::CANCEL, _) => {
                            Err(Status::cancelled("stream cancelled by the server"))
                        }
                        (Reason::REFUSED_STREAM, _) => {
                            Err(Status::unavailable("stream refused by the server"))
                        }
                        _ => Err(Status::unavailable(format!(
                            "stream reset by the server: {reason}"
                        ))),
                    };
                    self.done.push_back(Done { stream: head.stream, result });
                }
            }
            kind::SETTINGS => {
                if head.has(flag::ACK) {
                    return;
                }
                if !payload.len().is_multiple_of(6) {
                    return self.protocol_error(Reason::FRAME_SIZE_ERROR, "SETTINGS length");
                }
                for e in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    match id {
                        setting::INITIAL_WINDOW_SIZE => {
                            if i64::from(value) > frame::MAX_WINDOW {
                                return self.protocol_error(Reason::FLOW_CONTROL_ERROR, "window");
                            }
                            let delta = i64::from(value) - i64::from(self.peer_initial_window);
                            self.peer_initial_window = value;
                            for c in self.calls.values_mut() {
                                c.send_window += delta;
                            }
                        }
                        setting::MAX_FRAME_SIZE
                            if (frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME)
                                .contains(&value) =>
                        {
                            self.peer_max_frame = value;
                        }
                        setting::MAX_CONCURRENT_STREAMS => self.peer_max_streams = value,
                        _ => {}
                    }
                }
                frame::write_settings_ack(&mut self.out);
                self.flush_blocked();
            }
            kind::PING => {
                if let Ok(data) = <[u8; 8]>::try_from(payload) {
                    if !head.has(flag::ACK) {
                        frame::write_ping(&mut self.out, true, data);
                    }
                }
            }
            kind::GOAWAY => {
                if payload.len() < 8 {
                    return self.protocol_error(Reason::FRAME_SIZE_ERROR, "GOAWAY length");
                }
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                let code =
                    Reason(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]));
                self.goaway = Some(last);
                let mut lost: Vec<u32> =
                    self.calls.keys().copied().filter(|&id| id > last).collect();
                lost.sort_unstable();
                for id in lost {
                    self.calls.remove(&id);
                    self.done.push_back(Done {
                        stream: id,
                        result: Err(Status::unavailable(format!(
                            "the server sent GOAWAY ({code}) before taking the call"
                        ))),
                    });
                }
            }
            kind::WINDOW_UPDATE => {
                let Ok(raw) = <[u8; 4]>::try_from(payload) else {
                    return self.protocol_error(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE length");
                };
                let inc = i64::from(u32::from_be_bytes(raw) & 0x7fff_ffff);
                if head.stream == 0 {
                    self.conn_send_window += inc;
                    self.flush_blocked();
                } else if let Some(c) = self.calls.get_mut(&head.stream) {
                    c.send_window += inc;
                    self.flush_call(head.stream);
                }
            }
            kind::PUSH_PROMISE => self.protocol_error(Reason::PROTOCOL_ERROR, "push is disabled"),
            _ => {}
        }
    }

    fn on_data(&mut self, head: FrameHead, payload: &[u8], shared: Option<Bytes>) {
        let Some((start, end)) = frame::strip_padding(&head, payload) else {
            return self.protocol_error(Reason::PROTOCOL_ERROR, "bad padding");
        };
        let flow = head.len;
        self.conn_recv_window -= i64::from(flow);
        if self.conn_recv_window < 0 {
            return self.protocol_error(Reason::FLOW_CONTROL_ERROR, "connection window exceeded");
        }
        self.conn_recv_unacked += flow;
        if self.conn_recv_unacked >= self.limits.connection_window / 2 {
            frame::write_window_update(&mut self.out, 0, self.conn_recv_unacked);
            self.conn_recv_window += i64::from(self.conn_recv_unacked);
            self.conn_recv_unacked = 0;
        }
        let id = head.stream;
        let max = self.limits.max_message_bytes;
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.recv_window -= i64::from(flow);
        let data = &payload[start..end];
        if call.error.is_none() {
            if call.message.is_none() && call.body.is_empty() {
                if let Ok(Some(len)) = framing::peek_len(data, max) {
                    if data.len() == framing::PREFIX_LEN + len {
                        call.message = Some(match &shared {
                            Some(b) => b.slice(start + framing::PREFIX_LEN..end),
                            None => Bytes::copy_from_slice(&data[framing::PREFIX_LEN..]),
                        });
                    }
                }
            }
            if call.message.is_none() || !call.body.is_empty() {
                call.body.extend_from_slice(data);
                match framing::decode(&mut call.body, max) {
                    Ok(Some(m)) if call.message.is_none() => call.message = Some(m),
                    Ok(_) => {}
                    Err(e) => call.error = Some(reply_frame_error(e)),
                }
            }
        }
        if head.has(flag::END_STREAM) {
            let call = self.calls.remove(&id).expect("present");
            let result = match call.status {
                Some(_) => finish(call, max),
                None => Err(Status::internal("reply ended without grpc-status")),
            };
            self.done.push_back(Done { stream: id, result });
            return;
        }
        call.recv_unacked += flow;
        if call.recv_unacked >= self.limits.stream_window / 2 {
            frame::write_window_update(&mut self.out, id, call.recv_unacked);
            call.recv_window += i64::from(call.recv_unacked);
            call.recv_unacked = 0;
        }
    }

    fn on_block(&mut self, id: u32, end_stream: bool) {
        let block = std::mem::take(&mut self.block);
        let mut status_fields = StatusFields::default();
        let mut http_status = 0u16;
        let mut grpc = false;
        let decoded = self.decoder.decode(&block, |name, value| match name {
            b":status" => {
                http_status =
                    std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            b"content-type" => grpc = value.starts_with(b"application/grpc"),
            _ => status_fields.field(name, value),
        });
        self.block = block;
        if decoded.is_err() {
            return self.protocol_error(Reason::COMPRESSION_ERROR, "invalid header block");
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !call.headers_seen {
            call.headers_seen = true;
            call.http_status = http_status;
            call.grpc = grpc;
        }
        if let Some(status) = status_fields.into_status() {
            call.status = Some(status);
        }
        if end_stream {
            let call = self.calls.remove(&id).expect("present");
            let result = finish(call, self.limits.max_message_bytes);
            self.done.push_back(Done { stream: id, result });
        }
    }

    fn flush_blocked(&mut self) {
        for _ in 0..self.blocked.len() {
            let Some(id) = self.blocked.pop_front() else { break };
            if let Some(c) = self.calls.get_mut(&id) {
                c.blocked = false;
            }
            self.flush_call(id);
        }
    }

    fn flush_call(&mut self, id: u32) {
        let max_frame = i64::from(self.peer_max_frame);
        let Some(call) = self.calls.get_mut(&id) else { return };
        while let Some(body) = call.pending.as_mut() {
            let window = call.send_window.min(self.conn_send_window).min(max_frame);
            if window <= 0 && !body.is_empty() {
                if !call.blocked {
                    call.blocked = true;
                    self.blocked.push_back(id);
                }
                return;
            }
            let n = (body.len() as i64).min(window.max(0)) as usize;
            let last = n == body.len();
            frame::write_data(&mut self.out, id, &body[..n], last);
            call.send_window -= n as i64;
            self.conn_send_window -= n as i64;
            if last {
                call.pending = None;
            } else {
                body.advance(n);
            }
        }
    }
}

/// DATA frames of at least this size are kept as slices of the read buffer; smaller ones are
/// copied.
const ZERO_COPY_BYTES: usize = 16 << 10;

/// The call's result from what arrived.
fn finish(call: Call, max: usize) -> Result<Bytes, Status> {
    if call.http_status != 200 {
        return Err(call.status.unwrap_or_else(|| {
            Status::from_http_status(
                http::StatusCode::from_u16(call.http_status)
                    .unwrap_or(http::StatusCode::BAD_GATEWAY),
            )
        }));
    }
    let Some(status) = call.status else {
        return Err(Status::internal("reply ended without grpc-status"));
    };
    if !status.is_ok() {
        return Err(status);
    }
    if !call.grpc {
        return Err(Status::internal("reply is not application/grpc"));
    }
    if let Some(e) = call.error {
        return Err(e);
    }
    if !call.body.is_empty() {
        let mut body = call.body;
        if let Ok(Some(m)) = framing::decode(&mut body, max) {
            if call.message.is_none() {
                return Ok(m);
            }
        }
        if call.message.is_none() {
            return Err(Status::internal("truncated reply message"));
        }
    }
    call.message.ok_or_else(|| Status::internal("OK without a reply message"))
}

fn reply_frame_error(e: FrameError) -> Status {
    match e {
        // The gRPC spec's code for a message over the receiver's limit.
        FrameError::TooLarge { .. } => Status::resource_exhausted(format!("reply too large: {e}")),
        _ => Status::internal(format!("bad reply framing: {e}")),
    }
}

/// `grpc-status`, `grpc-message`, `pairdb-error-code` and `pairdb-retry-after-ms`, as they are
/// decoded.
#[derive(Default)]
struct StatusFields {
    code: Option<Code>,
    message: String,
    error_code: Option<String>,
    retry_after_ms: Option<u64>,
}

impl StatusFields {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"grpc-status" => {
                self.code = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse::<i32>().ok())
                        .map(Code)
                        .unwrap_or(Code::UNKNOWN),
                )
            }
            b"grpc-message" => {
                self.message = percent_decode(value).decode_utf8_lossy().into_owned();
            }
            n if n == ERROR_CODE_HEADER.as_bytes() => {
                self.error_code = std::str::from_utf8(value).ok().map(str::to_owned)
            }
            n if n == RETRY_AFTER_HEADER.as_bytes() => {
                self.retry_after_ms =
                    std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok())
            }
            _ => {}
        }
    }

    fn into_status(self) -> Option<Status> {
        let code = self.code?;
        let mut status = Status::new(code, self.message);
        status.error_code = self.error_code.map(std::borrow::Cow::Owned);
        status.retry_after_ms = self.retry_after_ms;
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::rpc::http2::{
        blocks,
        server::{Conn, Event, Limits},
    };

    fn limits() -> ClientLimits {
        ClientLimits {
            max_message_bytes: framing::DEFAULT_MAX_MESSAGE_BYTES,
            stream_window: 1 << 20,
            connection_window: 8 << 20,
        }
    }

    /// Moves bytes both ways until neither side has anything to say; returns the server's events.
    fn pump(client: &mut ClientConn, server: &mut Conn) -> Vec<Event> {
        let mut events = Vec::new();
        let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
        loop {
            let c = std::mem::take(client.output());
            let s = std::mem::take(server.output());
            if c.is_empty() && s.is_empty() {
                return events;
            }
            to_server.extend_from_slice(&c);
            server.recv(&mut to_server, Instant::now());
            while let Some(e) = server.next_event() {
                events.push(e);
            }
            to_client.extend_from_slice(&s);
            client.recv(&mut to_client);
        }
    }

    fn framed(len: usize) -> Bytes {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::with_capacity(len + 5);
        out.push(0);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    #[test]
    fn a_large_call_crosses_both_windows_against_our_server() {
        let mut client = ClientConn::new(limits(), "127.0.0.1:1");
        let mut server = Conn::new(Limits::default(), Instant::now());
        let request = framed(3 << 20);
        let id = client.start("/p.S/M", request.clone(), Some(b"5S")).expect("start");
        let events = pump(&mut client, &mut server);
        let mut got = None;
        let mut ended = false;
        for e in events {
            match e {
                Event::Request { stream, head } => {
                    assert_eq!((stream, head.path.as_str()), (id, "/p.S/M"));
                    assert_eq!(head.grpc_timeout.as_deref(), Some(&b"5S"[..]));
                }
                Event::Message { message, .. } => got = Some(message),
                Event::End { leftover, .. } => ended = leftover == 0,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ended, "the request ended cleanly");
        assert_eq!(got.as_deref(), Some(&request[5..]), "the 3 MiB request arrived whole");
        let reply = framed(2 << 20);
        assert!(server.send_headers(id, blocks::response_headers(), false));
        assert!(server.send_data(id, reply.clone(), false));
        assert!(server.send_headers(id, blocks::ok_trailers(), true));
        pump(&mut client, &mut server);
        let done = client.next_done().expect("the call finished");
        assert_eq!(done.stream, id);
        assert_eq!(done.result.expect("OK").as_ref(), &reply[5..]);
        assert_eq!(client.in_flight(), 0);
        assert_eq!(server.open_streams(), 0);
    }

    #[test]
    fn authorization_is_sent_never_indexed() {
        let mut client = ClientConn::new(limits(), "127.0.0.1:1");
        let secret = b"Bearer 0123456789abcdef0123456789abcdef";
        client.set_authorization(secret);
        let mut server = Conn::new(Limits::default(), Instant::now());
        client.start("/p.S/M", framed(1), None).unwrap();
        let out = client.output().clone();
        // 0x10 | 15, then 23 - 15: a never-indexed literal named by static entry 23.
        let field = [&[0x1f, 0x08, secret.len() as u8][..], secret].concat();
        assert!(out.windows(field.len()).any(|w| w == field), "never-indexed field sent");
        let events = pump(&mut client, &mut server);
        let Some(Event::Request { head, .. }) = events.first() else { panic!("{events:?}") };
        assert_eq!(head.authorization.as_deref(), Some(&secret[..]));
    }

    #[test]
    fn errors_resets_and_goaway_finish_every_call() {
        let mut client = ClientConn::new(limits(), "127.0.0.1:1");
        let mut server = Conn::new(Limits::default(), Instant::now());
        let a = client.start("/p.S/A", framed(10), None).unwrap();
        let b = client.start("/p.S/B", framed(10), None).unwrap();
        let c = client.start("/p.S/C", framed(10), None).unwrap();
        pump(&mut client, &mut server);
        // A Trailers-Only error with PairDB's error code.
        let status = Status::not_found("no such key").with_error_code("KEY_NOT_FOUND");
        server.send_headers(a, &blocks::trailers_only(&status), true);
        // A reset.
        server.reset(b, Reason::CANCEL);
        pump(&mut client, &mut server);
        let mut results: Vec<Done> = std::iter::from_fn(|| client.next_done()).collect();
        results.sort_by_key(|d| d.stream);
        let err = results[0].result.as_ref().unwrap_err();
        assert_eq!((err.code, err.error_code.as_deref()), (Code::NOT_FOUND, Some("KEY_NOT_FOUND")));
        assert_eq!(err.message, "no such key");
        assert_eq!(results[1].result.as_ref().unwrap_err().code, Code::CANCELLED);
        // A drain: the call in flight still finishes, and no new call starts.
        server.go_away();
        pump(&mut client, &mut server);
        assert!(client.closed_reason().is_some());
        assert!(client.start("/p.S/D", framed(1), None).is_err());
        server.send_headers(c, blocks::response_headers(), false);
        server.send_data(c, framed(3), false);
        server.send_headers(c, blocks::ok_trailers(), true);
        pump(&mut client, &mut server);
        assert_eq!(client.next_done().unwrap().result.unwrap().len(), 3);
        assert!(server.is_finished());
    }
}
