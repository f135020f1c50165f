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

#[path = "support/ledger.rs"]
mod ledger;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use common::{
    channel, eventually, run_local, storage_path, CoordinatorOptions, CoordinatorProcess,
    StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    proto::{coordinator as api, storage as pb},
    rpc::{Channel, Code},
};
use tempfile::TempDir;

use ledger::*;

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
        let writer = Writer::start(addr, &tenants, "k", 400, ledger);
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
        let writer = Writer::start(addr, &tenants, "k", 400, ledger);
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
        let writer = Writer::start(addr, &["two", "three"], "k", 400, ledger);
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
        let writer = Writer::start(addr, &tenants, "k", 400, ledger);
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
        let writer = Writer::start(addr, &["t"], "k", 1000, ledger);
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
