//! The Grafana dashboard `deploy/grafana/pairdb.json` queries only what PairDB exports.
//!
//! - `dashboard_is_well_formed`: a Grafana dashboard (uid, title, schema version, panels with
//!   unique ids and grid positions), every panel and query on the templated Prometheus data
//!   source `${DS_PROMETHEUS}`, which is a `datasource` variable, and every panel with a query.
//! - `every_queried_metric_is_exported`: every metric name in every PromQL expression (panels and
//!   template variables) is exported by a real coordinator or storage node once a few writes and
//!   reads have created the lazily made series: `X_bucket`, `X_sum` and `X_count` of a histogram
//!   `X`, any other name as is. Each label a selector matches on or an aggregation groups by is
//!   one the metric carries (Prometheus's own `instance` and `job` aside), and each exact
//!   label value a selector asks for (`service="..."`) occurs. `pairdb_migrations` counts the
//!   migration a replication change stores.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use bytes::Bytes;
use common::{channel, coordinator_path, eventually, repo_root, run_local, CALL_TIMEOUT};
use pairdb::{admin, proto::coordinator as api};
use serde_json::Value;

const DATASOURCE: &str = "${DS_PROMETHEUS}";

fn dashboard() -> Value {
    let path = repo_root().join("deploy/grafana/pairdb.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (where, PromQL) for every query: panel targets and query variables.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("no expr in {t}"));
            out.push((format!("panel {:?}", p["title"]), expr.to_owned()));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating.list") {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("query");
            // label_values(metric, label): the metric is a selector, the label one of its labels.
            let expr = match q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
                Some(args) => match args.rsplit_once(',') {
                    Some((metric, label)) => format!("sum by ({}) ({metric})", label.trim()),
                    None => continue,
                },
                None => q.to_owned(),
            };
            out.push((format!("variable {:?}", v["name"]), expr));
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "pairdb");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let vars = dash["templating"]["list"].as_array().expect("templating.list");
    let ds = vars.iter().find(|v| v["name"] == "DS_PROMETHEUS").expect("a DS_PROMETHEUS variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        let title = &p["title"];
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate id: {title}");
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].as_u64().is_some(), "{title}: gridPos.{k}");
        }
        assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], DATASOURCE, "{title}");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        for t in targets.unwrap_or_else(|| panic!("{title}: no query")) {
            assert_eq!(t["datasource"]["uid"], DATASOURCE, "{title}");
        }
    }
    assert!(queries(&dash).len() >= 30);
}

// ------------------------------------------------------------------------------------------------
// A small PromQL reader: enough to find the metric names and labels a query uses.
// ------------------------------------------------------------------------------------------------

/// A label matched on, with the value when it must equal one (`=` and no variable).
type Matcher = (String, Option<String>);

/// What one expression uses: each selector's metric with the labels it matches on (and the
/// exact values asked for), and the labels aggregations group by.
#[derive(Debug, Default)]
struct Uses {
    selectors: Vec<(String, Vec<Matcher>)>,
    grouping: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Reads a `"..."` literal starting at `chars[i]`; returns (contents, index after it).
fn string_at(chars: &[char], mut i: usize) -> (String, usize) {
    let quote = chars[i];
    let mut s = String::new();
    i += 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        s.push(chars[i]);
        i += 1;
    }
    (s, i + 1)
}

/// Parses a `{k="v", k2=~"..."}` body at `chars[i]` (just past `{`).
fn matchers_at(chars: &[char], mut i: usize) -> (Vec<Matcher>, usize) {
    let mut out = Vec::new();
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        assert!(i < chars.len(), "unclosed selector");
        if chars[i] == '}' {
            return (out, i + 1);
        }
        let start = i;
        while is_ident(chars[i]) {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        assert!(!label.is_empty(), "bad matcher at {i}");
        while chars[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while ['=', '!', '~'].contains(&chars[i]) {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        while chars[i].is_whitespace() {
            i += 1;
        }
        let (value, next) = string_at(chars, i);
        i = next;
        let exact = (op == "=" && !value.contains('$')).then_some(value);
        out.push((label, exact));
    }
}

fn uses(expr: &str) -> Uses {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Uses::default();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i = string_at(&chars, i).1;
        } else if c == '[' {
            // A range or subquery duration: [5m], [$__rate_interval].
            while chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '(' && grouping_next {
            // The label list of by / without / on / ignoring / group_*.
            let end = i + chars[i..].iter().position(|&c| c == ')').expect("unclosed (");
            let list: String = chars[i + 1..end].iter().collect();
            out.grouping.extend(
                list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned),
            );
            grouping_next = false;
            i = end + 1;
        } else if c == '{' {
            // A selector with no name before it: {__name__=...} is not used here.
            panic!("a selector without a metric name in {expr:?}");
        } else if is_ident_start(c) && !(i > 0 && (chars[i - 1] == '$' || is_ident(chars[i - 1]))) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            let rest: String = chars[j..].iter().collect();
            // `sum by (l) (...)`: an aggregation with its grouping before the parenthesis.
            let grouped_aggregation = ["by", "without"]
                .iter()
                .any(|k| rest.strip_prefix(k).is_some_and(|r| r.trim_start().starts_with('(')));
            if KEYWORDS.contains(&word.as_str()) {
                grouping_next = ["by", "without", "on", "ignoring", "group_left", "group_right"]
                    .contains(&word.as_str());
            } else if next == Some('(') || grouped_aggregation {
                // A function or aggregation: sum, rate, histogram_quantile, ...
            } else {
                let matchers = if next == Some('{') {
                    let (m, after) = matchers_at(&chars, j + 1);
                    i = after;
                    m
                } else {
                    Vec::new()
                };
                out.selectors.push((word, matchers));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_promql_reader_finds_metrics_and_labels() {
    let u = uses(
        "histogram_quantile(0.99, sum by (method, le) (rate(pairdb_x_seconds_bucket{instance=~\
         \"$instance\",service=\"a.B\"}[$__rate_interval]))) / on() pairdb_y offset 5m",
    );
    let names: Vec<&str> = u.selectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["pairdb_x_seconds_bucket", "pairdb_y"]);
    assert_eq!(
        u.selectors[0].1,
        [("instance".to_owned(), None), ("service".to_owned(), Some("a.B".to_owned()))]
    );
    assert_eq!(u.grouping, ["method", "le"]);
}

// ------------------------------------------------------------------------------------------------
// What a real cluster exports.
// ------------------------------------------------------------------------------------------------

/// Exported series: sample name to the label sets seen, and the histogram families.
#[derive(Default)]
struct Exported {
    series: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    histograms: BTreeSet<String>,
}

impl Exported {
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, "histogram")) = rest.split_once(' ') {
                    self.histograms.insert(name.to_owned());
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let series = line.rsplit_once(' ').expect("a sample").0;
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closed labels");
                    let labels = body
                        .split("\",")
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            self.series.entry(name.to_owned()).or_default().push(labels);
        }
    }

    /// A queried name's label sets, or why it is not exported.
    fn lookup(&self, name: &str) -> Result<&[BTreeMap<String, String>], String> {
        if let Some(sets) = self.series.get(name) {
            return Ok(sets);
        }
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s));
        match family {
            Some(f) if !self.histograms.contains(f) => {
                Err(format!("{name}: {f} is not an exported histogram"))
            }
            _ => Err(format!("{name} is not exported")),
        }
    }
}

fn scrape(admin: SocketAddr) -> String {
    let (status, body) = admin::get(admin, "/metrics", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET /metrics on {admin}: {e}"));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn every_queried_metric_is_exported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let common::TestCluster { storage, coordinator } =
        common::start_cluster(tmp.path(), "dash", 3, 1, "health_check_interval_ms: 200\n");
    let (addr, admin) = (coordinator.addr, coordinator.admin);
    run_local(move || async move {
        eventually("the coordinator is ready", Duration::from_secs(10), || async {
            match admin::get(admin, "/health/ready", Duration::from_secs(5)) {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let ch = channel(addr).await;
        let _: api::CreateTenantResponse = ch
            .unary(
                &coordinator_path("CreateTenant"),
                &api::CreateTenantRequest {
                    tenant_id: "dash".into(),
                    replication_factor: 3,
                    ..Default::default()
                },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("CreateTenant");
        for i in 0..5 {
            let key = format!("k{i}");
            let _: api::WriteKeyValueResponse = ch
                .unary(
                    &coordinator_path("WriteKeyValue"),
                    &api::WriteKeyValueRequest {
                        tenant_id: "dash".into(),
                        key: key.clone(),
                        value: Bytes::from_static(b"v"),
                        ..Default::default()
                    },
                    Some(CALL_TIMEOUT),
                )
                .await
                .expect("WriteKeyValue");
            let _: api::ReadKeyValueResponse = ch
                .unary(
                    &coordinator_path("ReadKeyValue"),
                    &api::ReadKeyValueRequest {
                        tenant_id: "dash".into(),
                        key,
                        ..Default::default()
                    },
                    Some(CALL_TIMEOUT),
                )
                .await
                .expect("ReadKeyValue");
        }
        // A replication change is a migration; it moves the tenant's data, then completes.
        let changed: api::UpdateReplicationFactorResponse = ch
            .unary(
                &coordinator_path("UpdateReplicationFactor"),
                &api::UpdateReplicationFactorRequest {
                    tenant_id: "dash".into(),
                    new_replication_factor: 2,
                },
                Some(CALL_TIMEOUT),
            )
            .await
            .expect("UpdateReplicationFactor");
        let (ch, id) = (&ch, &changed.migration_id);
        eventually("the migration completes", Duration::from_secs(60), || async move {
            let s: api::GetMigrationStatusResponse = ch
                .unary(
                    &coordinator_path("GetMigrationStatus"),
                    &api::GetMigrationStatusRequest { migration_id: id.clone() },
                    Some(CALL_TIMEOUT),
                )
                .await
                .map_err(|e| e.to_string())?;
            if s.status == "COMPLETED" {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        })
        .await;
    });
    let mut exported = Exported::default();
    let coordinator_text = scrape(coordinator.admin);
    for line in [
        "pairdb_migrations{status=\"COMPLETED\"} 1\n",
        "pairdb_migrations{status=\"PENDING\"} 0\n",
        "pairdb_migrations{status=\"IN_PROGRESS\"} 0\n",
        "pairdb_migrations{status=\"FAILED\"} 0\n",
        "pairdb_migrations{status=\"CANCELLED\"} 0\n",
    ] {
        assert!(coordinator_text.contains(line), "no {line:?} in:\n{coordinator_text}");
    }
    exported.add(&coordinator_text);
    for s in &storage {
        exported.add(&scrape(s.admin));
    }

    let mut problems = Vec::new();
    let queries = queries(&dashboard());
    let mut seen = BTreeSet::new();
    for (place, expr) in &queries {
        let u = uses(expr);
        if u.selectors.is_empty() {
            problems.push(format!("{place}: no metric in {expr:?}"));
        }
        let mut carried: BTreeSet<&str> = ["instance", "job"].into();
        for (name, matchers) in &u.selectors {
            seen.insert(name.clone());
            if !name.starts_with("pairdb_") {
                problems.push(format!("{place}: {name} is not a PairDB metric"));
            }
            let sets = match exported.lookup(name) {
                Ok(sets) => sets,
                Err(e) => {
                    problems.push(format!("{place}: {e}"));
                    continue;
                }
            };
            carried.extend(sets.iter().flat_map(|l| l.keys().map(String::as_str)));
            for (label, exact) in matchers {
                if ["instance", "job"].contains(&label.as_str()) {
                    continue;
                }
                if !sets.iter().any(|l| l.contains_key(label)) {
                    problems.push(format!("{place}: {name} has no label {label}"));
                } else if let Some(v) = exact {
                    if !sets.iter().any(|l| l.get(label) == Some(v)) {
                        problems.push(format!("{place}: no {name}{{{label}=\"{v}\"}} exported"));
                    }
                }
            }
        }
        for label in &u.grouping {
            if !carried.contains(label.as_str()) {
                problems.push(format!("{place}: grouped by {label}, which no metric of it has"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboard covers what the brief of each section names.
    for family in [
        "pairdb_rpc_requests_total",
        "pairdb_rpc_latency_seconds_bucket",
        "pairdb_rpc_in_flight",
        "pairdb_quorum_failures_total",
        "pairdb_read_repairs_queued_total",
        "pairdb_read_repairs_done_total",
        "pairdb_read_repairs_dropped_total",
        "pairdb_read_repairs_skipped_total",
        "pairdb_hints_stored_total",
        "pairdb_hints_coalesced_total",
        "pairdb_hints_dropped_total",
        "pairdb_hints_replayed_total",
        "pairdb_hints_pending",
        "pairdb_hints_buffered",
        "pairdb_replica_latency_seconds_bucket",
        "pairdb_storage_node_up",
        "pairdb_ring_epoch",
        "pairdb_migrations",
        "pairdb_storage_records",
        "pairdb_storage_disk_bytes",
        "pairdb_migration_progress_percent",
        "pairdb_migration_bytes_streamed_total",
        "pairdb_migration_keys_streamed_total",
    ] {
        assert!(seen.contains(family), "no panel queries {family}");
    }
    // The scrape-time gauges that have no traffic behind them: every registered node with no
    // hints reads 0, and each migration status is present.
    let pending = exported.lookup("pairdb_hints_pending").expect("hints pending");
    assert_eq!(pending.len(), 3, "{pending:?}");
    let migrations = exported.lookup("pairdb_migrations").expect("migrations");
    let statuses: BTreeSet<&str> = migrations.iter().map(|l| l["status"].as_str()).collect();
    assert_eq!(statuses, ["CANCELLED", "COMPLETED", "FAILED", "IN_PROGRESS", "PENDING"].into());
    drop(storage);
}
