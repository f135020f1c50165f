//! Several coordinators on the real backing services: PostgreSQL for metadata, Redis for
//! idempotency records, and three `pairdb storage` processes on loopback.
//!
//! - `tenants_and_nodes_made_through_one_coordinator_reach_the_other`: a tenant created through
//!   coordinator A is served by B at once; a replication factor changed and a node added through
//!   A reach B's cache and ring through LISTEN/NOTIFY, without a restart.
//! - `one_idempotent_write_sent_to_both_coordinators_applies_once` (needs Redis too): the same
//!   request with the same idempotency key, sent to both coordinators at the same moment, is
//!   written once; the other answer is the duplicate with the same version.
//! - `a_change_without_notification_arrives_with_the_periodic_reload`: a tenant changed in
//!   PostgreSQL behind the coordinators' backs (no NOTIFY) reaches both through the periodic
//!   reload, the backstop for a missed notification.
//! - `hints_for_a_down_node_are_kept_in_postgres_and_replayed`: writes made while a storage
//!   node is down leave hints in PostgreSQL, replayed to the node when it is back.
//!
//! The Redis store on its own (claims across two stores, its answer when Redis is unreachable)
//! is in `tests/idempotency_contract.rs`.
//!
//! B is started without any `--storage-node`: its ring comes from the shared store alone.
//!
//! These run where `PAIRDB_TEST_POSTGRES_URL` (and `PAIRDB_TEST_REDIS_URL`) are set, or under CI
//! (`CI=true`, with the servers at their usual local addresses), where a missing server fails the
//! run; elsewhere they print that they were skipped and why. Each test works in its own
//! PostgreSQL schema and its own Redis key space (unique ids), so they run in parallel with each
//! other and with the contract suite. Stopping the servers themselves is in
//! `tests/backends_disrupt.rs`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{channel, eventually, run_local, StorageProcess};
use pairdb::proto::{coordinator as api, storage as pb};

#[path = "support/backends.rs"]
mod backends;

use backends::{call, list_nodes, postgres_url, redis_url, unique, Pair, PgSchema, CONVERGE};

const ALL: i32 = api::Consistency::All as i32;

fn write(
    tenant: &str,
    key: &str,
    value: &[u8],
    idempotency_key: &str,
) -> api::WriteKeyValueRequest {
    api::WriteKeyValueRequest {
        tenant_id: tenant.into(),
        key: key.into(),
        value: Bytes::copy_from_slice(value),
        consistency: ALL,
        idempotency_key: idempotency_key.into(),
        vector_clock: None,
    }
}

#[test]
fn tenants_and_nodes_made_through_one_coordinator_reach_the_other() {
    let Some(url) = postgres_url("tenants_and_nodes_made_through_one_coordinator_reach_the_other")
    else {
        return;
    };
    let pair = Pair::start("follow", PgSchema::create(&url), None, "");
    let (a, b) = (pair.a.addr, pair.b.addr);
    let extra_dir = pair.tmp.path().join("follow-s4");
    let extra = StorageProcess::start(&extra_dir, "follow-s4");
    let extra_addr = extra.addr;
    run_local(move || async move {
        let (ca, cb) = (channel(a).await, channel(b).await);
        let tenant = "shared-tenant";
        let created: api::CreateTenantResponse = call(
            &ca,
            "CreateTenant",
            &api::CreateTenantRequest {
                tenant_id: tenant.into(),
                replication_factor: 3,
                ..Default::default()
            },
        )
        .await
        .expect("CreateTenant through A");
        assert_eq!(created.replication_factor, 3);

        // Served by B at once: its cache misses and it asks the shared store.
        let w: api::WriteKeyValueResponse =
            call(&cb, "WriteKeyValue", &write(tenant, "k", b"v", "")).await.expect("write via B");
        assert_eq!(w.replica_count, 3);
        let r: api::ReadKeyValueResponse = call(
            &ca,
            "ReadKeyValue",
            &api::ReadKeyValueRequest {
                tenant_id: tenant.into(),
                key: "k".into(),
                consistency: ALL,
            },
        )
        .await
        .expect("read via A");
        assert_eq!(r.value, &b"v"[..]);

        // A change to a tenant B has cached reaches B through the notification.
        let _: api::UpdateReplicationFactorResponse = call(
            &ca,
            "UpdateReplicationFactor",
            &api::UpdateReplicationFactorRequest {
                tenant_id: tenant.into(),
                new_replication_factor: 2,
            },
        )
        .await
        .expect("UpdateReplicationFactor through A");
        let cb = &cb;
        eventually("B sees replication factor 2", CONVERGE, move || async move {
            let t: api::GetTenantResponse =
                call(cb, "GetTenant", &api::GetTenantRequest { tenant_id: tenant.into() })
                    .await
                    .map_err(|e| e.to_string())?;
            if t.replication_factor == 2 {
                Ok(())
            } else {
                Err(format!("{t:?}"))
            }
        })
        .await;

        // A node added through A joins B's ring.
        let _: api::AddStorageNodeResponse = call(
            &ca,
            "AddStorageNode",
            &api::AddStorageNodeRequest {
                node_id: "follow-s4".into(),
                host: extra_addr.ip().to_string(),
                port: i32::from(extra_addr.port()),
                virtual_nodes: 0,
            },
        )
        .await
        .expect("AddStorageNode through A");
        eventually("B lists the new node", CONVERGE, move || async move {
            let nodes = list_nodes(cb).await;
            if nodes.iter().any(|n| n.node_id == "follow-s4") {
                Ok(())
            } else {
                Err(format!("{nodes:?}"))
            }
        })
        .await;
    });
    drop(extra);
}

#[test]
fn one_idempotent_write_sent_to_both_coordinators_applies_once() {
    let name = "one_idempotent_write_sent_to_both_coordinators_applies_once";
    let (Some(pg), Some(redis)) = (postgres_url(name), redis_url(name)) else { return };
    let pair = Pair::start("idem2", PgSchema::create(&pg), Some(&redis), "");
    let (a, b) = (pair.a.addr, pair.b.addr);
    let run = unique("run");
    run_local(move || async move {
        let (ca, cb) = (channel(a).await, channel(b).await);
        let tenant = "idem-tenant";
        let _: api::CreateTenantResponse = call(
            &ca,
            "CreateTenant",
            &api::CreateTenantRequest {
                tenant_id: tenant.into(),
                replication_factor: 3,
                ..Default::default()
            },
        )
        .await
        .expect("CreateTenant");
        for round in 0..20 {
            let key = format!("key-{round}");
            let request = write(tenant, &key, key.as_bytes(), &format!("{run}-{round}"));
            let (ra, rb) = futures_util::future::join(
                call::<_, api::WriteKeyValueResponse>(&ca, "WriteKeyValue", &request),
                call::<_, api::WriteKeyValueResponse>(&cb, "WriteKeyValue", &request),
            )
            .await;
            let (ra, rb) = (ra.expect("via A"), rb.expect("via B"));
            let fresh = [&ra, &rb].iter().filter(|r| !r.is_duplicate).count();
            assert_eq!(fresh, 1, "{key}: {ra:?} / {rb:?}");
            assert_eq!(ra.vector_clock, rb.vector_clock, "{key}: one write, one version");
            let clock = ra.vector_clock.expect("a clock");
            assert_eq!(clock.entries.len(), 1, "{key}: written by one coordinator: {clock:?}");
        }
    });
}

/// A change that reaches PostgreSQL without a notification (written by hand here; in production,
/// one sent while a coordinator's listener was reconnecting) still reaches every coordinator
/// within `metadata.reload_interval_secs` (5 s in these tests).
#[test]
fn a_change_without_notification_arrives_with_the_periodic_reload() {
    let name = "a_change_without_notification_arrives_with_the_periodic_reload";
    let Some(url) = postgres_url(name) else { return };
    let pair = Pair::start("reload", PgSchema::create(&url), None, "");
    let (a, b) = (pair.a.addr, pair.b.addr);
    let tenant = "reloaded";
    run_local(move || async move {
        let (ca, cb) = (channel(a).await, channel(b).await);
        let _: api::CreateTenantResponse = call(
            &ca,
            "CreateTenant",
            &api::CreateTenantRequest {
                tenant_id: tenant.into(),
                replication_factor: 3,
                ..Default::default()
            },
        )
        .await
        .expect("CreateTenant");
        // Both cache it.
        for ch in [&ca, &cb] {
            let t: api::GetTenantResponse =
                call(ch, "GetTenant", &api::GetTenantRequest { tenant_id: tenant.into() })
                    .await
                    .expect("GetTenant");
            assert_eq!(t.replication_factor, 3);
        }
    });
    let mut db = postgres::Client::connect(&pair.schema.url, postgres::NoTls).expect("connect");
    let changed = db
        .execute("UPDATE tenants SET replication_factor = 2 WHERE tenant_id = $1", &[&tenant])
        .expect("update without notify");
    assert_eq!(changed, 1);
    run_local(move || async move {
        for addr in [a, b] {
            let ch = channel(addr).await;
            let ch = &ch;
            eventually("the periodic reload brings RF 2", CONVERGE, move || async move {
                let t: api::GetTenantResponse =
                    call(ch, "GetTenant", &api::GetTenantRequest { tenant_id: tenant.into() })
                        .await
                        .map_err(|e| e.to_string())?;
                if t.replication_factor == 2 {
                    Ok(())
                } else {
                    Err(format!("{t:?}"))
                }
            })
            .await;
        }
    });
}

/// Hinted handoff with the hint store in PostgreSQL: writes made while a storage node is down
/// leave hints in the shared `hints` table, and once the node is back (same port, same data)
/// they are replayed to it and removed.
#[test]
fn hints_for_a_down_node_are_kept_in_postgres_and_replayed() {
    let name = "hints_for_a_down_node_are_kept_in_postgres_and_replayed";
    let Some(url) = postgres_url(name) else { return };
    let mut pair = Pair::start("hints", PgSchema::create(&url), None, "");
    let a = pair.a.addr;
    let tenant = "hinted";
    run_local(move || async move {
        let ch = channel(a).await;
        let _: api::CreateTenantResponse = call(
            &ch,
            "CreateTenant",
            &api::CreateTenantRequest {
                tenant_id: tenant.into(),
                replication_factor: 3,
                ..Default::default()
            },
        )
        .await
        .expect("CreateTenant");
    });
    let down = pair.storage.remove(2);
    let (id, addr) = (down.node_id.clone(), down.addr);
    assert!(common::killed_by_sigkill(&down.kill9()));
    const KEYS: usize = 20;
    run_local(move || async move {
        let ch = channel(a).await;
        for i in 0..KEYS {
            let mut request = write(tenant, &format!("key-{i}"), b"while down", "");
            request.consistency = api::Consistency::Quorum as i32;
            let _: api::WriteKeyValueResponse =
                call(&ch, "WriteKeyValue", &request).await.expect("QUORUM write, one node down");
        }
    });
    let mut db = postgres::Client::connect(&pair.schema.url, postgres::NoTls).expect("connect");
    let pending = |db: &mut postgres::Client| -> i64 {
        db.query_one("SELECT count(*) FROM hints WHERE target_node = $1", &[&id])
            .expect("count hints")
            .get(0)
    };
    let deadline = std::time::Instant::now() + CONVERGE;
    while pending(&mut db) < KEYS as i64 {
        assert!(
            std::time::Instant::now() < deadline,
            "hints not in postgres: {}",
            pending(&mut db)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let back = StorageProcess::start_on_port(&pair.tmp.path().join(&id), &id, 1, addr.port());
    run_local(move || async move {
        let node = channel(addr).await;
        let node = &node;
        eventually("the restarted node holds every hinted write", CONVERGE, move || async move {
            for i in 0..KEYS {
                let req = pb::ReadRequest { tenant_id: tenant.into(), key: format!("key-{i}") };
                let reply: pb::ReadResponse = node
                    .unary(&common::storage_path("Read"), &req, Some(common::CALL_TIMEOUT))
                    .await
                    .map_err(|e| e.to_string())?;
                if !reply.found {
                    return Err(format!("key-{i} not there yet"));
                }
            }
            Ok(())
        })
        .await;
    });
    let deadline = std::time::Instant::now() + CONVERGE;
    while pending(&mut db) > 0 {
        assert!(std::time::Instant::now() < deadline, "hints left: {}", pending(&mut db));
        std::thread::sleep(Duration::from_millis(50));
    }
    pair.storage.push(back);
}
