//! Where the backing-service tests find PostgreSQL and Redis, and a private PostgreSQL schema per
//! test.
//!
//! A server is used when its variable is set (`PAIRDB_TEST_POSTGRES_URL`,
//! `PAIRDB_TEST_REDIS_URL`) or under CI (`CI=true`, at the addresses CI and this project's
//! machines run them). Otherwise the test prints that it was skipped and why. Under CI a server
//! that does not answer fails the test: CI must not pass by skipping.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use pairdb::{
    proto::coordinator as api,
    rpc::{Channel, Status},
};
use prost::Message;
use tempfile::TempDir;

use crate::common::{
    channel, coordinator_path, eventually, run_local, CoordinatorOptions, CoordinatorProcess,
    StorageProcess, CALL_TIMEOUT,
};

/// Deadline for what the coordinators do in the background (notifications, health checks).
pub const CONVERGE: Duration = Duration::from_secs(15);

/// PostgreSQL as CI runs it.
pub const CI_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Redis as CI runs it.
pub const CI_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// True under CI.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn configured(test: &str, var: &str, ci_default: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if ci() => Some(ci_default.to_owned()),
        _ => {
            eprintln!("skipped {test}: set {var} (e.g. {ci_default}) or CI=true to run it");
            None
        }
    }
}

/// The PostgreSQL URL to test against, or `None` after printing why the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    configured(test, "PAIRDB_TEST_POSTGRES_URL", CI_POSTGRES_URL)
}

/// The Redis URL to test against, or `None` after printing why the test is skipped. Panics when
/// it is configured but does not answer.
pub fn redis_url(test: &str) -> Option<String> {
    let url = configured(test, "PAIRDB_TEST_REDIS_URL", CI_REDIS_URL)?;
    let client = redis::Client::open(url.as_str()).expect("a valid redis url");
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("redis at {url} is configured for these tests but: {e}"));
    let _: String = redis::cmd("PING").query(&mut conn).expect("redis PING");
    Some(url)
}

/// A name no other test (in this or another process) uses: `{prefix}_{pid}_{n}_{nanos}`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A schema private to one test, dropped with this value. `url` reaches it through
/// `search_path`, so a store opened on it creates and finds its tables there.
pub struct PgSchema {
    admin_url: String,
    /// The schema's name.
    pub schema: String,
    /// `admin_url` with the schema as search path.
    pub url: String,
}

impl PgSchema {
    /// Creates a fresh schema; panics when the server does not answer (it was configured).
    pub fn create(admin_url: &str) -> PgSchema {
        let mut client =
            postgres::Client::connect(admin_url, postgres::NoTls).unwrap_or_else(|e| {
                panic!("postgres at {admin_url} is configured for these tests but: {e}")
            });
        let schema = unique("pairdb_test");
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create test schema");
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        PgSchema { admin_url: admin_url.to_owned(), schema, url }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// Three storage nodes and two coordinators sharing one PostgreSQL schema (and Redis, when
/// given). On a failing test, the coordinators' log tails are printed.
pub struct Pair {
    /// The directory of every process.
    pub tmp: TempDir,
    /// The storage nodes.
    pub storage: Vec<StorageProcess>,
    /// Coordinator A: started with the storage nodes on its command line.
    pub a: CoordinatorProcess,
    /// Coordinator B: no storage nodes of its own, its ring comes from the shared store.
    pub b: CoordinatorProcess,
    /// The PostgreSQL schema they share.
    pub schema: PgSchema,
}

impl Pair {
    /// Starts three storage nodes, then A and B on `schema` (and Redis at `redis`), and waits
    /// until both list every node ACTIVE. `b_extra` is appended to B's `idempotency:` section
    /// (e.g. `on_unavailable: reject`).
    pub fn start(name: &str, schema: PgSchema, redis: Option<&str>, b_extra: &str) -> Pair {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pairdb-backends-{name}-"))
            .tempdir()
            .expect("tempdir");
        let storage: Vec<StorageProcess> = (1..=3)
            .map(|i| {
                let id = format!("{name}-s{i}");
                StorageProcess::start(&tmp.path().join(&id), &id)
            })
            .collect();
        let nodes: Vec<(String, SocketAddr)> =
            storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect();
        let mut yaml = format!(
            "metadata: {{ backend: postgres, postgres_url: \"{}\", reload_interval_secs: 5 }}\n",
            schema.url
        );
        let mut yaml_b = yaml.clone();
        if let Some(url) = redis {
            yaml.push_str(&format!("idempotency: {{ backend: redis, redis_url: \"{url}\" }}\n"));
            yaml_b.push_str(&format!(
                "idempotency: {{ backend: redis, redis_url: \"{url}\", {b_extra} }}\n"
            ));
        }
        let a = CoordinatorProcess::start(
            &tmp.path().join("a"),
            &CoordinatorOptions {
                node_id: &format!("{name}-a"),
                cores: 1,
                storage_nodes: nodes,
                config_yaml: &yaml,
            },
        );
        let b = CoordinatorProcess::start(
            &tmp.path().join("b"),
            &CoordinatorOptions {
                node_id: &format!("{name}-b"),
                cores: 1,
                storage_nodes: Vec::new(),
                config_yaml: &yaml_b,
            },
        );
        let pair = Pair { tmp, storage, a, b, schema };
        for addr in [pair.a.addr, pair.b.addr] {
            wait_active(addr, 3);
        }
        pair
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coordinator a log:\n{}", self.a.log_tail());
            eprintln!("--- coordinator b log:\n{}", self.b.log_tail());
        }
    }
}

/// Waits until the coordinator at `addr` lists `count` nodes, all ACTIVE.
pub fn wait_active(addr: SocketAddr, count: usize) {
    run_local(move || async move {
        let ch = channel(addr).await;
        let ch = &ch;
        eventually("every node listed ACTIVE", CONVERGE, move || async move {
            let nodes = list_nodes(ch).await;
            let active = nodes.iter().filter(|n| n.status == "ACTIVE").count();
            if nodes.len() == count && active == count {
                Ok(())
            } else {
                Err(format!("{nodes:?}"))
            }
        })
        .await;
    });
}

/// A coordinator call with the tests' deadline.
pub async fn call<Req: Message, Resp: Message + Default>(
    ch: &Channel,
    method: &str,
    req: &Req,
) -> Result<Resp, Status> {
    ch.unary(&coordinator_path(method), req, Some(CALL_TIMEOUT)).await
}

/// The coordinator's node list.
pub async fn list_nodes(ch: &Channel) -> Vec<api::StorageNodeInfo> {
    let reply: api::ListStorageNodesResponse =
        call(ch, "ListStorageNodes", &api::ListStorageNodesRequest {})
            .await
            .unwrap_or_else(|e| panic!("ListStorageNodes: {e}"));
    reply.nodes
}
