//! Unit tests of the server connection: bytes in, frames out.

use super::*;

const ORIGIN: [(&[u8], &[u8]); 4] =
    [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a.test")];

/// A connection past the preface and the SETTINGS exchange, its output drained.
fn open(limits: Limits, now: Instant) -> Conn {
    let mut conn = Conn::new(limits, now);
    let mut buf = BytesMut::from(&frame::PREFACE[..]);
    let mut settings = Vec::new();
    frame::write_settings(&mut settings, &[]);
    buf.extend_from_slice(&settings);
    conn.recv(&mut buf, now);
    conn.output().clear();
    conn
}

fn feed(conn: &mut Conn, bytes: &[u8], now: Instant) {
    let mut buf = BytesMut::from(bytes);
    conn.recv(&mut buf, now);
    assert!(buf.is_empty(), "whole frames fed");
}

/// The frames in the output, drained.
fn sent(conn: &mut Conn) -> Vec<(FrameHead, Vec<u8>)> {
    let out = std::mem::take(conn.output());
    let mut rest = &out[..];
    let mut frames = Vec::new();
    while let Some(head) = FrameHead::parse(rest) {
        let end = HEAD_LEN + head.len as usize;
        frames.push((head, rest[HEAD_LEN..end].to_vec()));
        rest = &rest[end..];
    }
    assert!(rest.is_empty(), "trailing bytes in the output");
    frames
}

/// The error codes of the RST_STREAMs (stream id, code) and GOAWAYs (0, code) sent.
fn errors(conn: &mut Conn) -> Vec<(u32, Reason)> {
    sent(conn)
        .into_iter()
        .filter(|(h, _)| h.kind == kind::RST_STREAM || h.kind == kind::GOAWAY)
        .map(|(h, p)| {
            let at = if h.kind == kind::GOAWAY { 4 } else { 0 };
            (h.stream, Reason(u32::from_be_bytes(p[at..at + 4].try_into().unwrap())))
        })
        .collect()
}

fn headers(stream: u32, fields: &[(&[u8], &[u8])], end_stream: bool) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        hpack::encode_literal(name, value, &mut block);
    }
    let mut out = Vec::new();
    frame::write_headers(&mut out, stream, &block, end_stream, frame::DEFAULT_MAX_FRAME);
    out
}

fn data(stream: u32, len: usize, end_stream: bool) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_data(&mut out, stream, &vec![0; len], end_stream);
    out
}

#[test]
fn a_silent_or_idle_connection_is_not_kept_forever() {
    let t0 = Instant::now();
    let limits = Limits::default();
    // No preface: SETTINGS_TIMEOUT once header_timeout passed.
    let mut silent = Conn::new(limits.clone(), t0);
    silent.output().clear();
    assert_eq!(silent.check_timeouts(t0), Some(t0 + limits.header_timeout));
    assert_eq!(silent.check_timeouts(t0 + limits.header_timeout), None);
    assert_eq!(errors(&mut silent), [(0, Reason::SETTINGS_TIMEOUT)]);
    assert!(silent.is_finished());
    // Open but idle, no stream: a graceful drain (GOAWAY NO_ERROR) after idle_timeout.
    let mut idle = open(limits.clone(), t0);
    assert_eq!(idle.check_timeouts(t0), Some(t0 + limits.idle_timeout));
    idle.check_timeouts(t0 + limits.idle_timeout);
    assert_eq!(errors(&mut idle), [(0, Reason::NO_ERROR)]);
}

fn requests(conn: &mut Conn) -> usize {
    std::iter::from_fn(|| conn.next_event()).filter(|e| matches!(e, Event::Request { .. })).count()
}

#[test]
fn invalid_field_names_and_values_are_malformed() {
    let now = Instant::now();
    let bad: [(&[u8], &[u8]); 11] = [
        (b"space force", b"v"),
        (b"\x01invalid", b"v"),
        (b"\x7finvalid", b"v"),
        ("inválid".as_bytes(), b"v"),
        (b"invalid:field", b"v"),
        (b"Uppercase", b"v"),
        (b"x-value", b"oh\0no"),
        (b"x-value", b"oh\rno"),
        (b"x-value", b"oh\nno"),
        (b"x-value", b" oh no"),
        (b"x-value", b"oh no\t"),
    ];
    for field in bad {
        let mut conn = open(Limits::default(), now);
        let fields = [&ORIGIN[..], &[field]].concat();
        feed(&mut conn, &headers(1, &fields, true), now);
        assert_eq!(errors(&mut conn), [(1, Reason::PROTOCOL_ERROR)], "{field:?}");
        assert_eq!(requests(&mut conn), 0, "{field:?}");
    }
    // Inner spaces and tabs, and visible ASCII, are fine.
    let mut conn = open(Limits::default(), now);
    let fields = [&ORIGIN[..], &[(b"x-value" as &[u8], b"a b\tc!~" as &[u8])]].concat();
    feed(&mut conn, &headers(1, &fields, true), now);
    assert_eq!(errors(&mut conn), []);
    assert_eq!(requests(&mut conn), 1);
}

#[test]
fn host_must_name_the_authority() {
    let now = Instant::now();
    let mut conn = open(Limits::default(), now);
    let fields = [&ORIGIN[..], &[(b"host" as &[u8], b"a.test.different" as &[u8])]].concat();
    feed(&mut conn, &headers(1, &fields, true), now);
    assert_eq!(errors(&mut conn), [(1, Reason::PROTOCOL_ERROR)]);
    assert_eq!(requests(&mut conn), 0);
    // The same host, in another case: the same entity.
    let fields = [&ORIGIN[..], &[(b"host" as &[u8], b"A.Test" as &[u8])]].concat();
    feed(&mut conn, &headers(3, &fields, true), now);
    assert_eq!(errors(&mut conn), []);
    assert_eq!(requests(&mut conn), 1);
}

#[test]
fn frames_after_the_peers_rst_stream_are_stream_closed() {
    let now = Instant::now();
    let mut conn = open(Limits::default(), now);
    feed(&mut conn, &headers(1, &ORIGIN, false), now);
    let mut rst = Vec::new();
    frame::write_rst(&mut rst, 1, Reason::CANCEL);
    feed(&mut conn, &rst, now);
    feed(&mut conn, &data(1, 4, true), now);
    assert_eq!(errors(&mut conn), [(1, Reason::STREAM_CLOSED)]);
    // Frames in flight after our own RST_STREAM are ignored (RFC 9113 §5.1).
    feed(&mut conn, &headers(3, &ORIGIN, false), now);
    conn.reset(3, Reason::CANCEL);
    assert_eq!(errors(&mut conn), [(3, Reason::CANCEL)]);
    feed(&mut conn, &data(3, 4, true), now);
    assert_eq!(errors(&mut conn), []);
    assert!(!conn.failed());
}

#[test]
fn a_reply_before_the_request_ends_leaves_the_stream_half_closed() {
    let now = Instant::now();
    let limits = Limits { stream_window: 32 << 10, ..Limits::default() };
    let mut conn = open(limits, now);
    feed(&mut conn, &headers(1, &ORIGIN, false), now);
    assert!(conn.send_headers(1, &[0x88], true));
    // No RST_STREAM(NO_ERROR) ahead of what the client may still send.
    let replies = sent(&mut conn);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0.kind, kind::HEADERS);
    assert_eq!(conn.open_streams(), 1);
    // Its frames are still checked: trailers must end the stream (RFC 9113 §8.1).
    feed(&mut conn, &data(1, 4, false), now);
    feed(&mut conn, &headers(1, &[(b"x-trailer", b"1")], false), now);
    assert_eq!(errors(&mut conn), [(1, Reason::PROTOCOL_ERROR)]);
    assert_eq!(conn.open_streams(), 0);

    // A client that ends its request closes the stream, without a reset.
    feed(&mut conn, &headers(3, &ORIGIN, false), now);
    assert!(conn.send_headers(3, &[0x88], true));
    feed(&mut conn, &data(3, 4, true), now);
    assert_eq!(errors(&mut conn), []);
    assert_eq!(conn.open_streams(), 0);

    // One that keeps sending is told to stop once it needs more window, not given any.
    feed(&mut conn, &headers(5, &ORIGIN, false), now);
    assert!(conn.send_headers(5, &[0x88], true));
    sent(&mut conn);
    feed(&mut conn, &data(5, 16 << 10, false), now);
    let frames = sent(&mut conn);
    assert!(!frames.iter().any(|(h, _)| h.kind == kind::WINDOW_UPDATE && h.stream == 5));
    assert_eq!(
        frames
            .iter()
            .filter(|(h, _)| h.kind == kind::RST_STREAM)
            .map(|(h, p)| (h.stream, p.clone()))
            .collect::<Vec<_>>(),
        [(5, Reason::NO_ERROR.0.to_be_bytes().to_vec())]
    );
    // What it had in flight is then ignored.
    feed(&mut conn, &data(5, 4, true), now);
    assert_eq!(errors(&mut conn), []);
    assert!(!conn.failed());
}

#[test]
fn window_overflow_on_a_half_closed_stream_is_a_stream_error() {
    let now = Instant::now();
    let mut conn = open(Limits::default(), now);
    feed(&mut conn, &headers(1, &ORIGIN, false), now);
    assert!(conn.send_headers(1, &[0x88], true));
    sent(&mut conn);
    let mut update = Vec::new();
    frame::write_window_update(&mut update, 1, (1 << 31) - 1);
    feed(&mut conn, &update, now);
    assert_eq!(errors(&mut conn), [(1, Reason::FLOW_CONTROL_ERROR)]);
    assert!(!conn.failed());
}

#[test]
fn frames_sent_after_the_peers_goaway_are_still_answered() {
    let now = Instant::now();
    let mut conn = open(Limits::default(), now);
    let mut bytes = Vec::new();
    frame::write_goaway(&mut bytes, 0, Reason(0xff), b"");
    feed(&mut conn, &bytes, now);
    assert!(!conn.is_finished());
    assert!(conn.check_timeouts(now).is_some_and(|due| due <= now + PEER_GOAWAY_LINGER));
    let mut ping = Vec::new();
    frame::write_ping(&mut ping, false, *b"pingpong");
    feed(&mut conn, &ping, now);
    let frames = sent(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].0.kind, frames[0].0.flags), (kind::PING, flag::ACK));
    // Then silence: our final GOAWAY, and the connection is done.
    conn.check_timeouts(now + PEER_GOAWAY_LINGER);
    assert_eq!(errors(&mut conn), [(0, Reason::NO_ERROR)]);
    assert!(conn.is_finished());
}
