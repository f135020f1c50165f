//! Operations: the admin HTTP port of real processes.
//!
//! - `metrics_and_readiness`: a coordinator in front of three storage nodes serves `/metrics`
//!   in the Prometheus text format (every line parsed; `promtool check metrics` run on it where
//!   `promtool` is installed) with the calls it answered counted by method and status, fan-out
//!   latencies per storage node, the ring epoch and the unkeyed writes whose answers found no
//!   room in a small idempotency table; `/health/ready` is 200 and turns 503 (and
//!   `grpc.health.v1` NOT_SERVING) once two of three nodes are gone, since a quorum of the
//!   default replication factor 3 is then out of reach; `/health/live` stays 200.
//! - `storage_node_admin_port`: a storage node's `/metrics` counts its gRPC calls.

mod common;

use std::{collections::BTreeMap, net::SocketAddr, process::Command, time::Duration};

use bytes::Bytes;
use common::{
    channel, coordinator_path, eventually, run_local, storage_path, CoordinatorOptions,
    CoordinatorProcess, StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    admin,
    proto::{
        coordinator as api,
        health::{health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse},
        storage as pb,
    },
};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    admin::get(addr, path, HTTP_TIMEOUT).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// One parsed sample line: name, labels, value.
type Line = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format strictly enough to catch malformed output: every line is a
/// `# HELP`, a `# TYPE` or `name{k="v",...} value`, and every sample's family was typed first.
fn parse_metrics(text: &str) -> Vec<Line> {
    let mut typed: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed: {line}"));
                let labels = body
                    .split("\",")
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.iter().any(|t| t == f)))
            .unwrap_or(&name);
        assert!(typed.iter().any(|t| t == family), "sample before its TYPE: {line}");
        out.push((name, labels, value));
    }
    out
}

fn value(lines: &[Line], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    lines
        .iter()
        .find(|(n, l, _)| {
            n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// Runs `promtool check metrics` on `text` where promtool is installed (Debian: `prometheus`).
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed (apt-get install prometheus): check skipped");
        return;
    };
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(text.as_bytes()).expect("writing to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_and_readiness() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut storage: Vec<Option<StorageProcess>> = (1..=3)
        .map(|i| {
            let id = format!("ops-s{i}");
            Some(StorageProcess::start(&tmp.path().join(&id), &id))
        })
        .collect();
    let nodes = storage.iter().flatten().map(|s| (s.node_id.clone(), s.addr)).collect();
    let coordinator = CoordinatorProcess::start(
        &tmp.path().join("coordinator"),
        &CoordinatorOptions {
            node_id: "ops-coord",
            cores: 2,
            storage_nodes: nodes,
            // 20 records: the keyed write's claim, then room for 14 generated ones (3/4 of
            // the table), so 5 of the 19 unkeyed writes find no room for their answer.
            config_yaml: "health_check_interval_ms: 200\nidempotency_max_records: 20\n",
        },
    );
    let (addr, admin) = (coordinator.addr, coordinator.admin);
    assert_eq!(get(admin, "/health/live").0, 200);
    run_local(move || async move {
        eventually("the coordinator is ready", Duration::from_secs(10), || async {
            match get(admin, "/health/ready") {
                (200, _) => Ok(()),
                (s, body) => Err(format!("{s} {body}")),
            }
        })
        .await;
        let ch = channel(addr).await;
        let _: api::CreateTenantResponse = ch
            .unary(
                &coordinator_path("CreateTenant"),
                &api::CreateTenantRequest {
                    tenant_id: "ops".into(),
                    replication_factor: 3,
                    ..Default::default()
                },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("CreateTenant");
        for i in 0..20 {
            let _: api::WriteKeyValueResponse = ch
                .unary(
                    &coordinator_path("WriteKeyValue"),
                    &api::WriteKeyValueRequest {
                        tenant_id: "ops".into(),
                        key: format!("k{i}"),
                        value: Bytes::from_static(b"v"),
                        idempotency_key: if i == 0 { "once".into() } else { String::new() },
                        ..Default::default()
                    },
                    Some(CALL_TIMEOUT),
                )
                .await
                .expect("WriteKeyValue");
        }
        let missing = ch
            .unary::<_, api::ReadKeyValueResponse>(
                &coordinator_path("ReadKeyValue"),
                &api::ReadKeyValueRequest {
                    tenant_id: "ops".into(),
                    key: "absent".into(),
                    ..Default::default()
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        assert!(missing.is_err());
    });

    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let lines = parse_metrics(&text);
    let method = |m: &'static str, code: &'static str| {
        value(
            &lines,
            "pairdb_rpc_requests_total",
            &[
                ("service", "pairdb.coordinator.v1.CoordinatorService"),
                ("method", m),
                ("code", code),
            ],
        )
    };
    assert_eq!(method("WriteKeyValue", "OK"), Some(20.0), "{text}");
    assert_eq!(method("ReadKeyValue", "NOT_FOUND"), Some(1.0), "{text}");
    assert_eq!(method("CreateTenant", "OK"), Some(1.0), "{text}");
    let write_latency =
        value(&lines, "pairdb_rpc_latency_seconds_count", &[("method", "WriteKeyValue")]);
    assert_eq!(write_latency, Some(20.0), "{text}");
    // Every write went to the three replicas; some replicas may still be answering.
    let replica_ops: f64 = lines
        .iter()
        .filter(|(n, _, _)| n == "pairdb_replica_latency_seconds_count")
        .map(|(_, _, v)| v)
        .sum();
    assert!(replica_ops >= 40.0, "{text}");
    assert!(value(&lines, "pairdb_ring_epoch", &[]).is_some_and(|e| e >= 1.0), "{text}");
    assert_eq!(value(&lines, "pairdb_idempotency_misses_total", &[]), Some(1.0), "{text}");
    let unstored = value(&lines, "pairdb_idempotency_generated_unstored_total", &[]);
    assert_eq!(unstored, Some(5.0), "{text}");
    assert!(value(&lines, "pairdb_tenant_cache_hits_total", &[]).is_some_and(|v| v >= 19.0));
    assert_eq!(value(&lines, "pairdb_scrape_cores_missing", &[]), Some(0.0), "{text}");
    assert_eq!(value(&lines, "pairdb_ready", &[]), Some(1.0), "{text}");
    for family in [
        "pairdb_rpc_in_flight",
        "pairdb_quorum_failures_total",
        "pairdb_read_repairs_queued_total",
        "pairdb_hints_replayed_total",
        "pairdb_batch_ops_count",
        "pairdb_storage_node_up",
        "pairdb_executor_poll_lag_seconds_count",
        "pairdb_executor_poll_lag_max_seconds",
    ] {
        assert!(lines.iter().any(|(n, _, _)| n == family), "{family} missing:\n{text}");
    }
    promtool_check(&text);

    // Two of three nodes gone: a quorum of 3 replicas is out of reach, the coordinator is not
    // ready, in HTTP and in grpc.health.v1 alike, yet alive.
    for s in storage.iter_mut().skip(1) {
        if let Some(node) = s.take() {
            node.kill9();
        }
    }
    let reason = run_local(move || async move {
        let reason =
            eventually("the coordinator turns not ready", Duration::from_secs(15), || async {
                match get(admin, "/health/ready") {
                    (503, body) => Ok(body),
                    (s, body) => Err(format!("{s} {body}")),
                }
            })
            .await;
        let ch = channel(addr).await;
        let health: HealthCheckResponse = ch
            .unary(
                "/grpc.health.v1.Health/Check",
                &HealthCheckRequest::default(),
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("Health/Check");
        assert_eq!(health.status, ServingStatus::NotServing as i32);
        reason
    });
    assert!(reason.contains("1 of 3 storage nodes up"), "{reason}");
    assert_eq!(get(admin, "/health/live").0, 200);
    let (_, text) = get(admin, "/metrics");
    let lines = parse_metrics(&text);
    assert_eq!(value(&lines, "pairdb_ready", &[]), Some(0.0), "{text}");
}

#[test]
fn storage_node_admin_port() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = StorageProcess::start(tmp.path(), "ops-storage");
    let (addr, admin) = (node.addr, node.admin);
    assert_eq!(get(admin, "/health/ready"), (200, "ready\n".into()));
    run_local(move || async move {
        let ch = channel(addr).await;
        for _ in 0..3 {
            let _: pb::HealthCheckResponse = ch
                .unary(&storage_path("HealthCheck"), &pb::HealthCheckRequest {}, Some(CALL_TIMEOUT))
                .await
                .expect("HealthCheck");
        }
    });
    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let lines = parse_metrics(&text);
    let calls = value(
        &lines,
        "pairdb_rpc_requests_total",
        &[
            ("service", "pairdb.storage.v1.StorageService"),
            ("method", "HealthCheck"),
            ("code", "OK"),
        ],
    );
    assert_eq!(calls, Some(3.0), "{text}");
    assert_eq!(value(&lines, "pairdb_rpc_in_flight", &[("core", "0")]), Some(0.0), "{text}");
    for engine in [
        "pairdb_storage_records",
        "pairdb_storage_disk_bytes",
        "pairdb_storage_sealed_memtables",
        "pairdb_storage_l0_tables",
        "pairdb_storage_tables",
        "pairdb_storage_write_stalls_total",
        "pairdb_storage_write_stall_seconds_total",
    ] {
        assert!(value(&lines, engine, &[]).is_some(), "{engine} missing:\n{text}");
    }
    // The stall probe of the core has run by now (every 20 ms), and a fresh node did not stall.
    assert_eq!(value(&lines, "pairdb_storage_write_stalls_total", &[]), Some(0.0), "{text}");
    let probes = value(&lines, "pairdb_executor_poll_lag_seconds_count", &[("core", "0")]);
    assert!(probes.is_some_and(|n| n >= 1.0), "{text}");
    promtool_check(&text);
    // The container health check: `pairdb probe` exits 0 on 200 only.
    let ready = format!("http://{admin}/health/ready");
    assert!(run_pairdb(&["probe", "--url", &ready], &[]).0);
    let (ok, stderr) =
        run_pairdb(&["probe"], &[("PAIRDB_PROBE_URL", &format!("http://{admin}/x"))]);
    assert!(!ok && stderr.contains("404"), "{stderr}");
}

/// Runs `pairdb <args>` with `env` set and returns (success, stderr).
fn run_pairdb(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairdb"));
    cmd.args(args).env("PAIRDB_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running pairdb");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Arguments, environment, and the key the error must name (None: valid).
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], Option<&'a str>);

#[test]
fn environment_overrides_are_validated_by_check_config() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let coordinator_yaml = format!("{dir}/config/coordinator.yaml");
    let storage_yaml = format!("{dir}/config/storage.yaml");
    let coordinator = ["coordinator", "--config", &coordinator_yaml, "--check-config"];
    let storage = ["storage", "--config", &storage_yaml, "--check-config"];
    #[rustfmt::skip]
    let cases: &[Case<'_>] = &[
        (&coordinator, &[("PAIRDB_ADMIN_PORT", "0"), ("PAIRDB_REPLICA_TIMEOUT_MS", "250")], None),
        (&coordinator, &[("PAIRDB_REPLICA_TIMEOUT_MS", "0")],  Some("replica_timeout_ms")),
        (&coordinator, &[("PAIRDB_PORT", "not-a-port")],       Some("port")),
        (&coordinator, &[("PAIRDB_ADMIN_HOST", "no.such.host.invalid")], Some("admin.host")),
        (&coordinator, &[("PAIRDB_NODE_ID", "a/b")],          Some("node_id")),
        (&storage,     &[("PAIRDB_GROUP_COMMIT_MS", "0")],     Some("group_commit_ms")),
        (&storage,     &[("PAIRDB_DURABILITY", "sometimes")],  Some("durability")),
        (&storage,     &[("PAIRDB_ADMIN_PORT", "9191")],       None),
    ];
    for (args, env, offending) in cases {
        let (ok, stderr) = run_pairdb(args, env);
        match offending {
            None => assert!(ok, "{args:?} {env:?} failed:\n{stderr}"),
            Some(field) => {
                assert!(!ok, "{args:?} {env:?} passed");
                assert!(stderr.contains(field), "{env:?}: {field} not named in:\n{stderr}");
            }
        }
    }
    // A flag beats the variable: the invalid node id from the environment is replaced.
    let (ok, stderr) = run_pairdb(
        &["coordinator", "--config", &coordinator_yaml, "--node-id", "ok", "--check-config"],
        &[("PAIRDB_NODE_ID", "a/b")],
    );
    assert!(ok, "{stderr}");
}

/// A key-value request slower than `log.slow_request_ms` is logged with tenant, key hash, level
/// and per-replica timings, in JSON when `log.format: json`, and the log never holds the key or
/// the value.
#[test]
fn slow_requests_are_logged_without_keys_or_values() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage: Vec<StorageProcess> = (1..=3)
        .map(|i| {
            let id = format!("slow-s{i}");
            StorageProcess::start(&tmp.path().join(&id), &id)
        })
        .collect();
    let nodes = storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect();
    let coordinator = CoordinatorProcess::start(
        &tmp.path().join("coordinator"),
        &CoordinatorOptions {
            node_id: "slow-coord",
            cores: 1,
            storage_nodes: nodes,
            config_yaml: "replica_timeout_ms: 300\nlog: {format: json, slow_request_ms: 100}\n",
        },
    );
    // A stopped node answers nothing: a write at ALL waits for it until the replica timeout.
    let stopped = storage[2].pid();
    // SAFETY: kill(2) on our own child's PID; it is SIGKILLed (stopped or not) on drop.
    assert_eq!(unsafe { libc::kill(stopped, libc::SIGSTOP) }, 0);
    let addr = coordinator.addr;
    let err = run_local(move || async move {
        let ch = channel(addr).await;
        let _: api::CreateTenantResponse = ch
            .unary(
                &coordinator_path("CreateTenant"),
                &api::CreateTenantRequest {
                    tenant_id: "slowt".into(),
                    replication_factor: 3,
                    ..Default::default()
                },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("CreateTenant");
        ch.unary::<_, api::WriteKeyValueResponse>(
            &coordinator_path("WriteKeyValue"),
            &api::WriteKeyValueRequest {
                tenant_id: "slowt".into(),
                key: "secret-key-name".into(),
                value: Bytes::from_static(b"secret-value-bytes"),
                consistency: api::Consistency::All as i32,
                ..Default::default()
            },
            Some(CALL_TIMEOUT),
        )
        .await
        .expect_err("ALL with a stopped replica")
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(stopped, libc::SIGCONT) }, 0);
    assert_eq!(err.code, pairdb::rpc::Code::UNAVAILABLE, "{err}");
    let log = coordinator.log_tail();
    let slow = log
        .lines()
        .find(|l| l.contains("slow request"))
        .unwrap_or_else(|| panic!("no slow-request line in:\n{log}"));
    let key_hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"secret-key-name"));
    for field in [
        "\"tenant\":\"slowt\"",
        &format!("\"key_hash\":\"{key_hash}\""),
        "\"level\":\"All\"",
        "\"op\":\"write\"",
        "slow-s3=no reply",
        "slow-s1=",
        "\"outcome\":\"quorum not reached\"",
    ] {
        assert!(slow.contains(field), "{field} missing in {slow}");
    }
    for line in log.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON line: {line}");
        assert!(!line.contains("secret"), "key or value bytes in the log: {line}");
    }
}

/// `tuning/host.sh` without `--apply` only reports: it runs unprivileged, names every setting
/// with the command that checks it, and changes nothing.
#[test]
fn tuning_script_reports_without_changing() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/host.sh");
    let out = Command::new("bash").arg(script).output().expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for setting in [
        "ulimit -l",
        "sysctl net.core.somaxconn",
        "sysctl net.core.rmem_max",
        "sysctl net.core.busy_poll",
        "scaling_governor",
        "smp_affinity_list",
        "isolcpus",
        "--cores",
        "check mode: nothing changed",
    ] {
        assert!(text.contains(setting), "{setting} missing:\n{text}");
    }
}
