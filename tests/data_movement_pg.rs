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

#[path = "support/ledger.rs"]
mod ledger;

#[path = "support/backends.rs"]
mod backends;

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use backends::{postgres_url, PgSchema};
use common::{
    channel, eventually, run_local, CoordinatorOptions, CoordinatorProcess, StorageProcess,
};
use pairdb::{proto::coordinator as api, rpc::Code};
use tempfile::TempDir;

use ledger::*;

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
