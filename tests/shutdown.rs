//! Graceful shutdown: SIGTERM stops accepting, sends GOAWAY, lets in-flight calls finish, and the
//! process exits 0.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{grpc_frame, run_local, storage_path, RawClient, StorageProcess};
use pairdb::proto::storage as pb;

#[test]
fn sigterm_lets_an_in_flight_call_finish() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start(tmp.path(), "s-shutdown");
    let (addr, pid) = (node.addr, node.pid());
    let reply = run_local(move || async move {
        let client = RawClient::connect(addr).await;
        let write = pb::WriteRequest {
            tenant_id: "t".into(),
            key: "in-flight".into(),
            version: Some(pb::Version {
                value: Bytes::from_static(b"finished after SIGTERM"),
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
        };
        let frame = grpc_frame(&write);
        let (head, tail) = frame.split_at(frame.len() / 2);
        // The call is in flight: half its message sent, the stream still open.
        let (response, mut stream) =
            client.open(client.request(&storage_path("Write"), &[]), false).await;
        stream.send_data(Bytes::copy_from_slice(head), false).expect("first half");
        // SAFETY: plain kill(2) on the child's PID.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        // The server stops accepting: new connections are refused once its listeners close.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "server still accepts connections after SIGTERM");
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        // ... yet the call that was in flight completes.
        stream.send_data(Bytes::copy_from_slice(tail), true).expect("second half");
        RawClient::reply(response).await
    });
    let written: pb::WriteResponse = reply.assert_ok();
    assert!(written.applied, "{written:?}");
    let status = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "pairdb storage exited with {status} after SIGTERM");
}
