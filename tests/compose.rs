//! `compose.yaml`, the production-like cluster in one command, checked against the project
//! without a Docker engine: everything it names exists and agrees with the rest.
//!
//! - `pairdb_services_run_the_project_image`: the PairDB services build the project's
//!   `Dockerfile` into one image and pick the role by command (the image's ENTRYPOINT is
//!   `pairdb`), with a config file the image holds, unlimited locked memory for io_uring, and
//!   container ports the image exposes; other images are pinned; every `./` mount exists; named
//!   volumes and `depends_on` targets are declared; published host ports are distinct.
//! - `environments_are_real_config_overrides`: each PairDB service's environment, applied to the
//!   config file its command names the way the server does it (`config::load_with_env`), sets
//!   only real keys and validates, and `pairdb ROLE --check-config` run with exactly that
//!   environment accepts it without a warning. Node ids are distinct; the health check probes
//!   the service's own admin port.
//! - `coordinators_share_the_backends_and_know_every_storage_node`: both coordinators use the
//!   PostgreSQL and Redis services (host, port, credentials) and list each storage service by
//!   its node id, service name and gRPC port.
//! - `prometheus_scrapes_every_admin_port`: the mounted Prometheus config scrapes exactly each
//!   PairDB service's admin port on `/metrics`.
//! - `grafana_provisions_the_datasource_and_dashboard`: the provisioning directory mounted into
//!   Grafana holds a Prometheus data source at the Prometheus service and a dashboard provider
//!   whose path is where `deploy/grafana/pairdb.json` is mounted.
//! - `compose_file_matches_the_compose_spec`: the Compose Specification schema accepts the file
//!   (check-jsonschema; skipped without it, except under `CI=true`).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use common::repo_root;
use pairdb::config::{
    self, CoordinatorConfig, IdempotencyBackendKind, MetadataBackend, StorageConfig,
    DEFAULT_COORDINATOR_ADMIN_PORT, DEFAULT_STORAGE_ADMIN_PORT,
};
use serde_yaml::Value;

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut v: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not YAML: {e}"));
    v.apply_merge().unwrap_or_else(|e| panic!("{path:?}: merge keys: {e}"));
    v
}

fn compose() -> Value {
    yaml(&repo_root().join("compose.yaml"))
}

fn services(c: &Value) -> BTreeMap<String, &Value> {
    c["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_owned(), v))
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s:?}")).to_owned())
        .collect()
}

/// A service's environment as (name, value), from the mapping or the `NAME=value` list form.
fn environment(service: &Value) -> Vec<(String, String)> {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("environment value {other:?} is not a scalar"),
    };
    match &service["environment"] {
        Value::Mapping(m) => {
            m.iter().map(|(k, v)| (k.as_str().expect("name").to_owned(), scalar(v))).collect()
        }
        Value::Sequence(s) => s
            .iter()
            .map(|e| {
                let (k, v) = e.as_str().and_then(|e| e.split_once('=')).expect("NAME=value");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("environment {other:?}"),
    }
}

/// The image's ENTRYPOINT, exposed ports and `COPY <dir>/ <dest>/` mappings from the Dockerfile.
struct Dockerfile {
    entrypoint: Vec<String>,
    exposed: BTreeSet<u16>,
    copies: Vec<(String, String)>,
}

fn dockerfile(path: &Path) -> Dockerfile {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut d = Dockerfile { entrypoint: Vec::new(), exposed: BTreeSet::new(), copies: Vec::new() };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            d.entrypoint = serde_yaml::from_str(rest).expect("ENTRYPOINT in exec form");
        } else if let Some(rest) = line.strip_prefix("EXPOSE ") {
            d.exposed.extend(rest.split_whitespace().map(|p| p.parse::<u16>().expect("a port")));
        } else if let Some(rest) = line.strip_prefix("COPY ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if !words[0].starts_with("--") && words.len() == 2 {
                d.copies.push((words[0].to_owned(), words[1].to_owned()));
            }
        }
    }
    d
}

/// What a PairDB service runs: its role and the config file (a path in the image and the file
/// of the project the image copies there).
struct PairdbService<'a> {
    name: String,
    def: &'a Value,
    role: String,
    config_in_image: String,
    config_file: PathBuf,
    /// Every service's name: the host names the compose network resolves.
    service_names: BTreeSet<String>,
}

fn pairdb_services(c: &Value) -> Vec<PairdbService<'_>> {
    let root = repo_root();
    let image = dockerfile(&root.join("Dockerfile"));
    let service_names: BTreeSet<String> = services(c).into_keys().collect();
    services(c)
        .into_iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(name, def)| {
            let command = strs(&def["command"]);
            let role = command.first().cloned().unwrap_or_default();
            let config_in_image = command
                .iter()
                .position(|a| a == "--config")
                .and_then(|i| command.get(i + 1))
                .unwrap_or_else(|| panic!("{name}: no --config in {command:?}"))
                .clone();
            // `COPY config/ /etc/pairdb/` puts config/X.yaml at /etc/pairdb/X.yaml.
            let config_file = image
                .copies
                .iter()
                .find_map(|(src, dest)| {
                    config_in_image
                        .strip_prefix(dest.as_str())
                        .map(|rest| root.join(src).join(rest))
                })
                .unwrap_or_else(|| panic!("{name}: the image has no {config_in_image}"));
            PairdbService {
                name,
                def,
                role,
                config_in_image,
                config_file,
                service_names: service_names.clone(),
            }
        })
        .collect()
}

/// A service's config as the server builds it: the file, then the environment. The
/// coordinator's and the storage node's are boxed: both are large.
enum Loaded {
    Storage(Box<StorageConfig>),
    Coordinator(Box<CoordinatorConfig>),
}

impl Loaded {
    fn load(s: &PairdbService<'_>) -> Loaded {
        let vars = environment(s.def);
        let what = format!("{}: {} with {vars:?}", s.name, s.config_file.display());
        let check_unknown = |applied: config::env::Applied| {
            assert!(applied.unknown.is_empty(), "{what}: not config keys: {:?}", applied.unknown);
        };
        match s.role.as_str() {
            "storage" => {
                let (cfg, applied) = config::load_with_env::<StorageConfig>(
                    Some(&s.config_file),
                    vars.iter().cloned(),
                )
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                check_unknown(applied);
                cfg.validate().unwrap_or_else(|e| panic!("{what}: {e}"));
                Loaded::Storage(Box::new(cfg))
            }
            "coordinator" => {
                let (cfg, applied) = config::load_with_env::<CoordinatorConfig>(
                    Some(&s.config_file),
                    vars.iter().cloned(),
                )
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                check_unknown(applied);
                // Validation resolves the storage nodes' host names, which only the compose
                // network's DNS knows: validate as if it answered (the names themselves are
                // checked against the services elsewhere).
                let mut resolved = cfg.clone();
                for n in &mut resolved.storage_nodes {
                    if s.service_names.contains(&n.host) {
                        n.host = "127.0.0.1".into();
                    }
                }
                resolved.validate().unwrap_or_else(|e| panic!("{what}: {e}"));
                Loaded::Coordinator(Box::new(cfg))
            }
            role => panic!("{}: unknown role {role:?}", s.name),
        }
    }

    fn node_id(&self) -> &str {
        match self {
            Loaded::Storage(c) => &c.node_id,
            Loaded::Coordinator(c) => &c.node_id,
        }
    }

    fn port(&self) -> u16 {
        match self {
            Loaded::Storage(c) => c.port,
            Loaded::Coordinator(c) => c.port,
        }
    }

    fn admin_port(&self) -> u16 {
        match self {
            Loaded::Storage(c) => c.admin.port.unwrap_or(DEFAULT_STORAGE_ADMIN_PORT),
            Loaded::Coordinator(c) => c.admin.port.unwrap_or(DEFAULT_COORDINATOR_ADMIN_PORT),
        }
    }
}

/// `(source, target)` of a service's volumes in the short `SOURCE:TARGET[:MODE]` form.
fn mounts(service: &Value) -> Vec<(String, String)> {
    strs(&service["volumes"])
        .into_iter()
        .map(|m| {
            let mut parts = m.splitn(3, ':');
            let source = parts.next().unwrap_or_default().to_owned();
            let target = parts.next().unwrap_or_else(|| panic!("{m}: no target")).to_owned();
            (source, target)
        })
        .collect()
}

/// `(host, container)` of a service's published ports, `"HOST:CONTAINER"`.
fn published(service: &Value) -> Vec<(u16, u16)> {
    strs(&service["ports"])
        .iter()
        .map(|p| {
            let (host, container) = p.rsplit_once(':').unwrap_or_else(|| panic!("{p}"));
            (host.parse().expect("host port"), container.parse().expect("container port"))
        })
        .collect()
}

#[test]
fn pairdb_services_run_the_project_image() {
    let c = compose();
    let root = repo_root();
    let all = services(&c);
    let declared_volumes: BTreeSet<String> = c["volumes"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    let pairdb = pairdb_services(&c);
    let roles: Vec<&str> = pairdb.iter().map(|s| s.role.as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "storage").count(), 3, "{roles:?}");
    assert_eq!(roles.iter().filter(|r| **r == "coordinator").count(), 2, "{roles:?}");
    for want in ["postgres", "redis", "prometheus", "grafana"] {
        assert!(all.contains_key(want), "no {want} service");
    }
    let image = dockerfile(&root.join("Dockerfile"));
    assert_eq!(image.entrypoint, ["pairdb"], "the roles below are arguments of `pairdb`");
    let mut images = BTreeSet::new();
    for s in &pairdb {
        let name = &s.name;
        let build = &s.def["build"];
        let context = build["context"].as_str().unwrap_or_else(|| panic!("{name}: context"));
        assert_eq!(root.join(context).canonicalize().unwrap(), root.canonicalize().unwrap());
        let file = build["dockerfile"].as_str().unwrap_or("Dockerfile");
        assert!(root.join(context).join(file).is_file(), "{name}: no {file}");
        assert_eq!(file, "Dockerfile", "{name}: the project's Dockerfile");
        images.insert(s.def["image"].as_str().unwrap_or_else(|| panic!("{name}: image")));
        assert!(["storage", "coordinator"].contains(&s.role.as_str()), "{name}: {}", s.role);
        assert!(s.config_file.is_file(), "{name}: {} is not in config/", s.config_in_image);
        // io_uring's locked memory: `memlock: -1` or {soft: -1, hard: -1}.
        let memlock = &s.def["ulimits"]["memlock"];
        let unlimited = memlock.as_i64() == Some(-1)
            || (memlock["soft"].as_i64() == Some(-1) && memlock["hard"].as_i64() == Some(-1));
        assert!(unlimited, "{name}: ulimits.memlock must be -1, is {memlock:?}");
        let loaded = Loaded::load(s);
        for (_, container) in published(s.def) {
            assert!(image.exposed.contains(&container), "{name}: {container} not EXPOSEd");
            assert!(
                [loaded.port(), loaded.admin_port()].contains(&container),
                "{name}: publishes {container}, which it does not listen on"
            );
        }
        assert!(image.exposed.contains(&loaded.port()), "{name}: gRPC port not EXPOSEd");
        assert!(image.exposed.contains(&loaded.admin_port()), "{name}: admin port not EXPOSEd");
    }
    assert_eq!(images.len(), 1, "one image for every role: {images:?}");
    let mut host_ports = BTreeSet::new();
    for (name, s) in &all {
        if s.get("build").is_none() {
            let image = s["image"].as_str().unwrap_or_else(|| panic!("{name}: no image"));
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
            assert!(tag != "latest" && !tag.contains('/'), "{name}: pin {image} to a version");
        }
        for (source, target) in mounts(s) {
            assert!(target.starts_with('/'), "{name}: {target}");
            if source.starts_with("./") || source.starts_with('/') {
                let path = root.join(&source);
                assert!(path.exists(), "{name}: mounts {source}, which does not exist");
            } else {
                assert!(declared_volumes.contains(&source), "{name}: volume {source} undeclared");
            }
        }
        for (host, _) in published(s) {
            assert!(host_ports.insert(host), "{name}: host port {host} published twice");
        }
        let depends: Vec<String> = match &s["depends_on"] {
            Value::Mapping(m) => m.keys().map(|k| k.as_str().unwrap().to_owned()).collect(),
            other => strs(other),
        };
        for d in depends {
            assert!(all.contains_key(&d), "{name}: depends on unknown service {d}");
            if s["depends_on"][d.as_str()]["condition"] == "service_healthy" {
                let own = all[&d].get("healthcheck").is_some();
                let from_image = all[&d].get("build").is_some();
                assert!(own || from_image, "{name}: waits for {d} to be healthy; it has no check");
            }
        }
    }
}

#[test]
fn environments_are_real_config_overrides() {
    let c = compose();
    let mut node_ids = BTreeSet::new();
    for s in pairdb_services(&c) {
        let name = &s.name;
        let loaded = Loaded::load(&s);
        assert!(node_ids.insert(loaded.node_id().to_owned()), "{name}: node id taken");
        let vars = environment(s.def);
        // The image's health check probes PAIRDB_PROBE_URL: this service's readiness.
        let probe = vars
            .iter()
            .find(|(k, _)| k == "PAIRDB_PROBE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                format!("http://127.0.0.1:{DEFAULT_COORDINATOR_ADMIN_PORT}/health/ready")
            });
        assert_eq!(
            probe,
            format!("http://127.0.0.1:{}/health/ready", loaded.admin_port()),
            "{name}: the health check probes another port"
        );
        // The server itself, with exactly that environment (nothing of ours leaks in), but for
        // the storage nodes' host names: service names, which resolve on the compose network
        // only, so they stand for 127.0.0.1 here.
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| {
                if k != "PAIRDB_STORAGE_NODES" {
                    return (k, v);
                }
                let mut nodes: Value = serde_yaml::from_str(&v).expect("a YAML list");
                for n in nodes.as_sequence_mut().expect("a YAML list") {
                    if n["host"].as_str().is_some_and(|h| s.service_names.contains(h)) {
                        n["host"] = "127.0.0.1".into();
                    }
                }
                (k, serde_yaml::to_string(&nodes).unwrap())
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_pairdb"))
            .args([&s.role, "--config"])
            .arg(&s.config_file)
            .arg("--check-config")
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running pairdb");
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{name}: --check-config refused:\n{stderr}");
        assert!(stdout.contains("configuration is valid"), "{name}: {stdout}");
        assert!(!stderr.contains("warning"), "{name}: {stderr}");
    }
}

#[test]
fn coordinators_share_the_backends_and_know_every_storage_node() {
    let c = compose();
    let all = services(&c);
    let pairdb = pairdb_services(&c);
    // node id -> (service name, gRPC port) of every storage service.
    let storage: BTreeMap<String, (String, u16)> = pairdb
        .iter()
        .filter_map(|s| match Loaded::load(s) {
            Loaded::Storage(cfg) => Some((cfg.node_id.clone(), (s.name.clone(), cfg.port))),
            Loaded::Coordinator(_) => None,
        })
        .collect();
    let postgres_env: BTreeMap<String, String> = environment(all["postgres"]).into_iter().collect();
    let pg = |k: &str| postgres_env.get(k).cloned().unwrap_or_else(|| panic!("postgres: {k}"));
    let want_pg = format!(
        "postgres://{}:{}@postgres:5432/{}",
        pg("POSTGRES_USER"),
        pg("POSTGRES_PASSWORD"),
        pg("POSTGRES_DB")
    );
    let mut coordinators = 0;
    for s in &pairdb {
        let Loaded::Coordinator(cfg) = Loaded::load(s) else { continue };
        coordinators += 1;
        let name = &s.name;
        assert!(cfg.host == "0.0.0.0", "{name}: listens on {} only", cfg.host);
        let listed: BTreeMap<String, (String, u16)> = cfg
            .storage_nodes
            .iter()
            .map(|n| (n.node_id.clone(), (n.host.clone(), n.port)))
            .collect();
        assert_eq!(listed, storage, "{name}: storage nodes are not the storage services");
        assert!(matches!(cfg.metadata.backend, MetadataBackend::Postgres), "{name}: metadata");
        assert_eq!(cfg.metadata.postgres_url, want_pg, "{name}");
        assert!(matches!(cfg.idempotency.backend, IdempotencyBackendKind::Redis), "{name}");
        assert_eq!(cfg.idempotency.redis_url, "redis://redis:6379/0", "{name}");
        let depends = s.def["depends_on"].as_mapping().expect("depends_on");
        for d in ["postgres", "redis"].into_iter().chain(storage.values().map(|(s, _)| s.as_str()))
        {
            assert!(depends.contains_key(d), "{name}: does not wait for {d}");
        }
    }
    assert_eq!(coordinators, 2);
    for (svc, _) in storage.values() {
        assert!(all[svc].get("build").is_some(), "{svc}");
    }
    assert!(
        strs(&all["redis"]["command"]).is_empty()
            || strs(&all["redis"]["command"])[0] == "redis-server"
    );
}

/// The project file a service mounts at `target`.
fn mounted(service: &Value, target: &str) -> PathBuf {
    let (source, _) = mounts(service)
        .into_iter()
        .find(|(_, t)| t == target)
        .unwrap_or_else(|| panic!("nothing mounted at {target}"));
    assert!(source.starts_with("./"), "{source}: not a project file");
    repo_root().join(source)
}

#[test]
fn prometheus_scrapes_every_admin_port() {
    let c = compose();
    let all = services(&c);
    let config = yaml(&mounted(all["prometheus"], "/etc/prometheus/prometheus.yml"));
    assert!(mounted(all["prometheus"], "/etc/prometheus/prometheus.yml")
        .ends_with("deploy/prometheus/prometheus.yml"));
    let mut targets = BTreeSet::new();
    for job in config["scrape_configs"].as_sequence().expect("scrape_configs") {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        assert_eq!(path, "/metrics", "{job:?}");
        for sc in job["static_configs"].as_sequence().expect("static_configs") {
            for t in strs(&sc["targets"]) {
                assert!(targets.insert(t.clone()), "{t} scraped twice");
            }
        }
    }
    let want: BTreeSet<String> = pairdb_services(&c)
        .iter()
        .map(|s| format!("{}:{}", s.name, Loaded::load(s).admin_port()))
        .collect();
    assert_eq!(targets, want, "scrape targets are not the PairDB admin ports");
}

#[test]
fn grafana_provisions_the_datasource_and_dashboard() {
    let c = compose();
    let all = services(&c);
    let grafana = all["grafana"];
    let provisioning = mounted(grafana, "/etc/grafana/provisioning");
    assert!(provisioning.ends_with("deploy/grafana/provisioning") && provisioning.is_dir());
    // The data source: the Prometheus service on the port its container listens on.
    let ds = yaml(&provisioning.join("datasources/prometheus.yaml"));
    let sources = ds["datasources"].as_sequence().expect("datasources");
    let prometheus: Vec<&Value> = sources.iter().filter(|d| d["type"] == "prometheus").collect();
    assert_eq!(prometheus.len(), 1, "{sources:?}");
    assert_eq!(prometheus[0]["url"], "http://prometheus:9090");
    assert_eq!(prometheus[0]["isDefault"], true, "DS_PROMETHEUS picks the default");
    assert!(published(all["prometheus"]).iter().any(|(_, c)| *c == 9090));
    // The dashboard: the provider's directory holds the mounted pairdb.json.
    let dashboards = yaml(&provisioning.join("dashboards/pairdb.yaml"));
    let providers = dashboards["providers"].as_sequence().expect("providers");
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"], "file");
    let dir = providers[0]["options"]["path"].as_str().expect("options.path");
    let target = format!("{dir}/pairdb.json");
    let file = mounted(grafana, &target);
    assert_eq!(
        file.canonicalize().unwrap(),
        repo_root().join("deploy/grafana/pairdb.json").canonicalize().unwrap()
    );
    let home = environment(grafana)
        .into_iter()
        .find(|(k, _)| k == "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .map(|(_, v)| v);
    assert_eq!(home.as_deref(), Some(target.as_str()));
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("dashboard JSON");
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(vars.iter().any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
}

/// `check-jsonschema` (PyPI, tests/python/requirements.txt): its command when on PATH, else its
/// Python module; None when neither answers.
fn schema_checker() -> Option<Command> {
    let candidates: [(&str, &[&str]); 2] =
        [("check-jsonschema", &[]), ("python3", &["-m", "check_jsonschema"])];
    candidates.into_iter().find_map(|(program, prefix)| {
        let version = Command::new(program).args(prefix).arg("--version").output();
        version.is_ok_and(|out| out.status.success()).then(|| {
            let mut command = Command::new(program);
            command.args(prefix);
            command
        })
    })
}

/// Validates `file` against the Compose Specification's JSON schema, which check-jsonschema
/// vendors (offline): None when it is not installed.
fn compose_spec_check(file: &Path) -> Option<(bool, String)> {
    let out = schema_checker()?
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(file)
        .output()
        .ok()?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

/// `compose.yaml` is a valid Compose file by the Compose Specification's schema (what `docker
/// compose config` checks before anything else). Skipped without check-jsonschema, except under
/// `CI=true`, where it fails, as tests/k8s.rs does for the Kubernetes schemas.
#[test]
fn compose_file_matches_the_compose_spec() {
    let Some((ok, report)) = compose_spec_check(&repo_root().join("compose.yaml")) else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but check-jsonschema is not installed (neither the command nor python3 -m \
             check_jsonschema answers): scripts/test installs it from \
             tests/python/requirements.txt; CI must not pass without the schema check"
        );
        eprintln!(
            "check-jsonschema is not installed (pip install check-jsonschema): compose-spec \
             validation skipped; compose.yaml was cross-checked against the project only"
        );
        return;
    };
    assert!(ok, "compose.yaml does not match the Compose Specification:\n{report}");
    // The checker does reject a broken file (so the pass above means something).
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("compose.yaml");
    std::fs::write(&broken, "services:\n  a:\n    image: x:1\n    restartt: always\n").unwrap();
    let (ok, report) = compose_spec_check(&broken).expect("installed");
    assert!(!ok, "a broken compose file passed:\n{report}");
}
