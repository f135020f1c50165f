//! Interoperability with an independent gRPC implementation (grpcio, the C-core based Python
//! library) in both directions, plus our own client against our own server process.
//!
//! - `grpcio_client_against_storage_node`: tests/python/storage_client.py drives every
//!   StorageService method, health checking and reflection on a real `pairdb storage` process.
//! - `our_client_against_grpcio_server`: our `Channel` calls tests/python/storage_server.py.
//! - `our_client_against_storage_node`: our `Channel` against `pairdb storage`, standard services
//!   and error statuses.
//!
//! Python stubs are generated from `proto/` at test time into a temporary directory, never
//! committed. A missing python3 or grpcio fails these tests (with what to run) rather than
//! skipping them: a silently skipped interop test is a passing build that proves nothing.

mod common;

use std::{process::Command, time::Duration};

use bytes::Bytes;
use common::{
    assert_serves, channel, generate_python_stubs, output_with_timeout, repo_root,
    require_python_grpc, run_local, spawn_until_line, storage_path, StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    proto::{
        health::{health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse},
        storage as pb,
    },
    rpc::{client::Http2Impl, Channel, ClientConfig, Code},
};

/// How long the Python client may run: it makes a few hundred calls.
const PYTHON_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn grpcio_client_against_storage_node() {
    grpcio_client_against_storage_node_on("h2");
}

#[test]
fn grpcio_client_against_native_storage_node() {
    grpcio_client_against_storage_node_on("native");
}

/// grpcio's client (tests/python/storage_client.py) against a storage node serving on the
/// HTTP/2 layer `http2`.
fn grpcio_client_against_storage_node_on(http2: &str) {
    require_python_grpc();
    let tmp = tempfile::tempdir().expect("tempdir");
    let stubs = tmp.path().join("stubs");
    generate_python_stubs(&stubs);
    let node_dir = tmp.path().join("node");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let config = format!("rpc:\n  http2: {http2}\n");
    let mut node = StorageProcess::start_configured(&node_dir, "interop-node", 1, 0, &config);

    let out = output_with_timeout(
        Command::new("python3")
            .arg(repo_root().join("tests/python/storage_client.py"))
            .arg("--target")
            .arg(node.addr.to_string())
            .arg("--stubs")
            .arg(&stubs)
            .args(["--node-id", &node.node_id]),
        PYTHON_CLIENT_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL CHECKS PASSED"),
        "storage_client.py failed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        out.status,
        node.log_tail()
    );
    eprint!("{stdout}");
    node.assert_running();
    // And the node still shuts down cleanly after all that.
    let status = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "pairdb storage exited with {status} after SIGTERM");
}

#[test]
fn our_client_against_grpcio_server() {
    our_client_against_grpcio_server_on(Http2Impl::H2);
}

#[test]
fn our_native_client_against_grpcio_server() {
    our_client_against_grpcio_server_on(Http2Impl::Native);
}

/// Our client, on the HTTP/2 layer `http2`, against grpcio's server: statuses, error trailers,
/// limits, deadlines, a 3 MiB message each way (many DATA frames, window updates) and many
/// calls in flight on one connection.
fn our_client_against_grpcio_server_on(http2: Http2Impl) {
    require_python_grpc();
    let tmp = tempfile::tempdir().expect("tempdir");
    let stubs = tmp.path().join("stubs");
    generate_python_stubs(&stubs);
    let (_server, port) = spawn_until_line(
        Command::new("python3")
            .arg(repo_root().join("tests/python/storage_server.py"))
            .arg("--stubs")
            .arg(&stubs),
        "listening on ",
        Duration::from_secs(30),
    );
    let addr = format!("127.0.0.1:{}", port.trim()).parse().expect("port number");

    run_local(move || async move {
        let config = ClientConfig { http2, ..ClientConfig::default() };
        let ch = Channel::connect(addr, &config).await.expect("connect");

        let health: pb::HealthCheckResponse = ch
            .unary(&storage_path("HealthCheck"), &pb::HealthCheckRequest {}, Some(CALL_TIMEOUT))
            .await
            .expect("HealthCheck");
        assert_eq!(health.status, "SERVING");
        assert_eq!(health.node_id, "python-interop");

        let version = pb::Version {
            value: Bytes::from_static(b"echo me"),
            vector_clock: Some(clock(&[("coord-1/0", 3), ("coord-2/1", 9)])),
            timestamp: 1_700_000_000_000_000,
            writer: "coord-1/0".into(),
            tombstone: false,
        };
        let reply: pb::WriteResponse = ch
            .unary(&storage_path("Write"), &write_req("t", "k", &version), Some(CALL_TIMEOUT))
            .await
            .expect("Write");
        assert!(reply.applied);
        assert_eq!(reply.current.as_ref(), Some(&version));

        let read: pb::ReadResponse = ch
            .unary(&storage_path("Read"), &read_req("t", "present"), Some(CALL_TIMEOUT))
            .await
            .expect("Read");
        assert!(read.found);
        assert_eq!(read.version.map(|v| v.value), Some(Bytes::from_static(b"present")));

        // An error status with a message and PairDB's error-code trailer.
        let err = ch
            .unary::<_, pb::ReadResponse>(
                &storage_path("Read"),
                &read_req("t", "missing"),
                Some(CALL_TIMEOUT),
            )
            .await
            .expect_err("Read of the missing key");
        assert_eq!(err.code, Code::NOT_FOUND, "{err}");
        assert_eq!(err.message, "no such key: missing", "{err}");
        assert_eq!(err.error_code.as_deref(), Some("KEY_NOT_FOUND"), "{err}");

        // Initial and trailing metadata of ~40 KiB each: header blocks spanning CONTINUATION.
        let read: pb::ReadResponse = ch
            .unary(&storage_path("Read"), &read_req("t", "big-metadata"), Some(CALL_TIMEOUT))
            .await
            .expect("Read with 40 KiB of reply metadata");
        assert_eq!(read.version.map(|v| v.value), Some(Bytes::from_static(b"big-metadata")));

        // A reply over our 4 MiB limit.
        let err = ch
            .unary::<_, pb::ReadResponse>(
                &storage_path("Read"),
                &read_req("t", "huge"),
                Some(CALL_TIMEOUT),
            )
            .await
            .expect_err("a 5 MiB reply");
        assert_eq!(err.code, Code::RESOURCE_EXHAUSTED, "{err}");

        // A method the server does not implement.
        let err = ch
            .unary::<_, pb::RepairResponse>(
                &storage_path("Repair"),
                &pb::RepairRequest::default(),
                Some(CALL_TIMEOUT),
            )
            .await
            .expect_err("Repair is not implemented by the Python server");
        assert_eq!(err.code, Code::UNIMPLEMENTED, "{err}");

        // The deadline passes while the server sleeps.
        let started = std::time::Instant::now();
        let err = ch
            .unary::<_, pb::StatsResponse>(
                &storage_path("Stats"),
                &pb::StatsRequest {},
                Some(Duration::from_millis(300)),
            )
            .await
            .expect_err("Stats outlasts its deadline");
        assert_eq!(err.code, Code::DEADLINE_EXCEEDED, "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

        // The connection survives the expired call; a 3 MiB value goes there and back.
        let large = pb::Version {
            value: Bytes::from((0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
            ..version.clone()
        };
        let reply: pb::WriteResponse = ch
            .unary(&storage_path("Write"), &write_req("t", "large", &large), Some(CALL_TIMEOUT))
            .await
            .expect("3 MiB Write");
        assert_eq!(reply.current.as_ref(), Some(&large));

        // Many calls in flight on the one connection.
        let calls = (0..32).map(|i| {
            let ch = ch.clone();
            let v = pb::Version { value: Bytes::from(format!("value-{i}")), ..version.clone() };
            async move {
                let reply: pb::WriteResponse = ch
                    .unary(&storage_path("Write"), &write_req("t", "k", &v), Some(CALL_TIMEOUT))
                    .await
                    .expect("concurrent Write");
                assert_eq!(reply.current, Some(v));
            }
        });
        futures_util::future::join_all(calls).await;
        assert!(!ch.is_closed());
    });
}

/// A request whose metadata spans HEADERS and two CONTINUATION frames (hand-cut by a Python
/// client built on the `hpack` and `hyperframe` packages) is served normally, on both layers.
#[test]
fn request_metadata_spanning_continuation_frames() {
    require_python_grpc();
    for http2 in ["native", "h2"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = format!("rpc:\n  http2: {http2}\n");
        let node = StorageProcess::start_configured(tmp.path(), "continuation", 1, 0, &config);
        let out = output_with_timeout(
            Command::new("python3")
                .arg(repo_root().join("tests/python/h2_continuation_call.py"))
                .arg(node.addr.to_string()),
            Duration::from_secs(20),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{http2}: no reply to the CONTINUATION request: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(reply["status"], "200", "{http2}: {reply}");
        assert_eq!(reply["grpc-status"], "0", "{http2}: {reply}");
        assert!(reply["message_bytes"].as_u64().unwrap_or(0) > 5, "{http2}: {reply}");
    }
}

#[test]
fn our_client_against_storage_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start(tmp.path(), "self-interop");
    let (addr, node_id) = (node.addr, node.node_id.clone());
    run_local(move || async move {
        assert_serves(addr, &node_id).await;
        let ch = channel(addr).await;
        const CHECK: &str = "/grpc.health.v1.Health/Check";
        for service in ["", "pairdb.storage.v1.StorageService"] {
            let reply: HealthCheckResponse = ch
                .unary(CHECK, &HealthCheckRequest { service: service.into() }, Some(CALL_TIMEOUT))
                .await
                .unwrap_or_else(|e| panic!("Check({service:?}): {e}"));
            assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let err = ch
            .unary::<_, HealthCheckResponse>(
                CHECK,
                &HealthCheckRequest { service: "nope".into() },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect_err("unknown service");
        assert_eq!(err.code, Code::NOT_FOUND, "{err}");
        assert_eq!(err.error_code.as_deref(), Some("SERVICE_NOT_FOUND"), "{err}");

        let err = ch
            .unary::<_, HealthCheckResponse>("/x.Y/Z", &HealthCheckRequest::default(), None)
            .await
            .expect_err("unknown method");
        assert_eq!(err.code, Code::UNIMPLEMENTED, "{err}");
        assert_eq!(err.error_code.as_deref(), Some("UNKNOWN_METHOD"), "{err}");

        let err = ch
            .unary::<_, pb::WriteResponse>(
                &storage_path("Write"),
                &pb::WriteRequest { tenant_id: String::new(), key: "k".into(), version: None },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect_err("empty tenant");
        assert_eq!(err.code, Code::INVALID_ARGUMENT, "{err}");
        assert_eq!(err.error_code.as_deref(), Some("INVALID_REQUEST"), "{err}");
        assert_eq!(err.message, "tenant_id is required", "{err}");

        // Sequential calls on one connection stay fast (no per-call flush stall, no Nagle).
        let started = std::time::Instant::now();
        for _ in 0..500 {
            let _: HealthCheckResponse =
                ch.unary(CHECK, &HealthCheckRequest::default(), Some(CALL_TIMEOUT)).await.unwrap();
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(10), "500 sequential calls took {elapsed:?}");
    });
}

#[test]
fn scan_pages_of_large_values_fit_the_message_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start(tmp.path(), "large-scan");
    let addr = node.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        // Six values of 1.5 MiB: 9 MiB in all, more than one 4 MiB message can carry.
        let mut written = std::collections::BTreeMap::new();
        for i in 0..6u8 {
            let v = pb::Version {
                value: Bytes::from(vec![i; 3 << 19]),
                vector_clock: Some(clock(&[("coord-1/0", 1)])),
                timestamp: 1,
                writer: "coord-1/0".into(),
                tombstone: false,
            };
            let key = format!("large-{i}");
            let reply: pb::WriteResponse = ch
                .unary(&storage_path("Write"), &write_req("t", &key, &v), Some(CALL_TIMEOUT))
                .await
                .expect("Write");
            assert!(reply.applied);
            written.insert(key, v);
        }
        // Default page size (limit 0): the node must cut pages by size, not fail the scan.
        let mut seen = std::collections::BTreeMap::new();
        let mut cursor = Bytes::new();
        for page_no in 0.. {
            assert!(page_no < 100, "the scan never ends");
            let req = pb::ScanRangeRequest { cursor: cursor.clone(), ..Default::default() };
            let page: pb::ScanRangeResponse = ch
                .unary(&storage_path("ScanRange"), &req, Some(CALL_TIMEOUT))
                .await
                .unwrap_or_else(|e| panic!("ScanRange page {page_no}: {e}"));
            for e in page.entries {
                assert!(seen.insert(e.key.clone(), e.version).is_none(), "{} twice", e.key);
            }
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
        let seen: std::collections::BTreeMap<_, _> =
            seen.into_iter().map(|(k, v)| (k, v.expect("version"))).collect();
        assert_eq!(seen, written);
    });
}

fn clock(entries: &[(&str, i64)]) -> pb::VectorClock {
    pb::VectorClock {
        entries: entries
            .iter()
            .map(|(actor, n)| pb::VectorClockEntry {
                coordinator_node_id: (*actor).into(),
                logical_timestamp: *n,
            })
            .collect(),
    }
}

fn write_req(tenant: &str, key: &str, version: &pb::Version) -> pb::WriteRequest {
    pb::WriteRequest { tenant_id: tenant.into(), key: key.into(), version: Some(version.clone()) }
}

fn read_req(tenant: &str, key: &str) -> pb::ReadRequest {
    pb::ReadRequest { tenant_id: tenant.into(), key: key.into() }
}
