//! The HTTP/2 fuzzing harnesses (`pairdb::rpc::http2::fuzzing`) on stable: every file of the
//! cargo-fuzz corpus in `fuzz/corpus/<target>/` (seeds, what fuzzing found worth keeping, and
//! the inputs of bugs it found), and random inputs through proptest, so fuzzing does not depend
//! on nightly. `cargo +nightly fuzz run <target>` (see docs/ARCHITECTURE.md) explores further.

use std::path::PathBuf;

use pairdb::rpc::http2::{
    frame::{self, FrameHead},
    fuzzing, hpack,
};
use proptest::prelude::*;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for path in files {
        let data = std::fs::read(&path).expect("a corpus file");
        let run = std::panic::catch_unwind(|| harness(&data));
        assert!(run.is_ok(), "{target}: {} breaks an invariant", path.display());
    }
}

#[test]
fn frames_corpus() {
    replay("http2_frames", fuzzing::frames);
}

#[test]
fn hpack_corpus() {
    replay("hpack_decode", fuzzing::hpack);
}

#[test]
fn connection_corpus() {
    replay("http2_connection", fuzzing::connection);
}

/// A gRPC request's header block.
fn request_block() -> Vec<u8> {
    let mut block = Vec::new();
    hpack::encode_indexed(3, &mut block); // :method POST
    hpack::encode_indexed(6, &mut block); // :scheme http
    hpack::encode_literal_indexed_name(4, b"/pairdb.v1.Kv/Get", &mut block);
    hpack::encode_literal_indexed_name(31, b"application/grpc", &mut block);
    hpack::encode_literal(b"te", b"trailers", &mut block);
    block
}

/// Frames of any type with small stream ids and short payloads, and (types 11 and 12) whole
/// request headers and gRPC messages: random bytes alone rarely get past the first frame.
fn frame_stream() -> impl Strategy<Value = Vec<u8>> {
    let one = (0u8..13, any::<u8>(), 0u32..12, prop::collection::vec(any::<u8>(), 0..48));
    prop::collection::vec(one, 0..24).prop_map(|frames| {
        let mut out = Vec::new();
        for (kind, flags, stream, mut payload) in frames {
            let (kind, flags) = match kind {
                11 => {
                    payload = request_block();
                    (frame::kind::HEADERS, frame::flag::END_HEADERS | (flags & 1))
                }
                12 => {
                    let message = payload.clone();
                    payload = vec![0];
                    payload.extend_from_slice(&(message.len() as u32).to_be_bytes());
                    payload.extend_from_slice(&message);
                    (frame::kind::DATA, flags & 1)
                }
                _ => (kind, flags),
            };
            FrameHead { len: payload.len() as u32, kind, flags, stream }.write(&mut out);
            out.extend_from_slice(&payload);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn frames_random(chunking in any::<u8>(), stream in frame_stream(), raw in any::<bool>(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut data = vec![chunking];
        data.extend_from_slice(if raw { &bytes } else { &stream });
        fuzzing::frames(&data);
    }

    #[test]
    fn hpack_random(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::hpack(&data);
    }

    #[test]
    fn connection_random(steps in prop::collection::vec((any::<u8>(), any::<u8>(), frame_stream()), 0..12)) {
        // Mode 1: the preface first; then each step feeds a frame stream and runs one of the
        // other operations.
        let mut data = vec![1u8];
        for (op, param, stream) in steps {
            data.push(0);
            data.extend_from_slice(&(stream.len() as u16).to_be_bytes());
            data.extend_from_slice(&stream);
            let op = (op & !7) | (2 + op % 6);
            data.push(op);
            if matches!(op & 7, 3 | 6 | 7) {
                data.push(param);
            }
        }
        fuzzing::connection(&data);
    }
}

/// Seen while building the connection corpus (`seed-flow-and-drain`): a request that races the
/// server's final GOAWAY is ignored, and so must its DATA, WINDOW_UPDATE and RST_STREAM be
/// (RFC 9113 §6.8). They used to be connection errors ("on an idle stream"), which cancelled the
/// streams the drain was waiting for.
#[test]
fn frames_racing_the_final_goaway_are_discarded() {
    use bytes::BytesMut;
    use pairdb::rpc::http2::server::{Conn, Event, Limits};
    use std::time::Instant;

    let now = Instant::now();
    let mut conn = Conn::new(Limits::default(), now);
    let mut input = frame::PREFACE.to_vec();
    frame::write_settings(&mut input, &[]);
    frame::write_headers(&mut input, 1, &request_block(), false, frame::DEFAULT_MAX_FRAME);
    conn.recv(&mut BytesMut::from(&input[..]), now);
    conn.go_away();
    let mut input = Vec::new();
    frame::write_ping(&mut input, true, *b"pairdrn!");
    frame::write_headers(&mut input, 3, &request_block(), false, frame::DEFAULT_MAX_FRAME);
    frame::write_data(&mut input, 3, &[0, 0, 0, 0, 1, 7], false);
    frame::write_window_update(&mut input, 3, 100);
    frame::write_rst(&mut input, 3, frame::Reason::CANCEL);
    frame::write_data(&mut input, 1, &[0, 0, 0, 0, 0], true);
    conn.recv(&mut BytesMut::from(&input[..]), now);
    assert!(!conn.failed(), "the drain failed the connection");
    let events: Vec<_> = std::iter::from_fn(|| conn.next_event()).collect();
    assert!(matches!(events[0], Event::Request { stream: 1, .. }), "{events:?}");
    assert!(matches!(events.last(), Some(Event::End { stream: 1, .. })), "{events:?}");
    assert!(conn.send_headers(1, pairdb::rpc::http2::blocks::ok_trailers(), true));
    assert!(conn.is_finished());
}
