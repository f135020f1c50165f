//! Idempotency end to end: a `pairdb coordinator` in front of three `pairdb storage` processes,
//! checking that the coordinator fingerprints what a request means, not how it is spelled.
//!
//! - `unspecified_and_quorum_are_the_same_request`: a write with an idempotency key at
//!   consistency UNSPECIFIED, retried at QUORUM (which is what UNSPECIFIED means), is answered
//!   as the duplicate of the first write, and so is a delete sent at QUORUM and retried at
//!   UNSPECIFIED; a retry at another level (ONE) is another request and conflicts.
//!
//! The general idempotency behaviour (retries, generated keys, races) is covered in
//! `tests/coordinator_e2e.rs`; the stores themselves in `tests/idempotency_contract.rs`.

mod common;

use std::fmt::Debug;

use bytes::Bytes;
use common::{channel, run_local, CoordinatorProcess, StorageProcess};
use pairdb::{
    proto::coordinator as api,
    rpc::{Code, Status},
};

#[path = "support/backends.rs"]
mod backends;

use backends::{call, wait_active};

const UNSPECIFIED: i32 = api::Consistency::Unspecified as i32;
const ONE: i32 = api::Consistency::One as i32;
const QUORUM: i32 = api::Consistency::Quorum as i32;

const TENANT: &str = "acme";

/// Asserts that `result` is the error `code` with `pairdb-error-code: error_code`.
#[track_caller]
fn assert_error<T: Debug>(result: Result<T, Status>, code: Code, error_code: &str) {
    match result {
        Ok(v) => panic!("expected {code} [{error_code}], got OK: {v:?}"),
        Err(status) => {
            assert_eq!(status.code, code, "{status}");
            assert_eq!(status.error_code.as_deref(), Some(error_code), "{status}");
        }
    }
}

/// Three storage nodes and a coordinator in one temporary directory; on a failing test, the
/// coordinator's log tail is printed.
struct Cluster {
    _tmp: tempfile::TempDir,
    _storage: Vec<StorageProcess>,
    coordinator: CoordinatorProcess,
}

impl Cluster {
    fn start(name: &str) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pairdb-e2e-{name}-"))
            .tempdir()
            .expect("tempdir");
        let common::TestCluster { storage, coordinator } =
            common::start_cluster(tmp.path(), name, 3, 1, "");
        let cluster = Cluster { _tmp: tmp, _storage: storage, coordinator };
        wait_active(cluster.coordinator.addr, 3);
        cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coordinator log:\n{}", self.coordinator.log_tail());
        }
    }
}

#[test]
fn unspecified_and_quorum_are_the_same_request() {
    let cluster = Cluster::start("idem-level");
    let addr = cluster.coordinator.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        let tenant = api::CreateTenantRequest {
            tenant_id: TENANT.into(),
            replication_factor: 3,
            ..Default::default()
        };
        let _: api::CreateTenantResponse =
            call(&ch, "CreateTenant", &tenant).await.expect("CreateTenant");

        let write = |consistency: i32| api::WriteKeyValueRequest {
            tenant_id: TENANT.into(),
            key: "k".into(),
            value: Bytes::from_static(b"v1"),
            consistency,
            idempotency_key: "write-1".into(),
            vector_clock: None,
        };
        let first: api::WriteKeyValueResponse =
            call(&ch, "WriteKeyValue", &write(UNSPECIFIED)).await.expect("first write");
        assert!(!first.is_duplicate, "{first:?}");
        let retry: Result<api::WriteKeyValueResponse, _> =
            call(&ch, "WriteKeyValue", &write(QUORUM)).await;
        let retry = retry.expect("the retry at QUORUM is the same request as at UNSPECIFIED");
        assert!(retry.is_duplicate, "{retry:?}");
        assert_eq!(retry.vector_clock, first.vector_clock, "the stored answer, not a new write");
        // ONE is another request under the same idempotency key.
        let other: Result<api::WriteKeyValueResponse, _> =
            call(&ch, "WriteKeyValue", &write(ONE)).await;
        assert_error(other, Code::FAILED_PRECONDITION, "IDEMPOTENCY_KEY_CONFLICT");

        // Deletes, the other way round.
        let delete = |consistency: i32| api::DeleteKeyValueRequest {
            tenant_id: TENANT.into(),
            key: "k".into(),
            consistency,
            idempotency_key: "delete-1".into(),
            vector_clock: None,
        };
        let deleted: api::DeleteKeyValueResponse =
            call(&ch, "DeleteKeyValue", &delete(QUORUM)).await.expect("delete");
        assert!(!deleted.is_duplicate, "{deleted:?}");
        let retry: Result<api::DeleteKeyValueResponse, _> =
            call(&ch, "DeleteKeyValue", &delete(UNSPECIFIED)).await;
        let retry = retry.expect("the retry at UNSPECIFIED is the same request as at QUORUM");
        assert!(retry.is_duplicate, "{retry:?}");
        assert_eq!(retry.vector_clock, deleted.vector_clock);
    });
}
