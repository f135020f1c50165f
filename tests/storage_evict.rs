//! A real `pairdb storage` process: `Evict` removes entries outright (no tombstone left, gone
//! from Read, ScanRange and Stats, also after a restart), rejects bad input like the other
//! methods, and is counted in `/metrics`; `incarnation_id` in HealthCheck and Stats stays the same
//! across a restart on the same data directory and changes once the directory is wiped.

mod common;

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::{channel, run_local, storage_path, RawClient, StorageProcess, CALL_TIMEOUT};
use pairdb::{
    admin,
    proto::storage as pb,
    rpc::{Channel, Code},
};

const TENANT: &str = "evict-tenant";
const OTHER_TENANT: &str = "other-tenant";
const KEYS: usize = 20;
/// Keys `k-00` to `k-09` are evicted; `k-05` and `k-06` are tombstones by then.
const EVICTED: usize = 10;

fn key(i: usize) -> String {
    format!("k-{i:02}")
}

fn version(counter: i64, value: &str, tombstone: bool) -> pb::Version {
    pb::Version {
        value: Bytes::from(value.to_owned()),
        vector_clock: Some(pb::VectorClock {
            entries: vec![pb::VectorClockEntry {
                coordinator_node_id: "coord-a/0".into(),
                logical_timestamp: counter,
            }],
        }),
        timestamp: 1_700_000_000_000_000 + counter,
        writer: "coord-a/0".into(),
        tombstone,
    }
}

fn evict_key(tenant_id: &str, key: &str) -> pb::EvictKey {
    pb::EvictKey { tenant_id: tenant_id.into(), key: key.into() }
}

async fn stats(ch: &Channel) -> pb::StatsResponse {
    ch.unary(&storage_path("Stats"), &pb::StatsRequest {}, Some(CALL_TIMEOUT)).await.expect("Stats")
}

async fn health(ch: &Channel) -> pb::HealthCheckResponse {
    ch.unary(&storage_path("HealthCheck"), &pb::HealthCheckRequest {}, Some(CALL_TIMEOUT))
        .await
        .expect("HealthCheck")
}

async fn evict(ch: &Channel, keys: Vec<pb::EvictKey>) -> u64 {
    let reply: pb::EvictResponse = ch
        .unary(&storage_path("Evict"), &pb::EvictRequest { keys }, Some(CALL_TIMEOUT))
        .await
        .expect("Evict");
    reply.evicted
}

async fn found(ch: &Channel, tenant_id: &str, key: &str) -> bool {
    let req = pb::ReadRequest { tenant_id: tenant_id.into(), key: key.into() };
    let reply: pb::ReadResponse =
        ch.unary(&storage_path("Read"), &req, Some(CALL_TIMEOUT)).await.expect("Read");
    reply.found
}

/// Every entry on the ring, tombstones included, page by page.
async fn scan_all(ch: &Channel) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut cursor = Bytes::new();
    loop {
        let req = pb::ScanRangeRequest {
            start_token: 0,
            end_token: 0,
            cursor: cursor.clone(),
            limit: 7,
            include_tombstones: true,
        };
        let page: pb::ScanRangeResponse =
            ch.unary(&storage_path("ScanRange"), &req, Some(CALL_TIMEOUT)).await.expect("scan");
        for e in page.entries {
            assert!(out.insert((e.tenant_id, e.key)), "an entry came twice");
        }
        if page.next_cursor.is_empty() {
            return out;
        }
        cursor = page.next_cursor;
    }
}

/// The value of the unlabelled sample `name` in the node's `/metrics`.
fn metric(admin_addr: SocketAddr, name: &str) -> f64 {
    let (code, text) = admin::get(admin_addr, "/metrics", Duration::from_secs(10)).expect("GET");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// What must remain after the eviction: `k-10` to `k-19` of TENANT and OTHER_TENANT's `k-00`.
fn remaining() -> BTreeSet<(String, String)> {
    (EVICTED..KEYS)
        .map(|i| (TENANT.to_owned(), key(i)))
        .chain([(OTHER_TENANT.to_owned(), key(0))])
        .collect()
}

async fn assert_evicted_state(ch: &Channel) {
    for i in 0..EVICTED {
        assert!(!found(ch, TENANT, &key(i)).await, "{} still readable", key(i));
    }
    for i in EVICTED..KEYS {
        assert!(found(ch, TENANT, &key(i)).await, "{} lost", key(i));
    }
    assert!(found(ch, OTHER_TENANT, &key(0)).await, "the other tenant's k-00 lost");
    assert_eq!(scan_all(ch).await, remaining());
    let s = stats(ch).await;
    // k-15, a tombstone that was not evicted, is still counted.
    assert_eq!((s.key_count, s.tombstone_count), (remaining().len() as u64, 1), "{s:?}");
}

#[test]
fn evict_removes_entries_outright_and_for_good() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start(tmp.path(), "evict-node");
    let addr = node.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        for i in 0..KEYS {
            let req = pb::WriteRequest {
                tenant_id: TENANT.into(),
                key: key(i),
                version: Some(version(1, &format!("value-{i}"), false)),
            };
            let reply: pb::WriteResponse =
                ch.unary(&storage_path("Write"), &req, Some(CALL_TIMEOUT)).await.expect("Write");
            assert!(reply.applied);
        }
        let req = pb::WriteRequest {
            tenant_id: OTHER_TENANT.into(),
            key: key(0),
            version: Some(version(1, "other", false)),
        };
        let _: pb::WriteResponse =
            ch.unary(&storage_path("Write"), &req, Some(CALL_TIMEOUT)).await.expect("Write");
        // Two of the keys to evict, and one to keep, are tombstones.
        for i in [5, 6, 15] {
            let req = pb::DeleteRequest {
                tenant_id: TENANT.into(),
                key: key(i),
                version: Some(version(2, "", true)),
            };
            let reply: pb::DeleteResponse =
                ch.unary(&storage_path("Delete"), &req, Some(CALL_TIMEOUT)).await.expect("Delete");
            assert!(reply.applied);
        }
        let s = stats(&ch).await;
        assert_eq!((s.key_count, s.tombstone_count), (KEYS as u64 + 1, 3), "{s:?}");

        // Bad requests remove nothing, even the valid keys they list.
        let raw = RawClient::connect(addr).await;
        let bad_tenant =
            pb::EvictRequest { keys: vec![evict_key(TENANT, "k-00"), evict_key("", "x")] };
        let reply = raw.unary(&storage_path("Evict"), &bad_tenant).await;
        let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert!(status.message.contains("tenant_id"), "{status}");
        let bad_key =
            pb::EvictRequest { keys: vec![evict_key(TENANT, "k-00"), evict_key(TENANT, "")] };
        let reply = raw.unary(&storage_path("Evict"), &bad_key).await;
        let status = reply.assert_error(Code::INVALID_ARGUMENT, "INVALID_REQUEST");
        assert!(status.message.contains("key"), "{status}");
        let too_many = pb::EvictRequest { keys: vec![evict_key(TENANT, "k-00"); 10_001] };
        let reply = raw.unary(&storage_path("Evict"), &too_many).await;
        reply.assert_error(Code::INVALID_ARGUMENT, "BATCH_TOO_LARGE");
        assert!(found(&ch, TENANT, "k-00").await);
        assert_eq!(stats(&ch).await.key_count, KEYS as u64 + 1);

        // The ten keys, an absent one and a repeat: ten evicted.
        let mut keys: Vec<pb::EvictKey> =
            (0..EVICTED).map(|i| evict_key(TENANT, &key(i))).collect();
        keys.push(evict_key(TENANT, "never-written"));
        keys.push(evict_key(TENANT, &key(0)));
        assert_eq!(evict(&ch, keys.clone()).await, EVICTED as u64);
        assert_evicted_state(&ch).await;
        // Again: nothing left to evict.
        assert_eq!(evict(&ch, keys).await, 0);
        assert_eq!(evict(&ch, Vec::new()).await, 0);
    });
    assert_eq!(metric(node.admin, "pairdb_storage_evicted_total"), EVICTED as f64);

    // Evictions are as durable as writes: a restart brings none of them back.
    let status = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM gave {status}");
    let node = StorageProcess::start(tmp.path(), "evict-node");
    let addr = node.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        assert_evicted_state(&ch).await;
    });
    let status = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "after restart, SIGTERM gave {status}");
}

#[test]
fn incarnation_id_follows_the_data_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // HealthCheck's and Stats' id, which must agree and be 128 bits of hex.
    let ids = |addr: SocketAddr| {
        run_local(move || async move {
            let ch = channel(addr).await;
            let (h, s) = (health(&ch).await, stats(&ch).await);
            assert_eq!(h.incarnation_id, s.incarnation_id);
            let id = h.incarnation_id;
            assert_eq!(id.len(), 32, "{id:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
            id
        })
    };
    let node = StorageProcess::start(tmp.path(), "incarnation-node");
    let first = ids(node.addr);
    assert_eq!(node.terminate(Duration::from_secs(15)).code(), Some(0));

    let node = StorageProcess::start(tmp.path(), "incarnation-node");
    assert_eq!(ids(node.addr), first, "same directory, same incarnation");
    assert_eq!(node.terminate(Duration::from_secs(15)).code(), Some(0));

    std::fs::remove_dir_all(tmp.path().join("data")).expect("wiping the data directory");
    let node = StorageProcess::start(tmp.path(), "incarnation-node");
    let wiped = ids(node.addr);
    assert_ne!(wiped, first, "a wiped directory is a new incarnation");
    assert_eq!(node.terminate(Duration::from_secs(15)).code(), Some(0));

    // A second node on its own directory has an id of its own.
    let other = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start(other.path(), "incarnation-node-2");
    assert_ne!(ids(node.addr), wiped);
}
