//! Crash durability of a storage node: every write the node acknowledged survives SIGKILL.
//!
//! The node runs in its default `group_commit` mode, where an acknowledged write has reached the
//! OS (the journal's `write(2)`) but perhaps not the disk; a process crash must lose none of
//! them. The test writes through our own client (single calls and batches, overwrites and
//! deletes), then SIGKILLs the process while more writes are in flight, restarts it on the same
//! data directory and reads everything back. Writes that were in flight at the kill may or may
//! not be there, but if one is, it must be exactly what was sent.

mod common;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use common::{channel, killed_by_sigkill, run_local, storage_path, StorageProcess, CALL_TIMEOUT};
use futures_util::{stream::FuturesUnordered, StreamExt};
use pairdb::{
    proto::storage::{self as pb, batch_operation::Op, batch_result::Result as Outcome},
    rpc::Channel,
};

const NODE: &str = "crash-node";
const TENANT: &str = "crash-tenant";
/// Keys written with one Write call each.
const SINGLE_WRITES: usize = 1000;
/// Keys written through Batch calls.
const BATCHED_WRITES: usize = 1000;
const BATCH_SIZE: usize = 100;
/// Single writes in flight at once.
const CONCURRENCY: usize = 16;
/// Writes kept in flight while the process is killed.
const IN_FLIGHT_AT_KILL: usize = 64;
/// Writes of the last burst acknowledged before the kill.
const KILL_AFTER: usize = 300;

/// What the node must hold, by key.
type Expected = BTreeMap<String, pb::Version>;

fn version(key_index: usize, generation: i64, tombstone: bool) -> pb::Version {
    let value = if tombstone {
        Bytes::new()
    } else {
        // Mostly small values, some of 64 KiB to 256 KiB, every one distinct.
        let len = match key_index % 97 {
            0 => 256 * 1024,
            1 => 64 * 1024,
            n => 16 + n * 13,
        };
        let seed = format!("{key_index}/{generation}:");
        Bytes::from(seed.bytes().cycle().take(len.max(seed.len())).collect::<Vec<u8>>())
    };
    let mut entries = vec![pb::VectorClockEntry {
        coordinator_node_id: "coord-a/0".into(),
        logical_timestamp: generation,
    }];
    if key_index.is_multiple_of(3) {
        entries.push(pb::VectorClockEntry {
            coordinator_node_id: "coord-b/1".into(),
            logical_timestamp: (key_index as i64 % 5) + 1,
        });
    }
    pb::Version {
        value,
        vector_clock: Some(pb::VectorClock { entries }),
        timestamp: 1_700_000_000_000_000 + key_index as i64 * 10 + generation,
        writer: "coord-a/0".into(),
        tombstone,
    }
}

fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

async fn write(ch: &Channel, key: &str, v: &pb::Version) -> Result<pb::WriteResponse, String> {
    let req =
        pb::WriteRequest { tenant_id: TENANT.into(), key: key.into(), version: Some(v.clone()) };
    ch.unary(&storage_path("Write"), &req, Some(CALL_TIMEOUT)).await.map_err(|e| e.to_string())
}

/// Writes, overwrites and deletes through single calls and batches; every one must be
/// acknowledged as applied with exactly the version sent.
async fn acknowledged_writes(ch: &Channel) -> Expected {
    let mut expected = Expected::new();

    // Single Write calls, CONCURRENCY at a time.
    let mut pending = FuturesUnordered::new();
    for i in 0..SINGLE_WRITES {
        let (k, v) = (key("single", i), version(i, 1, false));
        pending.push(async move {
            let reply = write(ch, &k, &v).await.unwrap_or_else(|e| panic!("Write {k}: {e}"));
            (k, v, reply)
        });
        if pending.len() == CONCURRENCY || i + 1 == SINGLE_WRITES {
            while let Some((k, v, reply)) = pending.next().await {
                assert!(reply.applied, "{k}: {reply:?}");
                assert_eq!(reply.current.as_ref(), Some(&v), "{k}");
                expected.insert(k, v);
            }
        }
    }

    // Overwrite every tenth single key with a newer version, and delete every 20th (offset 5).
    for i in (0..SINGLE_WRITES).step_by(10) {
        let (k, v) = (key("single", i), version(i, 2, false));
        let reply = write(ch, &k, &v).await.unwrap_or_else(|e| panic!("overwrite {k}: {e}"));
        assert!(reply.applied && reply.current.as_ref() == Some(&v), "{k}: {reply:?}");
        expected.insert(k, v);
    }
    for i in (5..SINGLE_WRITES).step_by(20) {
        let (k, v) = (key("single", i), version(i, 3, true));
        let req = pb::DeleteRequest {
            tenant_id: TENANT.into(),
            key: k.clone(),
            version: Some(v.clone()),
        };
        let reply: pb::DeleteResponse =
            ch.unary(&storage_path("Delete"), &req, Some(CALL_TIMEOUT)).await.expect("Delete");
        assert!(reply.applied && reply.current.as_ref() == Some(&v), "{k}: {reply:?}");
        expected.insert(k, v);
    }

    // Batches of writes, each batch also deleting one earlier batched key.
    for start in (0..BATCHED_WRITES).step_by(BATCH_SIZE) {
        let mut ops = Vec::new();
        let mut sent = Vec::new();
        for i in start..start + BATCH_SIZE {
            let (k, v) = (key("batched", i), version(i, 1, false));
            ops.push(pb::BatchOperation {
                op: Some(Op::Write(pb::WriteRequest {
                    tenant_id: TENANT.into(),
                    key: k.clone(),
                    version: Some(v.clone()),
                })),
            });
            sent.push((k, v));
        }
        if start > 0 {
            let i = start - 1;
            let (k, v) = (key("batched", i), version(i, 2, true));
            ops.push(pb::BatchOperation {
                op: Some(Op::Delete(pb::DeleteRequest {
                    tenant_id: TENANT.into(),
                    key: k.clone(),
                    version: Some(v.clone()),
                })),
            });
            sent.push((k, v));
        }
        let reply: pb::BatchResponse = ch
            .unary(
                &storage_path("Batch"),
                &pb::BatchRequest { operations: ops },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("Batch");
        assert_eq!(reply.results.len(), sent.len());
        for ((k, v), result) in sent.into_iter().zip(reply.results) {
            let (applied, current) = match result.result {
                Some(Outcome::Write(r)) => (r.applied, r.current),
                Some(Outcome::Delete(r)) => (r.applied, r.current),
                other => panic!("{k}: unexpected batch result {other:?}"),
            };
            assert!(applied, "{k}");
            assert_eq!(current.as_ref(), Some(&v), "{k}");
            expected.insert(k, v);
        }
    }
    expected
}

/// Keeps IN_FLIGHT_AT_KILL writes in flight and SIGKILLs the node once KILL_AFTER of them were
/// acknowledged, starting no new ones after that. Returns the acknowledged ones and those whose
/// fate is unknown (the call failed once the node was gone).
async fn writes_interrupted_by_kill(ch: &Channel, pid: libc::pid_t) -> (Expected, Expected) {
    let mut pending = FuturesUnordered::new();
    let start = |i: usize| {
        let (k, v) = (key("inflight", i), version(i, 1, false));
        async move {
            let result = write(ch, &k, &v).await;
            (k, v, result)
        }
    };
    let mut next = 0;
    while next < IN_FLIGHT_AT_KILL {
        pending.push(start(next));
        next += 1;
    }
    let (mut acked, mut unknown) = (Expected::new(), Expected::new());
    let mut killed = false;
    while let Some((k, v, result)) = pending.next().await {
        match result {
            Ok(reply) => {
                assert!(reply.applied && reply.current.as_ref() == Some(&v), "{k}: {reply:?}");
                acked.insert(k, v);
            }
            Err(_) if killed => {
                unknown.insert(k, v);
            }
            Err(e) => panic!("{k} failed before the kill: {e}"),
        }
        if killed {
            continue;
        }
        if acked.len() == KILL_AFTER {
            // SAFETY: kill(2) on our own unreaped child (the StorageProcess is still owned by the
            // test thread and reaps it only after this returns), so the pid is not reused.
            let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
            assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
            killed = true;
        } else {
            pending.push(start(next));
            next += 1;
        }
    }
    assert!(killed);
    (acked, unknown)
}

/// Reads every key of `expected` (in batches) and returns what the node holds for each.
async fn read_all(
    ch: &Channel,
    keys: impl Iterator<Item = String>,
) -> BTreeMap<String, Option<pb::Version>> {
    let keys: Vec<String> = keys.collect();
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let ops = chunk
            .iter()
            .map(|k| pb::BatchOperation {
                op: Some(Op::Read(pb::ReadRequest { tenant_id: TENANT.into(), key: k.clone() })),
            })
            .collect();
        let reply: pb::BatchResponse = ch
            .unary(
                &storage_path("Batch"),
                &pb::BatchRequest { operations: ops },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("Batch of reads");
        assert_eq!(reply.results.len(), chunk.len());
        for (k, result) in chunk.iter().zip(reply.results) {
            let Some(Outcome::Read(r)) = result.result else { panic!("{k}: {result:?}") };
            out.insert(k.clone(), if r.found { r.version } else { None });
        }
    }
    out
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    crash_and_recover("");
}

#[test]
fn acknowledged_writes_survive_sigkill_in_sync_mode() {
    // Writes then fdatasync before their ack, on glommio's blocking pool instead of the core.
    crash_and_recover("durability: sync\n");
}

/// Writes, SIGKILLs the node in the middle of a burst, restarts it on the same data directory
/// and checks every acknowledged write; `config_yaml` is the node's config file (empty: none).
fn crash_and_recover(config_yaml: &'static str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start_configured(tmp.path(), NODE, 2, 0, config_yaml);
    let (addr, pid) = (node.addr, node.pid());
    let (mut acked, unknown) = run_local(move || async move {
        let ch = channel(addr).await;
        let mut acked = acknowledged_writes(&ch).await;
        let (more, unknown) = writes_interrupted_by_kill(&ch, pid).await;
        eprintln!(
            "{} writes acknowledged before the kill ({} of them in the last burst), {} cut off",
            acked.len() + more.len(),
            more.len(),
            unknown.len()
        );
        acked.extend(more);
        (acked, unknown)
    });
    let status = node.kill9();
    assert!(killed_by_sigkill(&status), "the node ended with {status}, not by SIGKILL");

    let mut node = StorageProcess::start_configured(tmp.path(), NODE, 2, 0, config_yaml);
    let addr = node.addr;
    let expected = acked.clone();
    let survivors = run_local(move || async move {
        let ch = channel(addr).await;
        let held = read_all(&ch, expected.keys().cloned()).await;
        let mut lost = Vec::new();
        for (k, want) in &expected {
            match &held[k] {
                Some(got) if got == want => {}
                Some(got) => panic!(
                    "{k}: after the crash the node holds {} (tombstone {}) instead of what it \
                     acknowledged",
                    got.vector_clock
                        .as_ref()
                        .map(|c| format!("{:?}", c.entries))
                        .unwrap_or_default(),
                    got.tombstone
                ),
                None => lost.push(k.clone()),
            }
        }
        assert!(lost.is_empty(), "{} acknowledged writes lost in the crash: {lost:?}", lost.len());

        // Writes cut off by the kill: all or nothing, never torn.
        let held = read_all(&ch, unknown.keys().cloned()).await;
        let mut survivors = Expected::new();
        for (k, sent) in unknown {
            if let Some(got) = &held[&k] {
                assert_eq!(got, &sent, "{k}: an interrupted write survived, but altered");
                survivors.insert(k, sent);
            }
        }

        // The counts the node rebuilt at start-up agree.
        let tombstones = expected.values().filter(|v| v.tombstone).count() as u64;
        let stats: pb::StatsResponse = ch
            .unary(&storage_path("Stats"), &pb::StatsRequest {}, Some(CALL_TIMEOUT))
            .await
            .expect("Stats");
        assert_eq!(stats.key_count, (expected.len() + survivors.len()) as u64);
        assert_eq!(stats.tombstone_count, tombstones);

        // And the node takes new writes: a newer version of a key written before the crash.
        let v = version(1, 9, false);
        let reply = write(&ch, &key("single", 1), &v).await.expect("Write after restart");
        assert!(reply.applied && reply.current == Some(v));
        survivors
    });
    eprintln!("{} cut-off writes survived the crash", survivors.len());
    acked.extend(survivors);
    assert!(acked.len() >= SINGLE_WRITES + BATCHED_WRITES + KILL_AFTER);
    node.assert_running();
    let status = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "after restart, SIGTERM gave {status}");
}
