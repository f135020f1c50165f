//! The HTML report of a run (`--report DIR`) and the A/B comparison of two runs (`compare`).
//!
//! A run's report is two files: `report.json`, the `--json` report plus the command line, the
//! per-second timeline and the latency percentile curves ([`RunData`]), and `index.html`, which
//! shows them as inline SVG drawn with `plotters` (no scripts, no external files: the page can be
//! mailed or attached to a ticket). A comparison reads two `report.json` files and writes one
//! `index.html` overlaying them.
//!
//! Plots:
//!
//! - throughput: calls finished per second over the run (total, and per operation type when the
//!   run mixes them);
//! - latency per second: p50, p99 and p99.9 of the replies of each second, one plot per operation
//!   type when the run mixes them;
//! - latency percentiles: latency against percentile on a "nines" axis (50%, 90%, 99%, 99.9%, ..),
//!   from the merged histograms of the measurement window;
//! - errors by status: failed calls per second, one line per gRPC status.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use anyhow::{anyhow, Context as _};
use plotters::{
    coord::{
        ranged1d::{AsRangedCoord, ValueFormatter},
        Shift,
    },
    prelude::*,
};
use serde::{Deserialize, Serialize};

use crate::stats::{CurvePoint, Percentiles, Report, Second};

/// Everything a report shows: `report.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunData {
    /// The `--json` report, field for field.
    #[serde(flatten)]
    pub report: Report,
    /// The command line that produced the run.
    pub command: String,
    /// One entry per second of the run, warmup included.
    pub timeline: Vec<Second>,
    /// Latency percentile curves of the measurement window: `all`, and per operation type.
    pub percentile_curves: BTreeMap<String, Vec<CurvePoint>>,
}

impl RunData {
    /// Reads a `report.json`.
    pub fn read(path: &Path) -> anyhow::Result<RunData> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The command line of this process, quoted for a POSIX shell where needed.
pub fn command_line() -> String {
    std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Writes `dir/report.json` and `dir/index.html` (creating `dir`); returns the page's path.
pub fn write_run(dir: &Path, data: &RunData) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(data)?;
    std::fs::write(dir.join("report.json"), json + "\n")
        .with_context(|| format!("writing {}", dir.join("report.json").display()))?;
    let page = dir.join("index.html");
    std::fs::write(&page, render_run(data)?)
        .with_context(|| format!("writing {}", page.display()))?;
    Ok(page)
}

/// Writes `dir/index.html` comparing run `a` (the baseline) with run `b`; returns its path.
pub fn write_compare(
    dir: &Path,
    a: (&str, &RunData),
    b: (&str, &RunData),
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let page = dir.join("index.html");
    std::fs::write(&page, render_compare(a, b)?)
        .with_context(|| format!("writing {}", page.display()))?;
    Ok(page)
}

// ---------------------------------------------------------------------------------------------
// Charts

const WIDTH: u32 = 960;
const HEIGHT: u32 = 380;

/// Series colours (matplotlib's "tab10").
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One line of a chart.
struct Line {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

impl Line {
    fn new(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Line {
        Line { name: name.into(), color: PALETTE[color % PALETTE.len()], dashed: false, points }
    }

    fn dashed(mut self, dashed: bool) -> Line {
        self.dashed = dashed;
        self
    }
}

/// How the x axis is labelled.
#[derive(Clone, Copy)]
enum XAxis {
    /// Seconds since the load started.
    Seconds,
    /// "Nines": x = -log10(1 - percentile / 100), labelled as the percentile.
    Nines,
}

/// A line chart: the lines, the axis descriptions, and whether y is logarithmic.
struct Chart {
    title: String,
    x: XAxis,
    x_desc: &'static str,
    y_desc: &'static str,
    y_log: bool,
    lines: Vec<Line>,
}

impl Chart {
    /// The chart as an `<svg>` element.
    fn svg(&self) -> anyhow::Result<String> {
        let mut lines: Vec<Line> = Vec::new();
        for line in &self.lines {
            let points: Vec<(f64, f64)> = line
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.y_log || *y > 0.0))
                .collect();
            lines.push(Line { name: line.name.clone(), points, ..*line });
        }
        let all = || lines.iter().flat_map(|l| l.points.iter());
        let (mut x0, mut x1) =
            all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 - x0 < 1e-9 {
            x1 = x0 + 1.0;
        }
        let (y0, y1) = all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            if self.y_log {
                let (lo, hi) = if y0 > y1 { (0.01, 1.0) } else { (y0, y1) };
                // From a power of ten, which is where plotters starts a log axis's labels.
                let lo = 10f64.powf(lo.log10().floor());
                self.draw(&root, &lines, x0..x1, (lo..hi * 1.5).log_scale())?;
            } else {
                let hi = if y0 > y1 || y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
                self.draw(&root, &lines, x0..x1, 0.0..hi)?;
            }
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }

    fn draw<Y>(
        &self,
        root: &DrawingArea<SVGBackend<'_>, Shift>,
        lines: &[Line],
        x: std::ops::Range<f64>,
        y: Y,
    ) -> anyhow::Result<()>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(76)
            .build_cartesian_2d(x, y)
            .map_err(plot_error)?;
        let nines = |v: &f64| nines_label(*v);
        let plain = |v: &f64| trim_number(*v);
        let log125 = |v: &f64| log_label(*v);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .axis_desc_style(("sans-serif", 17))
            .label_style(("sans-serif", 15));
        if self.y_log {
            // Ticks at 1..9 x 10^k, labels at 1, 2 and 5 x 10^k only.
            mesh.y_labels(40).y_label_formatter(&log125);
        } else {
            mesh.y_label_formatter(&plain);
        }
        match self.x {
            XAxis::Seconds => mesh.x_label_formatter(&plain),
            // About one label per nine: 90%, 99%, 99.9%, ...
            XAxis::Nines => mesh.x_labels(6).x_label_formatter(&nines),
        };
        mesh.light_line_style(RGBColor(235, 235, 235)).draw().map_err(plot_error)?;
        for line in lines {
            let style = line.color.stroke_width(2);
            let color = line.color;
            let series = if line.dashed {
                chart
                    .draw_series(DashedLineSeries::new(line.points.iter().copied(), 8, 5, style))
                    .map_err(plot_error)?
            } else {
                chart
                    .draw_series(LineSeries::new(line.points.iter().copied(), style))
                    .map_err(plot_error)?
            };
            let dashed = line.dashed;
            series.label(line.name.clone()).legend(move |(x, y)| {
                let style = color.stroke_width(2);
                // A sample of the line in two pieces: apart for a dashed series, end to end
                // for a solid one.
                let (gap_start, gap_end) = if dashed { (8, 12) } else { (10, 10) };
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (gap_start, 0)], style)
                    + PathElement::new(vec![(gap_end, 0), (20, 0)], style)
            });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(plot_error)?;
        Ok(())
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// `x` "nines" as a percentile: 1 -> 90%, 2 -> 99%, 3 -> 99.9%.
fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as i64 - 2).clamp(0, 6) as usize;
    format!("{}%", trim_number_to(p, decimals.max(if x.fract().abs() > 1e-6 { 1 } else { 0 })))
}

/// A log axis label: `v` when it is 1, 2 or 5 times a power of ten, else nothing.
fn log_label(v: f64) -> String {
    if v <= 0.0 {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0].iter().any(|m| (mantissa - m).abs() < 1e-6) {
        trim_number(v)
    } else {
        String::new()
    }
}

fn trim_number(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 || v == 0.0 {
        0
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    trim_number_to(v, decimals)
}

fn trim_number_to(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).max(1e-12).log10()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The curve without its maximum (percentile 100, which has no place on a nines axis).
fn curve_points(curve: &[CurvePoint]) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (nines(p.percentile), ms(p.latency_us)))
        .collect()
}

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

fn throughput_chart(title: String, lines: Vec<Line>) -> Chart {
    Chart {
        title,
        x: XAxis::Seconds,
        x_desc: "time since start (s)",
        y_desc: "calls per second",
        y_log: false,
        lines,
    }
}

fn latency_chart(title: String, lines: Vec<Line>) -> Chart {
    Chart {
        title,
        x: XAxis::Seconds,
        x_desc: "time since start (s)",
        y_desc: "latency (ms, log)",
        y_log: true,
        lines,
    }
}

fn percentile_chart(title: String, lines: Vec<Line>) -> Chart {
    Chart {
        title,
        x: XAxis::Nines,
        x_desc: "percentile",
        y_desc: "latency (ms, log)",
        y_log: true,
        lines,
    }
}

/// Picks one percentile out of [`Percentiles`].
type Quantile = fn(&Percentiles) -> u64;

fn per_second(data: &RunData, f: impl Fn(&Second) -> Option<f64>) -> Vec<(f64, f64)> {
    data.timeline.iter().filter_map(|s| f(s).map(|v| (s.second as f64, v))).collect()
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

// ---------------------------------------------------------------------------------------------
// Pages

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}\
h1{font-size:24px}h2{font-size:18px;margin-top:28px}\
code.cmd{display:block;background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f0f0f0}td.l,th.l{text-align:left}figure{margin:8px 0}\
.note{color:#555;font-size:13px}";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
}

fn figure(out: &mut String, id: &str, heading: &str, svg: &str) {
    let _ = write!(out, "<h2>{}</h2>\n<figure id=\"{id}\">\n{svg}\n</figure>\n", escape(heading));
}

fn ms_cell(us: u64) -> String {
    format!("{:.3}", ms(us))
}

fn statuses_cell(by_status: &BTreeMap<String, u64>) -> String {
    if by_status.is_empty() {
        return "-".to_owned();
    }
    by_status.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{percentile_curves, ThreadStats};

    #[test]
    fn nines_axis_labels_read_as_percentiles() {
        for (x, want) in
            [(1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (5.0, "99.999%"), (0.5, "68.4%")]
        {
            assert_eq!(nines_label(x), want, "{x}");
        }
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(log_label(20.0), "20");
        assert_eq!(log_label(0.5), "0.5");
        assert_eq!(log_label(30.0), "");
    }

    #[test]
    fn a_run_without_calls_still_renders_and_text_is_escaped() {
        let stats = ThreadStats::default();
        let settings = serde_json::json!({"tenant": "<t>"});
        let report = Report::build(settings, &stats, Duration::from_secs(1), None);
        let data = RunData {
            report,
            command: "pairdb-loadtest --tenant '<t>'".into(),
            timeline: Vec::new(),
            percentile_curves: percentile_curves(&stats),
        };
        let page = render_run(&data).unwrap();
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(page.contains("--tenant &#39;&lt;t&gt;&#39;"));
        assert!(!page.contains("<t>"));
        let cmp = render_compare(("a", &data), ("b", &data)).unwrap();
        assert_eq!(cmp.matches("<svg").count(), 4);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("--addr=127.0.0.1:1"), "--addr=127.0.0.1:1");
    }
}
