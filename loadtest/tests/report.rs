//! The HTML reports as a browser shows them: pages rendered by headless Chromium, whose DOM must
//! hold the plots (inline `<svg>` with their axis labels and series) and whose screenshot must not
//! be blank.
//!
//! Two pages come from synthetic stats (a run, and a comparison of two runs), one from a real
//! two-second run against `pairdb dev`. Chromium is `chromium` on the `PATH` (Debian's package;
//! `scripts/test` installs it). Without it these tests print why and pass, except under
//! `CI=true`, where they fail.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use pairdb::rpc::Code;
use pairdb_loadtest::{
    report::{self, RunData},
    stats::{self, OpKind, Outcome, Progress, Report, Second, ThreadStats},
};

/// How long one Chromium invocation may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);
/// Window of the screenshots: wide enough for the 960-pixel plots, tall enough for all of them.
const WINDOW: (u32, u32) = (1100, 4000);
/// The first series colour of the plots (tab10 blue), and the second (orange).
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];

/// Chromium, or `None` (with the reason on stderr) when it is missing and this is not CI.
fn chromium() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("chromium")).find(|p| p.is_file())
    });
    if let Some(path) = on_path {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "chromium is not on the PATH, and CI=true: the report tests need it \
             (scripts/test installs it with apt-get install -y chromium)"
        );
    }
    eprintln!("SKIPPED: chromium is not on the PATH (apt-get install -y chromium); under CI=true this fails");
    None
}

/// Runs headless Chromium on `page` with `args`; returns its stdout.
fn run_chromium(chromium: &Path, page: &Path, args: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args(["--no-first-run", "--hide-scrollbars"])
        // Its own profile: tests run in parallel, and a shared profile is locked by the first.
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium ran past {CHROMIUM_TIMEOUT:?}; stderr:\n{}", read(&err));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed ({status}); stderr:\n{}", read(&err));
    read(&out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The rendered DOM of `page`.
fn dump_dom(chromium: &Path, page: &Path) -> String {
    let dom = run_chromium(chromium, page, &["--dump-dom".to_owned()]);
    assert!(dom.contains("</html>"), "no DOM from chromium: {dom:.400}");
    dom
}

/// Screenshots `page` and checks the picture: its size, how much of it is not white, and that
/// the plots' first two series colours are drawn.
fn check_screenshot(chromium: &Path, page: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("page.png");
    run_chromium(
        chromium,
        page,
        &[
            format!("--screenshot={}", png_path.display()),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
        ],
    );
    let bytes = std::fs::read(&png_path).expect("chromium wrote no screenshot");
    assert!(bytes.len() > 20_000, "screenshot of {} bytes only", bytes.len());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), WINDOW);
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let (mut inked, mut blue, mut orange, mut total) = (0usize, 0usize, 0usize, 0usize);
    for px in pixels[..info.buffer_size()].chunks_exact(channels) {
        let rgb = [px[0], px[1], px[2]];
        let near = |c: [u8; 3]| rgb.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 24);
        total += 1;
        inked += usize::from(rgb.iter().any(|&v| v < 230));
        blue += usize::from(near(BLUE));
        orange += usize::from(near(ORANGE));
    }
    let inked_share = inked as f64 / total as f64;
    assert!(inked_share > 0.01, "screenshot nearly blank: {:.2}% inked", inked_share * 100.0);
    assert!(blue > 500 && orange > 200, "series colours missing: {blue} blue, {orange} orange");
}

/// The part of `dom` inside `<figure id="ID">`.
fn figure<'a>(dom: &'a str, id: &str) -> &'a str {
    let start =
        dom.find(&format!("<figure id=\"{id}\"")).unwrap_or_else(|| panic!("no figure {id}"));
    let end = start + dom[start..].find("</figure>").expect("figure closed");
    &dom[start..end]
}

/// The contents of the `<text>` elements in `svg`, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        let after = &rest[start..];
        let open = after.find('>').expect("text element opened");
        let close = after.find("</text>").expect("text element closed");
        texts.push(after[open + 1..close].trim().to_owned());
        rest = &after[close..];
    }
    texts
}

/// Asserts that `figure` is one plot with every one of `texts` as an SVG text element, and
/// at least `lines` drawn lines.
fn assert_plot(figure: &str, texts: &[&str], lines: usize) {
    assert_eq!(figure.matches("<svg").count(), 1, "{figure:.300}");
    let found = svg_texts(figure);
    for text in texts {
        assert!(
            found.iter().any(|t| t == text),
            "no text {text:?} in the plot {:.100}; its texts: {found:?}",
            figure
        );
    }
    let drawn = figure.matches("<polyline").count() + figure.matches("<path").count();
    assert!(drawn >= lines, "{drawn} lines drawn, want at least {lines}");
}

/// Latency of call `i` of a synthetic run: a spread around `base_us` and a rare slow tail.
fn latency(i: u64, base_us: u64) -> Duration {
    let spread = (i * 7919) % 1000;
    let tail = if i.is_multiple_of(997) { 40 * base_us } else { 0 };
    Duration::from_micros(base_us + base_us * spread / 1000 + tail)
}

/// A synthetic run: `secs` seconds (the first one warmup) of reads and writes at `per_sec` calls
/// per second, reads taking about `base_us`, writes twice that, and UNAVAILABLE errors in the
/// third second.
fn synthetic(secs: u64, per_sec: u64, base_us: u64) -> RunData {
    let mut stats = ThreadStats::default();
    let mut timeline = Vec::new();
    let mut i: u64 = 0;
    for second in 1..=secs {
        let mut progress = Progress::default();
        for _ in 0..per_sec {
            i += 1;
            let (kind, lat) = if i.is_multiple_of(2) {
                (OpKind::Read, latency(i, base_us))
            } else {
                (OpKind::Write, latency(i, 2 * base_us))
            };
            let outcome = if second == 3 && i % 10 == 1 {
                Outcome::Error(Code::UNAVAILABLE)
            } else if second == 4 && i % 50 == 1 {
                Outcome::Error(Code::DEADLINE_EXCEEDED)
            } else {
                Outcome::Ok
            };
            progress.record(kind, lat, outcome);
            if second > 1 {
                stats.record(kind, lat, outcome);
            }
        }
        timeline.push(Second::of(second, second == 1, &progress));
    }
    let settings = serde_json::json!({
        "addr": "127.0.0.1:50051", "mode": "closed", "connections": 4,
        "duration_secs": (secs - 1) as f64, "warmup_secs": 1.0,
        "mix": {"read_pct": 50, "write_pct": 50, "delete_pct": 0},
    });
    let report = Report::build(settings, &stats, Duration::from_secs(secs - 1), None);
    RunData {
        percentile_curves: stats::percentile_curves(&stats),
        report,
        command: format!("pairdb-loadtest --duration {}s --warmup 1s # synthetic <&>", secs - 1),
        timeline,
    }
}

#[test]
fn run_report_renders_its_plots_in_chromium() {
    let data = synthetic(6, 2000, 800);
    let dir = tempfile::tempdir().unwrap();
    let page = report::write_run(dir.path(), &data).unwrap();
    // report.json holds what --json prints, plus the timeline and curves, and reads back.
    let json: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("report.json"))).unwrap();
    let plain = serde_json::to_value(&data.report).unwrap();
    for (key, value) in plain.as_object().unwrap() {
        assert_eq!(&json[key], value, "{key}");
    }
    let back = RunData::read(&dir.path().join("report.json")).unwrap();
    assert_eq!(back.timeline.len(), 6);
    assert_eq!(back.report.completed, data.report.completed);

    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &page);
    assert!(dom.contains("<h1>pairdb-loadtest report</h1>"));
    // The command line, escaped.
    assert!(dom.contains("# synthetic &lt;&amp;&gt;"), "command line missing");
    let summary = &dom[dom.find("<table id=\"summary\"").expect("summary table")..];
    let summary = &summary[..summary.find("</table>").unwrap()];
    for text in ["p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors by status", "read", "write"] {
        assert!(summary.contains(text), "summary lacks {text}");
    }
    assert!(summary.contains("UNAVAILABLE 200"), "{summary}");
    assert!(dom.matches("<svg").count() >= 5, "too few plots");
    let seconds = "time since start (s)";
    assert_plot(
        figure(&dom, "throughput"),
        &[
            "Throughput: calls finished per second",
            seconds,
            "calls per second",
            "all",
            "read",
            "write",
        ],
        3,
    );
    for op in ["read", "write"] {
        assert_plot(
            figure(&dom, &format!("latency-{op}")),
            &[seconds, "latency (ms, log)", "p50", "p99", "p99.9"],
            3,
        );
    }
    assert_plot(
        figure(&dom, "percentiles"),
        &["percentile", "latency (ms, log)", "90%", "99%", "99.9%", "all", "read", "write"],
        3,
    );
    assert_plot(
        figure(&dom, "errors"),
        &[
            "Errors by status per second",
            "failed calls per second",
            "UNAVAILABLE",
            "DEADLINE_EXCEEDED",
        ],
        2,
    );
    check_screenshot(&chromium, &page);
}

#[test]
fn comparison_overlays_two_runs_in_chromium() {
    let (a, b) = (synthetic(5, 2000, 800), synthetic(5, 1000, 1600));
    let dir = tempfile::tempdir().unwrap();
    let page = report::write_compare(dir.path(), ("before", &a), ("after", &b)).unwrap();
    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &page);
    assert!(dom.contains("pairdb-loadtest comparison: before vs after"));
    let summary = &dom[dom.find("<table id=\"summary\"").expect("summary table")..];
    let summary = &summary[..summary.find("</table>").unwrap()];
    // Half the rate: the calls/s row's ratio is 0.5.
    assert!(
        summary.contains("<td class=\"l\">calls/s</td><td>2000</td><td>1000</td><td>0.500</td>"),
        "{summary}"
    );
    for row in ["p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors UNAVAILABLE", "read p99 ms"] {
        assert!(summary.contains(&format!(">{row}</td>")), "summary lacks {row}");
    }
    let seconds = "time since start (s)";
    assert_plot(figure(&dom, "throughput"), &[seconds, "before: calls/s", "after: calls/s"], 2);
    assert_plot(
        figure(&dom, "latency-all"),
        &[seconds, "before: p50", "before: p99", "after: p50", "after: p99"],
        4,
    );
    assert_plot(
        figure(&dom, "percentiles"),
        &["percentile", "before: all", "after: all", "before: read", "after: write"],
        6,
    );
    assert_plot(figure(&dom, "errors"), &["before: errors/s", "after: errors/s"], 2);
    check_screenshot(&chromium, &page);
}

/// A `pairdb dev` cluster, killed on drop.
struct Dev {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pairdb dev` from the `pairdb` binary beside this package's, or `None` (with the
/// reason) when it is not built and this is not CI (`cargo test --workspace` builds it).
fn start_dev() -> Option<Dev> {
    let bin = Path::new(env!("CARGO_BIN_EXE_pairdb-loadtest")).with_file_name("pairdb");
    if !bin.is_file() {
        let why = format!("{} is not built (cargo build --bin pairdb)", bin.display());
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let mut failures = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(&bin)
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--port", &port.to_string(), "--cores", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let dev = Dev { child, addr: format!("127.0.0.1:{port}"), _dir: dir };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with(&format!("pairdb dev: coordinator on {}", dev.addr)) => {
                return Some(dev);
            }
            other => failures.push(format!("{other:?}")),
        }
    }
    panic!("pairdb dev did not start: {failures:?}");
}

#[test]
fn real_run_writes_a_report_that_chromium_renders() {
    let Some(dev) = start_dev() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pairdb-loadtest"))
        .args(["--addr", &dev.addr, "--duration", "2s", "--warmup", "1s", "--connections", "2"])
        .args(["--inflight", "2", "--quiet", "--json", "--report"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed: {stderr}");
    assert!(stderr.contains("report written to"), "{stderr}");
    // --json is unchanged by --report; report.json adds to it.
    let printed: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let file: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&read(&dir.path().join("report.json"))).unwrap();
    for (key, value) in &printed {
        assert_eq!(file.get(key), Some(value), "{key}");
    }
    let added: Vec<&String> = file.keys().filter(|k| !printed.contains_key(*k)).collect();
    assert_eq!(added, ["command", "percentile_curves", "timeline"]);
    let data = RunData::read(&dir.path().join("report.json")).unwrap();
    assert!(data.report.ok + data.report.misses > 0, "no replies: {:?}", data.report);
    // One entry per second: one of warmup, two measured.
    let seconds: Vec<(u64, bool)> = data.timeline.iter().map(|s| (s.second, s.warmup)).collect();
    assert_eq!(seconds, [(1, true), (2, false), (3, false)]);
    assert!(data.command.contains("--report"), "{}", data.command);
    drop(dev);

    let Some(chromium) = chromium() else { return };
    let page = dir.path().join("index.html");
    let dom = dump_dom(&chromium, &page);
    assert!(dom.matches("<svg").count() >= 5, "too few plots");
    assert_plot(figure(&dom, "throughput"), &["time since start (s)", "read", "write"], 3);
    assert_plot(figure(&dom, "latency-read"), &["p50", "p99", "p99.9"], 3);
    assert_plot(figure(&dom, "percentiles"), &["percentile", "all"], 1);
    check_screenshot(&chromium, &page);

    // The run compared with itself, through the binary's `compare`.
    let json = dir.path().join("report.json");
    let ab = dir.path().join("ab");
    let out = Command::new(env!("CARGO_BIN_EXE_pairdb-loadtest"))
        .arg("compare")
        .args([&json, &json])
        .arg("--report")
        .arg(&ab)
        .args(["--name-a", "first", "--name-b", "second"])
        .output()
        .unwrap();
    assert!(out.status.success(), "compare failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = dump_dom(&chromium, &ab.join("index.html"));
    assert!(dom.contains("<td class=\"l\">p99 ms</td>"), "no summary row for p99");
    assert_plot(figure(&dom, "throughput"), &["first: calls/s", "second: calls/s"], 2);
}
