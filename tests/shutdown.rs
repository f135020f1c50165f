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

/// SIGTERM to a coordinator under load: clients on several connections keep writing through
/// the shutdown, and every call either succeeds or fails with UNAVAILABLE (a stream refused after
/// GOAWAY, a connection closed or refused); the process exits 0 within its shutdown timeout.
#[test]
fn sigterm_under_load_fails_calls_only_with_unavailable() {
    use std::sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    };

    use common::{coordinator_path, CoordinatorOptions, CoordinatorProcess};
    use pairdb::{
        proto::coordinator as api,
        rpc::{Channel, ClientConfig, Code},
    };

    const CLIENTS: usize = 8;
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage: Vec<StorageProcess> = (1..=3)
        .map(|i| {
            let id = format!("term-s{i}");
            StorageProcess::start(&tmp.path().join(&id), &id)
        })
        .collect();
    let nodes = storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect();
    let mut coordinator = CoordinatorProcess::start(
        &tmp.path().join("coordinator"),
        &CoordinatorOptions {
            node_id: "term-coord",
            cores: 2,
            storage_nodes: nodes,
            config_yaml: "shutdown_timeout_secs: 5\n",
        },
    );
    let addr = coordinator.addr;
    run_local(move || async move {
        let ch = Channel::connect(addr, &ClientConfig::default()).await.expect("connect");
        let _: api::CreateTenantResponse = ch
            .unary(
                &coordinator_path("CreateTenant"),
                &api::CreateTenantRequest {
                    tenant_id: "term".into(),
                    replication_factor: 3,
                    ..Default::default()
                },
                Some(Duration::from_secs(10)),
            )
            .await
            .expect("CreateTenant");
    });
    let ok = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    let load = {
        let (ok, unavailable, stop, wrong) =
            (ok.clone(), unavailable.clone(), stop.clone(), wrong.clone());
        std::thread::spawn(move || {
            run_local(move || async move {
                let clients = (0..CLIENTS).map(|c| {
                    let (ok, unavailable, stop, wrong) =
                        (ok.clone(), unavailable.clone(), stop.clone(), wrong.clone());
                    async move {
                        let mut channel: Option<Channel> = None;
                        let mut i = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            if channel.as_ref().is_none_or(Channel::is_closed) {
                                match Channel::connect(addr, &ClientConfig::default()).await {
                                    Ok(ch) => channel = Some(ch),
                                    Err(e) if e.code == Code::UNAVAILABLE => {
                                        unavailable.fetch_add(1, Ordering::SeqCst);
                                        glommio::timer::sleep(Duration::from_millis(5)).await;
                                        continue;
                                    }
                                    Err(e) => {
                                        wrong.lock().unwrap().push(format!("connect: {e}"));
                                        return;
                                    }
                                }
                            }
                            let Some(ch) = channel.as_ref() else { continue };
                            i += 1;
                            let reply = ch
                                .unary::<_, api::WriteKeyValueResponse>(
                                    &coordinator_path("WriteKeyValue"),
                                    &api::WriteKeyValueRequest {
                                        tenant_id: "term".into(),
                                        key: format!("c{c}-k{}", i % 100),
                                        value: Bytes::from_static(b"v"),
                                        ..Default::default()
                                    },
                                    Some(Duration::from_secs(10)),
                                )
                                .await;
                            match reply {
                                Ok(_) => {
                                    ok.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(e) if e.code == Code::UNAVAILABLE => {
                                    unavailable.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(e) => wrong.lock().unwrap().push(e.to_string()),
                            }
                        }
                    }
                });
                futures_util::future::join_all(clients).await;
            })
        })
    };
    // Under load: a few hundred writes acknowledged before the signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok.load(Ordering::SeqCst) < 300 {
        assert!(Instant::now() < deadline, "the load never got going");
        assert!(wrong.lock().unwrap().is_empty(), "{:?}", wrong.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = ok.load(Ordering::SeqCst);
    coordinator.sigterm();
    let status = coordinator.wait_exit(Duration::from_secs(15));
    // Some more calls see the coordinator gone (connection refused) before the clients stop.
    let after_exit = unavailable.load(Ordering::SeqCst);
    while unavailable.load(Ordering::SeqCst) < after_exit + CLIENTS as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    let wrong = wrong.lock().unwrap();
    assert!(wrong.is_empty(), "calls failed with other than UNAVAILABLE: {wrong:?}");
    assert!(status.success(), "coordinator exited with {status}. Log:\n{}", coordinator.log_tail());
    assert!(ok.load(Ordering::SeqCst) >= before);
    drop(storage);
}
