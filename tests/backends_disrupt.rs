//! Stopping and restarting the real PostgreSQL and Redis under load, with two coordinators on
//! them (A proceeds without idempotency when Redis is down, the default; B has
//! `on_unavailable: reject`).
//!
//! One test function, so the outages never overlap each other, in its own test binary, so no other
//! test of this crate runs while the servers are down (cargo runs test binaries one at a time).
//! It stops the machine's shared servers, so it runs only under CI (`CI=true`) or with
//! `PAIRDB_TEST_DISRUPT=1`, and otherwise prints that it was skipped. A guard restarts both
//! servers when the test ends, failed or not.
//!
//! Checked: neither coordinator exits; with Redis down A's idempotent writes succeed and B's
//! answer UNAVAILABLE (IDEMPOTENCY_UNAVAILABLE); with PostgreSQL down writes to the cached tenant
//! go on through both, and an admin call answers UNAVAILABLE (METADATA_UNAVAILABLE); after each
//! restart everything works again without restarting the coordinators; a coordinator started
//! while PostgreSQL is down waits for it and then serves; and every write that was acknowledged is
//! read back afterwards with its value.

mod common;

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{channel, eventually, run_local, CoordinatorOptions, CoordinatorProcess};
use pairdb::{
    proto::coordinator as api,
    rpc::{Code, Status},
};

#[path = "support/backends.rs"]
mod backends;

use backends::{call, ci, postgres_url, redis_url, unique, Pair, PgSchema, CONVERGE};

const QUORUM: i32 = api::Consistency::Quorum as i32;
const TENANT: &str = "disrupt";

/// Phases of the test, as the load loop tags its results.
const NORMAL: u32 = 0;
const REDIS_DOWN: u32 = 1;
const POSTGRES_DOWN: u32 = 2;
const RECOVERED: u32 = 3;

/// Restarts PostgreSQL and Redis when dropped, whatever state the test left them in: other tests
/// and CI use them.
struct RestartServers;

impl Drop for RestartServers {
    fn drop(&mut self) {
        // No assertions here: a panic while the test is already unwinding would abort the
        // process before the other server is restarted.
        if !postgres_running() && !shell(&format!("{PG_CTL} start")) {
            eprintln!("could not restart postgres: run `{PG_CTL} start`");
        }
        if !redis_running() && !shell(REDIS_START) {
            eprintln!("could not restart redis: run `{REDIS_START}`");
        }
    }
}

const PG_CTL: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main";
const REDIS_START: &str =
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' \
                           --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";

fn shell(script: &str) -> bool {
    Command::new("sh").arg("-c").arg(script).status().is_ok_and(|s| s.success())
}

fn postgres(action: &str) {
    assert!(shell(&format!("{PG_CTL} {action}")), "{PG_CTL} {action} failed");
}

fn postgres_running() -> bool {
    shell("pg_isready -q -h 127.0.0.1 -p 5432")
}

fn redis_stop() {
    // Fails when it is already down; what matters is that it is down afterwards.
    shell("redis-cli shutdown nosave >/dev/null 2>&1");
    assert!(!redis_running(), "redis still answers after shutdown");
}

fn redis_start() {
    assert!(shell(REDIS_START), "redis-server did not start");
    let deadline = Instant::now() + CONVERGE;
    while !redis_running() {
        assert!(Instant::now() < deadline, "redis did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis_running() -> bool {
    shell("redis-cli ping 2>/dev/null | grep -q PONG")
}

/// Waits until PostgreSQL accepts connections again.
fn wait_postgres() {
    let deadline = Instant::now() + CONVERGE;
    while !postgres_running() {
        assert!(Instant::now() < deadline, "postgres did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One write the load loop sent.
#[derive(Debug)]
struct Sent {
    phase: u32,
    /// 0 = A, 1 = B.
    coordinator: usize,
    key: String,
    value: String,
    result: Result<(), Status>,
}

#[test]
fn postgres_and_redis_restart_under_load() {
    let name = "postgres_and_redis_restart_under_load";
    if !ci() && std::env::var("PAIRDB_TEST_DISRUPT").as_deref() != Ok("1") {
        eprintln!(
            "skipped {name}: it stops the machine's PostgreSQL and Redis; \
             set PAIRDB_TEST_DISRUPT=1 (or CI=true) to run it"
        );
        return;
    }
    let (Some(pg), Some(redis)) = (postgres_url(name), redis_url(name)) else { return };
    let _restart = RestartServers;
    let pair =
        Pair::start("disrupt", PgSchema::create(&pg), Some(&redis), "on_unavailable: reject");
    let (a, b) = (pair.a.addr, pair.b.addr);
    run_local(move || async move {
        let ch = channel(a).await;
        let _: api::CreateTenantResponse = call(
            &ch,
            "CreateTenant",
            &api::CreateTenantRequest {
                tenant_id: TENANT.into(),
                replication_factor: 3,
                ..Default::default()
            },
        )
        .await
        .expect("CreateTenant");
        // B caches the tenant now, while PostgreSQL is up.
        let chb = channel(b).await;
        let _: api::GetTenantResponse =
            call(&chb, "GetTenant", &api::GetTenantRequest { tenant_id: TENANT.into() })
                .await
                .expect("GetTenant through B");
    });

    // The load: idempotent QUORUM writes of unique keys, alternating between A and B.
    let phase = Arc::new(AtomicU32::new(NORMAL));
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let run = unique("load");
    let load = {
        let (phase, stop, sent) = (phase.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            run_local(move || async move {
                let chans = [channel(a).await, channel(b).await];
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let coordinator = (i % 2) as usize;
                    let key = format!("{run}-{i}");
                    let value = format!("value {i}");
                    let request = api::WriteKeyValueRequest {
                        tenant_id: TENANT.into(),
                        key: key.clone(),
                        value: Bytes::from(value.clone()),
                        consistency: QUORUM,
                        idempotency_key: format!("idem-{key}"),
                        vector_clock: None,
                    };
                    let phase_now = phase.load(Ordering::SeqCst);
                    let result: Result<api::WriteKeyValueResponse, Status> =
                        call(&chans[coordinator], "WriteKeyValue", &request).await;
                    sent.lock().unwrap().push(Sent {
                        phase: phase_now,
                        coordinator,
                        key,
                        value,
                        result: result.map(|_| ()),
                    });
                    i += 1;
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
            })
        })
    };
    let count = |phase: u32, coordinator: usize, ok: bool| {
        sent.lock()
            .unwrap()
            .iter()
            .filter(|s| s.phase == phase && s.coordinator == coordinator && s.result.is_ok() == ok)
            .count()
    };
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + CONVERGE;
        while !check() {
            assert!(Instant::now() < deadline, "{what}: not within {CONVERGE:?}");
            assert!(!load.is_finished(), "the load loop stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("writes acknowledged before any outage", &|| {
        count(NORMAL, 0, true) >= 20 && count(NORMAL, 1, true) >= 20
    });

    // Redis down: A proceeds without idempotency, B rejects.
    phase.store(REDIS_DOWN, Ordering::SeqCst);
    redis_stop();
    wait_for("A writes and B rejects while redis is down", &|| {
        count(REDIS_DOWN, 0, true) >= 20 && count(REDIS_DOWN, 1, false) >= 20
    });
    redis_start();
    phase.store(RECOVERED, Ordering::SeqCst);
    wait_for("B writes again once redis is back", &|| count(RECOVERED, 1, true) >= 20);

    // PostgreSQL down: writes to the cached tenant go on through both; admin calls fail cleanly.
    phase.store(POSTGRES_DOWN, Ordering::SeqCst);
    postgres("stop");
    let admin_while_down = run_local(move || async move {
        let ch = channel(a).await;
        call::<_, api::CreateTenantResponse>(
            &ch,
            "CreateTenant",
            &api::CreateTenantRequest {
                tenant_id: "while-down".into(),
                replication_factor: 3,
                ..Default::default()
            },
        )
        .await
    });
    wait_for("both write while postgres is down", &|| {
        count(POSTGRES_DOWN, 0, true) >= 20 && count(POSTGRES_DOWN, 1, true) >= 20
    });
    // A coordinator started now waits for PostgreSQL (metadata.startup_wait_secs) instead of
    // exiting, and serves once it is back. PostgreSQL comes back 2 s after it was started.
    let starter = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(2));
        postgres("start");
    });
    let started = Instant::now();
    let mut c = CoordinatorProcess::start(
        &pair.tmp.path().join("c"),
        &CoordinatorOptions {
            node_id: "disrupt-c",
            cores: 1,
            storage_nodes: Vec::new(),
            config_yaml: &format!(
                "metadata: {{ backend: postgres, postgres_url: \"{}\", startup_wait_secs: 60 }}\n",
                pair.schema.url
            ),
        },
    );
    starter.join().expect("postgres start");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "coordinator C was ready before PostgreSQL was started"
    );
    assert!(c.log_tail().contains("PostgreSQL cannot be reached yet"), "{}", c.log_tail());
    wait_postgres();
    let c_addr = c.addr;
    run_local(move || async move {
        let ch = channel(c_addr).await;
        let tenant: api::GetTenantResponse =
            call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: TENANT.into() })
                .await
                .expect("GetTenant through C, which started while PostgreSQL was down");
        assert_eq!(tenant.replication_factor, 3);
    });
    c.assert_running();
    phase.store(RECOVERED, Ordering::SeqCst);
    // Admin calls work again on their own (the pool reconnects).
    run_local(move || async move {
        let ch = channel(a).await;
        let ch = &ch;
        eventually("CreateTenant works after postgres restarts", CONVERGE, move || async move {
            call::<_, api::CreateTenantResponse>(
                ch,
                "CreateTenant",
                &api::CreateTenantRequest {
                    tenant_id: "after".into(),
                    replication_factor: 3,
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
        .await;
    });
    let recovered = count(RECOVERED, 0, true);
    wait_for("A keeps writing after both restarts", &|| {
        count(RECOVERED, 0, true) >= recovered + 20
    });
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load loop");

    // Fallbacks, as configured.
    let err = admin_while_down.expect_err("CreateTenant while postgres is down");
    assert_eq!(err.code, Code::UNAVAILABLE, "{err}");
    assert_eq!(err.error_code.as_deref(), Some("METADATA_UNAVAILABLE"), "{err}");
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    for s in sent.iter().filter(|s| s.phase == REDIS_DOWN && s.result.is_err()) {
        let e = s.result.as_ref().unwrap_err();
        assert_eq!(s.coordinator, 1, "A failed a write while redis was down: {s:?}");
        assert_eq!(e.code, Code::UNAVAILABLE, "{s:?}");
        assert_eq!(e.error_code.as_deref(), Some("IDEMPOTENCY_UNAVAILABLE"), "{s:?}");
    }
    for s in sent.iter().filter(|s| s.phase == POSTGRES_DOWN) {
        assert!(s.result.is_ok(), "a write failed while only postgres was down: {s:?}");
    }

    // No acknowledged write lost: each is read back through A with its value.
    let acked: Vec<(String, String)> = sent
        .iter()
        .filter(|s| s.result.is_ok())
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    let total = acked.len();
    run_local(move || async move {
        let ch = channel(a).await;
        for (key, value) in &acked {
            let read: api::ReadKeyValueResponse = call(
                &ch,
                "ReadKeyValue",
                &api::ReadKeyValueRequest {
                    tenant_id: TENANT.into(),
                    key: key.clone(),
                    consistency: QUORUM,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("reading acknowledged {key}: {e}"));
            assert_eq!(read.value, value.as_bytes(), "{key}");
        }
    });
    eprintln!("{total} acknowledged writes read back");
    let mut pair = pair;
    pair.a.assert_running();
    pair.b.assert_running();
}
