//! Per-tenant limits on real processes: one storage node and a coordinator of two cores.
//!
//! - `a_tenant_over_its_rate_is_refused_while_another_is_served`: a tenant limited to 50
//!   requests per second, sent 300 writes at once, gets RESOURCE_EXHAUSTED / `RATE_LIMITED` with
//!   a `pairdb-retry-after-ms` hint for the excess (and no more than its rate lets through),
//!   while a second tenant on the same coordinator is served every write; the refusals are
//!   counted in `pairdb_tenant_rate_limited_total{reason="requests"}`, and the HTTP API answers
//!   429 with `Retry-After`.
//! - `a_value_over_the_tenants_maximum_is_refused_and_not_stored`: VALUE_TOO_LARGE /
//!   KEY_TOO_LARGE at the tenant's own maximum, nothing stored; a maximum above the global one
//!   is refused.
//! - `limits_change_without_restart_and_survive_a_restart`: `UpdateTenantLimits` takes effect on
//!   the next request, and the limits are still there after the coordinator restarts (embedded
//!   metadata store); `pairdb tenant get` shows them and `pairdb tenant create --max-key-bytes`
//!   / `pairdb tenant set-limits` set them.
//! - `limits_reach_a_second_coordinator_through_postgres`: a change made on coordinator A is in
//!   force on B within seconds (runs where `PAIRDB_TEST_POSTGRES_URL` is set or under CI).

mod common;

#[path = "support/backends.rs"]
mod backends;

use std::{
    io::{Read, Write},
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    channel, coordinator_path, run_local, CoordinatorOptions, CoordinatorProcess, StorageProcess,
    CALL_TIMEOUT,
};
use futures_util::future::join_all;
use pairdb::{
    proto::coordinator as api,
    rpc::{Channel, Code, Status},
};
use prost::Message;

/// One cluster at a time: rates are measured, and a busy machine skews them.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const CORES: usize = 2;

fn start_coordinator(
    dir: &Path,
    name: &str,
    storage: &StorageProcess,
    yaml: &str,
) -> CoordinatorProcess {
    CoordinatorProcess::start(
        dir,
        &CoordinatorOptions {
            node_id: name,
            cores: CORES,
            storage_nodes: vec![("s1".into(), storage.addr)],
            config_yaml: yaml,
        },
    )
}

async fn call<Req: Message, Resp: Message + Default>(
    ch: &Channel,
    method: &str,
    req: &Req,
) -> Result<Resp, Status> {
    ch.unary(&coordinator_path(method), req, Some(CALL_TIMEOUT)).await
}

fn limits(rps: u64, bps: u64, key: u64, value: u64) -> api::TenantLimits {
    api::TenantLimits {
        requests_per_second: rps,
        bytes_per_second: bps,
        max_key_bytes: key,
        max_value_bytes: value,
    }
}

async fn create(ch: &Channel, tenant: &str, l: api::TenantLimits) -> api::CreateTenantResponse {
    let req = api::CreateTenantRequest {
        tenant_id: tenant.into(),
        replication_factor: 1,
        limits: Some(l),
    };
    call(ch, "CreateTenant", &req).await.unwrap_or_else(|e| panic!("CreateTenant {tenant}: {e}"))
}

async fn set_limits(
    ch: &Channel,
    tenant: &str,
    l: api::TenantLimits,
) -> api::UpdateTenantLimitsResponse {
    let req = api::UpdateTenantLimitsRequest { tenant_id: tenant.into(), limits: Some(l) };
    call(ch, "UpdateTenantLimits", &req)
        .await
        .unwrap_or_else(|e| panic!("UpdateTenantLimits {tenant}: {e}"))
}

async fn write(
    ch: &Channel,
    tenant: &str,
    key: &str,
    value: usize,
) -> Result<api::WriteKeyValueResponse, Status> {
    let req = api::WriteKeyValueRequest {
        tenant_id: tenant.into(),
        key: key.into(),
        value: Bytes::from(vec![b'v'; value]),
        ..Default::default()
    };
    call(ch, "WriteKeyValue", &req).await
}

async fn read(ch: &Channel, tenant: &str, key: &str) -> Result<api::ReadKeyValueResponse, Status> {
    let req = api::ReadKeyValueRequest {
        tenant_id: tenant.into(),
        key: key.into(),
        ..Default::default()
    };
    call(ch, "ReadKeyValue", &req).await
}

fn assert_code<T: std::fmt::Debug>(
    r: Result<T, Status>,
    code: Code,
    error_code: &str,
    what: &str,
) -> Status {
    let status = r.expect_err(what);
    assert_eq!(status.code, code, "{what}: {status}");
    assert_eq!(status.error_code.as_deref(), Some(error_code), "{what}: {status}");
    status
}

/// One HTTP/1.1 request; `(status, head, body)`.
fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect over HTTP");
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn a_tenant_over_its_rate_is_refused_while_another_is_served() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "lim-rate-s1");
    let coord = start_coordinator(
        &tmp.path().join("c"),
        "lim-rate-c",
        &storage,
        "replica_timeout_ms: 5000\nhttp_api: { port: 0 }\n",
    );
    let (addr, http_addr) = (coord.addr, coord.http.expect("HTTP API served"));
    run_local(move || async move {
        let ch = channel(addr).await;
        let created = create(&ch, "noisy", limits(50, 0, 0, 0)).await;
        assert_eq!(created.limits, Some(limits(50, 0, 0, 0)));
        let eff = created.effective_limits.expect("effective limits");
        assert_eq!((eff.requests_per_second, eff.max_value_bytes), (50, 1 << 20));
        create(&ch, "quiet", limits(0, 0, 0, 0)).await;

        let started = Instant::now();
        let noisy = join_all((0..300).map(|i| {
            let ch = ch.clone();
            async move { write(&ch, "noisy", &format!("k{i}"), 16).await }
        }));
        let quiet = join_all((0..60).map(|i| {
            let ch = ch.clone();
            async move { write(&ch, "quiet", &format!("k{i}"), 16).await }
        }));
        let (noisy, quiet) = futures_util::join!(noisy, quiet);
        let elapsed = started.elapsed().as_secs_f64();
        for r in quiet {
            r.expect("the quiet tenant is served");
        }
        let mut ok = 0;
        let mut refused = 0;
        for r in noisy {
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    let e = assert_code(
                        Err::<(), _>(e),
                        Code::RESOURCE_EXHAUSTED,
                        "RATE_LIMITED",
                        "noisy write",
                    );
                    let hint = e.retry_after_ms.expect("a pairdb-retry-after-ms trailer");
                    assert!((1..=1_000).contains(&hint), "retry hint {hint} ms");
                    assert!(e.message.contains("noisy"), "{}", e.message);
                    refused += 1;
                }
            }
        }
        eprintln!("noisy: {ok} ok, {refused} refused in {elapsed:.2} s");
        // Each core: 25/s with a burst of 25; all of one channel's calls land on one core, but
        // whichever cores served, no more than 50 burst + 50/s got through.
        let bound = 50.0 + 50.0 * elapsed + 1.0;
        assert!((ok as f64) <= bound, "{ok} writes let through in {elapsed:.2} s (bound {bound})");
        assert!(refused >= 100, "only {refused} of 300 refused");

        // The HTTP API: 429 with Retry-After, the same error code. Calls may land on either
        // core, and each has its own bucket: send until refused.
        let body = r#"{"tenant_id":"noisy","key":"h","value":"aGk="}"#;
        let mut seen = None;
        for _ in 0..40 {
            let (status, head, body) = http(http_addr, "POST", "/v1/key-value", body);
            if status == 429 {
                seen = Some((head, body));
                break;
            }
        }
        let (head, body) = seen.expect("a 429 from the HTTP API");
        assert!(head.contains("\r\nretry-after: "), "{head}");
        assert!(body.contains("RATE_LIMITED"), "{body}");

        // Limits over the HTTP API: lifted with PUT, shown by GET, and writes pass again.
        let (status, _, body) = http(
            http_addr,
            "PUT",
            "/v1/tenants/noisy/limits",
            r#"{"requests_per_second":"0","max_value_bytes":4096}"#,
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""max_value_bytes":"4096""#), "{body}");
        let (status, _, body) = http(http_addr, "GET", "/v1/tenants/noisy", "");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""requests_per_second":"0""#), "{body}");
        let (status, _, body) =
            http(http_addr, "PUT", "/v1/tenants/noisy/limits", r#"{"requests_per_second":-1}"#);
        assert_eq!(status, 400, "{body}");
        for i in 0..50 {
            write(&ch, "noisy", &format!("after-{i}"), 16).await.expect("unlimited again");
        }
    });
    let (status, _, metrics) = http(coord.admin, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("pairdb_tenant_rate_limited_total{") && l.contains("reason=\"requests\"")
        })
        .unwrap_or_else(|| panic!("no rate-limited counter in\n{metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 100.0, "{line}");
    drop((coord, storage));
}

#[test]
fn a_value_over_the_tenants_maximum_is_refused_and_not_stored() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "lim-size-s1");
    let coord = start_coordinator(
        &tmp.path().join("c"),
        "lim-size-c",
        &storage,
        "replica_timeout_ms: 5000\n",
    );
    let addr = coord.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        create(&ch, "small", limits(0, 0, 8, 100)).await;
        let e = assert_code(
            write(&ch, "small", "big", 101).await,
            Code::INVALID_ARGUMENT,
            "VALUE_TOO_LARGE",
            "a value over 100 bytes",
        );
        assert!(e.message.contains("100-byte limit"), "{}", e.message);
        assert_code(
            read(&ch, "small", "big").await,
            Code::NOT_FOUND,
            "KEY_NOT_FOUND",
            "the refused value",
        );
        assert_code(
            write(&ch, "small", "a-long-key", 1).await,
            Code::INVALID_ARGUMENT,
            "KEY_TOO_LARGE",
            "a 10-byte key",
        );
        write(&ch, "small", "fits", 100).await.expect("a value at the maximum");
        assert_eq!(read(&ch, "small", "fits").await.expect("read").value.len(), 100);
        // A tenant's maximum cannot be above the cluster's.
        let req = api::CreateTenantRequest {
            tenant_id: "huge".into(),
            replication_factor: 1,
            limits: Some(limits(0, 0, 0, 2 << 20)),
        };
        let r: Result<api::CreateTenantResponse, _> = call(&ch, "CreateTenant", &req).await;
        assert_code(
            r,
            Code::INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "max_value_bytes above the global one",
        );
    });
    drop((coord, storage));
}

#[test]
fn limits_change_without_restart_and_survive_a_restart() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "lim-upd-s1");
    let yaml = "replica_timeout_ms: 5000\n";
    let mut coord = start_coordinator(&tmp.path().join("c"), "lim-upd-c", &storage, yaml);
    let addr = coord.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        // 1 request per second: each core has a burst of one.
        create(&ch, "t", limits(1, 0, 0, 0)).await;
        let mut refused = 0;
        for i in 0..5 {
            if let Err(e) = write(&ch, "t", &format!("a{i}"), 1).await {
                assert_code(Err::<(), _>(e), Code::RESOURCE_EXHAUSTED, "RATE_LIMITED", "over 1/s");
                refused += 1;
            }
        }
        assert!(refused >= 3, "{refused} of 5 refused at 1 request/s");
        let resp = set_limits(&ch, "t", limits(0, 0, 0, 10)).await;
        assert_eq!(resp.effective_limits.unwrap().requests_per_second, 0, "unlimited now");
        for i in 0..20 {
            write(&ch, "t", &format!("b{i}"), 10).await.expect("unlimited after the update");
        }
        assert_code(
            write(&ch, "t", "c", 11).await,
            Code::INVALID_ARGUMENT,
            "VALUE_TOO_LARGE",
            "the new maximum",
        );
        let r: Result<api::UpdateTenantLimitsResponse, _> = call(
            &ch,
            "UpdateTenantLimits",
            &api::UpdateTenantLimitsRequest { tenant_id: "absent".into(), limits: None },
        )
        .await;
        assert_code(r, Code::NOT_FOUND, "TENANT_NOT_FOUND", "limits of an absent tenant");
    });
    coord.kill9();
    drop(coord);
    let coord = start_coordinator(&tmp.path().join("c"), "lim-upd-c", &storage, yaml);
    let addr = coord.addr;
    run_local(move || async move {
        let ch = channel(addr).await;
        let t: api::GetTenantResponse =
            call(&ch, "GetTenant", &api::GetTenantRequest { tenant_id: "t".into() })
                .await
                .expect("GetTenant");
        assert_eq!(t.limits, Some(limits(0, 0, 0, 10)), "the limits survive a restart");
        assert_code(
            write(&ch, "t", "c", 11).await,
            Code::INVALID_ARGUMENT,
            "VALUE_TOO_LARGE",
            "after restart",
        );
        write(&ch, "t", "c", 10).await.expect("within the maximum");
    });
    // The CLI shows and sets them.
    let pairdb = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairdb"))
            .args(args)
            .env("PAIRDB_ADDR", coord.addr.to_string())
            .env_remove("PAIRDB_TOKEN")
            .output()
            .expect("run pairdb");
        assert!(out.status.success(), "pairdb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let got = pairdb(&["tenant", "get", "t"]);
    assert!(got.contains("max value bytes:    10\n"), "{got}");
    assert!(got.contains("requests/s:         unlimited (default)"), "{got}");
    let set = pairdb(&["tenant", "set-limits", "t", "--requests-per-second", "7", "--json"]);
    assert!(set.contains("\"limits\":{\"requests_per_second\":7,"), "{set}");
    let created =
        pairdb(&["tenant", "create", "u", "--replication-factor", "1", "--max-key-bytes", "9"]);
    assert!(created.contains("max key bytes:      9\n"), "{created}");
    assert_eq!(
        pairdb(&["tenant", "create", "v", "--replication-factor", "1"]),
        "created tenant v (replication factor 1)\n"
    );
    drop((coord, storage));
}

#[test]
fn limits_reach_a_second_coordinator_through_postgres() {
    let _serial = serial();
    let Some(url) = backends::postgres_url("limits_reach_a_second_coordinator_through_postgres")
    else {
        return;
    };
    let schema = backends::PgSchema::create(&url);
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "lim-pg-s1");
    // A long periodic reload: only the notification can make it in time.
    let yaml = format!(
        "replica_timeout_ms: 5000\nmetadata: {{ backend: postgres, postgres_url: \"{}\", reload_interval_secs: 60 }}\n",
        schema.url
    );
    let a = start_coordinator(&tmp.path().join("a"), "lim-pg-a", &storage, &yaml);
    let b = start_coordinator(&tmp.path().join("b"), "lim-pg-b", &storage, &yaml);
    let (a_addr, b_addr) = (a.addr, b.addr);
    let elapsed = run_local(move || async move {
        let on_a = channel(a_addr).await;
        let on_b = channel(b_addr).await;
        create(&on_a, "shared", limits(0, 0, 0, 0)).await;
        // B learns of the tenant (by notification, or by asking the store on a miss).
        write(&on_b, "shared", "k", 50).await.expect("a 50-byte value on B");
        set_limits(&on_a, "shared", limits(0, 0, 0, 20)).await;
        let changed = Instant::now();
        loop {
            match write(&on_b, "shared", "k", 50).await {
                Err(e) if e.error_code.as_deref() == Some("VALUE_TOO_LARGE") => break,
                _ if changed.elapsed() > Duration::from_secs(10) => {
                    panic!("B still takes 50-byte values 10 s after the change on A")
                }
                _ => glommio::timer::sleep(Duration::from_millis(20)).await,
            }
        }
        changed.elapsed()
    });
    eprintln!("B enforced the new maximum {elapsed:?} after the change on A");
    assert!(elapsed <= Duration::from_secs(3), "{elapsed:?}");
    drop((a, b, storage));
}
