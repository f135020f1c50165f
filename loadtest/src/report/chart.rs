//! The plots: [`Chart`], a line chart drawn as inline SVG with `plotters`, its axis labels, the
//! three chart kinds the pages use (throughput, latency per second, latency by percentile), and
//! the conversions from run data to points.

use anyhow::anyhow;
use plotters::{
    coord::{
        ranged1d::{AsRangedCoord, ValueFormatter},
        Shift,
    },
    prelude::*,
};

use super::RunData;
use crate::stats::{CurvePoint, Percentiles, Second};

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
pub(super) struct Line {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

impl Line {
    pub(super) fn new(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Line {
        Line { name: name.into(), color: PALETTE[color % PALETTE.len()], dashed: false, points }
    }

    pub(super) fn dashed(mut self, dashed: bool) -> Line {
        self.dashed = dashed;
        self
    }
}

/// How the x axis is labelled.
#[derive(Clone, Copy)]
pub(super) enum XAxis {
    /// Seconds since the load started.
    Seconds,
    /// "Nines": x = -log10(1 - percentile / 100), labelled as the percentile.
    Nines,
}

/// A line chart: the lines, the axis descriptions, and whether y is logarithmic.
pub(super) struct Chart {
    pub(super) title: String,
    pub(super) x: XAxis,
    pub(super) x_desc: &'static str,
    pub(super) y_desc: &'static str,
    pub(super) y_log: bool,
    pub(super) lines: Vec<Line>,
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub(super) fn svg(&self) -> anyhow::Result<String> {
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

pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The curve without its maximum (percentile 100, which has no place on a nines axis).
pub(super) fn curve_points(curve: &[CurvePoint]) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (nines(p.percentile), ms(p.latency_us)))
        .collect()
}

pub(super) fn throughput_chart(title: String, lines: Vec<Line>) -> Chart {
    Chart {
        title,
        x: XAxis::Seconds,
        x_desc: "time since start (s)",
        y_desc: "calls per second",
        y_log: false,
        lines,
    }
}

pub(super) fn latency_chart(title: String, lines: Vec<Line>) -> Chart {
    Chart {
        title,
        x: XAxis::Seconds,
        x_desc: "time since start (s)",
        y_desc: "latency (ms, log)",
        y_log: true,
        lines,
    }
}

pub(super) fn percentile_chart(title: String, lines: Vec<Line>) -> Chart {
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
pub(super) type Quantile = fn(&Percentiles) -> u64;

pub(super) fn per_second(data: &RunData, f: impl Fn(&Second) -> Option<f64>) -> Vec<(f64, f64)> {
    data.timeline.iter().filter_map(|s| f(s).map(|v| (s.second as f64, v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
