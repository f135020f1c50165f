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
//!
//! The page assembly is split by page: `run_page` (one run) and `compare` (two runs), on top of
//! `chart` (the plots) and `html` (what both pages share). This module owns [`RunData`] and
//! writing the files.

mod chart;
mod compare;
mod html;
mod run_page;

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use compare::render_compare;
pub use run_page::render_run;

use crate::stats::{CurvePoint, Report, Second};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{percentile_curves, ThreadStats};

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
