//! Data movement with two coordinators sharing PostgreSQL metadata: storage nodes and
//! coordinators as separate `pairdb` processes, clients writing and deleting through both
//! coordinators while a node joins.
//!
//! - `two_coordinators_serve_writes_during_a_node_addition`: coordinators A (the nodes on its
//!   command line) and B (none: its ring comes from PostgreSQL) each serve a writer (disjoint
//!   keys, one ledger each) while a fourth node is added through A; the migration is seen
//!   COMPLETED through both, B lists the new node ACTIVE, and the merged ledger holds when read
//!   through either coordinator.
//! - `a_stopped_coordinator_fences_itself_and_the_migration_goes_on`: B is SIGSTOPped in the
//!   middle of a slow migration; A advances past it once B's beat is older than the lease (plus a
//!   margin) and completes. Resumed, B either serves a write by the current placement or refuses
//!   it with PLACEMENT_STALE (never a silent write by the placement it had when stopped), and
//!   serves again within seconds.
//!
//! Every test ends with the ledger check of `tests/data_movement.rs` ([`check_ledger`]), run
//! through both coordinators:
//! - every acknowledged write reads back at QUORUM with its last value, and every acknowledged
//!   delete reads NOT_FOUND (keys whose last operation failed are not asserted);
//! - every key (live or tombstone) is held by exactly its tenant's replication factor of
//!   storage nodes, read directly from each node with `ScanRange`.
//!
//! These run where `PAIRDB_TEST_POSTGRES_URL` is set or under CI (`CI=true`); elsewhere they
//! print that they were skipped. Each test works in its own PostgreSQL schema.

mod common;

#[path = "support/backends.rs"]
mod backends;

use std::{
    cell::Cell,
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use backends::{postgres_url, PgSchema};
use common::{
    channel, coordinator_path, eventually, run_local, storage_path, CoordinatorOptions,
    CoordinatorProcess, StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    proto::{coordinator as api, storage as pb},
    rpc::{Channel, Code, Status},
};
use prost::Message;
use tempfile::TempDir;

const QUORUM: i32 = api::Consistency::Quorum as i32;

/// Longest a migration may take in these tests (debug build, loaded 2-core machine: with two
/// writers through two coordinators, a node addition took 85 s there, most of it streaming).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The coordinator settings of these tests: fast health checks and hint replay.
const FAST: &str = "hint_replay_interval_ms: 100\nhealth_check_interval_ms: 200\n";

/// The tests of this file run one at a time: on a small machine, two clusters with writers
/// slow each other's migrations several times over.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Slow enough that a test can act in the middle of streaming.
const SLOW: &str = "migration: { max_bytes_per_sec: 40000, page_entries: 50 }\n";

// ------------------------------------------------------------------------------------------------
// Two coordinators on one PostgreSQL schema.
// ------------------------------------------------------------------------------------------------

struct PgCluster {
    tmp: TempDir,
    storage: Vec<StorageProcess>,
    /// Started with the storage nodes on its command line.
    a: CoordinatorProcess,
    /// No storage nodes of its own: its ring comes from the shared store.
    b: CoordinatorProcess,
    _schema: PgSchema,
}

impl PgCluster {
    /// Three storage nodes, then A and B on a fresh schema with `extra_yaml` appended to both
    /// configs; waits until both list the three nodes ACTIVE.
    fn start(name: &str, url: &str, extra_yaml: &str) -> PgCluster {
        let schema = PgSchema::create(url);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pairdb-move-pg-{name}-"))
            .tempdir()
            .expect("tempdir");
        let storage: Vec<StorageProcess> = (1..=3)
            .map(|i| {
                let id = format!("{name}-s{i}");
                StorageProcess::start(&tmp.path().join(&id), &id)
            })
            .collect();
        let nodes: Vec<(String, SocketAddr)> =
            storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect();
        let yaml = format!(
            "metadata: {{ backend: postgres, postgres_url: \"{}\", reload_interval_secs: 5 }}\n\
             {FAST}{extra_yaml}",
            schema.url
        );
        let a = CoordinatorProcess::start(
            &tmp.path().join("a"),
            &CoordinatorOptions {
                node_id: &format!("{name}-a"),
                cores: 1,
                storage_nodes: nodes,
                config_yaml: &yaml,
            },
        );
        let b = CoordinatorProcess::start(
            &tmp.path().join("b"),
            &CoordinatorOptions {
                node_id: &format!("{name}-b"),
                cores: 1,
                storage_nodes: Vec::new(),
                config_yaml: &yaml,
            },
        );
        let cluster = PgCluster { tmp, storage, a, b, _schema: schema };
        for addr in [cluster.a.addr, cluster.b.addr] {
            wait_listed(addr, 3);
        }
        cluster
    }

    /// Starts a storage node the coordinators do not know yet.
    fn start_node(&mut self, id: &str) -> SocketAddr {
        let node = StorageProcess::start(&self.tmp.path().join(id), id);
        let addr = node.addr;
        self.storage.push(node);
        addr
    }

    /// Every storage node started, with its address.
    fn members(&self) -> Vec<(String, SocketAddr)> {
        self.storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coordinator a log:\n{}", self.a.log_tail());
            eprintln!("--- coordinator b log:\n{}", self.b.log_tail());
            for s in &self.storage {
                eprintln!("--- {} log:\n{}", s.node_id, s.log_tail());
            }
        }
    }
}

/// Waits until the coordinator at `addr` lists `count` nodes, all ACTIVE.
fn wait_listed(addr: SocketAddr, count: usize) {
    run_local(move || async move {
        let ch = channel(addr).await;
        let ch = &ch;
        eventually("every node listed ACTIVE", Duration::from_secs(30), move || async move {
            let nodes = list_nodes(ch).await?;
            let active = nodes.iter().filter(|n| n.status == "ACTIVE").count();
            if nodes.len() == count && active == count {
                Ok(())
            } else {
                Err(format!("{nodes:?}"))
            }
        })
        .await;
    });
}

/// A coordinator stopped with SIGSTOP; SIGCONT when resumed or dropped (also on a failing
/// test, so that no stopped process is left behind).
struct Stopped {
    pid: libc::pid_t,
    resumed: bool,
}

impl Stopped {
    fn stop(pid: libc::pid_t) -> Stopped {
        // SAFETY: a plain signal to a child process this test started.
        let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP {pid}: {}", std::io::Error::last_os_error());
        Stopped { pid, resumed: false }
    }

    fn resume(&mut self) {
        if !self.resumed {
            self.resumed = true;
            // SAFETY: as in `stop`.
            let rc = unsafe { libc::kill(self.pid, libc::SIGCONT) };
            assert_eq!(rc, 0, "SIGCONT {}: {}", self.pid, std::io::Error::last_os_error());
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.resumed {
            self.resumed = true;
            // SAFETY: as in `stop`.
            unsafe { libc::kill(self.pid, libc::SIGCONT) };
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

async fn list_nodes(ch: &Channel) -> Result<Vec<api::StorageNodeInfo>, String> {
    let r: api::ListStorageNodesResponse =
        call(ch, "ListStorageNodes", &api::ListStorageNodesRequest {})
            .await
            .map_err(|e| e.to_string())?;
    Ok(r.nodes)
}

async fn create_tenant(ch: &Channel, tenant: &str, rf: i32) {
    let _: api::CreateTenantResponse = call(
        ch,
        "CreateTenant",
        &api::CreateTenantRequest { tenant_id: tenant.into(), replication_factor: rf },
    )
    .await
    .unwrap_or_else(|e| panic!("CreateTenant {tenant}: {e}"));
}

async fn add_node(ch: &Channel, id: &str, addr: SocketAddr) -> Result<String, Status> {
    let r: api::AddStorageNodeResponse = call(
        ch,
        "AddStorageNode",
        &api::AddStorageNodeRequest {
            node_id: id.into(),
            host: "127.0.0.1".into(),
            port: i32::from(addr.port()),
            virtual_nodes: 0,
        },
    )
    .await?;
    Ok(r.migration_id)
}

async fn status(ch: &Channel, id: &str) -> Result<api::GetMigrationStatusResponse, Status> {
    call(ch, "GetMigrationStatus", &api::GetMigrationStatusRequest { migration_id: id.into() })
        .await
}

fn error_code(status: &Status) -> String {
    status.error_code.clone().map(|c| c.to_string()).unwrap_or_default()
}

/// Polls a migration until it ends, checking the progress rules on every answer: keys migrated
/// and the percentage never go down, and the percentage is 100 only once COMPLETED. Returns the
/// final status.
async fn wait_done(ch: &Channel, id: &str) -> api::GetMigrationStatusResponse {
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    let (mut keys, mut pct) = (0i64, 0f64);
    let (began, mut seen) = (Instant::now(), (String::new(), String::new()));
    loop {
        let s = status(ch, id).await.unwrap_or_else(|e| panic!("GetMigrationStatus {id}: {e}"));
        if (s.stage.as_str(), s.blocked_on.as_str()) != (seen.0.as_str(), seen.1.as_str()) {
            eprintln!(
                "{id} after {:.1?}: {} ({} bytes, {} keys) {}",
                began.elapsed(),
                s.stage,
                s.bytes_migrated,
                s.progress.as_ref().map_or(0, |p| p.keys_migrated),
                s.blocked_on
            );
            seen = (s.stage.clone(), s.blocked_on.clone());
        }
        let p = s.progress.expect("progress");
        assert!(p.keys_migrated >= keys, "keys_migrated went down: {keys} -> {s:?}");
        assert!(p.percentage >= pct, "percentage went down: {pct} -> {s:?}");
        assert!(p.percentage < 100.0 || s.status == "COMPLETED", "100% before COMPLETED: {s:?}");
        (keys, pct) = (p.keys_migrated, p.percentage);
        match s.status.as_str() {
            "COMPLETED" | "CANCELLED" | "FAILED" => return s,
            _ => {}
        }
        assert!(Instant::now() < deadline, "migration {id} still running: {s:?}");
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_completed(ch: &Channel, id: &str) -> api::GetMigrationStatusResponse {
    let s = wait_done(ch, id).await;
    assert_eq!(s.status, "COMPLETED", "{s:?}");
    assert_eq!(s.stage, "COMPLETED", "{s:?}");
    assert_eq!(s.progress.as_ref().map(|p| p.percentage), Some(100.0), "{s:?}");
    assert!(s.completed_at >= s.started_at && s.started_at > 0, "{s:?}");
    s
}

/// Waits until the migration is in `stage` (or later in `stages`).
async fn wait_stage(ch: &Channel, id: &str, stages: &[&str], min_keys: i64) {
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    loop {
        let s = status(ch, id).await.expect("GetMigrationStatus");
        let keys = s.progress.as_ref().map_or(0, |p| p.keys_migrated);
        if stages.contains(&s.stage.as_str()) && keys >= min_keys {
            return;
        }
        assert!(Instant::now() < deadline, "migration {id} never reached {stages:?}: {s:?}");
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------------------------------------
// The ledger.
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Value(Vec<u8>),
    Deleted,
    /// The last operation failed: it may or may not have been applied.
    Unknown,
}

#[derive(Default)]
struct Ledger {
    keys: BTreeMap<(String, String), Expect>,
    acked: u64,
    failed: u64,
}

impl Ledger {
    async fn write(&mut self, ch: &Channel, tenant: &str, key: &str, value: Vec<u8>) {
        let r: Result<api::WriteKeyValueResponse, _> = call(
            ch,
            "WriteKeyValue",
            &api::WriteKeyValueRequest {
                tenant_id: tenant.into(),
                key: key.into(),
                value: value.clone().into(),
                consistency: QUORUM,
                ..Default::default()
            },
        )
        .await;
        self.record(tenant, key, r.map(|_| Expect::Value(value)));
    }

    async fn delete(&mut self, ch: &Channel, tenant: &str, key: &str) {
        let r: Result<api::DeleteKeyValueResponse, _> = call(
            ch,
            "DeleteKeyValue",
            &api::DeleteKeyValueRequest {
                tenant_id: tenant.into(),
                key: key.into(),
                consistency: QUORUM,
                ..Default::default()
            },
        )
        .await;
        // Deleting a key that was never written is NOT_FOUND for nobody: it stores a tombstone.
        self.record(tenant, key, r.map(|_| Expect::Deleted));
    }

    fn record(&mut self, tenant: &str, key: &str, r: Result<Expect, Status>) {
        let e = match r {
            Ok(e) => {
                self.acked += 1;
                e
            }
            Err(_) => {
                self.failed += 1;
                Expect::Unknown
            }
        };
        self.keys.insert((tenant.into(), key.into()), e);
    }
}

/// A client writing (3 in 4) and deleting (1 in 4) random keys `{prefix}00000..` of `tenants`
/// until stopped. Writers with different prefixes touch disjoint keys, so their ledgers merge.
struct Writer {
    stop: Rc<Cell<bool>>,
    task: glommio::task::JoinHandle<Ledger>,
}

impl Writer {
    fn start(
        addr: SocketAddr,
        tenants: &[&str],
        prefix: &'static str,
        keys: usize,
        ledger: Ledger,
    ) -> Writer {
        let stop = Rc::new(Cell::new(false));
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let s = stop.clone();
        let task = glommio::spawn_local(async move {
            let ch = channel(addr).await;
            let mut ledger = ledger;
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ prefix.bytes().map(u64::from).sum::<u64>();
            let mut n = 0u64;
            while !s.get() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let tenant = &tenants[(seed % tenants.len() as u64) as usize];
                let key = format!("{prefix}{:05}", (seed >> 8) % keys as u64);
                n += 1;
                if (seed >> 40).is_multiple_of(4) {
                    ledger.delete(&ch, tenant, &key).await;
                } else {
                    ledger
                        .write(&ch, tenant, &key, format!("v{n}-{tenant}-{key}").into_bytes())
                        .await;
                }
            }
            ledger
        })
        .detach();
        Writer { stop, task }
    }

    async fn stop(self) -> Ledger {
        self.stop.set(true);
        self.task.await.expect("writer task")
    }
}

impl Ledger {
    /// Adds the keys of `other` (a writer on disjoint keys).
    fn merge(&mut self, other: Ledger) {
        for (k, e) in other.keys {
            assert!(!self.keys.contains_key(&k), "{k:?} is in both ledgers");
            self.keys.insert(k, e);
        }
        self.acked += other.acked;
        self.failed += other.failed;
    }
}

/// Writes `keys` keys to each tenant, recording them.
async fn preload(ch: &Channel, tenants: &[&str], keys: usize) -> Ledger {
    let mut ledger = Ledger::default();
    for t in tenants {
        for i in 0..keys {
            let key = format!("k{i:05}");
            ledger.write(ch, t, &key, format!("pre-{t}-{key}").into_bytes()).await;
        }
    }
    assert_eq!(ledger.failed, 0, "preload failed");
    ledger
}

/// Every entry of every node: (tenant, key) -> nodes holding it.
async fn holders(
    nodes: &[(String, SocketAddr)],
) -> Result<HashMap<(String, String), Vec<String>>, String> {
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (id, addr) in nodes {
        let ch =
            Channel::connect(*addr, &Default::default()).await.map_err(|e| format!("{id}: {e}"))?;
        let mut cursor = bytes::Bytes::new();
        loop {
            let page: pb::ScanRangeResponse = ch
                .unary(
                    &storage_path("ScanRange"),
                    &pb::ScanRangeRequest {
                        start_token: 0,
                        end_token: 0,
                        cursor: cursor.clone(),
                        limit: 1000,
                        include_tombstones: true,
                    },
                    Some(CALL_TIMEOUT),
                )
                .await
                .map_err(|e| format!("ScanRange on {id}: {e}"))?;
            for e in page.entries {
                out.entry((e.tenant_id, e.key)).or_default().push(id.clone());
            }
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
    }
    Ok(out)
}

/// The ledger check of the module doc, against the storage nodes `nodes` (the final members).
async fn check_ledger(
    ch: &Channel,
    nodes: &[(String, SocketAddr)],
    ledger: &Ledger,
    rf: &HashMap<&str, usize>,
) {
    let mut checked = 0;
    for ((tenant, key), want) in &ledger.keys {
        let r: Result<api::ReadKeyValueResponse, _> = call(
            ch,
            "ReadKeyValue",
            &api::ReadKeyValueRequest {
                tenant_id: tenant.clone(),
                key: key.clone(),
                consistency: QUORUM,
            },
        )
        .await;
        match (want, r) {
            (Expect::Value(v), Ok(got)) => assert_eq!(&got.value[..], &v[..], "{tenant}/{key}"),
            (Expect::Value(_), Err(e)) => panic!("{tenant}/{key}: acknowledged write lost: {e}"),
            (Expect::Deleted, Ok(got)) => {
                panic!(
                    "{tenant}/{key}: deleted key came back: {:?}",
                    String::from_utf8_lossy(&got.value)
                )
            }
            (Expect::Deleted, Err(e)) => {
                assert_eq!(e.code, Code::NOT_FOUND, "{tenant}/{key}: {e}")
            }
            (Expect::Unknown, _) => continue,
        }
        checked += 1;
    }
    assert!(checked > 0, "nothing was checked");
    // Copies: exactly rf per key, once hints have been replayed.
    eventually(
        "every key on exactly its replication factor of nodes",
        Duration::from_secs(30),
        || async {
            let held = holders(nodes).await?;
            let mut wrong = Vec::new();
            for ((tenant, key), want) in &ledger.keys {
                let n = held.get(&(tenant.clone(), key.clone())).map_or(0, Vec::len);
                let rf = rf[tenant.as_str()];
                let ok = match want {
                    Expect::Value(_) | Expect::Deleted => n == rf,
                    Expect::Unknown => n <= rf,
                };
                if !ok {
                    wrong.push(format!(
                        "{tenant}/{key} ({want:?}) on {n} nodes, rf {rf}: {:?}",
                        held.get(&(tenant.clone(), key.clone()))
                    ));
                }
            }
            for ((tenant, key), on) in &held {
                if on.len() > rf.get(tenant.as_str()).copied().unwrap_or(0) {
                    wrong.push(format!("{tenant}/{key} on {on:?}"));
                }
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                let n = wrong.len();
                wrong.truncate(5);
                Err(format!("{n} keys wrong, e.g. {wrong:#?}"))
            }
        },
    )
    .await;
}

// ------------------------------------------------------------------------------------------------
// 1. Both coordinators serve writes while a node joins.
// ------------------------------------------------------------------------------------------------

#[test]
fn two_coordinators_serve_writes_during_a_node_addition() {
    let Some(url) = postgres_url("two_coordinators_serve_writes_during_a_node_addition") else {
        return;
    };
    let _serial = serial();
    let mut cluster = PgCluster::start("pgadd", &url, "");
    let s4 = cluster.start_node("pgadd-s4");
    let (a, b) = (cluster.a.addr, cluster.b.addr);
    let members = cluster.members();
    run_local(move || async move {
        let (ca, cb) = (channel(a).await, channel(b).await);
        let tenants = ["two", "three"];
        for (t, rf) in tenants.iter().zip([2, 3]) {
            create_tenant(&ca, t, rf).await;
        }
        let preloaded = preload(&ca, &tenants, 300).await;
        let writer_a = Writer::start(a, &tenants, "k", 400, preloaded);
        let writer_b = Writer::start(b, &tenants, "b", 400, Ledger::default());
        glommio::timer::sleep(Duration::from_millis(500)).await;
        let id = add_node(&ca, "pgadd-s4", s4).await.expect("add s4 through A");
        let done = wait_completed(&ca, &id).await;
        assert_eq!(done.migration_type, "NODE_ADDITION");
        assert!(done.progress.as_ref().unwrap().keys_migrated > 0, "{done:?}");
        // B reads the same record.
        let seen = wait_completed(&cb, &id).await;
        assert_eq!(seen.migration_id, id);
        let mut ledger = writer_a.stop().await;
        let ledger_b = writer_b.stop().await;
        eprintln!(
            "writer A: {} acked, {} failed; writer B: {} acked, {} failed",
            ledger.acked, ledger.failed, ledger_b.acked, ledger_b.failed
        );
        assert!(ledger.acked > 600 + 20, "writer A hardly ran: {}", ledger.acked);
        assert!(ledger_b.acked > 20, "writer B hardly ran: {}", ledger_b.acked);
        ledger.merge(ledger_b);
        // B learned the new member from the shared store.
        let cbr = &cb;
        eventually("B lists pgadd-s4 ACTIVE", Duration::from_secs(20), || async move {
            let nodes = list_nodes(cbr).await?;
            let active = nodes.iter().filter(|n| n.status == "ACTIVE").count();
            let s4 = nodes.iter().find(|n| n.node_id == "pgadd-s4");
            match s4 {
                Some(n) if n.status == "ACTIVE" && nodes.len() == 4 && active == 4 => Ok(()),
                _ => Err(format!("{nodes:?}")),
            }
        })
        .await;
        let rf: HashMap<&str, usize> = [("two", 2), ("three", 3)].into();
        check_ledger(&ca, &members, &ledger, &rf).await;
        check_ledger(&cb, &members, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 2. A stopped coordinator: the migration goes on without it, and it fences itself.
// ------------------------------------------------------------------------------------------------

#[test]
fn a_stopped_coordinator_fences_itself_and_the_migration_goes_on() {
    let Some(url) = postgres_url("a_stopped_coordinator_fences_itself_and_the_migration_goes_on")
    else {
        return;
    };
    let _serial = serial();
    let mut cluster = PgCluster::start("pgstop", &url, SLOW);
    let s4 = cluster.start_node("pgstop-s4");
    let (a, b) = (cluster.a.addr, cluster.b.addr);
    let b_pid = cluster.b.pid();
    let members = cluster.members();
    run_local(move || async move {
        let (ca, cb) = (channel(a).await, channel(b).await);
        let tenants = ["two", "three"];
        for (t, rf) in tenants.iter().zip([2, 3]) {
            create_tenant(&ca, t, rf).await;
        }
        let mut ledger = preload(&ca, &tenants, 600).await;
        // B serves before it is stopped (and keeps its connection: no new handshake later).
        ledger.write(&cb, "three", "p-before", b"before".to_vec()).await;
        assert_eq!(ledger.failed, 0, "a write through B before the stop failed");
        let writer = Writer::start(a, &tenants, "k", 800, ledger);
        let id = add_node(&ca, "pgstop-s4", s4).await.expect("add s4 through A");
        wait_stage(&ca, &id, &["STREAMING"], 50).await;
        let mut stopped = Stopped::stop(b_pid);
        let stopped_at = Instant::now();
        eprintln!("B stopped in {:?}", status(&ca, &id).await.map(|s| s.stage));
        let done = wait_completed(&ca, &id).await;
        eprintln!("the migration completed {:?} after B was stopped", stopped_at.elapsed());
        assert!(done.progress.as_ref().unwrap().keys_migrated > 0, "{done:?}");
        let mut ledger = writer.stop().await;
        eprintln!("writer A: {} acked, {} failed", ledger.acked, ledger.failed);

        // Resumed, B writes by the current placement or refuses: never by the one it had.
        stopped.resume();
        let resumed = Instant::now();
        let mut refused = Vec::new();
        let mut i = 0;
        loop {
            let key = format!("p{i:05}");
            i += 1;
            let r: Result<api::WriteKeyValueResponse, _> = call(
                &cb,
                "WriteKeyValue",
                &api::WriteKeyValueRequest {
                    tenant_id: "three".into(),
                    key: key.clone(),
                    value: format!("after-{key}").into_bytes().into(),
                    consistency: QUORUM,
                    ..Default::default()
                },
            )
            .await;
            match r {
                Ok(_) => {
                    ledger.record("three", &key, Ok(Expect::Value(format!("after-{key}").into())));
                    break;
                }
                Err(e) => {
                    assert_eq!(e.code, Code::UNAVAILABLE, "write through resumed B: {e}");
                    assert_eq!(error_code(&e), "PLACEMENT_STALE", "write through resumed B: {e}");
                    refused.push(key.clone());
                    ledger.record("three", &key, Err(e));
                }
            }
            assert!(
                resumed.elapsed() < Duration::from_secs(10),
                "B still refuses writes {:?} after SIGCONT ({} refused)",
                resumed.elapsed(),
                refused.len()
            );
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "B refused {} writes with PLACEMENT_STALE, then served {:?} after SIGCONT",
            refused.len(),
            resumed.elapsed()
        );
        // Refused before it was sent anywhere: those keys were never written.
        for key in &refused {
            let r: Result<api::ReadKeyValueResponse, _> = call(
                &ca,
                "ReadKeyValue",
                &api::ReadKeyValueRequest {
                    tenant_id: "three".into(),
                    key: key.clone(),
                    consistency: QUORUM,
                },
            )
            .await;
            match r {
                Err(e) if e.code == Code::NOT_FOUND => {}
                other => panic!("three/{key}: refused with PLACEMENT_STALE, yet {other:?}"),
            }
        }
        // From now on B serves every write and delete.
        let failed_before = ledger.failed;
        for j in 0..200 {
            let tenant = tenants[j % 2];
            let key = format!("q{j:05}");
            ledger.write(&cb, tenant, &key, format!("q-{tenant}-{key}").into_bytes()).await;
            if j % 5 == 0 {
                ledger.delete(&cb, tenant, &key).await;
            }
            ledger.delete(&cb, tenant, &format!("k{j:05}")).await;
        }
        assert_eq!(ledger.failed, failed_before, "B failed writes after it served again");
        let nodes = list_nodes(&cb).await.expect("ListStorageNodes through B");
        assert!(
            nodes.iter().any(|n| n.node_id == "pgstop-s4" && n.status == "ACTIVE"),
            "{nodes:?}"
        );
        let rf: HashMap<&str, usize> = [("two", 2), ("three", 3)].into();
        check_ledger(&ca, &members, &ledger, &rf).await;
        check_ledger(&cb, &members, &ledger, &rf).await;
        drop(stopped);
    });
}
