//! The retry rules, exactly: against scripted fake coordinators that count each attempt, which
//! address it reached and the idempotency key it carried.

mod common;

use std::{sync::Arc, time::Duration};

use common::{FakeCoordinator, Log, Received, Reply};
use pairdb_client::{proto, Client, Error};
use prost::Message as _;

const UNAVAILABLE: i32 = 14;
const DEADLINE_EXCEEDED: i32 = 4;

fn log() -> Log {
    Arc::new(std::sync::Mutex::new(Vec::new()))
}

fn client(addrs: &[&FakeCoordinator], attempts: u32) -> Client {
    Client::builder()
        .addresses(addrs.iter().map(|f| f.addr.clone()))
        .timeout(Duration::from_secs(10))
        .max_attempts(attempts)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap()
}

fn servers(log: &Log) -> Vec<&'static str> {
    log.lock().unwrap().iter().map(|r| r.server).collect()
}

fn write_keys(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|r: &Received| {
            assert!(r.path.ends_with("/WriteKeyValue"), "{}", r.path);
            proto::WriteKeyValueRequest::decode(r.message.as_slice()).unwrap().idempotency_key
        })
        .collect()
}

fn write_ok(is_duplicate: bool) -> Reply {
    Reply::Ok(
        proto::WriteKeyValueResponse {
            key: "k".into(),
            idempotency_key: "from-server".into(),
            replica_count: 2,
            is_duplicate,
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

#[tokio::test]
async fn unavailable_fails_over_with_one_idempotency_key_and_stops_at_max_attempts() {
    let log = log();
    let a = FakeCoordinator::start("a", log.clone(), |_| {
        Reply::Fail(UNAVAILABLE, "QUORUM_NOT_REACHED")
    })
    .await;
    let b = FakeCoordinator::start("b", log.clone(), |_| {
        Reply::Fail(UNAVAILABLE, "QUORUM_NOT_REACHED")
    })
    .await;
    let c = client(&[&a, &b], 4);
    let e = c.put("k", "v").await.expect_err("every attempt fails");
    assert!(matches!(e, Error::QuorumNotReached { .. }), "{e:?}");
    assert_eq!(servers(&log), ["a", "b", "a", "b"], "4 attempts, alternating addresses");
    let keys = write_keys(&log);
    assert!(keys.iter().all(|k| *k == keys[0]), "one key for all retries: {keys:?}");
    assert_eq!(keys[0].len(), 32);

    // The next logical call has its own key.
    log.lock().unwrap().clear();
    let _ = c.put("k", "v").await;
    let next = write_keys(&log);
    assert_eq!(next.len(), 4);
    assert_ne!(next[0], keys[0]);
}

#[tokio::test]
async fn a_retry_can_succeed_and_later_calls_start_at_the_address_that_answered() {
    let log = log();
    let a = FakeCoordinator::start("a", log.clone(), |_| Reply::Fail(UNAVAILABLE, "")).await;
    let b = FakeCoordinator::start("b", log.clone(), |_| write_ok(true)).await;
    let c = client(&[&a, &b], 4);
    let w = c.put("k", "v").await.expect("b answers");
    assert!(w.is_duplicate && w.replica_count == 2, "{w:?}");
    c.put("k", "v").await.expect("b answers");
    assert_eq!(servers(&log), ["a", "b", "b"]);
}

#[tokio::test]
async fn deadline_exceeded_is_retried_only_when_the_call_cannot_apply_twice() {
    let log = log();
    let a = FakeCoordinator::start("a", log.clone(), |_| {
        Reply::Fail(DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")
    })
    .await;
    let b = FakeCoordinator::start("b", log.clone(), |_| {
        Reply::Fail(DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")
    })
    .await;
    let c = client(&[&a, &b], 3);

    // A write carries an idempotency key: retried, where its record is (same address).
    assert!(c.put("k", "v").await.unwrap_err().is_timeout());
    assert_eq!(servers(&log), ["a", "a", "a"]);
    let keys = write_keys(&log);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");

    // Reads are always safe to retry.
    log.lock().unwrap().clear();
    assert!(c.get("k").await.unwrap_err().is_timeout());
    assert!(c.get_tenant("t").await.unwrap_err().is_timeout());
    assert_eq!(log.lock().unwrap().len(), 6);

    // Admin changes carry no key: a timeout is answered, not retried.
    log.lock().unwrap().clear();
    assert!(c.create_tenant("t", 3).await.unwrap_err().is_timeout());
    assert!(c.update_replication_factor("t", 2).await.unwrap_err().is_timeout());
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn in_progress_is_retried_on_the_same_address() {
    let log = log();
    let a = FakeCoordinator::start("a", log.clone(), |n| {
        if n == 0 {
            Reply::Fail(10, "IDEMPOTENCY_IN_PROGRESS")
        } else {
            write_ok(true)
        }
    })
    .await;
    let b = FakeCoordinator::start("b", log.clone(), |_| write_ok(false)).await;
    let w = client(&[&a, &b], 4).put("k", "v").await.expect("the retry gets the answer");
    assert!(w.is_duplicate);
    assert_eq!(servers(&log), ["a", "a"]);
    let keys = write_keys(&log);
    assert_eq!(keys[0], keys[1]);
}

/// A scripted failure (gRPC code, `pairdb-error-code`) and the error it must give.
type Case = (i32, &'static str, fn(&Error) -> bool);

#[tokio::test]
async fn other_errors_are_answered_at_once() {
    let cases: [Case; 4] = [
        (5, "KEY_NOT_FOUND", |e| matches!(e, Error::KeyNotFound { .. })),
        (9, "IDEMPOTENCY_KEY_CONFLICT", |e| matches!(e, Error::IdempotencyKeyConflict { .. })),
        (3, "INVALID_REQUEST", |e| matches!(e, Error::InvalidRequest { .. })),
        (7, "", |e| matches!(e, Error::Other { code: tonic::Code::PermissionDenied, .. })),
    ];
    for (code, error_code, expected) in cases {
        let log = log();
        let a =
            FakeCoordinator::start("a", log.clone(), move |_| Reply::Fail(code, error_code)).await;
        let b = FakeCoordinator::start("b", log.clone(), |_| write_ok(false)).await;
        let e = client(&[&a, &b], 4).put("k", "v").await.expect_err("not retried");
        assert!(expected(&e), "{error_code}: {e:?}");
        assert!(!e.is_retryable());
        assert_eq!(servers(&log), ["a"], "{error_code}");
    }
}

#[tokio::test]
async fn unavailable_without_a_pairdb_code_is_retried_too() {
    let log = log();
    let a = FakeCoordinator::start("a", log.clone(), |_| Reply::Fail(UNAVAILABLE, "")).await;
    let e = client(&[&a], 3).get("k").await.unwrap_err();
    assert!(matches!(e, Error::Other { code: tonic::Code::Unavailable, error_code: None, .. }));
    assert!(e.is_retryable());
    assert_eq!(servers(&log), ["a", "a", "a"]);
}
