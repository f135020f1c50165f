//! The Kubernetes manifests under `k8s/`: every document parses, carries what Kubernetes
//! requires, and hangs together (selectors match pod labels, probes hit the admin endpoints on a
//! declared port, the StatefulSet's headless Service exists, the HPA and PDBs point at real
//! workloads, the embedded PairDB configs parse into our config types). Every file is also
//! checked against the Kubernetes OpenAPI schemas in strict mode by the PyPI package
//! `kubernetes-validate` (tests/python/requirements.txt, which scripts/test installs). Without
//! it that check is skipped with a message, except under CI (`CI=true`), where it fails: CI must
//! never pass without the schema check.

use std::{path::PathBuf, process::Command};

use pairdb::config::{CoordinatorConfig, StorageConfig};
use serde::Deserialize;
use serde_yaml::Value;

fn manifests() -> Vec<(PathBuf, Vec<Value>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("k8s/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let docs = serde_yaml::Deserializer::from_str(&text)
                .map(|d| {
                    Value::deserialize(d)
                        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
                })
                .filter(|v| !v.is_null())
                .collect();
            (path, docs)
        })
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let (Some(sel), Some(labels)) = (selector.as_mapping(), labels.as_mapping()) else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn manifests_are_complete_and_consistent() {
    let all: Vec<(String, Value)> = manifests()
        .into_iter()
        .flat_map(|(path, docs)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            docs.into_iter().map(move |d| (name.clone(), d))
        })
        .collect();
    let kinds: Vec<&str> = all.iter().filter_map(|(_, d)| str_at(d, &["kind"])).collect();
    for wanted in [
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "StatefulSet",
    ] {
        assert!(kinds.contains(&wanted), "no {wanted} in k8s/ (have {kinds:?})");
    }
    let find = |kind: &str, name: &str| {
        all.iter().find(|(_, d)| {
            str_at(d, &["kind"]) == Some(kind) && str_at(d, &["metadata", "name"]) == Some(name)
        })
    };
    let workloads: Vec<&Value> = all
        .iter()
        .map(|(_, d)| d)
        .filter(|d| matches!(str_at(d, &["kind"]), Some("Deployment" | "StatefulSet")))
        .collect();
    for (file, doc) in &all {
        let kind =
            str_at(doc, &["kind"]).unwrap_or_else(|| panic!("{file}: a document has no kind"));
        let name = str_at(doc, &["metadata", "name"])
            .unwrap_or_else(|| panic!("{file}: {kind} has no metadata.name"));
        let what = format!("{file}: {kind}/{name}");
        assert!(str_at(doc, &["apiVersion"]).is_some(), "{what}: no apiVersion");
        match kind {
            "Deployment" | "StatefulSet" => {
                let template = at(doc, &["spec", "template"]).expect("a pod template");
                let labels = at(template, &["metadata", "labels"]).expect("pod labels");
                let selector = at(doc, &["spec", "selector", "matchLabels"]).expect("a selector");
                assert!(labels_match(selector, labels), "{what}: selector does not match pods");
                let spec = at(template, &["spec"]).expect("pod spec");
                let containers = at(spec, &["containers"]).and_then(Value::as_sequence).unwrap();
                let volumes: Vec<&str> = at(spec, &["volumes"])
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .chain(
                        at(doc, &["spec", "volumeClaimTemplates"])
                            .and_then(Value::as_sequence)
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c.get("metadata")),
                    )
                    .filter_map(|v| str_at(v, &["name"]))
                    .collect();
                for c in containers {
                    let ports: Vec<&str> = at(c, &["ports"])
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| str_at(p, &["name"]))
                        .collect();
                    for (probe, path) in
                        [("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")]
                    {
                        assert_eq!(
                            str_at(c, &[probe, "httpGet", "path"]),
                            Some(path),
                            "{what}: {probe}"
                        );
                        let port = str_at(c, &[probe, "httpGet", "port"]).unwrap_or_default();
                        assert!(ports.contains(&port), "{what}: {probe} port {port:?} undeclared");
                    }
                    let caps = at(c, &["securityContext", "capabilities", "add"])
                        .and_then(Value::as_sequence)
                        .map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                        .unwrap_or_default();
                    assert!(caps.contains(&"IPC_LOCK"), "{what}: io_uring needs IPC_LOCK");
                    for m in
                        at(c, &["volumeMounts"]).and_then(Value::as_sequence).into_iter().flatten()
                    {
                        let v = str_at(m, &["name"]).unwrap_or_default();
                        assert!(volumes.contains(&v), "{what}: mount of unknown volume {v:?}");
                    }
                }
                if kind == "StatefulSet" {
                    let service = str_at(doc, &["spec", "serviceName"]).expect("serviceName");
                    let (_, svc) = find("Service", service)
                        .unwrap_or_else(|| panic!("{what}: no Service {service}"));
                    assert_eq!(str_at(svc, &["spec", "clusterIP"]), Some("None"), "{what}");
                    assert!(
                        at(doc, &["spec", "volumeClaimTemplates"])
                            .and_then(Value::as_sequence)
                            .is_some_and(|s| !s.is_empty()),
                        "{what}: no volumeClaimTemplates"
                    );
                }
            }
            "Service" => {
                let selector = at(doc, &["spec", "selector"]).expect("a selector");
                assert!(
                    workloads.iter().any(|w| {
                        at(w, &["spec", "template", "metadata", "labels"])
                            .is_some_and(|l| labels_match(selector, l))
                    }),
                    "{what}: selects no workload"
                );
            }
            "PodDisruptionBudget" => {
                let selector = at(doc, &["spec", "selector", "matchLabels"]).expect("selector");
                assert!(
                    workloads.iter().any(|w| {
                        at(w, &["spec", "template", "metadata", "labels"])
                            .is_some_and(|l| labels_match(selector, l))
                    }),
                    "{what}: selects no workload"
                );
            }
            "HorizontalPodAutoscaler" => {
                let target = str_at(doc, &["spec", "scaleTargetRef", "name"]).unwrap_or_default();
                let kind = str_at(doc, &["spec", "scaleTargetRef", "kind"]).unwrap_or_default();
                assert!(find(kind, target).is_some(), "{what}: no {kind}/{target}");
            }
            "RoleBinding" => {
                let role = str_at(doc, &["roleRef", "name"]).unwrap_or_default();
                assert!(find("Role", role).is_some(), "{what}: no Role {role}");
                for s in at(doc, &["subjects"]).and_then(Value::as_sequence).into_iter().flatten() {
                    let account = str_at(s, &["name"]).unwrap_or_default();
                    assert!(find("ServiceAccount", account).is_some(), "{what}: no {account}");
                }
            }
            "ConfigMap" => {
                // The PairDB configs inside parse into our types (unknown keys are refused).
                for (key, text) in
                    at(doc, &["data"]).and_then(Value::as_mapping).into_iter().flatten()
                {
                    let (key, text) = (key.as_str().unwrap(), text.as_str().unwrap());
                    match key {
                        "coordinator.yaml" => {
                            let cfg: CoordinatorConfig = serde_yaml::from_str(text)
                                .unwrap_or_else(|e| panic!("{what}: {key}: {e}"));
                            assert!(!cfg.storage_nodes.is_empty(), "{what}: no storage_nodes");
                        }
                        "storage.yaml" => {
                            serde_yaml::from_str::<StorageConfig>(text)
                                .unwrap_or_else(|e| panic!("{what}: {key}: {e}"));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every PairDB pod template tells Prometheus where its metrics are: `prometheus.io/scrape:
/// "true"`, `prometheus.io/path: /metrics` and `prometheus.io/port` equal to the container's
/// `admin` port, which is the admin port the pod's config (its ConfigMap, then any
/// `PAIRDB_ADMIN_PORT` in the container's environment) gives the role.
#[test]
fn pods_carry_prometheus_scrape_annotations() {
    let docs: Vec<Value> = manifests().into_iter().flat_map(|(_, docs)| docs).collect();
    let config_map = |name: &str| {
        docs.iter()
            .find(|d| {
                str_at(d, &["kind"]) == Some("ConfigMap")
                    && str_at(d, &["metadata", "name"]) == Some(name)
            })
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    };
    let mut checked = Vec::new();
    for doc in &docs {
        if !matches!(str_at(doc, &["kind"]), Some("Deployment" | "StatefulSet")) {
            continue;
        }
        let name = str_at(doc, &["metadata", "name"]).unwrap_or_default();
        let template = at(doc, &["spec", "template"]).expect("a pod template");
        let annotation = |k: &str| {
            at(template, &["metadata", "annotations", k])
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{name}: no pod annotation {k} (a string)"))
        };
        assert_eq!(annotation("prometheus.io/scrape"), "true", "{name}");
        assert_eq!(annotation("prometheus.io/path"), "/metrics", "{name}");
        let port: u16 = annotation("prometheus.io/port")
            .parse()
            .unwrap_or_else(|e| panic!("{name}: prometheus.io/port: {e}"));
        let container = at(template, &["spec", "containers"])
            .and_then(Value::as_sequence)
            .and_then(|c| c.first())
            .expect("a container");
        let admin_port = at(container, &["ports"])
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|p| str_at(p, &["name"]) == Some("admin"))
            .and_then(|p| p.get("containerPort"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{name}: no container port named admin"));
        assert_eq!(u64::from(port), admin_port, "{name}: prometheus.io/port is not the admin port");
        // The port the process will really open.
        let map = at(template, &["spec", "volumes"])
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find_map(|v| str_at(v, &["configMap", "name"]))
            .unwrap_or_else(|| panic!("{name}: no ConfigMap volume"));
        let data = at(config_map(map), &["data"]).expect("ConfigMap data");
        let configured = if let Some(text) = str_at(data, &["coordinator.yaml"]) {
            let cfg: CoordinatorConfig = serde_yaml::from_str(text).expect("coordinator.yaml");
            cfg.admin.port.unwrap_or(pairdb::config::DEFAULT_COORDINATOR_ADMIN_PORT)
        } else {
            let text = str_at(data, &["storage.yaml"]).expect("a PairDB config in the ConfigMap");
            let cfg: StorageConfig = serde_yaml::from_str(text).expect("storage.yaml");
            cfg.admin.port.unwrap_or(pairdb::config::DEFAULT_STORAGE_ADMIN_PORT)
        };
        let from_env = at(container, &["env"])
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|e| str_at(e, &["name"]) == Some("PAIRDB_ADMIN_PORT"))
            .and_then(|e| str_at(e, &["value"]))
            .map(|v| v.parse::<u16>().expect("PAIRDB_ADMIN_PORT"));
        assert_eq!(port, from_env.unwrap_or(configured), "{name}: not the configured admin port");
        checked.push(name.to_owned());
    }
    checked.sort();
    assert_eq!(checked, ["pairdb-coordinator", "pairdb-storage"]);
}

/// The validator: its command when on PATH, else its Python module (pip may install scripts to
/// a directory off PATH); None when neither answers.
fn validator() -> Option<Command> {
    let candidates: [(&str, &[&str]); 2] =
        [("kubernetes-validate", &[]), ("python3", &["-m", "kubernetes_validate"])];
    candidates.into_iter().find_map(|(program, prefix)| {
        let version = Command::new(program).args(prefix).arg("--version").output();
        version.is_ok_and(|out| out.status.success()).then(|| {
            let mut command = Command::new(program);
            command.args(prefix);
            command
        })
    })
}

/// Runs `kubernetes-validate --strict` on `files`: None when it is not installed.
fn kubernetes_validate(files: &[PathBuf]) -> Option<(bool, String)> {
    let out = validator()?.arg("--strict").args(files).output().ok()?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

#[test]
fn manifests_match_the_kubernetes_schemas() {
    let files: Vec<PathBuf> = manifests().into_iter().map(|(p, _)| p).collect();
    let Some((ok, report)) = kubernetes_validate(&files) else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but kubernetes-validate is not installed (neither the command nor python3 -m \
             kubernetes_validate answers): scripts/test installs it from \
             tests/python/requirements.txt; CI must not pass without the schema check"
        );
        eprintln!(
            "kubernetes-validate is not installed (pip install kubernetes-validate): schema \
             validation skipped; the manifests were parsed and cross-checked only"
        );
        return;
    };
    assert!(ok, "kubernetes-validate rejected k8s/:\n{report}");
    // The validator does reject a broken manifest (so the pass above means something).
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: many}\n",
    )
    .expect("write");
    let (ok, report) = kubernetes_validate(&[broken]).expect("installed");
    assert!(!ok, "a broken manifest passed:\n{report}");
}
