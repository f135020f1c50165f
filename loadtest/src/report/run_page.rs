//! The page of one run ([`render_run`]): summary and settings tables, and its plots
//! (throughput, latency per second per operation type, latency percentiles, errors by status).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use super::{
    chart::{
        curve_points, latency_chart, ms, per_second, percentile_chart, throughput_chart, Chart,
        Line, Quantile, XAxis,
    },
    html::{escape, figure, ms_cell, page_start, statuses_cell},
    RunData,
};
use crate::stats::Percentiles;

/// Operation types the timeline or the totals mention, in report order.
fn op_names(data: &RunData) -> Vec<String> {
    let mut names: BTreeSet<String> = data.report.operations.keys().cloned().collect();
    for s in &data.timeline {
        names.extend(s.operations.keys().cloned());
    }
    let order = ["read", "write", "delete"];
    let mut v: Vec<String> = names.into_iter().collect();
    v.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(order.len()));
    v
}

fn run_charts(data: &RunData) -> anyhow::Result<Vec<(&'static str, String, String)>> {
    let ops = op_names(data);
    let mixed = ops.len() > 1;
    let mut figures = Vec::new();

    // Throughput.
    let mut lines = vec![Line::new("all", 0, per_second(data, |s| Some(s.completed as f64)))];
    if mixed {
        for (i, op) in ops.iter().enumerate() {
            let points = per_second(data, |s| {
                Some(s.operations.get(op).map_or(0.0, |o| o.completed as f64))
            });
            lines.push(Line::new(op.as_str(), i + 1, points));
        }
    }
    let chart = throughput_chart("Throughput: calls finished per second".into(), lines);
    figures.push(("throughput", "Throughput".to_owned(), chart.svg()?));

    // Latency per second.
    let quantiles: [(&str, Quantile); 3] =
        [("p50", |p| p.p50_us), ("p99", |p| p.p99_us), ("p99.9", |p| p.p999_us)];
    let groups: Vec<Option<&String>> =
        if mixed { ops.iter().map(Some).collect() } else { vec![None] };
    for group in groups {
        let lines = quantiles
            .iter()
            .enumerate()
            .map(|(i, (name, q))| {
                let points = per_second(data, |s| match group {
                    None => Some(ms(q(&s.latency))),
                    Some(op) => s.operations.get(op).map(|o| ms(q(&o.latency))),
                });
                Line::new(*name, i, points)
            })
            .collect();
        let what = group.map_or("all calls".to_owned(), |op| format!("{op}s"));
        let id = match group.map(String::as_str) {
            None => "latency-all",
            Some("read") => "latency-read",
            Some("write") => "latency-write",
            Some("delete") => "latency-delete",
            Some(_) => "latency-other",
        };
        let chart = latency_chart(format!("Latency per second, {what}"), lines);
        figures.push((id, format!("Latency per second ({what})"), chart.svg()?));
    }

    // Percentile curve.
    let mut lines = Vec::new();
    if let Some(curve) = data.percentile_curves.get("all") {
        lines.push(Line::new("all", 0, curve_points(curve)));
    }
    if mixed {
        for (i, op) in ops.iter().enumerate() {
            if let Some(curve) = data.percentile_curves.get(op) {
                lines.push(Line::new(op.as_str(), i + 1, curve_points(curve)));
            }
        }
    }
    let chart = percentile_chart("Latency by percentile (measurement window)".into(), lines);
    figures.push(("percentiles", "Latency percentiles".to_owned(), chart.svg()?));

    // Errors by status.
    let statuses: BTreeSet<&String> =
        data.timeline.iter().flat_map(|s| s.errors_by_status.keys()).collect();
    let mut lines = Vec::new();
    if statuses.is_empty() {
        lines.push(Line::new("errors (none)", 3, per_second(data, |s| Some(s.errors as f64))));
    }
    for (i, status) in statuses.iter().enumerate() {
        let points =
            per_second(
                data,
                |s| Some(s.errors_by_status.get(*status).copied().unwrap_or(0) as f64),
            );
        lines.push(Line::new(status.as_str(), i + 3, points));
    }
    let chart = Chart {
        title: "Errors by status per second".into(),
        x: XAxis::Seconds,
        x_desc: "time since start (s)",
        y_desc: "failed calls per second",
        y_log: false,
        lines,
    };
    figures.push(("errors", "Errors by status".to_owned(), chart.svg()?));
    Ok(figures)
}

/// The page of one run.
pub fn render_run(data: &RunData) -> anyhow::Result<String> {
    let r = &data.report;
    let mut out = String::new();
    page_start(&mut out, "pairdb-loadtest report");
    let _ = writeln!(out, "<code class=\"cmd\">{}</code>", escape(&data.command));
    let mode = r.settings.get("mode").and_then(|v| v.as_str()).unwrap_or("?");
    let warmup = r.settings.get("warmup_secs").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "<p class=\"note\">{mode} loop; measured {:.1} s after {warmup:.1} s of warmup. Totals and \
         percentiles count calls sent in the measurement window; per-second plots count calls by \
         the second they finished in, warmup included.</p>",
        r.measured_secs
    );
    out.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n<tr><th class=\"l\">op</th>\
        <th>calls</th><th>calls/s</th><th>ok/s</th><th>misses</th><th>errors</th><th>p50 ms</th>\
        <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th class=\"l\">errors by status</th></tr>\n");
    let secs = r.measured_secs.max(1e-9);
    let mut row = |name: &str,
                   count: u64,
                   ok_per_sec: f64,
                   misses: u64,
                   errors: u64,
                   p: &Percentiles,
                   by_status: &BTreeMap<String, u64>| {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td>{count}</td><td>{:.0}</td><td>{ok_per_sec:.0}</td>\
             <td>{misses}</td><td>{errors}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"l\">{}</td></tr>",
            escape(name),
            count as f64 / secs,
            ms_cell(p.p50_us),
            ms_cell(p.p99_us),
            ms_cell(p.p999_us),
            ms_cell(p.max_us),
            escape(&statuses_cell(by_status)),
        );
    };
    for (name, op) in &r.operations {
        row(name, op.count, op.ok_per_sec, op.misses, op.errors, &op.latency, &op.errors_by_status);
    }
    row("all", r.completed, r.ok_per_sec, r.misses, r.errors, &r.latency_all, &r.errors_by_status);
    out.push_str("</table>\n");
    if !r.error_samples.is_empty() || r.abandoned > 0 || r.schedule.is_some() {
        out.push_str("<ul class=\"note\">\n");
        for (status, message) in &r.error_samples {
            let _ = writeln!(out, "<li>first {}: {}</li>", escape(status), escape(message));
        }
        if r.abandoned > 0 {
            let _ = writeln!(out, "<li>abandoned at drain (no reply): {}</li>", r.abandoned);
        }
        if let Some(s) = &r.schedule {
            let _ = writeln!(
                out,
                "<li>schedule: target {:.0}/s, {} sends late by &gt; 1 ms (max lag {:.3} ms), {} \
                 never sent</li>",
                s.target_rate,
                s.late,
                ms(s.max_lag_us),
                s.unsent
            );
        }
        out.push_str("</ul>\n");
    }
    settings_table(&mut out, &r.settings);
    for (id, heading, svg) in run_charts(data)? {
        figure(&mut out, id, &heading, &svg);
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

fn settings_table(out: &mut String, settings: &serde_json::Value) {
    let Some(map) = settings.as_object() else {
        return;
    };
    out.push_str("<h2>Settings</h2>\n<table id=\"settings\">\n");
    for (key, value) in map {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let _ = writeln!(
            out,
            "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>",
            escape(key),
            escape(&value)
        );
    }
    out.push_str("</table>\n");
}
