//! The data-movement tests' shared client helpers and ledger (`tests/data_movement.rs`,
//! `tests/data_movement_pg.rs`): admin calls, waiting on a migration, a ledger of every
//! acknowledged write and delete, a concurrent writer, and the ledger check (every acknowledged
//! write reads back at QUORUM, every acknowledged delete reads NOT_FOUND, and every key is on
//! exactly its tenant's replication factor of storage nodes).
//!
//! Included by `#[path]` next to `mod common;`; each test binary uses part of it.
#![allow(dead_code)]

use std::{
    cell::Cell,
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use pairdb::{
    proto::{coordinator as api, storage as pb},
    rpc::{Channel, Code, Status},
};
use prost::Message;

use crate::common::{channel, coordinator_path, eventually, storage_path, CALL_TIMEOUT};

pub const QUORUM: i32 = api::Consistency::Quorum as i32;

/// Longest a migration may take in these tests (debug build, loaded 2-core machine: with two
/// writers through two coordinators, a node addition took 85 s there, most of it streaming).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

// ------------------------------------------------------------------------------------------------
// Calls.
// ------------------------------------------------------------------------------------------------

pub async fn call<Req: Message, Resp: Message + Default>(
    ch: &Channel,
    method: &str,
    req: &Req,
) -> Result<Resp, Status> {
    ch.unary(&coordinator_path(method), req, Some(CALL_TIMEOUT)).await
}

pub async fn list_nodes(ch: &Channel) -> Result<Vec<api::StorageNodeInfo>, String> {
    let r: api::ListStorageNodesResponse =
        call(ch, "ListStorageNodes", &api::ListStorageNodesRequest {})
            .await
            .map_err(|e| e.to_string())?;
    Ok(r.nodes)
}

pub async fn create_tenant(ch: &Channel, tenant: &str, rf: i32) {
    let _: api::CreateTenantResponse = call(
        ch,
        "CreateTenant",
        &api::CreateTenantRequest {
            tenant_id: tenant.into(),
            replication_factor: rf,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("CreateTenant {tenant}: {e}"));
}

pub async fn add_node(ch: &Channel, id: &str, addr: SocketAddr) -> Result<String, Status> {
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

pub async fn remove_node(ch: &Channel, id: &str, force: bool) -> Result<String, Status> {
    let r: api::RemoveStorageNodeResponse =
        call(ch, "RemoveStorageNode", &api::RemoveStorageNodeRequest { node_id: id.into(), force })
            .await?;
    Ok(r.migration_id)
}

pub async fn set_rf(ch: &Channel, tenant: &str, rf: i32) -> Result<String, Status> {
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

/// `pairdb_hints_pending` of `node` on the coordinator whose admin port is `admin` (0 when the
/// series is absent).
pub fn hints_for(admin: SocketAddr, node: &str) -> u64 {
    let (_, text) =
        pairdb::admin::get(admin, "/metrics", Duration::from_secs(5)).expect("/metrics");
    let series = format!("pairdb_hints_pending{{node=\"{node}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

pub async fn status(ch: &Channel, id: &str) -> Result<api::GetMigrationStatusResponse, Status> {
    call(ch, "GetMigrationStatus", &api::GetMigrationStatusRequest { migration_id: id.into() })
        .await
}

pub fn error_code(status: &Status) -> String {
    status.error_code.clone().map(|c| c.to_string()).unwrap_or_default()
}

/// Polls a migration until it ends, checking the progress rules on every answer: keys migrated
/// and the percentage never go down, and the percentage is 100 only once COMPLETED. Returns the
/// final status.
pub async fn wait_done(ch: &Channel, id: &str) -> api::GetMigrationStatusResponse {
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

pub async fn wait_completed(ch: &Channel, id: &str) -> api::GetMigrationStatusResponse {
    let s = wait_done(ch, id).await;
    assert_eq!(s.status, "COMPLETED", "{s:?}");
    assert_eq!(s.stage, "COMPLETED", "{s:?}");
    assert_eq!(s.progress.as_ref().map(|p| p.percentage), Some(100.0), "{s:?}");
    assert!(s.completed_at >= s.started_at && s.started_at > 0, "{s:?}");
    s
}

/// Waits until the migration is in `stage` (or later in `stages`).
pub async fn wait_stage(ch: &Channel, id: &str, stages: &[&str], min_keys: i64) {
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
pub enum Expect {
    Value(Vec<u8>),
    Deleted,
    /// The last operation failed: it may or may not have been applied.
    Unknown,
}

#[derive(Default)]
pub struct Ledger {
    pub keys: BTreeMap<(String, String), Expect>,
    pub acked: u64,
    pub failed: u64,
}

impl Ledger {
    pub async fn write(&mut self, ch: &Channel, tenant: &str, key: &str, value: Vec<u8>) {
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

    pub async fn delete(&mut self, ch: &Channel, tenant: &str, key: &str) {
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

    pub fn record(&mut self, tenant: &str, key: &str, r: Result<Expect, Status>) {
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
pub struct Writer {
    stop: Rc<Cell<bool>>,
    task: glommio::task::JoinHandle<Ledger>,
}

impl Writer {
    pub fn start(
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

    pub async fn stop(self) -> Ledger {
        self.stop.set(true);
        self.task.await.expect("writer task")
    }
}

impl Ledger {
    /// Adds the keys of `other` (a writer on disjoint keys).
    pub fn merge(&mut self, other: Ledger) {
        for (k, e) in other.keys {
            assert!(!self.keys.contains_key(&k), "{k:?} is in both ledgers");
            self.keys.insert(k, e);
        }
        self.acked += other.acked;
        self.failed += other.failed;
    }
}

/// Writes `keys` keys to each tenant, recording them.
pub async fn preload(ch: &Channel, tenants: &[&str], keys: usize) -> Ledger {
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
pub async fn holders(
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
pub async fn check_ledger(
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
