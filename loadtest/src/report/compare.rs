//! The A/B comparison page ([`render_compare`]): two runs' summaries side by side with their
//! ratio, and each plot overlaying run `b` (dashed) on the baseline `a`.

use std::{collections::BTreeSet, fmt::Write as _};

use super::{
    chart::{
        curve_points, latency_chart, ms, per_second, percentile_chart, throughput_chart, Chart,
        Line, Quantile, XAxis,
    },
    html::{escape, figure, page_start},
    RunData,
};
use crate::stats::Report;

fn ratio(a: f64, b: f64) -> String {
    if a == 0.0 {
        if b == 0.0 {
            "=".to_owned()
        } else {
            "-".to_owned()
        }
    } else {
        format!("{:.3}", b / a)
    }
}

/// The page comparing run `a` (the baseline) with run `b`.
pub fn render_compare(a: (&str, &RunData), b: (&str, &RunData)) -> anyhow::Result<String> {
    let ((name_a, da), (name_b, db)) = (a, b);
    let mut out = String::new();
    page_start(&mut out, &format!("pairdb-loadtest comparison: {name_a} vs {name_b}"));
    for (name, d) in [(name_a, da), (name_b, db)] {
        let _ = writeln!(
            out,
            "<p><b>{}</b> (measured {:.1} s):</p><code class=\"cmd\">{}</code>",
            escape(name),
            d.report.measured_secs,
            escape(&d.command)
        );
    }
    let _ = write!(
        out,
        "<h2>Summary</h2>\n<p class=\"note\">Ratio is {b} / {a}.</p>\n<table id=\"summary\">\n\
         <tr><th class=\"l\">metric</th><th>{a}</th><th>{b}</th><th>ratio</th></tr>\n",
        a = escape(name_a),
        b = escape(name_b)
    );
    let mut row = |metric: &str, x: f64, y: f64, fmt: &dyn Fn(f64) -> String| {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(metric),
            fmt(x),
            fmt(y),
            ratio(x, y)
        );
    };
    let (ra, rb) = (&da.report, &db.report);
    let rate = |v: f64| format!("{v:.0}");
    let count = |v: f64| format!("{v:.0}");
    let msf = |v: f64| format!("{v:.3}");
    row("calls/s", ra.completed_per_sec, rb.completed_per_sec, &rate);
    row("ok/s", ra.ok_per_sec, rb.ok_per_sec, &rate);
    let quantiles: [(&str, Quantile); 4] = [
        ("p50 ms", |p| p.p50_us),
        ("p99 ms", |p| p.p99_us),
        ("p99.9 ms", |p| p.p999_us),
        ("max ms", |p| p.max_us),
    ];
    for (name, q) in quantiles {
        row(name, ms(q(&ra.latency_all)), ms(q(&rb.latency_all)), &msf);
    }
    row("errors", ra.errors as f64, rb.errors as f64, &count);
    let statuses: BTreeSet<&String> =
        ra.errors_by_status.keys().chain(rb.errors_by_status.keys()).collect();
    for status in statuses {
        let get = |r: &Report| r.errors_by_status.get(status).copied().unwrap_or(0) as f64;
        row(&format!("errors {status}"), get(ra), get(rb), &count);
    }
    let ops: BTreeSet<&String> =
        ra.operations.keys().filter(|k| rb.operations.contains_key(*k)).collect();
    if ops.len() > 1 {
        for op in &ops {
            let (oa, ob) = (&ra.operations[*op], &rb.operations[*op]);
            row(&format!("{op} ok/s"), oa.ok_per_sec, ob.ok_per_sec, &rate);
            for (name, q) in &quantiles[..3] {
                row(&format!("{op} {name}"), ms(q(&oa.latency)), ms(q(&ob.latency)), &msf);
            }
        }
    }
    out.push_str("</table>\n");

    let label = |name: &str, what: &str| format!("{name}: {what}");
    let lines = vec![
        Line::new(label(name_a, "calls/s"), 0, per_second(da, |s| Some(s.completed as f64))),
        Line::new(label(name_b, "calls/s"), 1, per_second(db, |s| Some(s.completed as f64)))
            .dashed(true),
    ];
    let svg = throughput_chart("Throughput: calls finished per second".into(), lines).svg()?;
    figure(&mut out, "throughput", "Throughput", &svg);

    let mut lines = Vec::new();
    for (i, (name, d)) in [(name_a, da), (name_b, db)].into_iter().enumerate() {
        lines.push(
            Line::new(label(name, "p50"), i, per_second(d, |s| Some(ms(s.latency.p50_us))))
                .dashed(i == 1),
        );
        lines.push(
            Line::new(label(name, "p99"), i + 2, per_second(d, |s| Some(ms(s.latency.p99_us))))
                .dashed(i == 1),
        );
    }
    let svg = latency_chart("Latency per second, all calls".into(), lines).svg()?;
    figure(&mut out, "latency-all", "Latency per second", &svg);

    let mut lines = Vec::new();
    let mut curve_names = vec!["all".to_owned()];
    if ops.len() > 1 {
        curve_names.extend(ops.iter().map(|s| (*s).clone()));
    }
    for (j, curve) in curve_names.iter().enumerate() {
        for (i, (name, d)) in [(name_a, da), (name_b, db)].into_iter().enumerate() {
            if let Some(points) = d.percentile_curves.get(curve) {
                lines.push(
                    Line::new(label(name, curve), 2 * j + i, curve_points(points)).dashed(i == 1),
                );
            }
        }
    }
    let svg = percentile_chart("Latency by percentile (measurement window)".into(), lines).svg()?;
    figure(&mut out, "percentiles", "Latency percentiles", &svg);

    let mut lines = Vec::new();
    for (i, (name, d)) in [(name_a, da), (name_b, db)].into_iter().enumerate() {
        lines.push(
            Line::new(label(name, "errors/s"), i + 3, per_second(d, |s| Some(s.errors as f64)))
                .dashed(i == 1),
        );
    }
    let chart = Chart {
        title: "Failed calls per second".into(),
        x: XAxis::Seconds,
        x_desc: "time since start (s)",
        y_desc: "failed calls per second",
        y_log: false,
        lines,
    };
    figure(&mut out, "errors", "Errors", &chart.svg()?);
    out.push_str("</body>\n</html>\n");
    Ok(out)
}
