//! The client against a real `pairdb dev` cluster (one per test, on free ports), and against
//! fake coordinators that refuse, close or never answer.

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::{closing_listener, dead_address, silent_listener, Dev};
use pairdb_client::{Client, Consistency, Error, ReadOptions, WriteOptions};

/// A deadline far above any real latency: it only stops a hung test.
const TIMEOUT: Duration = Duration::from_secs(20);

fn client(dev: &Dev) -> Client {
    Client::builder().address(&dev.addr).timeout(TIMEOUT).build().expect("client")
}

#[tokio::test]
async fn put_get_delete_and_typed_errors() {
    let dev = Dev::start();
    let c = client(&dev);

    let w = c.put("greeting", "hello").await.expect("put");
    assert_eq!(w.key, "greeting");
    assert!(!w.is_duplicate);
    assert_eq!(w.idempotency_key.len(), 32, "a generated key: {w:?}");
    assert!(!w.clock.entries.is_empty());
    let v = c.get("greeting").await.expect("get");
    assert_eq!(v.value, b"hello");
    assert_eq!(v.clock, w.clock);

    let w2 = c
        .put_with(
            "greeting",
            "hi",
            WriteOptions::new().consistency(Consistency::All).context(v.clock),
        )
        .await
        .expect("put with context");
    assert_eq!(w2.replica_count, 3, "ALL on rf 3");
    assert_ne!(w2.idempotency_key, w.idempotency_key, "one key per logical call");
    let v = c.get_with("greeting", ReadOptions::new().consistency(Consistency::One)).await.unwrap();
    assert_eq!(v.value, b"hi");

    c.delete("greeting").await.expect("delete");
    match c.get("greeting").await {
        Err(e @ Error::KeyNotFound { .. }) => {
            assert_eq!(e.error_code(), Some("KEY_NOT_FOUND"));
            assert!(!e.is_retryable());
        }
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
    assert_eq!(c.get_opt("greeting").await.unwrap(), None);

    let nope = c.with_tenant("no-such-tenant");
    match nope.put("k", "v").await {
        Err(Error::TenantNotFound { message }) => assert!(message.contains("no-such-tenant")),
        other => panic!("expected TenantNotFound, got {other:?}"),
    }
    assert!(matches!(c.get_tenant("no-such-tenant").await, Err(Error::TenantNotFound { .. })));

    // Tenant and admin calls.
    let created = c.create_tenant("orders", 2).await.expect("create tenant");
    assert_eq!((created.tenant_id.as_str(), created.replication_factor), ("orders", 2));
    assert!(matches!(c.create_tenant("orders", 2).await, Err(Error::TenantExists { .. })));
    assert!(matches!(
        c.create_tenant("too-many", 9).await,
        Err(Error::InvalidReplicationFactor { .. })
    ));
    assert_eq!(c.get_tenant("orders").await.unwrap().replication_factor, 2);
    let orders = c.with_tenant("orders");
    orders.put("o-1", vec![1, 2, 3]).await.unwrap();
    assert_eq!(orders.get("o-1").await.unwrap().value, vec![1, 2, 3]);
    assert!(matches!(c.get("o-1").await, Err(Error::KeyNotFound { .. })), "tenants are apart");
    let nodes = c.list_storage_nodes().await.expect("list nodes");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|n| n.status == "ACTIVE"), "{nodes:?}");
    assert!(matches!(c.remove_storage_node("nope", false).await, Err(Error::NodeNotFound { .. })));
}

#[tokio::test]
async fn same_idempotency_key_twice_is_a_duplicate() {
    let dev = Dev::start();
    let c = client(&dev);
    let key = pairdb_client::new_idempotency_key();
    let first = c
        .put_with("k", "v1", WriteOptions::new().idempotency_key(key.clone()))
        .await
        .expect("first");
    assert!(!first.is_duplicate);
    assert_eq!(first.idempotency_key, key);
    let again = c
        .put_with("k", "v1", WriteOptions::new().idempotency_key(key.clone()))
        .await
        .expect("retry");
    assert!(again.is_duplicate, "{again:?}");
    assert_eq!(again.clock, first.clock, "the first answer, applied once");
    // The same key for another request conflicts.
    match c.put_with("k", "v2", WriteOptions::new().idempotency_key(key.clone())).await {
        Err(e @ Error::IdempotencyKeyConflict { .. }) => assert!(!e.is_retryable()),
        other => panic!("expected IdempotencyKeyConflict, got {other:?}"),
    }
    assert_eq!(c.get("k").await.unwrap().value, b"v1");
    // Deletes too.
    let dkey = pairdb_client::new_idempotency_key();
    let d1 = c.delete_with("k", WriteOptions::new().idempotency_key(dkey.clone())).await.unwrap();
    let d2 = c.delete_with("k", WriteOptions::new().idempotency_key(dkey)).await.unwrap();
    assert!(!d1.is_duplicate && d2.is_duplicate);
}

#[tokio::test]
async fn a_dead_first_address_fails_over_to_the_second() {
    let dev = Dev::start();
    let c = Client::builder()
        .addresses([dead_address(), dev.addr.clone()])
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let started = Instant::now();
    c.put("k", "v").await.expect("put through the second address");
    assert_eq!(c.get("k").await.expect("get").value, b"v");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A coordinator that accepts but never answers costs one attempt, not the call.
    let (_silent, silent) = silent_listener();
    let c = Client::builder()
        .addresses([silent, dev.addr.clone()])
        .timeout(TIMEOUT)
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    c.put("k2", "v2").await.expect("put after the silent address timed out");
    assert_eq!(c.get("k2").await.unwrap().value, b"v2");
}

#[tokio::test]
async fn deadlines_apply_per_client_and_per_call() {
    let (_silent, silent) = silent_listener();
    let c = Client::builder().address(&silent).timeout(Duration::from_millis(300)).build().unwrap();
    let started = Instant::now();
    match c.put("k", "v").await {
        Err(e @ Error::DeadlineExceeded { .. }) => assert!(e.is_timeout() && !e.is_retryable()),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");

    // A per-call deadline overrides the client's (long) one.
    let c = Client::builder().address(&silent).timeout(Duration::from_secs(60)).build().unwrap();
    let started = Instant::now();
    let r = c.get_with("k", ReadOptions::new().timeout(Duration::from_millis(200))).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded { .. })), "{r:?}");
    let r = c.with_timeout(Duration::from_millis(200)).list_storage_nodes().await;
    assert!(matches!(r, Err(Error::DeadlineExceeded { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn retries_are_bounded() {
    // Every attempt reaches the fake coordinator, which closes the connection.
    let (accepted, addr) = closing_listener();
    let c = Client::builder()
        .address(&addr)
        .timeout(TIMEOUT)
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(20))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = c.put("k", "v").await.expect_err("nothing answers");
    assert!(e.is_retryable(), "a transport failure: {e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=3).contains(&n), "{n} connections for 3 attempts");

    // Refused everywhere: gives up after max_attempts, well before the deadline.
    let c = Client::builder()
        .addresses([dead_address(), dead_address()])
        .timeout(TIMEOUT)
        .max_attempts(4)
        .backoff(Duration::from_millis(10), Duration::from_millis(20))
        .build()
        .unwrap();
    let started = Instant::now();
    match c.get("k").await {
        Err(Error::Transport { message }) => assert!(message.contains("127.0.0.1"), "{message}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Errors that are not retryable are answered at once, with no retry.
    let dev = Dev::start();
    let c = Client::builder()
        .address(&dev.addr)
        .timeout(TIMEOUT)
        .backoff(Duration::from_secs(5), Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(matches!(c.get("absent").await, Err(Error::KeyNotFound { .. })));
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

fn counter(current: Option<&[u8]>) -> u64 {
    current.map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_writes_are_all_applied() {
    let dev = Dev::start();
    let c = client(&dev);
    const EACH: u64 = 10;
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..EACH {
                    let w = c
                        .update("counter", |cur| Some((counter(cur) + 1).to_string().into_bytes()))
                        .await
                        .expect("update");
                    assert!(w.is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("updater");
    }
    let v = c.get("counter").await.unwrap();
    assert_eq!(counter(Some(&v.value)), 2 * EACH, "both updaters' increments applied");

    // A closure that declines writes nothing.
    let none = c.update("counter", |_| None).await.unwrap();
    assert!(none.is_none());
    assert_eq!(c.get("counter").await.unwrap().clock, v.clock);

    // The write carries the clock it read: it supersedes that version.
    let w = c.update("fresh", |cur| {
        assert!(cur.is_none());
        Some(b"1".to_vec())
    });
    let w = w.await.unwrap().unwrap();
    let w2 = c.update("fresh", |cur| Some([cur.unwrap(), b"2"].concat())).await.unwrap().unwrap();
    assert_eq!(c.get("fresh").await.unwrap().value, b"12");
    for e in &w.clock.entries {
        let later =
            w2.clock.entries.iter().find(|x| x.coordinator_node_id == e.coordinator_node_id);
        assert!(later.is_some_and(|l| l.logical_timestamp >= e.logical_timestamp), "{w2:?}");
    }
}
