//! Client authentication on real processes: a coordinator with `auth.mode: required` and a
//! bootstrap admin token (from a file), one storage node.
//!
//! - `a_tenant_token_cannot_touch_another_tenant_or_admin_calls`: a `tenant-rw` token reads,
//!   writes and deletes its own tenant's keys, and gets PERMISSION_DENIED / `FORBIDDEN` for
//!   another tenant's keys and for every admin RPC (tenants, nodes, migrations, tokens).
//! - `a_read_only_token_cannot_write`: a `tenant-ro` token reads, and cannot write or delete.
//! - `unauthenticated_calls_are_refused`: no token, a malformed header, an unknown token, a
//!   wrong secret and a revoked token get UNAUTHENTICATED / `UNAUTHORIZED` (gRPC and the HTTP
//!   API's 401); health checks stay open.
//! - `health_and_reflection_can_require_a_token`: with `auth.open_health_and_reflection: false`,
//!   a health check without a valid token is refused UNAUTHENTICATED, with a tenant token it
//!   answers SERVING.
//! - `a_revoked_token_is_refused_on_a_second_coordinator_within_two_seconds`: two coordinators
//!   on one fresh PostgreSQL schema; a token made on A works on B, is revoked on A, and B
//!   refuses it within 2 s (runs where `PAIRDB_TEST_POSTGRES_URL` is set or under CI).
//! - `the_cli_manages_tokens_and_sends_them`: `pairdb token create|list|revoke` with
//!   `PAIRDB_TOKEN`, and `pairdb kv` with `--token`.
//! - `auth_is_off_by_default_and_says_so`: without `auth`, no token is needed and a warning is
//!   logged at start-up.
//!
//! Each test ends by grepping its processes' logs for every token and secret it handled: none
//! may appear.

mod common;

#[path = "support/backends.rs"]
mod backends;

use std::{
    io::{Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    coordinator_path, run_local, CoordinatorOptions, CoordinatorProcess, StorageProcess,
    CALL_TIMEOUT,
};
use pairdb::{
    proto::{
        coordinator as api,
        health::{HealthCheckRequest, HealthCheckResponse},
    },
    rpc::{Channel, ClientConfig, Code, Status},
};
use prost::Message;
use tempfile::TempDir;

/// The tests of this file run one at a time: each starts its own processes, and on a small,
/// busy machine several clusters at once make calls miss their deadlines.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const BOOTSTRAP: &str = "bootstrap-admin-token-0123456789abcdef0123456789";

/// One storage node and one coordinator requiring tokens.
struct Secured {
    tmp: TempDir,
    _storage: StorageProcess,
    coord: CoordinatorProcess,
}

fn auth_yaml(dir: &Path) -> String {
    auth_yaml_with(dir, "")
}

/// As [`auth_yaml`], with `auth_extra` (`, key: value` pairs) added to the `auth:` section.
fn auth_yaml_with(dir: &Path, auth_extra: &str) -> String {
    let file = dir.join("admin.token");
    std::fs::write(&file, format!("{BOOTSTRAP}\n")).expect("write the bootstrap token");
    // A generous replica timeout: these tests check auth, not latency, on a busy machine.
    format!(
        "replica_timeout_ms: 5000\nauth: {{ mode: required, bootstrap_token_file: \"{}\"{auth_extra} }}\n",
        file.display()
    )
}

fn start(name: &str, extra_yaml: &str) -> Secured {
    start_with(name, extra_yaml, "")
}

/// As [`start`], with `auth_extra` added to the `auth:` section (see [`auth_yaml_with`]).
fn start_with(name: &str, extra_yaml: &str, auth_extra: &str) -> Secured {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), &format!("{name}-s1"));
    let yaml = format!("{}{extra_yaml}", auth_yaml_with(tmp.path(), auth_extra));
    let coord = CoordinatorProcess::start(
        &tmp.path().join("c"),
        &CoordinatorOptions {
            node_id: &format!("{name}-c"),
            cores: 2,
            storage_nodes: vec![("s1".into(), storage.addr)],
            config_yaml: &yaml,
        },
    );
    Secured { tmp, _storage: storage, coord }
}

/// A channel that sends `token` (as `Bearer <token>`) on every call, or nothing.
async fn connect(addr: SocketAddr, token: Option<&str>) -> Channel {
    let config = ClientConfig {
        authorization: token.map(|t| Bytes::from(format!("Bearer {t}"))),
        ..ClientConfig::default()
    };
    Channel::connect(addr, &config).await.unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

async fn call<Req: Message, Resp: Message + Default>(
    ch: &Channel,
    method: &str,
    req: &Req,
) -> Result<Resp, Status> {
    ch.unary(&coordinator_path(method), req, Some(CALL_TIMEOUT)).await
}

fn assert_refused<T: std::fmt::Debug>(
    r: Result<T, Status>,
    code: Code,
    error_code: &str,
    what: &str,
) {
    let status = r.expect_err(what);
    assert_eq!(status.code, code, "{what}: {status}");
    assert_eq!(status.error_code.as_deref(), Some(error_code), "{what}: {status}");
}

fn write_req(tenant: &str, key: &str) -> api::WriteKeyValueRequest {
    api::WriteKeyValueRequest {
        tenant_id: tenant.into(),
        key: key.into(),
        value: Bytes::from_static(b"secret-value-never-logged"),
        ..Default::default()
    }
}

fn read_req(tenant: &str, key: &str) -> api::ReadKeyValueRequest {
    api::ReadKeyValueRequest { tenant_id: tenant.into(), key: key.into(), ..Default::default() }
}

fn delete_req(tenant: &str, key: &str) -> api::DeleteKeyValueRequest {
    api::DeleteKeyValueRequest { tenant_id: tenant.into(), key: key.into(), ..Default::default() }
}

async fn create_tenant(admin: &Channel, tenant: &str) {
    let _: api::CreateTenantResponse = call(
        admin,
        "CreateTenant",
        &api::CreateTenantRequest {
            tenant_id: tenant.into(),
            replication_factor: 1,
            ..Default::default()
        },
    )
    .await
    .expect("CreateTenant with the bootstrap token");
}

async fn create_token(admin: &Channel, tenant: &str, role: &str) -> api::CreateTokenResponse {
    let r: api::CreateTokenResponse = call(
        admin,
        "CreateToken",
        &api::CreateTokenRequest { tenant_id: tenant.into(), role: role.into() },
    )
    .await
    .expect("CreateToken");
    assert!(r.token.starts_with("pdb_"), "token format");
    r
}

/// Every `*.log` under `dir`.
fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push(p);
            }
        }
    }
    out
}

/// No log under `dir` holds any of `secrets` (nor the secret half of a `pdb_` token); at least
/// one audit line was written.
fn assert_no_secrets_in_logs(dir: &Path, secrets: &[String]) {
    let mut all = String::new();
    for path in logs(dir) {
        all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
    }
    assert!(!all.is_empty(), "no logs found under {}", dir.display());
    let audit = all.lines().find(|l| l.contains("admin call")).expect("an audit line in the logs");
    for field in ["audit", "token_id=", "rpc=", "target=", "outcome="] {
        assert!(audit.contains(field), "no {field} in the audit line {audit:?}");
    }
    for s in secrets {
        let secret = s.rsplit('_').next().unwrap_or(s);
        assert!(!all.contains(s.as_str()), "a token appears in the logs");
        assert!(!all.contains(secret), "a token's secret appears in the logs");
    }
    assert!(!all.contains("secret-value-never-logged"), "a value appears in the logs");
}

#[test]
fn a_tenant_token_cannot_touch_another_tenant_or_admin_calls() {
    let _serial = serial();
    let s = start("sec-tenant", "");
    let addr = s.coord.addr;
    let token = run_local(move || async move {
        let admin = connect(addr, Some(BOOTSTRAP)).await;
        create_tenant(&admin, "a").await;
        create_tenant(&admin, "b").await;
        let _: api::WriteKeyValueResponse =
            call(&admin, "WriteKeyValue", &write_req("b", "kb")).await.expect("admin writes b");
        let created = create_token(&admin, "a", "tenant-rw").await;
        let info = created.info.clone().expect("info");
        assert_eq!((info.tenant_id.as_str(), info.role.as_str()), ("a", "tenant-rw"));

        let ta = connect(addr, Some(&created.token)).await;
        // Its own tenant: everything.
        let _: api::WriteKeyValueResponse =
            call(&ta, "WriteKeyValue", &write_req("a", "k")).await.expect("own write");
        let r: api::ReadKeyValueResponse =
            call(&ta, "ReadKeyValue", &read_req("a", "k")).await.expect("own read");
        assert_eq!(&r.value[..], b"secret-value-never-logged");
        let _: api::DeleteKeyValueResponse =
            call(&ta, "DeleteKeyValue", &delete_req("a", "k")).await.expect("own delete");
        let _: api::GetTenantResponse =
            call(&ta, "GetTenant", &api::GetTenantRequest { tenant_id: "a".into() })
                .await
                .expect("own GetTenant");

        // Another tenant: nothing.
        let f = |r, what| assert_refused(r, Code::PERMISSION_DENIED, "FORBIDDEN", what);
        f(
            call::<_, api::WriteKeyValueResponse>(&ta, "WriteKeyValue", &write_req("b", "kb"))
                .await
                .map(|_| ()),
            "write b",
        );
        f(
            call::<_, api::ReadKeyValueResponse>(&ta, "ReadKeyValue", &read_req("b", "kb"))
                .await
                .map(|_| ()),
            "read b",
        );
        f(
            call::<_, api::DeleteKeyValueResponse>(&ta, "DeleteKeyValue", &delete_req("b", "kb"))
                .await
                .map(|_| ()),
            "delete b",
        );
        f(
            call::<_, api::GetTenantResponse>(
                &ta,
                "GetTenant",
                &api::GetTenantRequest { tenant_id: "b".into() },
            )
            .await
            .map(|_| ()),
            "GetTenant b",
        );
        // b's key is untouched.
        let r: api::ReadKeyValueResponse =
            call(&admin, "ReadKeyValue", &read_req("b", "kb")).await.expect("b intact");
        assert_eq!(&r.value[..], b"secret-value-never-logged");

        // Admin calls: none.
        f(
            call::<_, api::CreateTenantResponse>(
                &ta,
                "CreateTenant",
                &api::CreateTenantRequest {
                    tenant_id: "c".into(),
                    replication_factor: 1,
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
            "CreateTenant",
        );
        f(
            call::<_, api::UpdateReplicationFactorResponse>(
                &ta,
                "UpdateReplicationFactor",
                &api::UpdateReplicationFactorRequest {
                    tenant_id: "a".into(),
                    new_replication_factor: 1,
                },
            )
            .await
            .map(|_| ()),
            "UpdateReplicationFactor",
        );
        f(
            call::<_, api::UpdateTenantLimitsResponse>(
                &ta,
                "UpdateTenantLimits",
                &api::UpdateTenantLimitsRequest { tenant_id: "a".into(), limits: None },
            )
            .await
            .map(|_| ()),
            "UpdateTenantLimits",
        );
        f(
            call::<_, api::ListStorageNodesResponse>(
                &ta,
                "ListStorageNodes",
                &api::ListStorageNodesRequest {},
            )
            .await
            .map(|_| ()),
            "ListStorageNodes",
        );
        f(
            call::<_, api::RemoveStorageNodeResponse>(
                &ta,
                "RemoveStorageNode",
                &api::RemoveStorageNodeRequest { node_id: "s1".into(), ..Default::default() },
            )
            .await
            .map(|_| ()),
            "RemoveStorageNode",
        );
        f(
            call::<_, api::AddStorageNodeResponse>(
                &ta,
                "AddStorageNode",
                &api::AddStorageNodeRequest { node_id: "s2".into(), ..Default::default() },
            )
            .await
            .map(|_| ()),
            "AddStorageNode",
        );
        f(
            call::<_, api::ListMigrationsResponse>(
                &ta,
                "ListMigrations",
                &api::ListMigrationsRequest { limit: 0 },
            )
            .await
            .map(|_| ()),
            "ListMigrations",
        );
        f(
            call::<_, api::CreateTokenResponse>(
                &ta,
                "CreateToken",
                &api::CreateTokenRequest { tenant_id: "a".into(), role: "admin".into() },
            )
            .await
            .map(|_| ()),
            "CreateToken",
        );
        f(
            call::<_, api::ListTokensResponse>(
                &ta,
                "ListTokens",
                &api::ListTokensRequest::default(),
            )
            .await
            .map(|_| ()),
            "ListTokens",
        );
        f(
            call::<_, api::RevokeTokenResponse>(
                &ta,
                "RevokeToken",
                &api::RevokeTokenRequest { token_id: info.token_id.clone() },
            )
            .await
            .map(|_| ()),
            "RevokeToken",
        );

        // The listing shows the token, never a secret.
        let list: api::ListTokensResponse =
            call(&admin, "ListTokens", &api::ListTokensRequest { tenant_id: "a".into() })
                .await
                .expect("ListTokens");
        assert_eq!(list.tokens.len(), 1);
        assert_eq!(list.tokens[0].token_id, info.token_id);
        assert!(!format!("{list:?}").contains(created.token.rsplit('_').next().unwrap()));
        created.token
    });
    assert_no_secrets_in_logs(s.tmp.path(), &[token, BOOTSTRAP.into()]);
}

#[test]
fn a_read_only_token_cannot_write() {
    let _serial = serial();
    let s = start("sec-ro", "");
    let addr = s.coord.addr;
    let token = run_local(move || async move {
        let admin = connect(addr, Some(BOOTSTRAP)).await;
        create_tenant(&admin, "a").await;
        let _: api::WriteKeyValueResponse =
            call(&admin, "WriteKeyValue", &write_req("a", "k")).await.expect("admin writes");
        let created = create_token(&admin, "a", "tenant-ro").await;
        let ro = connect(addr, Some(&created.token)).await;
        let r: api::ReadKeyValueResponse =
            call(&ro, "ReadKeyValue", &read_req("a", "k")).await.expect("read-only reads");
        assert_eq!(&r.value[..], b"secret-value-never-logged");
        let f = |r, what| assert_refused(r, Code::PERMISSION_DENIED, "FORBIDDEN", what);
        f(
            call::<_, api::WriteKeyValueResponse>(&ro, "WriteKeyValue", &write_req("a", "k"))
                .await
                .map(|_| ()),
            "read-only write",
        );
        f(
            call::<_, api::DeleteKeyValueResponse>(&ro, "DeleteKeyValue", &delete_req("a", "k"))
                .await
                .map(|_| ()),
            "read-only delete",
        );
        let r: api::ReadKeyValueResponse =
            call(&ro, "ReadKeyValue", &read_req("a", "k")).await.expect("still there");
        assert_eq!(&r.value[..], b"secret-value-never-logged");
        created.token
    });
    assert_no_secrets_in_logs(s.tmp.path(), &[token, BOOTSTRAP.into()]);
}

#[test]
fn health_and_reflection_can_require_a_token() {
    let _serial = serial();
    // Replication factor 1: one storage node up is a quorum, so the coordinator becomes ready.
    let s = start_with(
        "sec-health",
        "default_replication_factor: 1\n",
        ", open_health_and_reflection: false",
    );
    let addr = s.coord.addr;
    let token = run_local(move || async move {
        let admin = connect(addr, Some(BOOTSTRAP)).await;
        create_tenant(&admin, "a").await;
        let created = create_token(&admin, "a", "tenant-rw").await;
        let check = |ch: Channel| async move {
            ch.unary::<_, HealthCheckResponse>(
                "/grpc.health.v1.Health/Check",
                &HealthCheckRequest::default(),
                Some(CALL_TIMEOUT),
            )
            .await
        };
        let none = connect(addr, None).await;
        assert_refused(check(none).await, Code::UNAUTHENTICATED, "UNAUTHORIZED", "no token");
        let bad = connect(addr, Some("garbage")).await;
        assert_refused(check(bad).await, Code::UNAUTHENTICATED, "UNAUTHORIZED", "bad token");
        // A valid token of any role is enough; SERVING once the cluster is ready.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let tenant = connect(addr, Some(&created.token)).await;
            let health = check(tenant).await.expect("Health/Check with a tenant token");
            if health.status == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "never SERVING: {health:?}");
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        created.token
    });
    assert_no_secrets_in_logs(s.tmp.path(), &[token, BOOTSTRAP.into()]);
}

/// One HTTP/1.1 request to the HTTP API; `(status, body)`.
fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the HTTP API");
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn unauthenticated_calls_are_refused() {
    let _serial = serial();
    let s = start("sec-unauth", "http_api: { port: 0 }\n");
    let addr = s.coord.addr;
    let http_addr = s.coord.http.expect("HTTP API served");
    let (token, revoked) = run_local(move || async move {
        let admin = connect(addr, Some(BOOTSTRAP)).await;
        create_tenant(&admin, "a").await;
        let good = create_token(&admin, "a", "tenant-rw").await;
        let gone = create_token(&admin, "a", "tenant-rw").await;
        let _: api::RevokeTokenResponse = call(
            &admin,
            "RevokeToken",
            &api::RevokeTokenRequest { token_id: gone.info.clone().unwrap().token_id },
        )
        .await
        .expect("RevokeToken");
        let (id, _) = good.token.strip_prefix("pdb_").unwrap().split_once('_').unwrap();
        let wrong_secret = format!("pdb_{id}_{}", "0".repeat(32));
        let none = connect(addr, None).await;
        let u = |r, what| assert_refused(r, Code::UNAUTHENTICATED, "UNAUTHORIZED", what);
        u(
            call::<_, api::ReadKeyValueResponse>(&none, "ReadKeyValue", &read_req("a", "k"))
                .await
                .map(|_| ()),
            "no token",
        );
        u(
            call::<_, api::CreateTenantResponse>(
                &none,
                "CreateTenant",
                &api::CreateTenantRequest {
                    tenant_id: "x".into(),
                    replication_factor: 1,
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
            "no token, admin call",
        );
        for (what, t) in [
            ("unknown token", "pdb_0123456789abcdef_0123456789abcdef0123456789abcdef".to_owned()),
            ("wrong secret", wrong_secret),
            ("revoked token", gone.token.clone()),
            ("garbage", "garbage".to_owned()),
        ] {
            let ch = connect(addr, Some(&t)).await;
            u(
                call::<_, api::WriteKeyValueResponse>(&ch, "WriteKeyValue", &write_req("a", "k"))
                    .await
                    .map(|_| ()),
                what,
            );
        }
        let basic = Channel::connect(
            addr,
            &ClientConfig {
                authorization: Some(Bytes::from_static(b"Basic dXNlcjpwYXNz")),
                ..ClientConfig::default()
            },
        )
        .await
        .expect("connect");
        u(
            call::<_, api::ReadKeyValueResponse>(&basic, "ReadKeyValue", &read_req("a", "k"))
                .await
                .map(|_| ()),
            "not a bearer",
        );
        // Health checks stay open.
        let health: HealthCheckResponse = none
            .unary(
                "/grpc.health.v1.Health/Check",
                &HealthCheckRequest::default(),
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("Health/Check without a token");
        // An answer (SERVING or not, by the cluster's state) is what matters: no token needed.
        assert!(health.status == 1 || health.status == 2, "{health:?}");
        // The good token still works.
        let ok = connect(addr, Some(&good.token)).await;
        let _: api::WriteKeyValueResponse =
            call(&ok, "WriteKeyValue", &write_req("a", "k")).await.expect("valid token");
        (good.token, gone.token)
    });
    // The HTTP API: 401 / UNAUTHORIZED, 403 / FORBIDDEN, 200.
    let (status, body) = http(http_addr, "GET", "/v1/key-value?tenant_id=a&key=k", None, "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"UNAUTHORIZED\""), "{body}");
    let (status, body) = http(
        http_addr,
        "GET",
        "/v1/key-value?tenant_id=a&key=k",
        Some(&format!("Bearer {revoked}")),
        "",
    );
    assert_eq!(status, 401, "{body}");
    let bearer = format!("Bearer {token}");
    let (status, body) =
        http(http_addr, "POST", "/v1/tenants", Some(&bearer), r#"{"tenant_id":"z"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"FORBIDDEN\""), "{body}");
    let (status, body) =
        http(http_addr, "GET", "/v1/key-value?tenant_id=a&key=k", Some(&bearer), "");
    assert_eq!(status, 200, "{body}");
    let admin = format!("Bearer {BOOTSTRAP}");
    let (status, body) = http(http_addr, "GET", "/v1/tenants/a", Some(&admin), "");
    assert_eq!(status, 200, "{body}");
    // Tokens over the HTTP API: created, listed, used and revoked; admin only.
    let (status, body) = http(
        http_addr,
        "POST",
        "/v1/admin/tokens",
        Some(&bearer),
        r#"{"role":"tenant-rw","tenant_id":"a"}"#,
    );
    assert_eq!(status, 403, "a tenant token cannot create tokens: {body}");
    let (status, body) = http(
        http_addr,
        "POST",
        "/v1/admin/tokens",
        Some(&admin),
        r#"{"role":"tenant-ro","tenant_id":"a"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let http_token = created["token"].as_str().expect("a token").to_owned();
    let http_id = created["info"]["token_id"].as_str().expect("an id").to_owned();
    assert_eq!(created["info"]["role"], "tenant-ro", "{body}");
    let reader = format!("Bearer {http_token}");
    let (status, body) =
        http(http_addr, "GET", "/v1/key-value?tenant_id=a&key=k", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(http_addr, "GET", "/v1/admin/tokens?tenant_id=a", Some(&admin), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&http_id) && !body.contains(&http_token), "{body}");
    let path = format!("/v1/admin/tokens/{http_id}");
    let (status, body) = http(http_addr, "DELETE", &path, Some(&admin), "");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("\"revoked_at_us\":\"0\""), "{body}");
    let (status, body) =
        http(http_addr, "GET", "/v1/key-value?tenant_id=a&key=k", Some(&reader), "");
    assert_eq!(status, 401, "a revoked token: {body}");
    let log = std::fs::read_to_string(s.tmp.path().join("c").join("coordinator.log")).unwrap();
    assert!(log.contains("authentication required"), "no start-up line in:\n{log}");
    assert!(
        log.contains("outcome=\"unauthorized\"") || log.contains("outcome=unauthorized"),
        "{log}"
    );
    assert_no_secrets_in_logs(s.tmp.path(), &[token, revoked, http_token, BOOTSTRAP.into()]);
}

#[test]
fn a_revoked_token_is_refused_on_a_second_coordinator_within_two_seconds() {
    let _serial = serial();
    let Some(url) = backends::postgres_url(
        "a_revoked_token_is_refused_on_a_second_coordinator_within_two_seconds",
    ) else {
        return;
    };
    let schema = backends::PgSchema::create(&url);
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "sec-pg-s1");
    // A long periodic reload: only the notification can make the 2 s.
    let yaml = format!(
        "{}metadata: {{ backend: postgres, postgres_url: \"{}\", reload_interval_secs: 60 }}\n",
        auth_yaml(tmp.path()),
        schema.url
    );
    let start = |name: &str| {
        CoordinatorProcess::start(
            &tmp.path().join(name),
            &CoordinatorOptions {
                node_id: name,
                cores: 2,
                storage_nodes: vec![("s1".into(), storage.addr)],
                config_yaml: &yaml,
            },
        )
    };
    let a = start("sec-pg-a");
    let b = start("sec-pg-b");
    let (a_addr, b_addr) = (a.addr, b.addr);
    let (token, elapsed) = run_local(move || async move {
        let admin = connect(a_addr, Some(BOOTSTRAP)).await;
        create_tenant(&admin, "a").await;
        let created = create_token(&admin, "a", "tenant-rw").await;
        let id = created.info.clone().unwrap().token_id;
        // B learns of the new token by notification too. GetTenant needs no storage node: the
        // timings below are the token's alone, even on a loaded machine.
        let on_b = connect(b_addr, Some(&created.token)).await;
        let get_a = api::GetTenantRequest { tenant_id: "a".into() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r: Result<api::GetTenantResponse, _> = call(&on_b, "GetTenant", &get_a).await;
            match r {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline && e.code != Code::PERMISSION_DENIED => {
                    glommio::timer::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("the token never worked on B: {e}"),
            }
        }
        let _: api::RevokeTokenResponse =
            call(&admin, "RevokeToken", &api::RevokeTokenRequest { token_id: id })
                .await
                .expect("RevokeToken on A");
        let revoked_at = Instant::now();
        loop {
            let r: Result<api::GetTenantResponse, _> = call(&on_b, "GetTenant", &get_a).await;
            match r {
                Err(e) if e.code == Code::UNAUTHENTICATED => {
                    assert_eq!(e.error_code.as_deref(), Some("UNAUTHORIZED"));
                    break;
                }
                _ if revoked_at.elapsed() > Duration::from_secs(10) => {
                    panic!("B still accepts the revoked token after 10 s")
                }
                _ => glommio::timer::sleep(Duration::from_millis(20)).await,
            }
        }
        (created.token, revoked_at.elapsed())
    });
    eprintln!("B refused the revoked token {elapsed:?} after its revocation on A");
    assert!(elapsed <= Duration::from_secs(2), "B refused the revoked token after {elapsed:?}");
    drop((a, b, storage));
    assert_no_secrets_in_logs(tmp.path(), &[token, BOOTSTRAP.into()]);
}

/// `pairdb token create|list|revoke` with the admin token in `PAIRDB_TOKEN`, and an existing
/// command (`pairdb kv`) with the created token in `--token`.
#[test]
fn the_cli_manages_tokens_and_sends_them() {
    let _serial = serial();
    let s = start("sec-cli", "");
    let addr = s.coord.addr.to_string();
    let pairdb = |token: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pairdb"));
        cmd.args(args).env("PAIRDB_ADDR", &addr).env_remove("PAIRDB_TOKEN");
        if let Some(t) = token {
            cmd.env("PAIRDB_TOKEN", t);
        }
        let out = common::output_with_timeout(&mut cmd, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, _, err) = pairdb(None, &["tenant", "create", "a", "--replication-factor", "1"]);
    assert_eq!(code, Some(1), "no token: refused: {err}");
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    let (code, out, err) =
        pairdb(Some(BOOTSTRAP), &["tenant", "create", "a", "--replication-factor", "1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) =
        pairdb(Some(BOOTSTRAP), &["token", "create", "--tenant", "a", "--role", "tenant-rw"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let token = out.lines().next().expect("the token line").trim().to_owned();
    assert!(token.starts_with("pdb_"), "{out}");
    let id = token.split('_').nth(1).expect("id").to_owned();
    let (code, out, err) = pairdb(
        None,
        &["kv", "put", "--tenant", "a", "--token", &token, "k", "secret-value-never-logged"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = pairdb(Some(&token), &["kv", "get", "--tenant", "a", "k"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("secret-value-never-logged"), "{out}");
    let (code, _, err) = pairdb(Some(&token), &["kv", "get", "--tenant", "b", "k"]);
    assert_eq!(code, Some(1), "another tenant: {err}");
    assert!(err.contains("FORBIDDEN"), "{err}");
    let (code, out, err) = pairdb(Some(BOOTSTRAP), &["token", "list", "--tenant", "a"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&id) && out.contains("valid"), "{out}");
    assert!(!out.contains(&token), "list never shows a token");
    let (code, out, err) = pairdb(Some(BOOTSTRAP), &["token", "revoke", &id]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = pairdb(Some(BOOTSTRAP), &["token", "list", "--json"]);
    assert!(out.contains("\"revoked_at_us\"") && !out.contains("\"revoked_at_us\":0"), "{out}");
    let (code, _, err) = pairdb(Some(&token), &["tenant", "get", "a"]);
    assert_eq!(code, Some(1), "revoked: {err}");
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    assert_no_secrets_in_logs(s.tmp.path(), &[token, BOOTSTRAP.into()]);
}

/// The default: no token needed, and a warning at start-up says so.
#[test]
fn auth_is_off_by_default_and_says_so() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "sec-off-s1");
    let coord = CoordinatorProcess::start(
        &tmp.path().join("c"),
        &CoordinatorOptions {
            node_id: "sec-off-c",
            cores: 1,
            storage_nodes: vec![("s1".into(), storage.addr)],
            // No `auth` section: the default.
            config_yaml: "replica_timeout_ms: 5000\n",
        },
    );
    let addr = coord.addr;
    run_local(move || async move {
        let none = connect(addr, None).await;
        create_tenant(&none, "a").await;
        let _: api::WriteKeyValueResponse =
            call(&none, "WriteKeyValue", &write_req("a", "k")).await.expect("no token needed");
    });
    let log = std::fs::read_to_string(tmp.path().join("c").join("coordinator.log")).unwrap();
    assert!(log.contains("authentication is off"), "no warning in:\n{log}");
    assert!(log.contains("WARN"), "{log}");
}
