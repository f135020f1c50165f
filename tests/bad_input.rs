//! Malformed and hostile input against a real `pairdb storage` process.
//!
//! Each test starts its own node, sends one kind of bad input with a raw `h2` client (or raw
//! bytes on a TCP socket, for what `h2` itself refuses to send), asserts the exact reply, and then
//! asserts that the same server still answers a normal call: on the same connection when the
//! case leaves it usable, and always on a new connection. Error replies must be Trailers-Only:
//! `grpc-status` in the response HEADERS, which carry END_STREAM.

mod common;

use std::{
    future::Future,
    io::Write as _,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    assert_serves, grpc_frame, h2_data, h2_grpc_headers, h2_ping, h2_settings, h2_wait_ping_ack,
    raw_grpc_frame, read_until_closed, run_local, storage_path, RawClient, RawReply,
    StorageProcess, H2_PREFACE,
};
use http::StatusCode;
use pairdb::{proto::storage as pb, rpc::Code};

const NODE: &str = "bad-input";
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Starts a node, runs `case` against it inside an executor, then checks that a new connection
/// is still served and that the process is still alive.
fn with_node<F, Fut>(case: F)
where
    F: FnOnce(SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut node = StorageProcess::start(tmp.path(), NODE);
    let addr = node.addr;
    run_local(move || async move {
        case(addr).await;
        assert_serves(addr, NODE).await;
    });
    node.assert_running();
}

fn write_request(key: &str, value: &[u8]) -> pb::WriteRequest {
    pb::WriteRequest {
        tenant_id: "tenant".into(),
        key: key.into(),
        version: Some(pb::Version {
            value: Bytes::copy_from_slice(value),
            vector_clock: Some(pb::VectorClock {
                entries: vec![pb::VectorClockEntry {
                    coordinator_node_id: "coord-1/0".into(),
                    logical_timestamp: 1,
                }],
            }),
            timestamp: 1,
            writer: "coord-1/0".into(),
            tombstone: false,
        }),
    }
}

fn health_frame() -> Bytes {
    grpc_frame(&pb::HealthCheckRequest {})
}

#[test]
fn truncated_message_is_invalid_argument() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("HealthCheck");
        // The prefix declares 100 bytes; 10 arrive, then END_STREAM.
        let reply = client
            .call(client.request(&path, &[]), vec![raw_grpc_frame(0, 100, &[0u8; 10])], true)
            .await;
        let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert_eq!(status.message, "truncated message: stream ended after 10 of 100 bytes");
        // The stream ends inside the 5-byte prefix.
        let reply = client
            .call(client.request(&path, &[]), vec![Bytes::from(&[0u8, 0, 0][..])], true)
            .await;
        let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert!(status.message.contains("inside a 3-byte prefix"), "{status}");
        client.assert_serves(NODE).await;
    });
}

#[test]
fn unary_call_needs_exactly_one_message() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("HealthCheck");
        let reply = client.call(client.request(&path, &[]), vec![], true).await;
        let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert!(status.message.contains("no request message"), "{status}");
        // Two messages packed into one DATA frame.
        let two = [health_frame(), health_frame()].concat();
        let reply = client.call(client.request(&path, &[]), vec![Bytes::from(two)], true).await;
        let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert!(status.message.contains("more than one request message"), "{status}");
        client.assert_serves(NODE).await;
    });
}

#[test]
fn wrong_content_type_is_http_415() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("HealthCheck");
        for content_type in
            ["application/json", "text/plain", "application/grpc-web-text", "application/grpc+json"]
        {
            let req = client.request(&path, &[("content-type", content_type)]);
            let reply = client.call(req, vec![health_frame()], true).await;
            assert_http_415(&reply, content_type);
        }
        // No content-type at all.
        let mut req = client.request(&path, &[]);
        req.headers_mut().remove("content-type");
        assert_http_415(&client.call(req, vec![health_frame()], true).await, "none");
        client.assert_serves(NODE).await;
    });
}

fn assert_http_415(reply: &RawReply, content_type: &str) {
    assert_eq!(reply.http_status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}: {reply:?}");
    assert!(reply.trailers_only, "{content_type}: {reply:?}");
    assert!(reply.headers.get("grpc-status").is_none(), "{content_type}: {reply:?}");
}

#[test]
fn oversized_message_is_resource_exhausted() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("Write");
        // Declared and sent: one byte over the 4 MiB limit.
        let len = MAX_MESSAGE_BYTES + 1;
        let body = vec![0u8; len];
        let req = client.request(&path, &[]);
        let reply = client.call(req, vec![raw_grpc_frame(0, len as u32, &body)], true).await;
        let status = reply.assert_error(Code::RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE");
        assert_eq!(
            status.message,
            format!("message of {len} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")
        );
        // Only the prefix of a 1 GiB message, stream left open: refused at once, without
        // waiting for (or buffering) the body.
        let (response, mut stream) = client.open(client.request(&path, &[]), false).await;
        stream.send_data(raw_grpc_frame(0, 1 << 30, &[]), false).expect("send prefix");
        let reply = RawClient::reply(response).await;
        reply.assert_error(Code::RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE");
        drop(stream);
        // The same connection, and a large but legal message, still work.
        client.assert_serves(NODE).await;
        let value = vec![7u8; 3 * 1024 * 1024];
        let reply: pb::WriteResponse =
            client.unary(&path, &write_request("big", &value)).await.assert_ok();
        assert!(reply.applied);
        assert_eq!(reply.current.map(|v| v.value.len()), Some(value.len()));
    });
}

#[test]
fn undecodable_protobuf_is_invalid_argument() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("Write");
        let cases: [&[u8]; 3] = [
            // An unterminated varint.
            &[0xff; 11],
            // Field 1 (length-delimited) claims 5 bytes; 1 follows.
            &[0x0a, 0x05, b'a'],
            // Wire type 7 does not exist.
            &[0x0f, 0x00],
        ];
        for garbage in cases {
            let frame = raw_grpc_frame(0, garbage.len() as u32, garbage);
            let reply = client.call(client.request(&path, &[]), vec![frame], true).await;
            let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
            assert!(status.message.starts_with("request is not a valid WriteRequest"), "{status}");
        }
        client.assert_serves(NODE).await;
    });
}

#[test]
fn unknown_method_and_service_are_unimplemented() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        for path in [
            "/pairdb.storage.v1.StorageService/NoSuchMethod",
            "/no.such.Service/Write",
            "/pairdb.storage.v1.StorageService",
            "/",
        ] {
            let reply = client.call(client.request(path, &[]), vec![health_frame()], true).await;
            let status = reply.assert_error(Code::UNIMPLEMENTED, "UNKNOWN_METHOD");
            assert!(status.message.contains(path), "{status}");
        }
        // A gRPC content-type with a method other than POST.
        let mut req = client.request(&storage_path("HealthCheck"), &[]);
        *req.method_mut() = http::Method::PUT;
        let reply = client.call(req, vec![health_frame()], true).await;
        reply.assert_error(Code::UNIMPLEMENTED, "UNIMPLEMENTED");
        client.assert_serves(NODE).await;
    });
}

#[test]
fn compression_is_unimplemented() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("HealthCheck");
        // The compressed flag without any grpc-encoding.
        let reply =
            client.call(client.request(&path, &[]), vec![raw_grpc_frame(1, 0, &[])], true).await;
        reply.assert_error(Code::UNIMPLEMENTED, "UNSUPPORTED_ENCODING");
        // A compressed flag other than 0 or 1 is malformed.
        let reply =
            client.call(client.request(&path, &[]), vec![raw_grpc_frame(2, 0, &[])], true).await;
        reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        // grpc-encoding: gzip, refused before the body is read; the reply says what we accept.
        let req = client.request(&path, &[("grpc-encoding", "gzip")]);
        let reply = client.call(req, vec![raw_grpc_frame(1, 0, &[])], true).await;
        let status = reply.assert_error(Code::UNIMPLEMENTED, "UNSUPPORTED_ENCODING");
        assert!(status.message.contains("gzip"), "{status}");
        assert_eq!(
            reply.headers.get("grpc-accept-encoding").map(|v| v.as_bytes()),
            Some(&b"identity"[..])
        );
        // grpc-encoding: identity with an uncompressed message is fine.
        let req = client.request(&path, &[("grpc-encoding", "identity")]);
        let reply: pb::HealthCheckResponse =
            client.call(req, vec![health_frame()], true).await.assert_ok();
        assert_eq!(reply.node_id, NODE);
        client.assert_serves(NODE).await;
    });
}

#[test]
fn message_split_into_one_byte_frames() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let frame = grpc_frame(&write_request("split", b"reassembled from many DATA frames"));
        let chunks: Vec<Bytes> = (0..frame.len()).map(|i| frame.slice(i..i + 1)).collect();
        let n = chunks.len();
        let reply = client.call(client.request(&storage_path("Write"), &[]), chunks, true).await;
        let written: pb::WriteResponse = reply.assert_ok();
        assert!(written.applied);
        // Read it back, the request split too, with an empty DATA frame carrying END_STREAM.
        let frame =
            grpc_frame(&pb::ReadRequest { tenant_id: "tenant".into(), key: "split".into() });
        let mut chunks: Vec<Bytes> = (0..frame.len()).map(|i| frame.slice(i..i + 1)).collect();
        chunks.push(Bytes::new());
        let read: pb::ReadResponse =
            client.call(client.request(&storage_path("Read"), &[]), chunks, true).await.assert_ok();
        assert!(read.found);
        assert_eq!(
            read.version,
            write_request("split", b"reassembled from many DATA frames").version
        );
        assert!(n > 40, "the Write went out as {n} frames");
        client.assert_serves(NODE).await;
    });
}

#[test]
fn client_vanishing_mid_message() {
    with_node(|addr| async move {
        // Through h2: headers and half a message, then the TCP connection is dropped.
        for _ in 0..5 {
            let client = RawClient::connect(addr).await;
            let frame = grpc_frame(&write_request("vanish", b"never completed"));
            let (_response, mut stream) =
                client.open(client.request(&storage_path("Write"), &[]), false).await;
            stream.send_data(frame.slice(..frame.len() / 2), false).expect("send half");
            // Let the driver flush the frames before it is cancelled.
            glommio::timer::sleep(Duration::from_millis(10)).await;
            client.vanish().await;
        }
        // A client that cancels its stream (RST_STREAM) mid-message keeps its connection.
        let client = RawClient::connect(addr).await;
        for _ in 0..5 {
            let frame = grpc_frame(&write_request("vanish", b"never completed"));
            let (_response, mut stream) =
                client.open(client.request(&storage_path("Write"), &[]), false).await;
            stream.send_data(frame.slice(..frame.len() / 2), false).expect("send half");
            stream.send_reset(h2::Reason::CANCEL);
        }
        client.assert_serves(NODE).await;
        // Raw frames: the server has provably read the half message (it answered the PING
        // sent after it) when the socket closes, gracefully (FIN) or not (RST).
        for abort in [false, true, false, true] {
            let mut tcp = TcpStream::connect(addr).expect("connect");
            let frame = grpc_frame(&write_request("vanish", b"never completed"));
            let mut bytes = H2_PREFACE.to_vec();
            bytes.extend(h2_settings());
            bytes.extend(h2_grpc_headers(1, &addr.to_string(), &storage_path("Write")));
            bytes.extend(h2_data(1, &frame[..frame.len() / 2], false));
            bytes.extend(h2_ping(*b"halfmsg!"));
            tcp.write_all(&bytes).expect("write");
            h2_wait_ping_ack(&mut tcp, *b"halfmsg!", Duration::from_secs(10));
            if abort {
                socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)).expect("linger");
            }
            drop(tcp);
        }
        // Nothing of the half-sent writes was applied.
        let client = RawClient::connect(addr).await;
        let read: pb::ReadResponse = client
            .unary(
                &storage_path("Read"),
                &pb::ReadRequest { tenant_id: "tenant".into(), key: "vanish".into() },
            )
            .await
            .assert_ok();
        assert!(!read.found);
    });
}

#[test]
fn non_http2_bytes_close_only_that_connection() {
    with_node(|addr| async move {
        // An idle connection that never says anything must not hold up anyone else.
        let _idle = TcpStream::connect(addr).expect("connect");
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect()
        };
        let mut preface_then_garbage = H2_PREFACE.to_vec();
        preface_then_garbage.extend(h2_settings());
        // A DATA frame on stream 0 is a connection error (PROTOCOL_ERROR).
        preface_then_garbage.extend(h2_data(0, b"nonsense", false));
        let inputs: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            random(4096),
            b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".to_vec(),
            preface_then_garbage,
        ];
        for input in inputs {
            let mut tcp = TcpStream::connect(addr).expect("connect");
            // The server may close before reading everything; a failed write is fine.
            let _ = tcp.write_all(&input);
            read_until_closed(&mut tcp, Duration::from_secs(10));
        }
    });
}

#[test]
fn grpc_timeout_parsing_and_expiry() {
    with_node(|addr| async move {
        let client = RawClient::connect(addr).await;
        let path = storage_path("HealthCheck");
        for bad in ["abc", "1", "S", "123456789S", "-1S", "1.5S", "10x"] {
            let req = client.request(&path, &[("grpc-timeout", bad)]);
            let reply = client.call(req, vec![health_frame()], true).await;
            let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
            assert_eq!(status.message, "malformed grpc-timeout", "{bad}");
        }
        // A deadline that passes while the server still waits for the request body.
        let started = Instant::now();
        let req = client.request(&storage_path("Write"), &[("grpc-timeout", "100m")]);
        let (response, mut stream) = client.open(req, false).await;
        let frame = grpc_frame(&write_request("late", b"x"));
        stream.send_data(frame.slice(..3), false).expect("send");
        let reply = RawClient::reply(response).await;
        reply.assert_error(Code::DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(100), "expired after {elapsed:?}");
        drop(stream);
        // A 1 ns deadline: whether the call wins the race is timing, but either answer is a
        // proper gRPC reply and nothing breaks.
        for _ in 0..20 {
            let req = client.request(&path, &[("grpc-timeout", "1n")]);
            let reply = client.call(req, vec![health_frame()], true).await;
            match reply.status().map(|s| s.code) {
                Some(Code::OK) => {
                    let _: pb::HealthCheckResponse = reply.assert_ok();
                }
                Some(Code::DEADLINE_EXCEEDED) => {
                    reply.assert_error(Code::DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED");
                }
                other => panic!("grpc-timeout 1n gave {other:?}: {reply:?}"),
            }
        }
        client.assert_serves(NODE).await;
    });
}
