//! Storage nodes trust only coordinators: a storage node with a cluster secret
//! (`rpc.cluster_secret_file`, or `rpc.cluster_secret` / `PAIRDB_RPC_CLUSTER_SECRET`) refuses
//! every `StorageService` call that does not carry `authorization: Bearer <secret>`, on both
//! HTTP/2 layers, and a coordinator with the same secret works through it. Real processes.
//!
//! - `storage_refuses_callers_without_the_cluster_secret`: on `rpc.http2: native` (secret from a
//!   file) and `h2` (secret inline), a direct Write without the credential, with a wrong one, or
//!   with another scheme is refused with UNAUTHENTICATED / `UNAUTHORIZED` (and so is an unknown
//!   method); `grpc.health.v1.Health/Check` stays open; with the secret, Write and Read work;
//!   `pairdb_rpc_unauthenticated_total` counts the refusals.
//! - `coordinators_need_the_cluster_secret`: coordinators with the secret (one per HTTP/2 layer
//!   of their storage links) write and read through the node; a coordinator without it cannot
//!   write, nor add a secured node (its probe is refused), while one with it adds the node and
//!   completes the migration to it; the secret appears in no process's log.

mod common;

use std::{net::SocketAddr, path::Path, time::Duration};

use bytes::Bytes;
use common::{
    coordinator_path, run_local, storage_path, CoordinatorOptions, CoordinatorProcess,
    StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    proto::{coordinator as api, health, storage as pb},
    rpc::{client::Http2Impl, Channel, ClientConfig, Code, Status},
};

/// 64 characters, distinctive enough to grep for in the logs.
const SECRET: &str = "trust-test-secret-5f0c2a9e41d7b3c8e6a0f9d2c4b1a7e3d5f8c0b2a4e6d8";

fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("pairdb-trust-{name}-")).tempdir().expect("tempdir")
}

/// Writes the secret (with a trailing newline, as `openssl rand -hex 32 > file` does) to a file
/// in `dir` and returns its path.
fn secret_file(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("cluster.secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path
}

async fn connect(addr: SocketAddr, http2: Http2Impl, authorization: Option<&str>) -> Channel {
    let config = ClientConfig {
        http2,
        authorization: authorization.map(|a| Bytes::copy_from_slice(a.as_bytes())),
        ..ClientConfig::default()
    };
    Channel::connect(addr, &config).await.unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

fn write_request(key: &str, value: &str) -> pb::WriteRequest {
    pb::WriteRequest {
        tenant_id: "t".into(),
        key: key.into(),
        version: Some(pb::Version {
            value: Bytes::copy_from_slice(value.as_bytes()),
            vector_clock: Some(pb::VectorClock {
                entries: vec![pb::VectorClockEntry {
                    coordinator_node_id: "trust-test/0".into(),
                    logical_timestamp: 1,
                }],
            }),
            timestamp: 1,
            writer: "trust-test/0".into(),
            tombstone: false,
        }),
    }
}

fn other(http2: Http2Impl) -> Http2Impl {
    match http2 {
        Http2Impl::Native => Http2Impl::H2,
        Http2Impl::H2 => Http2Impl::Native,
    }
}

/// A storage `method` call (Write, or another path) of key `k` = `value`.
async fn direct_write(
    ch: &Channel,
    method: &str,
    value: &str,
) -> Result<pb::WriteResponse, Status> {
    ch.unary(&storage_path(method), &write_request("k", value), Some(CALL_TIMEOUT)).await
}

#[track_caller]
fn assert_unauthorized<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected UNAUTHENTICATED, got OK: {v:?}"),
        Err(status) => {
            assert_eq!(status.code, Code::UNAUTHENTICATED, "{what}: {status}");
            assert_eq!(status.error_code.as_deref(), Some("UNAUTHORIZED"), "{what}: {status}");
            assert!(!status.message.contains(SECRET), "{what}: the secret is in the message");
        }
    }
}

fn scrape(admin: SocketAddr) -> String {
    let (status, text) = pairdb::admin::get(admin, "/metrics", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET /metrics on {admin}: {e}"));
    assert_eq!(status, 200, "/metrics answered {status}");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[track_caller]
fn assert_secret_not_logged(dir: &Path) {
    for entry in walk(dir) {
        if entry.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(!text.contains(SECRET), "{} contains the cluster secret", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn storage_refuses_callers_without_the_cluster_secret() {
    let tmp = tempdir("direct");
    for (layer, http2) in [("native", Http2Impl::Native), ("h2", Http2Impl::H2)] {
        let dir = tmp.path().join(layer);
        // The native node reads the secret from a file, the h2 node from the key the
        // environment variable sets.
        let yaml = match http2 {
            Http2Impl::Native => format!(
                "rpc:\n  http2: native\n  cluster_secret_file: {}\n",
                secret_file(&dir).display()
            ),
            Http2Impl::H2 => format!("rpc:\n  http2: h2\n  cluster_secret: \"{SECRET}\"\n"),
        };
        let node = StorageProcess::start_configured(&dir, &format!("trust-{layer}"), 1, 0, &yaml);
        let addr = node.addr;
        let before = metric(&scrape(node.admin), "pairdb_rpc_unauthenticated_total");
        assert_eq!(before, 0.0, "{layer}: refusals before any call");
        run_local(move || async move {
            let t = Some(CALL_TIMEOUT);
            let anonymous = connect(addr, http2, None).await;
            let r = direct_write(&anonymous, "Write", "v").await;
            assert_unauthorized(r, &format!("{layer}: Write without credential"));
            let r: Result<pb::HealthCheckResponse, Status> =
                anonymous.unary(&storage_path("HealthCheck"), &pb::HealthCheckRequest {}, t).await;
            assert_unauthorized(r, &format!("{layer}: StorageService/HealthCheck"));
            let r = direct_write(&anonymous, "NoSuchMethod", "v").await;
            assert_unauthorized(r, &format!("{layer}: unknown method"));
            // Health checks stay open, for probes and orchestrators.
            let r: health::HealthCheckResponse = anonymous
                .unary("/grpc.health.v1.Health/Check", &health::HealthCheckRequest::default(), t)
                .await
                .unwrap_or_else(|e| panic!("{layer}: grpc.health.v1 Check: {e}"));
            assert_eq!(r.status, health::health_check_response::ServingStatus::Serving as i32);

            let wrong = format!("Bearer {}", SECRET.replace('5', "6"));
            let basic = format!("Basic {SECRET}");
            for (what, value) in [("wrong secret", wrong.as_str()), ("Basic", basic.as_str())] {
                let ch = connect(addr, http2, Some(value)).await;
                let r = direct_write(&ch, "Write", "v").await;
                assert_unauthorized(r, &format!("{layer}: Write with {what}"));
            }

            // Either client layer, with the secret, is served.
            let bearer = format!("Bearer {SECRET}");
            for (i, client) in [http2, other(http2)].into_iter().enumerate() {
                let trusted = connect(addr, client, Some(&bearer)).await;
                let reply = direct_write(&trusted, "Write", "trusted")
                    .await
                    .unwrap_or_else(|e| panic!("{layer}: Write with the secret ({client:?}): {e}"));
                // The second client writes the same version again: nothing new to apply.
                assert_eq!(reply.applied, i == 0, "{layer}, {client:?}: {reply:?}");
                let read: pb::ReadResponse = trusted
                    .unary(
                        &storage_path("Read"),
                        &pb::ReadRequest { tenant_id: "t".into(), key: "k".into() },
                        t,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{layer}: Read with the secret ({client:?}): {e}"));
                let values: Vec<&[u8]> = read.version.iter().map(|v| v.value.as_ref()).collect();
                assert_eq!(values, vec![b"trusted".as_slice()], "{layer}: {read:?}");
            }
        });
        let after = metric(&scrape(node.admin), "pairdb_rpc_unauthenticated_total");
        assert_eq!(
            after, 5.0,
            "{layer}: three anonymous calls, a wrong secret, a Basic credential"
        );
        drop(node);
    }
    assert_secret_not_logged(tmp.path());
}

#[test]
fn coordinators_need_the_cluster_secret() {
    let tmp = tempdir("coord");
    let node_dir = tmp.path().join("s1");
    let node_yaml = format!("rpc:\n  cluster_secret_file: {}\n", secret_file(&node_dir).display());
    let node = StorageProcess::start_configured(&node_dir, "trust-s1", 1, 0, &node_yaml);
    // Added later through AddStorageNode, whose probe must carry the secret too.
    let extra_dir = tmp.path().join("s2");
    let extra_yaml =
        format!("rpc:\n  cluster_secret_file: {}\n", secret_file(&extra_dir).display());
    let extra = StorageProcess::start_configured(&extra_dir, "trust-s2", 1, 0, &extra_yaml);
    let extra_port = i32::from(extra.addr.port());
    let nodes = vec![(node.node_id.clone(), node.addr)];
    let start = |name: &str, yaml: &str| {
        CoordinatorProcess::start(
            &tmp.path().join(name),
            &CoordinatorOptions {
                node_id: name,
                cores: 1,
                storage_nodes: nodes.clone(),
                config_yaml: yaml,
            },
        )
    };
    let mut trusted = Vec::new();
    for layer in ["native", "h2"] {
        let name = format!("trust-coord-{layer}");
        let file = secret_file(&tmp.path().join(&name));
        let yaml = format!("rpc:\n  http2: {layer}\n  cluster_secret_file: {}\n", file.display());
        trusted.push((layer, start(&name, &yaml)));
    }
    let stranger = start("trust-coord-none", "replica_timeout_ms: 500\n");

    let addrs: Vec<(&'static str, SocketAddr)> =
        trusted.iter().map(|(l, c)| (*l, c.addr)).collect();
    let stranger_addr = stranger.addr;
    run_local(move || async move {
        let t = Some(CALL_TIMEOUT);
        for &(layer, addr) in &addrs {
            let ch = connect(addr, Http2Impl::Native, None).await;
            let _: api::CreateTenantResponse = ch
                .unary(
                    &coordinator_path("CreateTenant"),
                    &api::CreateTenantRequest {
                        tenant_id: "acme".into(),
                        replication_factor: 1,
                        ..Default::default()
                    },
                    t,
                )
                .await
                .unwrap_or_else(|e| panic!("{layer}: CreateTenant: {e}"));
            let key = format!("key-{layer}");
            let _: api::WriteKeyValueResponse = ch
                .unary(
                    &coordinator_path("WriteKeyValue"),
                    &api::WriteKeyValueRequest {
                        tenant_id: "acme".into(),
                        key: key.clone(),
                        value: Bytes::from_static(b"through the coordinator"),
                        consistency: api::Consistency::All as i32,
                        idempotency_key: String::new(),
                        vector_clock: None,
                    },
                    t,
                )
                .await
                .unwrap_or_else(|e| panic!("{layer}: a coordinator with the secret writes: {e}"));
            let read: api::ReadKeyValueResponse = ch
                .unary(
                    &coordinator_path("ReadKeyValue"),
                    &api::ReadKeyValueRequest {
                        tenant_id: "acme".into(),
                        key,
                        consistency: api::Consistency::All as i32,
                    },
                    t,
                )
                .await
                .unwrap_or_else(|e| panic!("{layer}: a coordinator with the secret reads: {e}"));
            assert_eq!(read.value.as_ref(), b"through the coordinator", "{layer}");
        }

        let ch = connect(stranger_addr, Http2Impl::Native, None).await;
        let _: api::CreateTenantResponse = ch
            .unary(
                &coordinator_path("CreateTenant"),
                &api::CreateTenantRequest {
                    tenant_id: "acme".into(),
                    replication_factor: 1,
                    ..Default::default()
                },
                t,
            )
            .await
            .unwrap_or_else(|e| panic!("CreateTenant on the coordinator without secret: {e}"));
        let result: Result<api::WriteKeyValueResponse, Status> = ch
            .unary(
                &coordinator_path("WriteKeyValue"),
                &api::WriteKeyValueRequest {
                    tenant_id: "acme".into(),
                    key: "stranger".into(),
                    value: Bytes::from_static(b"should not land"),
                    consistency: api::Consistency::One as i32,
                    idempotency_key: String::new(),
                    vector_clock: None,
                },
                t,
            )
            .await;
        let status = result.expect_err("a coordinator without the secret must not write");
        assert_ne!(status.code, Code::OK);
        assert!(!status.message.contains(SECRET), "{status}");
        let add = api::AddStorageNodeRequest {
            node_id: "trust-s2".into(),
            host: "127.0.0.1".into(),
            port: extra_port,
            virtual_nodes: 0,
        };
        let r: Result<api::AddStorageNodeResponse, Status> =
            ch.unary(&coordinator_path("AddStorageNode"), &add, t).await;
        let status = r.expect_err("the probe of a coordinator without the secret is refused");
        assert_eq!(status.error_code.as_deref(), Some("STORAGE_UNAVAILABLE"), "{status}");

        // A coordinator with the secret probes, adds and streams to the new node.
        let (_, addr) = addrs[0];
        let ch = connect(addr, Http2Impl::Native, None).await;
        let added: api::AddStorageNodeResponse = ch
            .unary(&coordinator_path("AddStorageNode"), &add, t)
            .await
            .unwrap_or_else(|e| panic!("AddStorageNode with the secret: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let s: api::GetMigrationStatusResponse = ch
                .unary(
                    &coordinator_path("GetMigrationStatus"),
                    &api::GetMigrationStatusRequest { migration_id: added.migration_id.clone() },
                    t,
                )
                .await
                .unwrap_or_else(|e| panic!("GetMigrationStatus: {e}"));
            match s.status.as_str() {
                "COMPLETED" => break,
                "FAILED" | "CANCELLED" => panic!("the migration to the secured node: {s:?}"),
                _ => {}
            }
            assert!(std::time::Instant::now() < deadline, "migration still running: {s:?}");
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    });
    let refused = metric(&scrape(node.admin), "pairdb_rpc_unauthenticated_total");
    assert!(refused >= 1.0, "the node counted the stranger's calls: {refused}");
    let refused = metric(&scrape(extra.admin), "pairdb_rpc_unauthenticated_total");
    assert_eq!(refused, 1.0, "s2 refused the stranger's probe, and only that");
    drop((trusted, stranger, node, extra));
    assert_secret_not_logged(tmp.path());
}
