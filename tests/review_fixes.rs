//! Regression tests for the bugs a review of the coordinator found, each on real processes:
//!
//! - `dropped_idempotent_write_releases_its_claim`: an idempotent write whose client deadline
//!   passes mid-fan-out (two of three storage nodes paused with SIGSTOP) used to leave its claim
//!   pending, so a retry with the same key and value after the nodes were back waited 5 s and
//!   failed, for up to 30 s. Now the dropped request releases its claim and the retry applies
//!   within a second or two of the nodes being back.
//! - `replication_factor_above_the_nodes_is_refused`: `CreateTenant` and
//!   `UpdateReplicationFactor` with a factor above the registered storage nodes used to be
//!   accepted (and `ALL` then failed with "0 of 5 required replicas answered" without trying);
//!   now FAILED_PRECONDITION / INVALID_REPLICATION_FACTOR. A quorum failure says what was tried.
//! - `hint_metrics_count_what_they_name`: `pairdb_hints_dropped_total` could never move (the
//!   buffer dropped silently). With a node paused and a hint store capped at two keys, each hint
//!   metric moves by what its name says: stored, coalesced (same key twice), dropped (past the
//!   cap), replayed (once the node is back).

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    channel, coordinator_path, run_local, CoordinatorProcess, StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    proto::coordinator as api,
    rpc::{Channel, Code, Status},
};
use prost::Message;
use tempfile::TempDir;

const QUORUM: i32 = api::Consistency::Quorum as i32;
const ALL: i32 = api::Consistency::All as i32;

struct Cluster {
    _tmp: TempDir,
    storage: Vec<StorageProcess>,
    coordinator: CoordinatorProcess,
}

fn start(name: &str) -> Cluster {
    start_with(name, "")
}

fn start_with(name: &str, config_yaml: &str) -> Cluster {
    let tmp = tempfile::Builder::new().prefix(&format!("pairdb-fix-{name}-")).tempdir().unwrap();
    let common::TestCluster { storage, coordinator } =
        common::start_cluster(tmp.path(), name, 3, 1, config_yaml);
    Cluster { _tmp: tmp, storage, coordinator }
}

async fn call<Req: Message, Resp: Message + Default>(
    ch: &Channel,
    method: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, Status> {
    ch.unary(&coordinator_path(method), req, Some(timeout)).await
}

fn write(key: &str, value: &[u8], idempotency_key: &str, level: i32) -> api::WriteKeyValueRequest {
    api::WriteKeyValueRequest {
        tenant_id: "t".into(),
        key: key.into(),
        value: Bytes::copy_from_slice(value),
        consistency: level,
        idempotency_key: idempotency_key.into(),
        vector_clock: None,
    }
}

#[track_caller]
fn assert_error<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, error_code: &str) -> Status {
    match r {
        Ok(v) => panic!("expected {code} [{error_code}], got {v:?}"),
        Err(s) => {
            assert_eq!((s.code, s.error_code.as_deref()), (code, Some(error_code)), "{s}");
            s
        }
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

#[test]
fn dropped_idempotent_write_releases_its_claim() {
    let cluster = start("claim");
    let addr = cluster.coordinator.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        let req = api::CreateTenantRequest {
            tenant_id: "t".into(),
            replication_factor: 3,
            ..Default::default()
        };
        call::<_, api::CreateTenantResponse>(&ch, "CreateTenant", &req, CALL_TIMEOUT)
            .await
            .expect("CreateTenant");
    });
    let paused: Vec<libc::pid_t> = cluster.storage[1..].iter().map(|s| s.pid()).collect();
    for pid in &paused {
        signal(*pid, libc::SIGSTOP);
    }
    let first = run_local(move || async move {
        let ch = channel(addr).await;
        let req = write("k", b"v", "retry-me", QUORUM);
        call::<_, api::WriteKeyValueResponse>(
            &ch,
            "WriteKeyValue",
            &req,
            Duration::from_millis(500),
        )
        .await
    });
    for pid in &paused {
        signal(*pid, libc::SIGCONT);
    }
    first.expect_err("two of three replicas paused: the write cannot reach QUORUM in 0.5 s");
    let back = Instant::now();
    let retried = run_local(move || async move {
        let ch = channel(addr).await;
        let req = write("k", b"v", "retry-me", QUORUM);
        let mut last = None;
        // The nodes are back: within a few seconds the retry applies (the health checker may
        // have marked them down meanwhile; that clears at its next check, once a second).
        while back.elapsed() < Duration::from_secs(4) {
            let attempt = call::<_, api::WriteKeyValueResponse>(
                &ch,
                "WriteKeyValue",
                &req,
                Duration::from_secs(2),
            )
            .await;
            match attempt {
                Ok(resp) => return Ok((resp, back.elapsed())),
                Err(e) => last = Some(e),
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    });
    let (resp, after) = retried.unwrap_or_else(|e| panic!("the retry never applied: {e:?}"));
    assert_eq!(resp.replica_count, 2, "{resp:?}");
    assert!(after < Duration::from_secs(3), "the retry applied only after {after:?}");
}

#[test]
fn replication_factor_above_the_nodes_is_refused() {
    let mut cluster = start("rf");
    let addr = cluster.coordinator.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        let create = |rf: i32| api::CreateTenantRequest {
            tenant_id: "t".into(),
            replication_factor: rf,
            ..Default::default()
        };
        let refused =
            call::<_, api::CreateTenantResponse>(&ch, "CreateTenant", &create(5), CALL_TIMEOUT)
                .await;
        let s = assert_error(refused, Code::FAILED_PRECONDITION, "INVALID_REPLICATION_FACTOR");
        assert!(s.message.contains("3 storage nodes registered"), "{s}");
        let refused =
            call::<_, api::CreateTenantResponse>(&ch, "CreateTenant", &create(11), CALL_TIMEOUT)
                .await;
        assert_error(refused, Code::INVALID_ARGUMENT, "INVALID_REPLICATION_FACTOR");
        call::<_, api::CreateTenantResponse>(&ch, "CreateTenant", &create(3), CALL_TIMEOUT)
            .await
            .expect("rf 3 on 3 nodes");
        let update = api::UpdateReplicationFactorRequest {
            tenant_id: "t".into(),
            new_replication_factor: 4,
        };
        let refused = call::<_, api::UpdateReplicationFactorResponse>(
            &ch,
            "UpdateReplicationFactor",
            &update,
            CALL_TIMEOUT,
        )
        .await;
        assert_error(refused, Code::FAILED_PRECONDITION, "INVALID_REPLICATION_FACTOR");
        let get = api::GetTenantRequest { tenant_id: "t".into() };
        let t: api::GetTenantResponse =
            call(&ch, "GetTenant", &get, CALL_TIMEOUT).await.expect("GetTenant");
        assert_eq!(t.replication_factor, 3, "the refused update changed nothing");
    });
    // A quorum failure names every replica and what it did.
    let killed = cluster.storage.remove(2);
    let killed_id = killed.node_id.clone();
    killed.kill9();
    run_local(move || async move {
        let ch = channel(addr).await;
        let failed = call::<_, api::WriteKeyValueResponse>(
            &ch,
            "WriteKeyValue",
            &write("k", b"v", "", ALL),
            CALL_TIMEOUT,
        )
        .await;
        let s = assert_error(failed, Code::UNAVAILABLE, "QUORUM_NOT_REACHED");
        assert!(s.message.contains("of 3 required replicas answered"), "{s}");
        assert!(s.message.contains("asked 3 of rf 3"), "{s}");
        assert!(s.message.contains(&format!("{killed_id} failed")), "{s}");
    });
}

/// Sums every sample of counter `name` in the coordinator's `/metrics`.
fn metric(admin: SocketAddr, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(admin).expect("admin port");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn hint_metrics_count_what_they_name() {
    let cluster = start_with("hints", "hint_replay_interval_ms: 100\nhint_max_stored: 2\n");
    let (addr, admin) = (cluster.coordinator.addr, cluster.coordinator.admin);
    run_local(move || async move {
        let ch = channel(addr).await;
        let req = api::CreateTenantRequest {
            tenant_id: "t".into(),
            replication_factor: 3,
            ..Default::default()
        };
        call::<_, api::CreateTenantResponse>(&ch, "CreateTenant", &req, CALL_TIMEOUT)
            .await
            .expect("CreateTenant");
    });
    for name in [
        "pairdb_hints_stored_total",
        "pairdb_hints_coalesced_total",
        "pairdb_hints_dropped_total",
        "pairdb_hints_replayed_total",
    ] {
        assert_eq!(metric(admin, name), 0.0, "{name} before any hint");
    }
    let paused = cluster.storage[2].pid();
    signal(paused, libc::SIGSTOP);
    run_local(move || async move {
        let ch = channel(addr).await;
        // "a" twice (coalesced into one hint), then three more keys: the store holds two keys.
        for key in ["a", "a", "b", "c", "d"] {
            call::<_, api::WriteKeyValueResponse>(
                &ch,
                "WriteKeyValue",
                &write(key, key.as_bytes(), "", QUORUM),
                CALL_TIMEOUT,
            )
            .await
            .unwrap_or_else(|e| panic!("QUORUM write of {key} with one node paused: {e}"));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let settled = |admin| {
        metric(admin, "pairdb_hints_stored_total") + metric(admin, "pairdb_hints_dropped_total")
            >= 4.0
    };
    while !settled(admin) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(paused, libc::SIGCONT);
    let (stored, coalesced, dropped) = (
        metric(admin, "pairdb_hints_stored_total"),
        metric(admin, "pairdb_hints_coalesced_total"),
        metric(admin, "pairdb_hints_dropped_total"),
    );
    // Five missed writes: "a" coalesced once (in the core's buffer or in the store), two keys
    // stored, two keys past the cap dropped.
    assert_eq!(coalesced, 1.0, "coalesced");
    assert_eq!(dropped, 2.0, "dropped past hint_max_stored");
    // The store counts a merge into a stored hint as accepted: 3 when "a" met its twin in the
    // store, 2 when the two met in the core's buffer first.
    assert!(stored == 2.0 || stored == 3.0, "stored {stored}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(admin, "pairdb_hints_replayed_total") < 2.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(admin, "pairdb_hints_replayed_total"), 2.0, "the two stored hints replayed");
}
