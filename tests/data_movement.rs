//! Data movement on real processes: storage nodes and coordinators as separate `pairdb`
//! processes, with a client writing and deleting while nodes join and leave and replication
//! factors change, and faults (SIGKILL of the coordinator, of a target, of a source; a wiped
//! data directory).
//!
//! Every test ends with the same ledger check ([`check_ledger`]):
//! - every acknowledged write reads back at QUORUM with its last value, and every acknowledged
//!   delete reads NOT_FOUND (keys whose last operation failed are not asserted: either outcome
//!   is allowed);
//! - every key (live or tombstone) is held by exactly its tenant's replication factor of
//!   storage nodes, read directly from each node with `ScanRange` over the whole ring: no copy
//!   is missing and none is left behind on a node that lost the key.

mod common;

use std::{
    cell::Cell,
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    rc::Rc,
    time::{Duration, Instant},
};

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

/// Longest a migration may take in these tests (debug build, loaded 2-core machine).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(150);

/// The coordinator settings of these tests: fast health checks and hint replay.
/// A generous replica timeout: many processes share two cores in CI.
const FAST: &str =
    "hint_replay_interval_ms: 100\nhealth_check_interval_ms: 500\nreplica_timeout_ms: 2000\n";

// ------------------------------------------------------------------------------------------------
// The cluster.
// ------------------------------------------------------------------------------------------------

struct Cluster {
    tmp: TempDir,
    name: String,
    /// Every storage node ever started, by id, with its address; `None` while stopped.
    storage: BTreeMap<String, (SocketAddr, Option<StorageProcess>)>,
    coordinator: CoordinatorProcess,
    config_yaml: String,
}

impl Cluster {
    fn start(name: &str, nodes: usize, extra_yaml: &str) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pairdb-move-{name}-"))
            .tempdir()
            .expect("tempdir");
        let mut storage = BTreeMap::new();
        for i in 1..=nodes {
            let id = format!("{name}-s{i}");
            let node = StorageProcess::start(&tmp.path().join(&id), &id);
            storage.insert(id, (node.addr, Some(node)));
        }
        let config_yaml = format!("{FAST}{extra_yaml}");
        let coordinator = start_coordinator(tmp.path(), name, &storage, &config_yaml);
        let cluster = Cluster { tmp, name: name.into(), storage, coordinator, config_yaml };
        cluster.wait_listed(nodes);
        cluster
    }

    fn addr(&self) -> SocketAddr {
        self.coordinator.addr
    }

    /// Starts a storage node the coordinator does not know yet.
    fn start_node(&mut self, id: &str) -> SocketAddr {
        let node = StorageProcess::start(&self.tmp.path().join(id), id);
        let addr = node.addr;
        self.storage.insert(id.into(), (addr, Some(node)));
        addr
    }

    fn kill_node(&mut self, id: &str) {
        let node = self.storage.get_mut(id).and_then(|n| n.1.take()).expect("running");
        node.kill9();
    }

    /// Restarts a stopped node on its port; `wipe` deletes its data directory first.
    fn restart_node(&mut self, id: &str, wipe: bool) {
        let dir = self.tmp.path().join(id);
        if wipe {
            std::fs::remove_dir_all(dir.join("data")).expect("wipe the data dir");
        }
        let entry = self.storage.get_mut(id).expect("known node");
        assert!(entry.1.is_none(), "{id} is running");
        let node = StorageProcess::start_on_port(&dir, id, 1, entry.0.port());
        entry.1 = Some(node);
    }

    fn kill_coordinator(&mut self) {
        self.coordinator.kill9();
    }

    /// Starts the coordinator again on its metadata (a new port).
    fn restart_coordinator(&mut self) {
        let initial: BTreeMap<String, (SocketAddr, Option<StorageProcess>)> = BTreeMap::new();
        // The restarted coordinator finds its nodes in its metadata store.
        self.coordinator =
            start_coordinator(self.tmp.path(), &self.name, &initial, &self.config_yaml);
    }

    /// Addresses of the storage nodes running now.
    fn running(&self) -> Vec<(String, SocketAddr)> {
        self.storage
            .iter()
            .filter(|(_, (_, p))| p.is_some())
            .map(|(id, (addr, _))| (id.clone(), *addr))
            .collect()
    }

    /// Waits until the coordinator lists `count` nodes, all ACTIVE (the first health check may
    /// still be running when it prints its ready line).
    fn wait_listed(&self, count: usize) {
        let addr = self.addr();
        run_local(move || async move {
            let ch = channel(addr).await;
            let ch = &ch;
            eventually("every node listed ACTIVE", Duration::from_secs(20), move || async move {
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coordinator log:\n{}", self.coordinator.log_tail());
            for (id, (_, p)) in &self.storage {
                if let Some(p) = p {
                    eprintln!("--- {id} log:\n{}", p.log_tail());
                }
            }
        }
    }
}

fn start_coordinator(
    dir: &Path,
    name: &str,
    storage: &BTreeMap<String, (SocketAddr, Option<StorageProcess>)>,
    config_yaml: &str,
) -> CoordinatorProcess {
    CoordinatorProcess::start(
        &dir.join("coordinator"),
        &CoordinatorOptions {
            node_id: &format!("{name}-coord"),
            cores: 1,
            storage_nodes: storage.iter().map(|(id, (addr, _))| (id.clone(), *addr)).collect(),
            config_yaml,
        },
    )
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

async fn remove_node(ch: &Channel, id: &str, force: bool) -> Result<String, Status> {
    let r: api::RemoveStorageNodeResponse =
        call(ch, "RemoveStorageNode", &api::RemoveStorageNodeRequest { node_id: id.into(), force })
            .await?;
    Ok(r.migration_id)
}

async fn set_rf(ch: &Channel, tenant: &str, rf: i32) -> Result<String, Status> {
    let r: api::UpdateReplicationFactorResponse = call(
        ch,
        "UpdateReplicationFactor",
        &api::UpdateReplicationFactorRequest {
            tenant_id: tenant.into(),
            new_replication_factor: rf,
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
    loop {
        let s = status(ch, id).await.unwrap_or_else(|e| panic!("GetMigrationStatus {id}: {e}"));
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

/// A client writing (3 in 4) and deleting (1 in 4) random keys of `tenants` until stopped.
struct Writer {
    stop: Rc<Cell<bool>>,
    task: glommio::task::JoinHandle<Ledger>,
}

impl Writer {
    fn start(addr: SocketAddr, tenants: &[&str], keys: usize, ledger: Ledger) -> Writer {
        let stop = Rc::new(Cell::new(false));
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let s = stop.clone();
        let task = glommio::spawn_local(async move {
            let ch = channel(addr).await;
            let mut ledger = ledger;
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut n = 0u64;
            while !s.get() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let tenant = &tenants[(seed % tenants.len() as u64) as usize];
                let key = format!("k{:05}", (seed >> 8) % keys as u64);
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

/// `pairdb_hints_pending` of `node` on the coordinator whose admin port is `admin` (0 when the
/// series is absent).
fn hints_for(admin: SocketAddr, node: &str) -> u64 {
    let (_, text) =
        pairdb::admin::get(admin, "/metrics", Duration::from_secs(5)).expect("/metrics");
    let series = format!("pairdb_hints_pending{{node=\"{node}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
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
        let req = api::ReadKeyValueRequest {
            tenant_id: tenant.clone(),
            key: key.clone(),
            consistency: QUORUM,
        };
        // A replica too slow to answer on a loaded machine is not a lost write: ask again.
        let mut r: Result<api::ReadKeyValueResponse, Status> = call(ch, "ReadKeyValue", &req).await;
        for _ in 0..5 {
            match &r {
                Err(e) if e.code == Code::UNAVAILABLE => {
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                    r = call(ch, "ReadKeyValue", &req).await;
                }
                _ => break,
            }
        }
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
// 1. Adding two nodes under writes and deletes.
// ------------------------------------------------------------------------------------------------

#[test]
fn adding_two_nodes_under_writes_and_deletes_moves_every_key() {
    let mut cluster = Cluster::start("add", 3, "");
    let s4 = cluster.start_node("add-s4");
    let s5 = cluster.start_node("add-s5");
    let addr = cluster.addr();
    let members = cluster.running();
    run_local(move || async move {
        let ch = channel(addr).await;
        let tenants = ["one", "two", "three"];
        for (t, rf) in tenants.iter().zip([1, 2, 3]) {
            create_tenant(&ch, t, rf).await;
        }
        let ledger = preload(&ch, &tenants, 300).await;
        let writer = Writer::start(addr, &tenants, 400, ledger);
        let first = add_node(&ch, "add-s4", s4).await.expect("add s4");
        let done = wait_completed(&ch, &first).await;
        assert!(done.progress.as_ref().unwrap().keys_migrated > 0, "{done:?}");
        assert_eq!(done.migration_type, "NODE_ADDITION");
        let second = add_node(&ch, "add-s5", s5).await.expect("add s5");
        assert_ne!(first, second);
        wait_completed(&ch, &second).await;
        let ledger = writer.stop().await;
        assert!(ledger.acked > 100, "the writer hardly ran: {}", ledger.acked);
        let nodes = list_nodes(&ch).await.unwrap();
        assert_eq!(nodes.len(), 5, "{nodes:?}");
        assert!(nodes.iter().all(|n| n.status == "ACTIVE"), "{nodes:?}");
        let rf: HashMap<&str, usize> = [("one", 1), ("two", 2), ("three", 3)].into();
        check_ledger(&ch, &members, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 2. Graceful removal under load.
// ------------------------------------------------------------------------------------------------

#[test]
fn graceful_removal_under_load_drains_the_node() {
    let mut cluster = Cluster::start("drain", 4, "");
    let addr = cluster.addr();
    let gone: Vec<(String, SocketAddr)> =
        cluster.running().into_iter().filter(|(id, _)| id == "drain-s4").collect();
    let stays: Vec<(String, SocketAddr)> =
        cluster.running().into_iter().filter(|(id, _)| id != "drain-s4").collect();
    let ledger = run_local(move || async move {
        let ch = channel(addr).await;
        let tenants = ["two", "three"];
        for (t, rf) in tenants.iter().zip([2, 3]) {
            create_tenant(&ch, t, rf).await;
        }
        let ledger = preload(&ch, &tenants, 300).await;
        let writer = Writer::start(addr, &tenants, 400, ledger);
        let id = remove_node(&ch, "drain-s4", false).await.expect("remove s4");
        let done = wait_completed(&ch, &id).await;
        assert_eq!(done.migration_type, "NODE_REMOVAL");
        let ledger = writer.stop().await;
        let nodes = list_nodes(&ch).await.unwrap();
        assert_eq!(nodes.len(), 3, "{nodes:?}");
        // Cleanup evicted everything the removed node held.
        let left = holders(&gone).await.unwrap();
        assert!(left.is_empty(), "the removed node still holds {} keys", left.len());
        ledger
    });
    // Stopped for good: the ledger holds on the remaining three.
    cluster.kill_node("drain-s4");
    run_local(move || async move {
        let ch = channel(addr).await;
        let rf: HashMap<&str, usize> = [("two", 2), ("three", 3)].into();
        check_ledger(&ch, &stays, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 3. Forced removal of a SIGKILLed node.
// ------------------------------------------------------------------------------------------------

#[test]
fn forced_removal_of_a_killed_node_re_replicates_from_the_survivors() {
    let mut cluster = Cluster::start("force", 4, "");
    let addr = cluster.addr();
    let ledger = run_local(move || async move {
        let ch = channel(addr).await;
        let tenants = ["two", "three"];
        for (t, rf) in tenants.iter().zip([2, 3]) {
            create_tenant(&ch, t, rf).await;
        }
        preload(&ch, &tenants, 300).await
    });
    cluster.kill_node("force-s4");
    let stays = cluster.running();
    let admin = cluster.coordinator.admin;
    run_local(move || async move {
        let ch = channel(addr).await;
        let chr = &ch;
        eventually("s4 is seen down", Duration::from_secs(20), || async move {
            let nodes = list_nodes(chr).await?;
            match nodes.iter().find(|n| n.node_id == "force-s4") {
                Some(n) if n.status == "DOWN" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        // A graceful removal needs the node: refused.
        let refused =
            remove_node(&ch, "force-s4", false).await.expect_err("graceful removal of a dead node");
        assert_eq!(refused.code, Code::FAILED_PRECONDITION, "{refused}");
        assert_eq!(error_code(&refused), "NODE_IN_USE");
        let writer = Writer::start(addr, &["two", "three"], 400, ledger);
        // Writes whose replicas include the dead node leave hints for it...
        eventually("hints pile up for the dead node", Duration::from_secs(20), || async move {
            match hints_for(admin, "force-s4") {
                n if n > 0 => Ok(()),
                n => Err(format!("{n} hints")),
            }
        })
        .await;
        let id = remove_node(&ch, "force-s4", true).await.expect("forced removal");
        let done = wait_completed(&ch, &id).await;
        // ... and once it left the ring, they go to the keys' current owners instead.
        eventually(
            "hints of the removed node redirected",
            Duration::from_secs(30),
            || async move {
                match hints_for(admin, "force-s4") {
                    0 => Ok(()),
                    n => Err(format!("{n} hints left")),
                }
            },
        )
        .await;
        // At rf 2, ranges that s4 held had one survivor: fewer than a quorum of two.
        assert!(done.error_message.contains("fewer than a quorum"), "{done:?}");
        let ledger = writer.stop().await;
        assert_eq!(list_nodes(&ch).await.unwrap().len(), 3);
        let rf: HashMap<&str, usize> = [("two", 2), ("three", 3)].into();
        check_ledger(&ch, &stays, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 4. Replication factor changes, up and down, under load.
// ------------------------------------------------------------------------------------------------

#[test]
fn replication_factor_up_and_down_under_load() {
    let cluster = Cluster::start("rf", 4, "");
    let addr = cluster.addr();
    let members = cluster.running();
    run_local(move || async move {
        let ch = channel(addr).await;
        let tenants = ["up", "down"];
        for (t, rf) in tenants.iter().zip([2, 3]) {
            create_tenant(&ch, t, rf).await;
        }
        let ledger = preload(&ch, &tenants, 300).await;
        let writer = Writer::start(addr, &tenants, 400, ledger);
        let up = set_rf(&ch, "up", 3).await.expect("2 -> 3");
        let done = wait_completed(&ch, &up).await;
        assert_eq!(done.migration_type, "REPLICATION_CHANGE");
        let down = set_rf(&ch, "down", 1).await.expect("3 -> 1");
        wait_completed(&ch, &down).await;
        let ledger = writer.stop().await;
        for (t, want) in [("up", 3), ("down", 1)] {
            let got: api::GetTenantResponse =
                call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: t.into() })
                    .await
                    .expect("GetTenant");
            assert_eq!(got.replication_factor, want, "{t}");
        }
        let rf: HashMap<&str, usize> = [("up", 3), ("down", 1)].into();
        check_ledger(&ch, &members, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 5. SIGKILL of the coordinator, then of the target, in the middle of a migration.
// ------------------------------------------------------------------------------------------------

/// Slow enough that a test can act in the middle of streaming.
const SLOW: &str = "migration: { max_bytes_per_sec: 40000, page_entries: 50 }\n";

#[test]
fn a_killed_coordinator_or_target_resumes_and_completes() {
    let mut cluster = Cluster::start("crash", 3, SLOW);
    let s4 = cluster.start_node("crash-s4");
    let addr = cluster.addr();
    let (ledger, id) = run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, "t", 3).await;
        let ledger = preload(&ch, &["t"], 1200).await;
        let id = add_node(&ch, "crash-s4", s4).await.expect("add s4");
        wait_stage(&ch, &id, &["STREAMING"], 50).await;
        (ledger, id)
    });
    cluster.kill_coordinator();
    cluster.restart_coordinator();
    let addr = cluster.addr();
    let s5 = cluster.start_node("crash-s5");
    let ledger = run_local(move || async move {
        let ch = channel(addr).await;
        let done = wait_completed(&ch, &id).await;
        assert!(done.progress.unwrap().keys_migrated > 0);
        let id = add_node(&ch, "crash-s5", s5).await.expect("add s5");
        wait_stage(&ch, &id, &["STREAMING"], 50).await;
        (ledger, id)
    });
    let (ledger, id) = ledger;
    cluster.kill_node("crash-s5");
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart_node("crash-s5", false);
    let members = cluster.running();
    run_local(move || async move {
        let ch = channel(addr).await;
        wait_completed(&ch, &id).await;
        let rf: HashMap<&str, usize> = [("t", 3)].into();
        check_ledger(&ch, &members, &ledger, &rf).await;
    });
}

#[test]
fn a_target_wiped_mid_migration_is_streamed_again_from_scratch() {
    let mut cluster =
        Cluster::start("rewipe", 3, "migration: { max_bytes_per_sec: 8000, page_entries: 20 }\n");
    let s4 = cluster.start_node("rewipe-s4");
    let addr = cluster.addr();
    let (ledger, id) = run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, "t", 3).await;
        let ledger = preload(&ch, &["t"], 1500).await;
        let id = add_node(&ch, "rewipe-s4", s4).await.expect("add s4");
        wait_stage(&ch, &id, &["STREAMING"], 100).await;
        (ledger, id)
    });
    // It loses everything it was sent, and comes back under the same id and address.
    cluster.kill_node("rewipe-s4");
    cluster.restart_node("rewipe-s4", true);
    let members = cluster.running();
    let admin = cluster.coordinator.admin;
    run_local(move || async move {
        let ch = channel(addr).await;
        wait_completed(&ch, &id).await;
        // Right at COMPLETED (not later, through anti-entropy): the migration itself sent the
        // wiped node everything again.
        let held = holders(&members).await.unwrap();
        let short: Vec<_> =
            ledger.keys.keys().filter(|k| held.get(*k).map_or(0, Vec::len) != 3).collect();
        assert!(
            short.is_empty(),
            "{} keys not on 3 nodes at COMPLETED, e.g. {:?}",
            short.len(),
            short.first()
        );
        let (_, text) = pairdb::admin::get(admin, "/metrics", Duration::from_secs(5)).unwrap();
        assert!(text.contains("pairdb_migration_keys_streamed_total"), "{text}");
        let rf: HashMap<&str, usize> = [("t", 3)].into();
        check_ledger(&ch, &members, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 6. One change at a time; cancel.
// ------------------------------------------------------------------------------------------------

#[test]
fn a_second_change_is_refused_and_cancel_restores_the_old_placement() {
    let mut cluster = Cluster::start("cancel", 3, SLOW);
    let s4 = cluster.start_node("cancel-s4");
    let s5 = cluster.start_node("cancel-s5");
    let addr = cluster.addr();
    let members: Vec<(String, SocketAddr)> =
        cluster.running().into_iter().filter(|(id, _)| id != "cancel-s5").collect();
    let old: Vec<(String, SocketAddr)> =
        members.iter().filter(|(id, _)| id != "cancel-s4").cloned().collect();
    run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, "t", 3).await;
        let ledger = preload(&ch, &["t"], 1000).await;
        let writer = Writer::start(addr, &["t"], 1000, ledger);
        let id = add_node(&ch, "cancel-s4", s4).await.expect("add s4");
        // The same request again answers the running migration.
        assert_eq!(add_node(&ch, "cancel-s4", s4).await.expect("repeat"), id);
        wait_stage(&ch, &id, &["STREAMING"], 20).await;
        for refused in [
            add_node(&ch, "cancel-s5", s5).await,
            remove_node(&ch, "cancel-s1", false).await,
            set_rf(&ch, "t", 2).await,
        ] {
            let e = refused.expect_err("a second change while one runs");
            assert_eq!(e.code, Code::FAILED_PRECONDITION, "{e}");
            assert_eq!(error_code(&e), "MIGRATION_IN_PROGRESS", "{e}");
            assert!(e.message.contains(&id), "{e}");
        }
        let cancelled: api::CancelMigrationResponse =
            call(&ch, "CancelMigration", &api::CancelMigrationRequest { migration_id: id.clone() })
                .await
                .expect("CancelMigration");
        assert_eq!(cancelled.migration_id, id);
        let end = wait_done(&ch, &id).await;
        assert_eq!(end.status, "CANCELLED", "{end:?}");
        assert_eq!(end.stage, "CANCELLED", "{end:?}");
        let again = call::<_, api::CancelMigrationResponse>(
            &ch,
            "CancelMigration",
            &api::CancelMigrationRequest { migration_id: id.clone() },
        )
        .await
        .expect_err("cancel of an ended migration");
        assert_eq!(error_code(&again), "MIGRATION_NOT_CANCELLABLE", "{again}");
        let ledger = writer.stop().await;
        let nodes = list_nodes(&ch).await.unwrap();
        assert_eq!(nodes.len(), 3, "{nodes:?}");
        // The joining node gave back everything it got.
        let s4_only: Vec<(String, SocketAddr)> =
            members.iter().filter(|(id, _)| id == "cancel-s4").cloned().collect();
        let left = holders(&s4_only).await.unwrap();
        assert!(left.is_empty(), "the cancelled node still holds {} keys", left.len());
        let listed: api::ListMigrationsResponse =
            call(&ch, "ListMigrations", &api::ListMigrationsRequest { limit: 5 }).await.unwrap();
        assert_eq!(listed.migrations.first().map(|m| m.migration_id.clone()), Some(id));
        let rf: HashMap<&str, usize> = [("t", 3)].into();
        check_ledger(&ch, &old, &ledger, &rf).await;
    });
}

// ------------------------------------------------------------------------------------------------
// 8. Anti-entropy: a wiped replica is refilled without reads.
// ------------------------------------------------------------------------------------------------

#[test]
fn a_wiped_node_is_refilled_without_any_read() {
    let mut cluster = Cluster::start("wipe", 3, "");
    let addr = cluster.addr();
    let ledger = run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, "three", 3).await;
        create_tenant(&ch, "two", 2).await;
        let mut ledger = preload(&ch, &["three", "two"], 400).await;
        for i in 0..50 {
            ledger.delete(&ch, "three", &format!("k{i:05}")).await;
        }
        ledger
    });
    cluster.kill_node("wipe-s1");
    cluster.restart_node("wipe-s1", true);
    let members = cluster.running();
    let s1: Vec<(String, SocketAddr)> =
        members.iter().filter(|(id, _)| id == "wipe-s1").cloned().collect();
    run_local(move || async move {
        // No read: the node must come back full on its own. At rf 3 it holds every key.
        let (s1, ledger) = (&s1, &ledger);
        eventually(
            "the wiped node holds every key again",
            Duration::from_secs(60),
            || async move {
                let held = holders(s1).await?;
                let want = ledger.keys.keys().filter(|(t, _)| t == "three").count();
                let got = held.keys().filter(|(t, _)| t == "three").count();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got} of {want} keys"))
                }
            },
        )
        .await;
        let ch = channel(addr).await;
        let rf: HashMap<&str, usize> = [("three", 3), ("two", 2)].into();
        check_ledger(&ch, &members, ledger, &rf).await;
    });
}

#[test]
fn replicas_that_silently_diverged_are_repaired_by_digest_anti_entropy_without_any_read() {
    let cluster = Cluster::start(
        "digest",
        3,
        "migration: { anti_entropy_digest_interval_secs: 1, anti_entropy_range_pause_ms: 1 }\n",
    );
    let addr = cluster.addr();
    let members = cluster.running();
    let s2: Vec<(String, SocketAddr)> =
        members.iter().filter(|(id, _)| id == "digest-s2").cloned().collect();
    run_local(move || async move {
        let ch = channel(addr).await;
        create_tenant(&ch, "t", 3).await;
        let mut ledger = preload(&ch, &["t"], 400).await;
        for i in 0..40 {
            ledger.delete(&ch, "t", &format!("k{i:05}")).await;
        }
        // A silent partial loss on one replica, behind every coordinator's back: 100 values and
        // 20 tombstones vanish from s2 (a lost hint, a restored backup, a bug would look alike).
        let lost: Vec<pb::EvictKey> = (20..140)
            .map(|i| pb::EvictKey { tenant_id: "t".into(), key: format!("k{i:05}") })
            .collect();
        let node = Channel::connect(s2[0].1, &Default::default()).await.expect("connect s2");
        let evicted: pb::EvictResponse = node
            .unary(&storage_path("Evict"), &pb::EvictRequest { keys: lost }, Some(CALL_TIMEOUT))
            .await
            .expect("Evict on s2");
        assert_eq!(evicted.evicted, 120);
        let (s2, ledger) = (&s2, &ledger);
        let want = ledger.keys.len();
        assert!(holders(s2).await.unwrap().len() < want, "the loss shows on s2");
        // No read is issued: only anti-entropy can bring the entries back.
        eventually(
            "s2 holds every key and tombstone again",
            Duration::from_secs(90),
            || async move {
                let got = holders(s2).await?.len();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got} of {want} keys"))
                }
            },
        )
        .await;
        let rf: HashMap<&str, usize> = [("t", 3)].into();
        check_ledger(&ch, &members, ledger, &rf).await;
    });
}
