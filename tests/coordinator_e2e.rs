//! The coordinator end to end: a `pairdb coordinator` process in front of three (or four)
//! `pairdb storage` processes on loopback, driven by our own client, with storage nodes read
//! directly (StorageService/Read) to see what each replica really holds.
//!
//! - `put_get_delete_at_every_level`: writes, overwrites and deletes at ONE, QUORUM and ALL are
//!   seen at once by every read level that overlaps them (W + R > N) and eventually by the
//!   others; deleted and missing keys, missing tenants and invalid input get their statuses and
//!   `pairdb-error-code`s.
//! - `one_node_down`: after a SIGKILL of one node, QUORUM (and ONE) writes and reads succeed and
//!   ALL writes, reads and deletes fail with UNAVAILABLE / QUORUM_NOT_REACHED, both before and
//!   after the health checker noticed.
//! - `restarted_node_converges_through_hints_and_read_repair`: writes, overwrites and deletes made
//!   while a node was down reach it through hinted handoff once it is back (same port, same data
//!   directory), with no read through the coordinator; replicas made stale by hand are repaired
//!   by reads at QUORUM and ALL.
//! - `idempotency_keys_apply_a_request_once`: a retry is a duplicate with the same version and
//!   writes nothing (also with the key the coordinator generated for an unkeyed write); a
//!   different body under the same idempotency key conflicts; of two identical requests racing
//!   on two connections exactly one is fresh.
//! - `writes_are_seen_through_other_cores`: with two coordinator cores, connections are sorted
//!   by the core that serves them (the actor in a blind write's clock), and every write, overwrite,
//!   delete and tenant creation made through one core is seen through the other.
//! - `adding_a_node_keeps_acknowledged_writes_readable`: 300 QUORUM writes stay readable at
//!   QUORUM after a fourth node joins the ring.
//! - `node_admin_and_tenant_errors`: ListStorageNodes key counts, RemoveStorageNode refusal
//!   (NODE_IN_USE) and success, migrations by id, duplicate tenants and nodes.
//!
//! Each test starts its own processes on ports the kernel picks, in its own temporary directory,
//! so the tests run in parallel. Processes are started on the test's own thread (never inside an
//! executor thread: they die with the thread that started them) and each phase of a test runs
//! in a fresh executor. Background effects (hint replay, read repair, health checks) are polled
//! with a deadline, never waited for with a sleep.

mod common;

use std::{collections::BTreeMap, fmt::Debug, net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::{
    channel, coordinator_path, eventually, killed_by_sigkill, run_local, storage_path,
    CoordinatorOptions, CoordinatorProcess, StorageProcess, CALL_TIMEOUT,
};
use futures_util::future::join;
use pairdb::{
    proto::{coordinator as api, storage as pb},
    rpc::{Channel, Code, Status},
};
use prost::Message;
use tempfile::TempDir;

/// Deadline for anything the cluster does in the background.
const CONVERGE: Duration = Duration::from_secs(10);

/// The tenant most tests use.
const TENANT: &str = "acme";

/// Hint replay ten times a second instead of every second, so that it shows well within
/// [`CONVERGE`]. Health checks keep their default interval: a check's timeout is its interval (at
/// most 500 ms) and one missed check marks a node down, so shorter checks make a loaded machine
/// see healthy nodes go down.
const FAST_HINTS: &str = "hint_replay_interval_ms: 100\n";

const ONE: i32 = api::Consistency::One as i32;
const QUORUM: i32 = api::Consistency::Quorum as i32;
const ALL: i32 = api::Consistency::All as i32;
const LEVELS: [i32; 3] = [ONE, QUORUM, ALL];

/// Replicas a level needs with replication factor 3.
fn required(level: i32) -> usize {
    match level {
        ONE => 1,
        QUORUM => 2,
        ALL => 3,
        other => panic!("not a level: {other}"),
    }
}

fn level_name(level: i32) -> &'static str {
    match level {
        ONE => "one",
        QUORUM => "quorum",
        ALL => "all",
        _ => "other",
    }
}

// ------------------------------------------------------------------------------------------------
// A cluster of real processes.
// ------------------------------------------------------------------------------------------------

/// A coordinator and its storage nodes, each in its own directory under one temporary
/// directory. On a failing test, the processes' log tails are printed.
struct Cluster {
    tmp: TempDir,
    /// `None` while a node is killed.
    storage: Vec<Option<StorageProcess>>,
    /// Id and address of every node, kept while it is down so it can come back on them.
    nodes: Vec<(String, SocketAddr)>,
    coordinator: CoordinatorProcess,
}

impl Cluster {
    /// Starts `nodes` storage nodes `{name}-s1`.. and a coordinator `{name}-coord` with `cores`
    /// cores that knows them.
    fn start(name: &str, nodes: usize, cores: usize, config_yaml: &str) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pairdb-e2e-{name}-"))
            .tempdir()
            .expect("tempdir");
        let storage: Vec<StorageProcess> = (1..=nodes)
            .map(|i| {
                let id = format!("{name}-s{i}");
                StorageProcess::start(&tmp.path().join(&id), &id)
            })
            .collect();
        let nodes: Vec<(String, SocketAddr)> =
            storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect();
        let coordinator = CoordinatorProcess::start(
            &tmp.path().join("coordinator"),
            &CoordinatorOptions {
                node_id: &format!("{name}-coord"),
                cores,
                storage_nodes: nodes.clone(),
                config_yaml,
            },
        );
        let cluster =
            Cluster { tmp, storage: storage.into_iter().map(Some).collect(), nodes, coordinator };
        cluster.wait_all_up();
        cluster
    }

    /// Waits until the coordinator lists every node ACTIVE. It prints its ready line before its
    /// first health check is over, and one check that times out (the timeout is the check
    /// interval, at most 500 ms, which a loaded machine can miss) marks a node down until the
    /// next check, failing operations on it fast.
    fn wait_all_up(&self) {
        let (addr, ids) = (self.addr(), self.nodes.iter().map(|(id, _)| id.clone()).collect());
        run_local(move || async move {
            let ch = channel(addr).await;
            let (ch, ids): (&Channel, &Vec<String>) = (&ch, &ids);
            eventually("the coordinator lists every node ACTIVE", CONVERGE, move || async move {
                let nodes = list_nodes(ch).await;
                let active: Vec<&String> = nodes
                    .iter()
                    .filter(|n| n.status == "ACTIVE" && ids.contains(&n.node_id))
                    .map(|n| &n.node_id)
                    .collect();
                if active.len() == ids.len() {
                    Ok(())
                } else {
                    Err(format!("{nodes:?}"))
                }
            })
            .await;
        });
    }

    /// The coordinator's address.
    fn addr(&self) -> SocketAddr {
        self.coordinator.addr
    }

    /// Every storage node's address, in node order.
    fn storage_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|(_, addr)| *addr).collect()
    }

    /// Starts a storage node the coordinator does not know yet.
    fn start_extra(&self, node_id: &str) -> StorageProcess {
        StorageProcess::start(&self.tmp.path().join(node_id), node_id)
    }

    /// SIGKILLs node `i`.
    fn kill(&mut self, i: usize) {
        let node = self.storage[i].take().expect("node is running");
        let status = node.kill9();
        assert!(killed_by_sigkill(&status), "{status}");
    }

    /// Starts node `i` again with its old id, port and data directory.
    fn restart(&mut self, i: usize) {
        assert!(self.storage[i].is_none(), "node {i} is running");
        let (id, addr) = &self.nodes[i];
        let node = StorageProcess::start_on_port(&self.tmp.path().join(id), id, 1, addr.port());
        assert_eq!(node.addr, *addr, "restarted on another address");
        self.storage[i] = Some(node);
        self.wait_all_up();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coordinator log:\n{}", self.coordinator.log_tail());
            for node in self.storage.iter().flatten() {
                eprintln!("--- {} log:\n{}", node.node_id, node.log_tail());
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Calls.
// ------------------------------------------------------------------------------------------------

async fn call<Req: Message, Resp: Message + Default>(
    ch: &Channel,
    method: &str,
    req: &Req,
) -> Result<Resp, Status> {
    ch.unary(&coordinator_path(method), req, Some(CALL_TIMEOUT)).await
}

fn write_request(tenant: &str, key: &str, value: &[u8], level: i32) -> api::WriteKeyValueRequest {
    api::WriteKeyValueRequest {
        tenant_id: tenant.into(),
        key: key.into(),
        value: Bytes::copy_from_slice(value),
        consistency: level,
        idempotency_key: String::new(),
        vector_clock: None,
    }
}

async fn put(
    ch: &Channel,
    tenant: &str,
    key: &str,
    value: &[u8],
    level: i32,
) -> Result<api::WriteKeyValueResponse, Status> {
    call(ch, "WriteKeyValue", &write_request(tenant, key, value, level)).await
}

async fn get(
    ch: &Channel,
    tenant: &str,
    key: &str,
    level: i32,
) -> Result<api::ReadKeyValueResponse, Status> {
    let req =
        api::ReadKeyValueRequest { tenant_id: tenant.into(), key: key.into(), consistency: level };
    call(ch, "ReadKeyValue", &req).await
}

fn delete_request(tenant: &str, key: &str, level: i32) -> api::DeleteKeyValueRequest {
    api::DeleteKeyValueRequest {
        tenant_id: tenant.into(),
        key: key.into(),
        consistency: level,
        idempotency_key: String::new(),
        vector_clock: None,
    }
}

async fn del(
    ch: &Channel,
    tenant: &str,
    key: &str,
    level: i32,
) -> Result<api::DeleteKeyValueResponse, Status> {
    call(ch, "DeleteKeyValue", &delete_request(tenant, key, level)).await
}

async fn create_tenant(
    ch: &Channel,
    tenant: &str,
    replication_factor: i32,
) -> Result<api::CreateTenantResponse, Status> {
    let req = api::CreateTenantRequest {
        tenant_id: tenant.into(),
        replication_factor,
        ..Default::default()
    };
    call(ch, "CreateTenant", &req).await
}

async fn list_nodes(ch: &Channel) -> Vec<api::StorageNodeInfo> {
    let reply: api::ListStorageNodesResponse =
        call(ch, "ListStorageNodes", &api::ListStorageNodesRequest {})
            .await
            .unwrap_or_else(|e| panic!("ListStorageNodes: {e}"));
    reply.nodes
}

/// Asserts that `result` is the error `code` with `pairdb-error-code: error_code`.
#[track_caller]
fn assert_error<T: Debug>(result: Result<T, Status>, code: Code, error_code: &str) -> Status {
    match result {
        Ok(v) => panic!("expected {code} [{error_code}], got OK: {v:?}"),
        Err(status) => {
            assert_eq!(status.code, code, "{status}");
            assert_eq!(status.error_code.as_deref(), Some(error_code), "{status}");
            status
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Versions, and what the storage nodes hold.
// ------------------------------------------------------------------------------------------------

/// A vector clock as actor -> counter, independent of entry order and of which proto it came in.
type Clock = BTreeMap<String, i64>;

fn api_clock(clock: Option<&api::VectorClock>) -> Clock {
    let entries = clock.map(|c| c.entries.as_slice()).unwrap_or_default();
    entries.iter().map(|e| (e.coordinator_node_id.clone(), e.logical_timestamp)).collect()
}

fn pb_clock(clock: Option<&pb::VectorClock>) -> Clock {
    let entries = clock.map(|c| c.entries.as_slice()).unwrap_or_default();
    entries.iter().map(|e| (e.coordinator_node_id.clone(), e.logical_timestamp)).collect()
}

/// True when `later` strictly descends from `earlier`.
fn descends(later: &Clock, earlier: &Clock) -> bool {
    later != earlier && earlier.iter().all(|(actor, n)| later.get(actor).is_some_and(|m| m >= n))
}

/// What every replica of a key must end up holding.
#[derive(Clone, Debug)]
struct Expected {
    /// `None` for a tombstone.
    value: Option<Bytes>,
    clock: Clock,
}

fn same_version(a: &pb::Version, b: &pb::Version) -> bool {
    a.value == b.value
        && pb_clock(a.vector_clock.as_ref()) == pb_clock(b.vector_clock.as_ref())
        && a.timestamp == b.timestamp
        && a.writer == b.writer
        && a.tombstone == b.tombstone
}

/// Connects to every storage node (inside an executor).
async fn connect_all(addrs: &[SocketAddr]) -> Vec<Channel> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        out.push(channel(*addr).await);
    }
    out
}

/// What one storage node holds for the key: `None` when nothing, tombstones included.
async fn replica(node: &Channel, tenant: &str, key: &str) -> Option<pb::Version> {
    let req = pb::ReadRequest { tenant_id: tenant.into(), key: key.into() };
    let reply: pb::ReadResponse = node
        .unary(&storage_path("Read"), &req, Some(CALL_TIMEOUT))
        .await
        .unwrap_or_else(|e| panic!("StorageService/Read of {key:?}: {e}"));
    reply.found.then(|| reply.version.unwrap_or_default())
}

/// What every storage node holds for the key, in node order.
async fn replicas(nodes: &[Channel], tenant: &str, key: &str) -> Vec<Option<pb::Version>> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        out.push(replica(node, tenant, key).await);
    }
    out
}

/// `Ok` when every node holds one and the same version of `key` (value, clock, timestamp,
/// writer, tombstone) and it is `want`.
fn converged(key: &str, got: &[Option<pb::Version>], want: &Expected) -> Result<(), String> {
    let describe = |v: &Option<pb::Version>| match v {
        None => "nothing".to_owned(),
        Some(v) => format!(
            "{:?}{} {:?}",
            v.value,
            if v.tombstone { " (tombstone)" } else { "" },
            pb_clock(v.vector_clock.as_ref())
        ),
    };
    let all: Vec<String> = got.iter().map(describe).collect();
    let Some(Some(first)) = got.first() else {
        return Err(format!("{key}: node 0 holds nothing; replicas: {all:?}"));
    };
    for (i, v) in got.iter().enumerate() {
        if !v.as_ref().is_some_and(|v| same_version(v, first)) {
            return Err(format!("{key}: node {i} differs from node 0; replicas: {all:?}"));
        }
    }
    let value_ok = match &want.value {
        None => first.tombstone,
        Some(value) => !first.tombstone && first.value == *value,
    };
    if !value_ok || pb_clock(first.vector_clock.as_ref()) != want.clock {
        return Err(format!("{key}: replicas agree on {} but want {want:?}", all[0]));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// 1. Put, get and delete at every level; error statuses.
// ------------------------------------------------------------------------------------------------

#[test]
fn put_get_delete_at_every_level() {
    let cluster = Cluster::start("levels", 3, 1, "");
    let addr = cluster.addr();
    run_local(move || async move {
        let ch = channel(addr).await;
        let created = create_tenant(&ch, TENANT, 3).await.expect("CreateTenant");
        assert_eq!((created.tenant_id.as_str(), created.replication_factor), (TENANT, 3));
        let tenant: api::GetTenantResponse =
            call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: TENANT.into() })
                .await
                .expect("GetTenant");
        assert_eq!(tenant.replication_factor, 3);

        // Write and read sets overlap when W + R > N: the read sees the write at once.
        for w in LEVELS {
            for r in LEVELS.into_iter().filter(|r| required(w) + required(*r) > 3) {
                let key = format!("strong-{}-{}", level_name(w), level_name(r));
                let what = format!("{key} (write at {}, read at {})", level_name(w), level_name(r));

                let first = put(&ch, TENANT, &key, b"v1", w)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: write: {e}"));
                assert_eq!(first.key, key);
                assert_eq!(first.consistency, w);
                assert!(!first.is_duplicate);
                assert!(!first.idempotency_key.is_empty(), "{what}: no generated idempotency key");
                let acks = first.replica_count as usize;
                assert!((required(w)..=3).contains(&acks), "{what}: {acks} acks");
                let first_clock = api_clock(first.vector_clock.as_ref());
                assert!(!first_clock.is_empty(), "{what}: write without a version");

                let read =
                    get(&ch, TENANT, &key, r).await.unwrap_or_else(|e| panic!("{what}: read: {e}"));
                assert_eq!(read.value, &b"v1"[..], "{what}");
                assert_eq!(api_clock(read.vector_clock.as_ref()), first_clock, "{what}");
                let replies = read.replica_count as usize;
                assert!((required(r)..=3).contains(&replies), "{what}: {replies} replies");

                let second = put(&ch, TENANT, &key, b"v2", w)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: overwrite: {e}"));
                let second_clock = api_clock(second.vector_clock.as_ref());
                assert!(descends(&second_clock, &first_clock), "{what}: {second_clock:?}");
                let read = get(&ch, TENANT, &key, r)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: read after overwrite: {e}"));
                assert_eq!(read.value, &b"v2"[..], "{what}");
                assert_eq!(api_clock(read.vector_clock.as_ref()), second_clock, "{what}");

                let deleted = del(&ch, TENANT, &key, w)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: delete: {e}"));
                assert_eq!(deleted.key, key);
                let acks = deleted.replica_count as usize;
                assert!((required(w)..=3).contains(&acks), "{what}: delete: {acks} acks");
                let tombstone_clock = api_clock(deleted.vector_clock.as_ref());
                assert!(descends(&tombstone_clock, &second_clock), "{what}: {tombstone_clock:?}");
                assert_error(get(&ch, TENANT, &key, r).await, Code::NOT_FOUND, "KEY_NOT_FOUND");
            }
        }

        // Levels that need not overlap: the replicas converge, so the read sees it soon.
        for (w, r) in [(ONE, ONE), (ONE, QUORUM), (QUORUM, ONE)] {
            let key = format!("weak-{}-{}", level_name(w), level_name(r));
            let written = put(&ch, TENANT, &key, b"weak", w).await.expect("weak write");
            let clock = api_clock(written.vector_clock.as_ref());
            let (ch, key, clock) = (&ch, &key, &clock);
            eventually(&format!("{key}: the write is read"), CONVERGE, move || async move {
                match get(ch, TENANT, key, r).await {
                    Ok(v)
                        if v.value == b"weak"[..]
                            && api_clock(v.vector_clock.as_ref()) == *clock =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
            del(ch, TENANT, key, w).await.expect("weak delete");
            eventually(&format!("{key}: the delete is read"), CONVERGE, move || async move {
                match get(ch, TENANT, key, r).await {
                    Err(s) if s.code == Code::NOT_FOUND => {
                        assert_eq!(s.error_code.as_deref(), Some("KEY_NOT_FOUND"), "{s}");
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }

        // An unspecified level is QUORUM.
        let unspecified = put(&ch, TENANT, "unspecified", b"u", 0).await.expect("write");
        assert!(unspecified.replica_count >= 2, "{unspecified:?}");
        let read = get(&ch, TENANT, "unspecified", 0).await.expect("read");
        assert_eq!(read.value, &b"u"[..]);
        assert!(read.replica_count >= 2, "{read:?}");

        // Absent things.
        assert_error(
            get(&ch, TENANT, "never-written", QUORUM).await,
            Code::NOT_FOUND,
            "KEY_NOT_FOUND",
        );
        for level in LEVELS {
            assert_error(
                get(&ch, "no-such-tenant", "k", level).await,
                Code::NOT_FOUND,
                "TENANT_NOT_FOUND",
            );
        }
        assert_error(
            put(&ch, "no-such-tenant", "k", b"v", QUORUM).await,
            Code::NOT_FOUND,
            "TENANT_NOT_FOUND",
        );
        assert_error(
            del(&ch, "no-such-tenant", "k", QUORUM).await,
            Code::NOT_FOUND,
            "TENANT_NOT_FOUND",
        );
        let missing: Result<api::GetTenantResponse, _> =
            call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: "no-such-tenant".into() })
                .await;
        assert_error(missing, Code::NOT_FOUND, "TENANT_NOT_FOUND");

        // Invalid input.
        let bad = (Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert_error(put(&ch, TENANT, "", b"v", QUORUM).await, bad.0, bad.1);
        assert_error(get(&ch, TENANT, "", QUORUM).await, bad.0, bad.1);
        assert_error(del(&ch, TENANT, "", QUORUM).await, bad.0, bad.1);
        assert_error(put(&ch, "", "k", b"v", QUORUM).await, bad.0, bad.1);
        assert_error(put(&ch, TENANT, "k", b"v", 7).await, bad.0, bad.1);
        assert_error(get(&ch, TENANT, "k", 7).await, bad.0, bad.1);
        assert_error(del(&ch, TENANT, "k", 7).await, bad.0, bad.1);
        for rf in [11, -1] {
            assert_error(
                create_tenant(&ch, "too-many", rf).await,
                Code::INVALID_ARGUMENT,
                "INVALID_REPLICATION_FACTOR",
            );
        }
        assert_error(create_tenant(&ch, "bad/tenant", 3).await, bad.0, bad.1);
        // A refused tenant was not created.
        let refused: Result<api::GetTenantResponse, _> =
            call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: "too-many".into() }).await;
        assert_error(refused, Code::NOT_FOUND, "TENANT_NOT_FOUND");
        // Invalid input wrote nothing.
        assert_error(get(&ch, TENANT, "k", ALL).await, Code::NOT_FOUND, "KEY_NOT_FOUND");
    });
}

// ------------------------------------------------------------------------------------------------
// 2. One node down.
// ------------------------------------------------------------------------------------------------

#[test]
fn one_node_down() {
    let mut cluster = Cluster::start("down", 3, 1, FAST_HINTS);
    let addr = cluster.addr();
    let down_id = cluster.nodes[2].0.clone();
    run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, TENANT, 3).await.expect("CreateTenant");
        for i in 0..10 {
            put(&ch, TENANT, &format!("before-{i}"), b"before", ALL).await.expect("write at ALL");
        }
    });
    cluster.kill(2);
    run_local(move || async move {
        let ch = channel(addr).await;
        // At once, while the coordinator may still believe the node is up...
        one_down_round(&ch, "unnoticed").await;
        // ... and once the health checker has marked it down.
        let (ch, down_id) = (&ch, &down_id);
        eventually("ListStorageNodes shows the killed node DOWN", CONVERGE, move || async move {
            let nodes = list_nodes(ch).await;
            match nodes.iter().find(|n| n.node_id == *down_id) {
                Some(n) if n.status == "DOWN" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        one_down_round(ch, "noticed").await;
    });
}

/// With one of three replicas gone: QUORUM and ONE work, ALL fails with QUORUM_NOT_REACHED.
async fn one_down_round(ch: &Channel, tag: &str) {
    for i in 0..10 {
        let before = get(ch, TENANT, &format!("before-{i}"), QUORUM)
            .await
            .unwrap_or_else(|e| panic!("{tag}: QUORUM read of an older key: {e}"));
        assert_eq!(before.value, &b"before"[..]);
        assert_eq!(before.replica_count, 2);
    }
    for i in 0..10 {
        let key = format!("{tag}-{i}");
        let value = format!("{tag} value {i}");
        let written = put(ch, TENANT, &key, value.as_bytes(), QUORUM)
            .await
            .unwrap_or_else(|e| panic!("{tag}: QUORUM write with one node down: {e}"));
        assert_eq!(written.replica_count, 2, "{tag}: {written:?}");
        let read = get(ch, TENANT, &key, QUORUM)
            .await
            .unwrap_or_else(|e| panic!("{tag}: QUORUM read with one node down: {e}"));
        assert_eq!(read.value, value.as_bytes());
        assert_eq!(api_clock(read.vector_clock.as_ref()), api_clock(written.vector_clock.as_ref()));
        let one = put(ch, TENANT, &format!("{key}-one"), b"one", ONE)
            .await
            .unwrap_or_else(|e| panic!("{tag}: ONE write with one node down: {e}"));
        assert!(one.replica_count >= 1);
        get(ch, TENANT, &key, ONE).await.unwrap_or_else(|e| panic!("{tag}: ONE read: {e}"));
    }
    let unavailable = (Code::UNAVAILABLE, "QUORUM_NOT_REACHED");
    let status = assert_error(
        put(ch, TENANT, &format!("{tag}-all"), b"all", ALL).await,
        unavailable.0,
        unavailable.1,
    );
    assert!(status.message.contains("quorum not reached"), "{status}");
    assert_error(get(ch, TENANT, &format!("{tag}-0"), ALL).await, unavailable.0, unavailable.1);
    assert_error(del(ch, TENANT, &format!("{tag}-1"), ALL).await, unavailable.0, unavailable.1);
}

// ------------------------------------------------------------------------------------------------
// 3. A node comes back: hinted handoff, then read repair.
// ------------------------------------------------------------------------------------------------

#[test]
fn restarted_node_converges_through_hints_and_read_repair() {
    let mut cluster = Cluster::start("heal", 3, 1, FAST_HINTS);
    let addr = cluster.addr();
    let storage = cluster.storage_addrs();

    // Every key on every replica.
    let mut expected: BTreeMap<String, Expected> = run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, TENANT, 3).await.expect("CreateTenant");
        let mut expected = BTreeMap::new();
        for i in 0..20 {
            let (key, value) = (format!("pre-{i:02}"), format!("pre value {i}"));
            let w = put(&ch, TENANT, &key, value.as_bytes(), ALL).await.expect("write at ALL");
            let value = Some(Bytes::from(value));
            expected.insert(key, Expected { value, clock: api_clock(w.vector_clock.as_ref()) });
        }
        expected
    });

    // Writes, overwrites and deletes while node 3 is down: each one leaves a hint for it.
    cluster.kill(2);
    let changed: BTreeMap<String, Expected> = run_local(move || async move {
        let ch = channel(addr).await;
        let mut changed = BTreeMap::new();
        for i in 0..30 {
            let (key, value) = (format!("down-{i:02}"), format!("written while down {i}"));
            let w = put(&ch, TENANT, &key, value.as_bytes(), QUORUM).await.expect("QUORUM write");
            let value = Some(Bytes::from(value));
            changed.insert(key, Expected { value, clock: api_clock(w.vector_clock.as_ref()) });
        }
        for i in 0..10 {
            let (key, value) = (format!("pre-{i:02}"), format!("overwritten while down {i}"));
            let w = put(&ch, TENANT, &key, value.as_bytes(), QUORUM).await.expect("overwrite");
            let value = Some(Bytes::from(value));
            changed.insert(key, Expected { value, clock: api_clock(w.vector_clock.as_ref()) });
        }
        for i in 10..15 {
            let key = format!("pre-{i:02}");
            let d = del(&ch, TENANT, &key, QUORUM).await.expect("QUORUM delete");
            changed
                .insert(key, Expected { value: None, clock: api_clock(d.vector_clock.as_ref()) });
        }
        changed
    });
    expected.extend(changed);

    // Back on the same port and data directory. Nothing reads through the coordinator here, so
    // only hint replay can bring the node up to date.
    cluster.restart(2);
    let keys = expected.clone();
    run_local(move || async move {
        let nodes = connect_all(&storage).await;
        let (nodes, keys) = (&nodes, &keys);
        eventually(
            "every replica holds every key's latest version (hint replay)",
            CONVERGE,
            move || async move {
                for (key, want) in keys {
                    converged(key, &replicas(nodes, TENANT, key).await, want)?;
                }
                Ok(())
            },
        )
        .await;

        // Read repair: make one replica stale by writing a newer version to the other two
        // directly, then read through the coordinator.
        let ch = channel(addr).await;
        let mut latest = keys.clone();
        for (key, level, stale) in
            [("pre-16", QUORUM, 2), ("pre-17", ALL, 0), ("pre-18", QUORUM, 1)]
        {
            let current =
                replica(&nodes[stale], TENANT, key).await.expect("the key is on every node");
            let mut clock = current.vector_clock.clone().unwrap_or_default();
            clock.entries.push(pb::VectorClockEntry {
                coordinator_node_id: "e2e-client/0".into(),
                logical_timestamp: 1,
            });
            let newer = pb::Version {
                value: Bytes::from(format!("{key} written behind the coordinator's back")),
                vector_clock: Some(clock),
                timestamp: current.timestamp + 1,
                writer: "e2e-client/0".into(),
                tombstone: false,
            };
            for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != stale) {
                let req = pb::WriteRequest {
                    tenant_id: TENANT.into(),
                    key: key.into(),
                    version: Some(newer.clone()),
                };
                let reply: pb::WriteResponse = node
                    .unary(&storage_path("Write"), &req, Some(CALL_TIMEOUT))
                    .await
                    .unwrap_or_else(|e| panic!("direct write to node {i}: {e}"));
                assert!(reply.applied, "node {i} refused a dominating version: {reply:?}");
            }
            let before = replica(&nodes[stale], TENANT, key).await.expect("still there");
            assert!(same_version(&before, &current), "node {stale} is not stale: {before:?}");

            let read = get(&ch, TENANT, key, level)
                .await
                .unwrap_or_else(|e| panic!("{key}: read at {}: {e}", level_name(level)));
            assert_eq!(read.value, newer.value, "{key}: the read missed the newest version");
            let want = Expected {
                value: Some(newer.value.clone()),
                clock: pb_clock(newer.vector_clock.as_ref()),
            };
            assert_eq!(api_clock(read.vector_clock.as_ref()), want.clock);
            let (key, want) = (key, &want);
            eventually(
                &format!("{key}: read repair at {} updates node {stale}", level_name(level)),
                CONVERGE,
                move || async move { converged(key, &replicas(nodes, TENANT, key).await, want) },
            )
            .await;
            latest.insert(key.to_owned(), want.clone());
        }

        // Reads at QUORUM and ALL of everything answer the latest version and leave every
        // replica equal.
        let latest = &latest;
        for (key, want) in latest {
            for level in [QUORUM, ALL] {
                let read = get(&ch, TENANT, key, level).await;
                match &want.value {
                    Some(value) => {
                        let read = read.unwrap_or_else(|e| panic!("{key}: {e}"));
                        assert_eq!(&read.value, value, "{key}");
                        assert_eq!(api_clock(read.vector_clock.as_ref()), want.clock, "{key}");
                    }
                    None => {
                        assert_error(read, Code::NOT_FOUND, "KEY_NOT_FOUND");
                    }
                }
            }
        }
        eventually(
            "every replica still holds every key's latest version",
            CONVERGE,
            move || async move {
                for (key, want) in latest {
                    converged(key, &replicas(nodes, TENANT, key).await, want)?;
                }
                Ok(())
            },
        )
        .await;
    });
}

// ------------------------------------------------------------------------------------------------
// 4. Idempotency.
// ------------------------------------------------------------------------------------------------

#[test]
fn idempotency_keys_apply_a_request_once() {
    let cluster = Cluster::start("idem", 3, 2, "");
    let addr = cluster.addr();
    let storage = cluster.storage_addrs();
    run_local(move || async move {
        let ch = channel(addr).await;
        let nodes = connect_all(&storage).await;
        create_tenant(&ch, TENANT, 3).await.expect("CreateTenant");

        // A retry (on another connection, perhaps another core) is the stored answer.
        let request = api::WriteKeyValueRequest {
            idempotency_key: "request-1".into(),
            ..write_request(TENANT, "idem", b"first", ALL)
        };
        let first: api::WriteKeyValueResponse =
            call(&ch, "WriteKeyValue", &request).await.expect("first write");
        assert!(!first.is_duplicate);
        assert_eq!(first.idempotency_key, "request-1");
        let clock = api_clock(first.vector_clock.as_ref());
        let stored = replicas(&nodes, TENANT, "idem").await;
        converged("idem", &stored, &Expected { value: Some("first".into()), clock: clock.clone() })
            .expect("a write at ALL is on every replica");

        let retry_ch = channel(addr).await;
        for ch in [&ch, &retry_ch] {
            let again: api::WriteKeyValueResponse =
                call(ch, "WriteKeyValue", &request).await.expect("retry");
            assert!(again.is_duplicate, "{again:?}");
            assert_eq!(api_clock(again.vector_clock.as_ref()), clock);
            assert_eq!((again.key.as_str(), again.idempotency_key.as_str()), ("idem", "request-1"));
            assert_eq!(again.replica_count, first.replica_count);
        }
        // The storage nodes saw one write: each holds exactly the version it held before.
        let after = replicas(&nodes, TENANT, "idem").await;
        for (i, (a, b)) in after.iter().zip(&stored).enumerate() {
            let (a, b) = (a.as_ref().expect("stored"), b.as_ref().expect("stored"));
            assert!(same_version(a, b), "node {i} changed on a retry: {b:?} -> {a:?}");
        }

        // The same idempotency key with another body.
        let other = api::WriteKeyValueRequest { value: Bytes::from_static(b"second"), ..request };
        let conflict: Result<api::WriteKeyValueResponse, _> =
            call(&ch, "WriteKeyValue", &other).await;
        assert_error(conflict, Code::FAILED_PRECONDITION, "IDEMPOTENCY_KEY_CONFLICT");
        let read = get(&ch, TENANT, "idem", ALL).await.expect("read");
        assert_eq!(read.value, &b"first"[..]);
        assert_eq!(api_clock(read.vector_clock.as_ref()), clock);

        // Deletes too.
        let delete = api::DeleteKeyValueRequest {
            idempotency_key: "delete-1".into(),
            ..delete_request(TENANT, "idem", ALL)
        };
        let deleted: api::DeleteKeyValueResponse =
            call(&ch, "DeleteKeyValue", &delete).await.expect("delete");
        assert!(!deleted.is_duplicate);
        let tombstone = replicas(&nodes, TENANT, "idem").await;
        let again: api::DeleteKeyValueResponse =
            call(&retry_ch, "DeleteKeyValue", &delete).await.expect("delete retry");
        assert!(again.is_duplicate, "{again:?}");
        assert_eq!(
            api_clock(again.vector_clock.as_ref()),
            api_clock(deleted.vector_clock.as_ref())
        );
        let after = replicas(&nodes, TENANT, "idem").await;
        for (i, (a, b)) in after.iter().zip(&tombstone).enumerate() {
            let (a, b) = (a.as_ref().expect("tombstone"), b.as_ref().expect("tombstone"));
            assert!(
                a.tombstone && same_version(a, b),
                "node {i} changed on a retry: {b:?} -> {a:?}"
            );
        }

        // A write without a key gets a generated one, and its answer is stored under it: a
        // client that read the key (but, say, timed out before acting on it) can retry with it.
        let unkeyed = write_request(TENANT, "generated", b"g1", ALL);
        let fresh: api::WriteKeyValueResponse =
            call(&ch, "WriteKeyValue", &unkeyed).await.expect("unkeyed write");
        assert!(!fresh.is_duplicate && !fresh.idempotency_key.is_empty(), "{fresh:?}");
        let stored = replicas(&nodes, TENANT, "generated").await;
        let retry = api::WriteKeyValueRequest {
            idempotency_key: fresh.idempotency_key.clone(),
            ..unkeyed.clone()
        };
        let again: api::WriteKeyValueResponse =
            call(&retry_ch, "WriteKeyValue", &retry).await.expect("retry with the generated key");
        assert!(again.is_duplicate, "{again:?}");
        assert_eq!(api_clock(again.vector_clock.as_ref()), api_clock(fresh.vector_clock.as_ref()));
        let after = replicas(&nodes, TENANT, "generated").await;
        for (i, (a, b)) in after.iter().zip(&stored).enumerate() {
            let (a, b) = (a.as_ref().expect("stored"), b.as_ref().expect("stored"));
            assert!(same_version(a, b), "node {i} changed on a retry: {b:?} -> {a:?}");
        }

        // Two identical requests at the same moment on two connections: one does the write, the
        // other gets its answer.
        for round in 0..10 {
            let key = format!("race-{round}");
            let request = api::WriteKeyValueRequest {
                idempotency_key: format!("race-request-{round}"),
                ..write_request(TENANT, &key, key.as_bytes(), ALL)
            };
            let (a, b) = (channel(addr).await, channel(addr).await);
            let (ra, rb) = join(
                call::<_, api::WriteKeyValueResponse>(&a, "WriteKeyValue", &request),
                call::<_, api::WriteKeyValueResponse>(&b, "WriteKeyValue", &request),
            )
            .await;
            let (ra, rb) = (ra.expect("racing request A"), rb.expect("racing request B"));
            let fresh = [&ra, &rb].iter().filter(|r| !r.is_duplicate).count();
            assert_eq!(fresh, 1, "{key}: {ra:?} / {rb:?}");
            let clock = api_clock(ra.vector_clock.as_ref());
            assert_eq!(clock, api_clock(rb.vector_clock.as_ref()), "{key}");
            let want = Expected { value: Some(Bytes::from(key.clone())), clock };
            converged(&key, &replicas(&nodes, TENANT, &key).await, &want)
                .expect("the one write is what every replica holds");
        }
    });
}

// ------------------------------------------------------------------------------------------------
// 5. Across cores.
// ------------------------------------------------------------------------------------------------

#[test]
fn writes_are_seen_through_other_cores() {
    let cluster = Cluster::start("cores", 3, 2, "");
    let addr = cluster.addr();
    let coordinator_id = cluster.coordinator.node_id.clone();
    run_local(move || async move {
        let admin = channel(addr).await;
        create_tenant(&admin, TENANT, 3).await.expect("CreateTenant");

        // SO_REUSEPORT spreads connections over the cores and a connection stays on its core;
        // a blind write's clock has one entry, the actor `{coordinator}/{core}` that served it.
        let mut by_core: BTreeMap<String, Vec<Channel>> = BTreeMap::new();
        for i in 0..24 {
            let ch = channel(addr).await;
            let probe = put(&ch, TENANT, &format!("probe-{i}"), b"probe", QUORUM)
                .await
                .expect("probe write");
            let clock = api_clock(probe.vector_clock.as_ref());
            assert_eq!(clock.len(), 1, "a blind write's clock: {clock:?}");
            let actor = clock.into_keys().next().expect("one entry");
            by_core.entry(actor).or_default().push(ch);
        }
        let actors: Vec<&String> = by_core.keys().collect();
        assert_eq!(
            actors,
            [&format!("{coordinator_id}/0"), &format!("{coordinator_id}/1")],
            "24 connections should have reached both cores"
        );
        let cores: Vec<&Vec<Channel>> = by_core.values().collect();

        for i in 0..40 {
            let (x, y) = (i % 2, 1 - i % 2);
            let writer = &cores[x][i % cores[x].len()];
            let reader = &cores[y][i % cores[y].len()];
            let key = format!("cross-{i}");
            let written = put(writer, TENANT, &key, b"one", QUORUM).await.expect("write");
            let read = get(reader, TENANT, &key, QUORUM).await.expect("read on the other core");
            assert_eq!(read.value, &b"one"[..], "{key}");
            assert_eq!(
                api_clock(read.vector_clock.as_ref()),
                api_clock(written.vector_clock.as_ref())
            );
            // A blind overwrite from the other core's actor: concurrent, the later one wins.
            put(reader, TENANT, &key, b"two", QUORUM).await.expect("overwrite");
            let read = get(writer, TENANT, &key, QUORUM).await.expect("read back on core one");
            assert_eq!(read.value, &b"two"[..], "{key}");
            del(writer, TENANT, &key, QUORUM).await.expect("delete");
            assert_error(get(reader, TENANT, &key, QUORUM).await, Code::NOT_FOUND, "KEY_NOT_FOUND");
        }

        // A tenant created through one core is usable at once through the other, even right
        // after that core found it missing (and may have remembered so).
        for i in 0..6 {
            let (x, y) = (i % 2, 1 - i % 2);
            let (here, there) = (&cores[x][0], &cores[y][0]);
            let tenant = format!("late-{i}");
            assert_error(
                get(here, &tenant, "k", QUORUM).await,
                Code::NOT_FOUND,
                "TENANT_NOT_FOUND",
            );
            create_tenant(there, &tenant, 3).await.expect("CreateTenant");
            put(here, &tenant, "k", b"v", QUORUM)
                .await
                .unwrap_or_else(|e| panic!("{tenant}: created on the other core, then: {e}"));
            let read = get(there, &tenant, "k", QUORUM).await.expect("read");
            assert_eq!(read.value, &b"v"[..]);
        }
    });
}

// ------------------------------------------------------------------------------------------------
// 6. Adding a node.
// ------------------------------------------------------------------------------------------------

#[test]
fn adding_a_node_keeps_acknowledged_writes_readable() {
    let cluster = Cluster::start("grow", 3, 1, "");
    let addr = cluster.addr();
    let extra = cluster.start_extra("grow-s4");
    let (extra_id, extra_addr) = (extra.node_id.clone(), extra.addr);
    run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, TENANT, 3).await.expect("CreateTenant");
        let mut written = Vec::new();
        for i in 0..300 {
            let (key, value) = (format!("key-{i:03}"), format!("value {i}"));
            let w = put(&ch, TENANT, &key, value.as_bytes(), QUORUM).await.expect("write");
            written.push((key, value, api_clock(w.vector_clock.as_ref())));
        }

        let added: api::AddStorageNodeResponse = call(
            &ch,
            "AddStorageNode",
            &api::AddStorageNodeRequest {
                node_id: extra_id.clone(),
                host: "127.0.0.1".into(),
                port: i32::from(extra_addr.port()),
                virtual_nodes: 0,
            },
        )
        .await
        .expect("AddStorageNode");
        assert_eq!(added.node_id, extra_id);
        let nodes = list_nodes(&ch).await;
        assert_eq!(nodes.len(), 4, "{nodes:?}");

        // The new ring is in use once new writes land on the new node (with 4 nodes and 3
        // replicas, most keys have it among their replicas).
        let extra_node = channel(extra_addr).await;
        let (ch, extra_node) = (&ch, &extra_node);
        let mut n = 0;
        let n = &mut n;
        eventually("writes reach the added node", CONVERGE, move || {
            *n += 1;
            let key = format!("after-{n}");
            async move {
                put(ch, TENANT, &key, b"after", QUORUM).await.map_err(|e| e.to_string())?;
                let stats: pb::StatsResponse = extra_node
                    .unary(&storage_path("Stats"), &pb::StatsRequest {}, Some(CALL_TIMEOUT))
                    .await
                    .map_err(|e| e.to_string())?;
                if stats.key_count > 0 {
                    Ok(())
                } else {
                    Err("the added node holds no key".to_owned())
                }
            }
        })
        .await;

        for (key, value, clock) in &written {
            let read = get(ch, TENANT, key, QUORUM).await.unwrap_or_else(|e| {
                panic!("{key}, acknowledged at QUORUM before the node joined: {e}")
            });
            assert_eq!(read.value, value.as_bytes(), "{key}");
            assert_eq!(&api_clock(read.vector_clock.as_ref()), clock, "{key}");
        }
    });
    drop(extra);
}

/// Waits (up to a minute) until migration `id` is COMPLETED.
async fn completed(ch: &Channel, id: &str) {
    eventually("the migration completes", Duration::from_secs(60), || async {
        let s: api::GetMigrationStatusResponse = call(
            ch,
            "GetMigrationStatus",
            &api::GetMigrationStatusRequest { migration_id: id.to_owned() },
        )
        .await
        .map_err(|e| e.to_string())?;
        if s.status == "COMPLETED" {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// 7. Node administration and tenant errors.
// ------------------------------------------------------------------------------------------------

#[test]
fn node_admin_and_tenant_errors() {
    let cluster = Cluster::start("admin", 3, 1, "");
    let addr = cluster.addr();
    let known = cluster.nodes.clone();
    let extra = cluster.start_extra("admin-s4");
    let (extra_id, extra_addr) = (extra.node_id.clone(), extra.addr);
    run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, TENANT, 3).await.expect("CreateTenant");
        for rf in [3, 2] {
            assert_error(
                create_tenant(&ch, TENANT, rf).await,
                Code::ALREADY_EXISTS,
                "TENANT_EXISTS",
            );
        }
        let tenant: api::GetTenantResponse =
            call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: TENANT.into() })
                .await
                .expect("GetTenant");
        assert_eq!(tenant.replication_factor, 3, "a duplicate CreateTenant changed the tenant");

        // Key counts: 25 keys at ALL are on every node.
        for i in 0..25 {
            put(&ch, TENANT, &format!("k-{i}"), b"v", ALL).await.expect("write at ALL");
        }
        let nodes = list_nodes(&ch).await;
        let listed: Vec<(String, String, i32, String, i32, i64)> = nodes
            .iter()
            .map(|n| {
                (
                    n.node_id.clone(),
                    n.host.clone(),
                    n.port,
                    n.status.clone(),
                    n.virtual_nodes,
                    n.keys_count,
                )
            })
            .collect();
        let want: Vec<(String, String, i32, String, i32, i64)> = known
            .iter()
            .map(|(id, a)| {
                (id.clone(), "127.0.0.1".into(), i32::from(a.port()), "ACTIVE".into(), 150, 25)
            })
            .collect();
        assert_eq!(listed, want);

        // Removing a node that would leave fewer nodes than the tenant's factor is refused.
        let (first_id, _) = &known[0];
        let refused: Result<api::RemoveStorageNodeResponse, _> = call(
            &ch,
            "RemoveStorageNode",
            &api::RemoveStorageNodeRequest { node_id: first_id.clone(), force: false },
        )
        .await;
        let status = assert_error(refused, Code::FAILED_PRECONDITION, "NODE_IN_USE");
        assert!(status.message.contains("replication factor 3"), "{status}");
        assert_eq!(list_nodes(&ch).await.len(), 3, "a refused removal removed the node");
        let unknown: Result<api::RemoveStorageNodeResponse, _> = call(
            &ch,
            "RemoveStorageNode",
            &api::RemoveStorageNodeRequest { node_id: "no-such-node".into(), force: false },
        )
        .await;
        assert_error(unknown, Code::NOT_FOUND, "NODE_NOT_FOUND");

        // Adding a node, and its migration.
        let add = api::AddStorageNodeRequest {
            node_id: extra_id.clone(),
            host: "127.0.0.1".into(),
            port: i32::from(extra_addr.port()),
            virtual_nodes: 0,
        };
        let added: api::AddStorageNodeResponse =
            call(&ch, "AddStorageNode", &add).await.expect("AddStorageNode");
        assert!(!added.migration_id.is_empty(), "{added:?}");
        let migration: api::GetMigrationStatusResponse = call(
            &ch,
            "GetMigrationStatus",
            &api::GetMigrationStatusRequest { migration_id: added.migration_id.clone() },
        )
        .await
        .expect("GetMigrationStatus of the AddStorageNode migration");
        assert_eq!(migration.migration_id, added.migration_id);
        assert_eq!(migration.migration_type, "NODE_ADDITION");
        assert_eq!(migration.node_id, extra_id);
        assert!(
            ["PENDING", "IN_PROGRESS", "COMPLETED"].contains(&migration.status.as_str()),
            "{migration:?}"
        );
        assert!(migration.progress.is_some() && migration.started_at > 0, "{migration:?}");
        let missing: Result<api::GetMigrationStatusResponse, _> = call(
            &ch,
            "GetMigrationStatus",
            &api::GetMigrationStatusRequest { migration_id: "mig-does-not-exist".into() },
        )
        .await;
        assert_error(missing, Code::NOT_FOUND, "MIGRATION_NOT_FOUND");
        completed(&ch, &added.migration_id).await;
        let twice: Result<api::AddStorageNodeResponse, _> = call(&ch, "AddStorageNode", &add).await;
        assert_error(twice, Code::ALREADY_EXISTS, "NODE_EXISTS");

        let nodes = list_nodes(&ch).await;
        let new = nodes.iter().find(|n| n.node_id == extra_id).expect("the added node is listed");
        assert_eq!((new.status.as_str(), new.port), ("ACTIVE", i32::from(extra_addr.port())));
        assert!(new.keys_count > 0, "the added node got none of its keys: {new:?}");
        assert_eq!(nodes.len(), 4);

        // With four nodes, one goes without force: its keys drain to the others.
        let removed: api::RemoveStorageNodeResponse = call(
            &ch,
            "RemoveStorageNode",
            &api::RemoveStorageNodeRequest { node_id: extra_id.clone(), force: false },
        )
        .await
        .expect("removing a node");
        completed(&ch, &removed.migration_id).await;
        let migration: api::GetMigrationStatusResponse = call(
            &ch,
            "GetMigrationStatus",
            &api::GetMigrationStatusRequest { migration_id: removed.migration_id.clone() },
        )
        .await
        .expect("GetMigrationStatus of the RemoveStorageNode migration");
        assert_eq!(
            (migration.migration_type.as_str(), migration.node_id.as_str()),
            ("NODE_REMOVAL", extra_id.as_str())
        );
        let ids: Vec<String> = list_nodes(&ch).await.into_iter().map(|n| n.node_id).collect();
        let want: Vec<String> = known.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids, want);
        // Everything written is still there.
        for i in 0..25 {
            get(&ch, TENANT, &format!("k-{i}"), ALL).await.expect("read at ALL");
        }
    });
    drop(extra);
}
