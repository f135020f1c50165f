//! What one request is: the operation mix, key names, and the calls each target takes.
//!
//! Two targets share the generator. A coordinator gets the client API (`WriteKeyValue`,
//! `ReadKeyValue`, `DeleteKeyValue`). A storage node gets its internal API (`Write`, `Read`,
//! `Delete`) with versions made up here: a one-entry clock `{"loadtest/<thread>": counter}`, the
//! wall clock as timestamp and the same actor as writer. The counter starts at the run's start in
//! unix microseconds and counts up, so a rerun's writes still dominate what an earlier run left.

use std::{
    cell::Cell,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use pairdb::{
    proto::{coordinator as coord, storage},
    rpc::{Channel, Code, Status},
};

use crate::stats::{OpKind, Outcome};

/// The `pairdb-error-code` of a NOT_FOUND that means "no such key".
const KEY_NOT_FOUND: &str = "KEY_NOT_FOUND";
const READ_KEY_VALUE: &str = "/pairdb.coordinator.v1.CoordinatorService/ReadKeyValue";
const WRITE_KEY_VALUE: &str = "/pairdb.coordinator.v1.CoordinatorService/WriteKeyValue";
const DELETE_KEY_VALUE: &str = "/pairdb.coordinator.v1.CoordinatorService/DeleteKeyValue";
const STORAGE_READ: &str = "/pairdb.storage.v1.StorageService/Read";
const STORAGE_WRITE: &str = "/pairdb.storage.v1.StorageService/Write";
const STORAGE_DELETE: &str = "/pairdb.storage.v1.StorageService/Delete";
const ETCD_PUT: &str = "/etcdserverpb.KV/Put";
const ETCD_RANGE: &str = "/etcdserverpb.KV/Range";
const ETCD_DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";

/// The fields of etcd's `etcdserverpb` messages the load test needs (etcd's rpc.proto; unknown
/// reply fields are skipped by prost).
mod etcd {
    /// `PutRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "bytes", tag = "2")]
        pub value: bytes::Bytes,
    }
    /// `RangeRequest` (a single key).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
    }
    /// `DeleteRangeRequest` (a single key).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
    }
    /// `RangeResponse`: only `count` is read.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(int64, tag = "4")]
        pub count: i64,
    }
    /// Any reply whose content the load test ignores.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Ignored {}
}

/// Which server the load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A coordinator: the client-facing CoordinatorService.
    Coordinator,
    /// A storage node directly: StorageService Write/Read/Delete.
    Storage,
    /// An etcd v3 server (the reference of the write benchmark): KV Put/Range/DeleteRange.
    Etcd,
}

/// Replicas a coordinator waits for (ignored by a storage node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    One,
    Quorum,
    All,
}

impl Consistency {
    fn proto(self) -> i32 {
        match self {
            Consistency::One => coord::Consistency::One as i32,
            Consistency::Quorum => coord::Consistency::Quorum as i32,
            Consistency::All => coord::Consistency::All as i32,
        }
    }
}

/// The read/write/delete percentages; they add up to 100.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Mix {
    pub read_pct: u32,
    pub write_pct: u32,
    pub delete_pct: u32,
}

impl Mix {
    /// The operation for a roll in `0..100`.
    pub fn pick(&self, roll: u32) -> OpKind {
        if roll < self.read_pct {
            OpKind::Read
        } else if roll < self.read_pct + self.write_pct {
            OpKind::Write
        } else {
            OpKind::Delete
        }
    }
}

/// What every request of one executor shares.
pub struct Workload {
    pub target: Target,
    pub tenant: String,
    pub key_prefix: String,
    pub value: Bytes,
    pub consistency: Consistency,
    pub timeout: Duration,
    /// This executor's actor name, `loadtest/<thread>` (storage target).
    pub actor: String,
    /// The next logical timestamp of `actor` (storage target).
    pub counter: Cell<i64>,
    /// With `--idempotency-keys`: the prefix of this executor's idempotency keys, numbered by
    /// `idempotency_next`.
    pub idempotency_prefix: Option<String>,
    /// The number of the next idempotency key.
    pub idempotency_next: Cell<u64>,
}

impl Workload {
    /// Settings for executor `thread`.
    pub fn new(
        target: Target,
        tenant: String,
        key_prefix: String,
        value: Bytes,
        consistency: Consistency,
        timeout: Duration,
        thread: usize,
    ) -> Workload {
        Workload {
            target,
            tenant,
            key_prefix,
            value,
            consistency,
            timeout,
            actor: format!("loadtest/{thread}"),
            counter: Cell::new(unix_micros()),
            idempotency_prefix: None,
            idempotency_next: Cell::new(0),
        }
    }

    /// Sends every coordinator write and delete with a fresh idempotency key `{prefix}{n}`.
    pub fn with_idempotency_keys(mut self, prefix: Option<String>) -> Workload {
        self.idempotency_prefix = prefix;
        self
    }

    /// The next idempotency key, or empty (none) without `--idempotency-keys`.
    fn idempotency_key(&self) -> String {
        match &self.idempotency_prefix {
            Some(prefix) => {
                let n = self.idempotency_next.get();
                self.idempotency_next.set(n + 1);
                format!("{prefix}{n}")
            }
            None => String::new(),
        }
    }

    /// The name of key `index`.
    pub fn key(&self, index: u64) -> String {
        format!("{}{index}", self.key_prefix)
    }

    /// Makes one call: `Ok` with [`Outcome::Ok`] or [`Outcome::Miss`], or the failed status.
    pub async fn call(
        &self,
        channel: &Channel,
        kind: OpKind,
        key: String,
    ) -> Result<Outcome, Status> {
        let timeout = Some(self.timeout);
        let tenant_id = self.tenant.clone();
        match (self.target, kind) {
            (Target::Coordinator, OpKind::Read) => {
                let req = coord::ReadKeyValueRequest {
                    tenant_id,
                    key,
                    consistency: self.consistency.proto(),
                };
                let reply = channel
                    .unary::<_, coord::ReadKeyValueResponse>(READ_KEY_VALUE, &req, timeout)
                    .await;
                coordinator_outcome(reply.map(drop))
            }
            (Target::Coordinator, OpKind::Write) => {
                let req = coord::WriteKeyValueRequest {
                    tenant_id,
                    key,
                    value: self.value.clone(),
                    consistency: self.consistency.proto(),
                    idempotency_key: self.idempotency_key(),
                    ..Default::default()
                };
                let reply = channel
                    .unary::<_, coord::WriteKeyValueResponse>(WRITE_KEY_VALUE, &req, timeout)
                    .await;
                coordinator_outcome(reply.map(drop))
            }
            (Target::Coordinator, OpKind::Delete) => {
                let req = coord::DeleteKeyValueRequest {
                    tenant_id,
                    key,
                    consistency: self.consistency.proto(),
                    idempotency_key: self.idempotency_key(),
                    ..Default::default()
                };
                let reply = channel
                    .unary::<_, coord::DeleteKeyValueResponse>(DELETE_KEY_VALUE, &req, timeout)
                    .await;
                coordinator_outcome(reply.map(drop))
            }
            (Target::Storage, OpKind::Read) => {
                let req = storage::ReadRequest { tenant_id, key };
                match channel.unary::<_, storage::ReadResponse>(STORAGE_READ, &req, timeout).await {
                    Ok(r) if r.found && !r.version.as_ref().is_some_and(|v| v.tombstone) => {
                        Ok(Outcome::Ok)
                    }
                    Ok(_) => Ok(Outcome::Miss),
                    Err(status) => Err(status),
                }
            }
            (Target::Storage, OpKind::Write) => {
                let req =
                    storage::WriteRequest { tenant_id, key, version: Some(self.version(false)) };
                let reply =
                    channel.unary::<_, storage::WriteResponse>(STORAGE_WRITE, &req, timeout).await;
                reply.map(|_| Outcome::Ok)
            }
            (Target::Etcd, OpKind::Write) => {
                let req = etcd::PutRequest { key: key.into_bytes(), value: self.value.clone() };
                let reply = channel.unary::<_, etcd::Ignored>(ETCD_PUT, &req, timeout).await;
                reply.map(|_| Outcome::Ok)
            }
            (Target::Etcd, OpKind::Read) => {
                let req = etcd::RangeRequest { key: key.into_bytes() };
                match channel.unary::<_, etcd::RangeResponse>(ETCD_RANGE, &req, timeout).await {
                    Ok(r) if r.count > 0 => Ok(Outcome::Ok),
                    Ok(_) => Ok(Outcome::Miss),
                    Err(status) => Err(status),
                }
            }
            (Target::Etcd, OpKind::Delete) => {
                let req = etcd::DeleteRangeRequest { key: key.into_bytes() };
                let reply =
                    channel.unary::<_, etcd::Ignored>(ETCD_DELETE_RANGE, &req, timeout).await;
                reply.map(|_| Outcome::Ok)
            }
            (Target::Storage, OpKind::Delete) => {
                let req =
                    storage::DeleteRequest { tenant_id, key, version: Some(self.version(true)) };
                let reply = channel
                    .unary::<_, storage::DeleteResponse>(STORAGE_DELETE, &req, timeout)
                    .await;
                reply.map(|_| Outcome::Ok)
            }
        }
    }

    fn version(&self, tombstone: bool) -> storage::Version {
        let counter = self.counter.get() + 1;
        self.counter.set(counter);
        storage::Version {
            value: if tombstone { Bytes::new() } else { self.value.clone() },
            vector_clock: Some(storage::VectorClock {
                entries: vec![storage::VectorClockEntry {
                    coordinator_node_id: self.actor.clone(),
                    logical_timestamp: counter,
                }],
            }),
            timestamp: unix_micros(),
            writer: self.actor.clone(),
            tombstone,
        }
    }
}

/// A coordinator's NOT_FOUND is a miss only when it is about the key: a missing tenant
/// (`pairdb-error-code: TENANT_NOT_FOUND`) is a misconfigured run, so an error.
fn coordinator_outcome(reply: Result<(), Status>) -> Result<Outcome, Status> {
    match reply {
        Ok(()) => Ok(Outcome::Ok),
        Err(status) if is_key_not_found(&status) => Ok(Outcome::Miss),
        Err(status) => Err(status),
    }
}

fn is_key_not_found(status: &Status) -> bool {
    status.code == Code::NOT_FOUND
        && status.error_code.as_deref().is_none_or(|name| name == KEY_NOT_FOUND)
}

fn unix_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_splits_rolls_by_percentage() {
        let mix = Mix { read_pct: 50, write_pct: 45, delete_pct: 5 };
        let picks: Vec<OpKind> = (0..100).map(|r| mix.pick(r)).collect();
        assert_eq!(picks.iter().filter(|k| **k == OpKind::Read).count(), 50);
        assert_eq!(picks.iter().filter(|k| **k == OpKind::Write).count(), 45);
        assert_eq!(picks.iter().filter(|k| **k == OpKind::Delete).count(), 5);
        let writes_only = Mix { read_pct: 0, write_pct: 100, delete_pct: 0 };
        assert!((0..100).all(|r| writes_only.pick(r) == OpKind::Write));
    }

    #[test]
    fn only_a_missing_key_is_a_miss() {
        let not_found = Status::new(Code::NOT_FOUND, "gone");
        // (reply, is a miss)
        for (reply, miss) in [
            (not_found.clone(), true),
            (not_found.clone().with_error_code(KEY_NOT_FOUND), true),
            (not_found.with_error_code("TENANT_NOT_FOUND"), false),
            (Status::new(Code::UNAVAILABLE, "down"), false),
        ] {
            let outcome = coordinator_outcome(Err(reply.clone()));
            assert_eq!(outcome.is_ok(), miss, "{reply}");
        }
        assert_eq!(coordinator_outcome(Ok(())), Ok(Outcome::Ok));
    }

    #[test]
    fn storage_versions_count_up_per_actor() {
        let w = Workload::new(
            Target::Storage,
            "t".into(),
            "k".into(),
            Bytes::from_static(b"v"),
            Consistency::Quorum,
            Duration::from_secs(1),
            3,
        );
        let (a, b) = (w.version(false), w.version(true));
        let clock = |v: &storage::Version| v.vector_clock.as_ref().unwrap().entries[0].clone();
        assert_eq!(clock(&a).coordinator_node_id, "loadtest/3");
        assert_eq!(clock(&b).logical_timestamp, clock(&a).logical_timestamp + 1);
        assert!(b.tombstone && b.value.is_empty() && a.value == Bytes::from_static(b"v"));
        assert_eq!(w.key(42), "k42");
    }
}
