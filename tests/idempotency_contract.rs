//! The contract every idempotency store keeps, written once over [`IdempotencyBackend`] and
//! mounted once per backend: the embedded table and Redis.
//!
//! Each case gets two handles, `a` and `b`, on the same records, as two coordinators sharing a
//! store hold them (for the embedded table, two handles on one table). Completions and releases
//! are not awaited (with Redis they are sent without waiting for the answer), so a case reads
//! them back through the handle that sent them, which orders them before its next claim, or
//! through the other handle with a deadline.
//!
//! Expiry is real time, with short ttls, since Redis keeps its own clock: the embedded table is
//! given `Instant::now()`.
//!
//! Redis runs when `PAIRDB_TEST_REDIS_URL` is set, or under CI (`CI=true`, at the usual local
//! address), where a missing server fails the run instead of skipping (see
//! `tests/support/backends.rs`). Every case works under tenant ids unique to the run, so runs in
//! parallel do not see each other's records.

mod common;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{eventually, run_local};
use futures_util::future::join;
use pairdb::idempotency::{
    redis::{RedisConfig, RedisIdempotencyStore},
    Claim, EmbeddedIdempotencyStore, IdempotencyBackend, IdempotencyConfig, IdempotencyKey,
};

#[path = "support/backends.rs"]
mod backends;

use backends::{redis_url, unique};

/// Deadline for a completion sent through one handle to be seen through the other.
const CONVERGE: Duration = Duration::from_secs(10);

/// How long records live in one case.
#[derive(Clone, Copy)]
struct Ttls {
    claim: Duration,
    response: Duration,
}

/// Long enough that nothing expires during a case.
const LONG: Ttls = Ttls { claim: Duration::from_secs(30), response: Duration::from_secs(60) };
/// Claims that expire within the case.
const SHORT_CLAIM: Ttls = Ttls { claim: Duration::from_secs(1), ..LONG };
/// Responses that expire within the case.
const SHORT_RESPONSE: Ttls = Ttls { response: Duration::from_secs(2), ..LONG };

/// The stores of one case.
struct Stores {
    /// One coordinator's handle.
    a: Arc<IdempotencyBackend>,
    /// Another coordinator's handle on the same records.
    b: Arc<IdempotencyBackend>,
    /// A prefix no other run uses: every tenant id of the case starts with it.
    ns: String,
    ttls: Ttls,
}

impl Stores {
    /// The record key of `key` and `idempotency_key` in this case's tenant.
    fn key(&self, key: &str, idempotency_key: &str) -> IdempotencyKey {
        IdempotencyKey::new(&self.ns, key, idempotency_key)
    }
}

/// Two handles on the same records.
type Handles = (Arc<IdempotencyBackend>, Arc<IdempotencyBackend>);

/// How the suite opens one backend.
trait Backend {
    /// Two handles on one fresh set of records with these ttls, or `None` (after printing why)
    /// to skip.
    fn stores(test: &str, ttls: Ttls) -> Option<Handles>;
}

struct Embedded;

impl Backend for Embedded {
    fn stores(_: &str, ttls: Ttls) -> Option<Handles> {
        let config = IdempotencyConfig {
            ttl: ttls.response,
            pending_timeout: ttls.claim,
            ..IdempotencyConfig::default()
        };
        // One table, shared by the cores of one process.
        let table = Arc::new(IdempotencyBackend::Embedded(EmbeddedIdempotencyStore::new(config)));
        Some((table.clone(), table))
    }
}

struct Redis;

impl Backend for Redis {
    fn stores(test: &str, ttls: Ttls) -> Option<Handles> {
        let config = RedisConfig {
            url: redis_url(test)?,
            ttl: ttls.response,
            pending_timeout: ttls.claim,
            timeout: Duration::from_secs(2),
        };
        // Two clients (threads, connections) on one server, as two coordinators have.
        let store = || {
            let store = RedisIdempotencyStore::start(config.clone()).expect("start redis store");
            Arc::new(IdempotencyBackend::Redis(store))
        };
        Some((store(), store()))
    }
}

/// Runs `case` on fresh stores of backend `B`, or reports the skip.
fn run<B: Backend, F>(name: &str, ttls: Ttls, case: impl FnOnce(Stores) -> F + Send + 'static)
where
    F: Future<Output = ()> + 'static,
{
    let Some((a, b)) = B::stores(name, ttls) else {
        eprintln!("skipped {name}: backend not configured (see above)");
        return;
    };
    let stores = Stores { a, b, ns: unique("idem"), ttls };
    run_local(move || case(stores));
}

async fn claim(store: &IdempotencyBackend, key: &IdempotencyKey, fingerprint: u64) -> Claim {
    store.claim(key, fingerprint, Instant::now()).await
}

fn complete(store: &IdempotencyBackend, key: &IdempotencyKey, fingerprint: u64, response: &Bytes) {
    store.complete(key, fingerprint, response.clone(), Instant::now());
}

/// Waits until a claim of `key` with `fingerprint` through `store` answers `want`.
async fn eventually_claims(
    store: &IdempotencyBackend,
    key: &IdempotencyKey,
    fingerprint: u64,
    want: Claim,
) {
    let want = &want;
    eventually("the other handle sees it", CONVERGE, move || async move {
        match claim(store, key, fingerprint).await {
            got if got == *want => Ok(()),
            got => Err(format!("{got:?}, want {want:?}")),
        }
    })
    .await;
}

async fn sleep_past(ttl: Duration) {
    glommio::timer::sleep(ttl + ttl / 2).await;
}

// ---- cases ---------------------------------------------------------------------------------

/// Absent -> InProgress: the same body waits, another conflicts, through either handle; then
/// Completed: the same body is the duplicate, another still conflicts.
async fn claim_answers_by_state_and_body(s: Stores) {
    let k = s.key("k", "r1");
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Claimed);
    assert_eq!(claim(&s.a, &k, 1).await, Claim::InProgress);
    assert_eq!(claim(&s.a, &k, 2).await, Claim::Conflict);
    assert_eq!(claim(&s.b, &k, 1).await, Claim::InProgress, "another coordinator");
    assert_eq!(claim(&s.b, &k, 2).await, Claim::Conflict, "another coordinator");
    let ok = Bytes::from_static(b"ok");
    complete(&s.a, &k, 1, &ok);
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Duplicate(ok.clone()));
    assert_eq!(claim(&s.a, &k, 2).await, Claim::Conflict);
    eventually_claims(&s.b, &k, 1, Claim::Duplicate(ok)).await;
    assert_eq!(claim(&s.b, &k, 2).await, Claim::Conflict);
}

/// The stored response comes back byte for byte (binary, empty, large); a second completion
/// does not replace it, nor does a completion by another body.
async fn complete_then_duplicate_returns_the_stored_bytes(s: Stores) {
    let binary: Bytes = (0..=255u8).chain([0, 0xff, b'P', b'D']).collect();
    let large: Bytes = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for (i, response) in [binary, Bytes::new(), large].into_iter().enumerate() {
        let k = s.key("k", &format!("r{i}"));
        assert_eq!(claim(&s.a, &k, 7).await, Claim::Claimed);
        // Another body (its claim was taken over) completes nothing.
        complete(&s.a, &k, 8, &Bytes::from_static(b"not mine"));
        assert_eq!(claim(&s.a, &k, 7).await, Claim::InProgress);
        complete(&s.a, &k, 7, &response);
        assert_eq!(claim(&s.a, &k, 7).await, Claim::Duplicate(response.clone()), "response {i}");
        // The first answer stands.
        complete(&s.a, &k, 7, &Bytes::from_static(b"second"));
        assert_eq!(claim(&s.a, &k, 7).await, Claim::Duplicate(response), "response {i}");
    }
}

/// A released claim can be claimed again; only its own body's release removes it, and a
/// completed record is never released.
async fn release_lets_a_retry_claim(s: Stores) {
    let k = s.key("k", "r1");
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Claimed);
    s.a.release(&k, 2);
    assert_eq!(claim(&s.a, &k, 1).await, Claim::InProgress, "another body's release");
    s.a.release(&k, 1);
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Claimed, "released: the retry claims");
    let ok = Bytes::from_static(b"ok");
    complete(&s.a, &k, 1, &ok);
    s.a.release(&k, 1);
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Duplicate(ok));
}

/// A claim whose owner never completes nor releases it expires after the claim ttl: a retry
/// claims (even with another body), and the old owner's late completion is not stored.
async fn claim_ttl_expiry_lets_a_retry_claim(s: Stores) {
    let k = s.key("k", "r1");
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Claimed);
    sleep_past(s.ttls.claim).await;
    assert_eq!(claim(&s.b, &k, 2).await, Claim::Claimed, "the dead claim is taken over");
    complete(&s.a, &k, 1, &Bytes::from_static(b"late"));
    assert_eq!(claim(&s.a, &k, 2).await, Claim::InProgress, "the late completion is not stored");
    let new = Bytes::from_static(b"new");
    complete(&s.b, &k, 2, &new);
    assert_eq!(claim(&s.b, &k, 2).await, Claim::Duplicate(new));
}

/// A completed record lives for the response ttl; after it, the key is free again.
async fn response_ttl_expiry_frees_the_key(s: Stores) {
    let k = s.key("k", "r1");
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Claimed);
    let ok = Bytes::from_static(b"ok");
    complete(&s.a, &k, 1, &ok);
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Duplicate(ok));
    sleep_past(s.ttls.response).await;
    assert_eq!(claim(&s.a, &k, 2).await, Claim::Claimed, "expired: a new request");
}

/// The answer of an unkeyed write stored under its generated key (no claim first) is the
/// duplicate of a retry with that key; another body conflicts; it is never overwritten.
async fn generated_key_storage(s: Stores) {
    let k = s.key("k", "generated-0b3c");
    let one = Bytes::from_static(b"one");
    assert!(s.a.store_generated(&k, 1, one.clone(), Instant::now()));
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Duplicate(one.clone()));
    assert_eq!(claim(&s.a, &k, 2).await, Claim::Conflict);
    s.a.store_generated(&k, 1, Bytes::from_static(b"two"), Instant::now());
    assert_eq!(claim(&s.a, &k, 1).await, Claim::Duplicate(one.clone()));
    eventually_claims(&s.b, &k, 1, Claim::Duplicate(one)).await;
}

/// Records of other tenants, other keys and other idempotency keys are other records.
async fn records_of_different_tenants_and_keys_do_not_collide(s: Stores) {
    let other_tenant = format!("{}-2", s.ns);
    let keys = [
        s.key("k", "r"),
        IdempotencyKey::new(&other_tenant, "k", "r"),
        s.key("k2", "r"),
        s.key("k", "r2"),
        s.key("kr", ""),
        s.key("", "kr"),
    ];
    for (fp, k) in (1..).zip(&keys) {
        assert_eq!(claim(&s.a, k, fp).await, Claim::Claimed, "{k:?}");
        complete(&s.a, k, fp, &Bytes::from(format!("answer {fp}")));
    }
    for (fp, k) in (1..).zip(&keys) {
        let want = Claim::Duplicate(Bytes::from(format!("answer {fp}")));
        assert_eq!(claim(&s.a, k, fp).await, want, "{k:?}");
    }
}

/// Of two claims of one record at the same moment through two handles, exactly one wins and
/// the other sees it in progress.
async fn of_two_claims_at_once_exactly_one_wins(s: Stores) {
    for round in 0..20 {
        let k = s.key(&format!("k{round}"), "r");
        let (ca, cb) = join(claim(&s.a, &k, 7), claim(&s.b, &k, 7)).await;
        let claimed = [&ca, &cb].iter().filter(|c| ***c == Claim::Claimed).count();
        assert_eq!(claimed, 1, "round {round}: {ca:?} / {cb:?}");
        assert!([&ca, &cb].contains(&&Claim::InProgress), "round {round}: {ca:?} / {cb:?}");
    }
}

// ---- mounting ------------------------------------------------------------------------------

/// Mounts every case as a `#[test]` in module `$module` for backend `$backend`.
macro_rules! mount {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;

            mount!(@cases $backend;
                claim_answers_by_state_and_body: LONG,
                complete_then_duplicate_returns_the_stored_bytes: LONG,
                release_lets_a_retry_claim: LONG,
                claim_ttl_expiry_lets_a_retry_claim: SHORT_CLAIM,
                response_ttl_expiry_frees_the_key: SHORT_RESPONSE,
                generated_key_storage: LONG,
                records_of_different_tenants_and_keys_do_not_collide: LONG,
                of_two_claims_at_once_exactly_one_wins: LONG,
            );
        }
    };
    (@cases $backend:ty; $($case:ident: $ttls:expr,)*) => {$(
        #[test]
        fn $case() {
            run::<$backend, _>(stringify!($case), $ttls, super::$case);
        }
    )*};
}

mount!(embedded, Embedded);
mount!(redis_backend, Redis);

/// A Redis store whose server cannot be reached answers unavailable at once, rather than block
/// each claim for a connect timeout.
#[test]
fn redis_unreachable_answers_unavailable_at_once() {
    // Only where the Redis suite runs: it is the Redis client's behaviour.
    if redis_url("redis_unreachable_answers_unavailable_at_once").is_none() {
        return;
    }
    run_local(|| async {
        let down = RedisIdempotencyStore::start(RedisConfig {
            url: "redis://127.0.0.1:1".into(), // nothing listens on port 1
            ttl: LONG.response,
            pending_timeout: LONG.claim,
            timeout: Duration::from_secs(1),
        })
        .expect("store");
        let key = IdempotencyKey::new("acme", "k", "r");
        let started = Instant::now();
        for _ in 0..10 {
            assert_eq!(down.claim(&key, 1).await, Claim::Unavailable);
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    });
}
