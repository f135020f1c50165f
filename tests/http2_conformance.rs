//! HTTP/2 conformance of the native layer (`rpc.http2: native`): `httpwg` (crates.io
//! `httpwg-cli`, a Rust port of h2spec, installed by `scripts/test`) runs its whole RFC 9113 catalog
//! against a coordinator, and every case must pass. Cases that need a plain HTTP answer get the
//! native layer's small 200 text (`POST /`, `GET`).
//!
//! Without the `httpwg` binary the test prints a loud skip message and passes, except under CI
//! (`CI` set), where it fails: CI must not pass without the check.

mod common;

use std::{
    io::Read,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{CoordinatorOptions, CoordinatorProcess};

/// The installed binary of `httpwg-cli` (the version `scripts/test` installs).
const HTTPWG: &str = "httpwg";

/// The whole run: sequential cases take well under a second when they pass; a case that waits
/// for a frame gives up after FRAME_TIMEOUT_MS, so even a server that answers nothing ends here.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a case waits for a frame (httpwg's default, 250 ms, flakes on a loaded CI machine
/// running a debug build). No case needs a timeout to pass, so a longer one costs nothing.
const FRAME_TIMEOUT_MS: &str = "2000";

/// The fewest cases the catalog has (107 in httpwg-cli 0.2.5): fewer means the run broke early.
const MIN_CASES: usize = 100;

#[test]
fn native_layer_passes_every_httpwg_case() {
    let Some(httpwg) = find_httpwg() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `{HTTPWG}` is not installed: scripts/test installs it \
             (cargo install httpwg-cli --locked); CI must not pass without the conformance check"
        );
        eprintln!(
            "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             SKIPPED: HTTP/2 conformance (tests/http2_conformance.rs): `{HTTPWG}` is not on\n\
             PATH nor in ~/.cargo/bin. Install it with scripts/test, or:\n\
             \x20   cargo install httpwg-cli --version 0.2.5 --locked\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut coordinator = CoordinatorProcess::start(
        tmp.path(),
        &CoordinatorOptions {
            node_id: "conformance",
            cores: 1,
            storage_nodes: Vec::new(),
            config_yaml: "rpc:\n  http2: native\n",
        },
    );
    let run = run_httpwg(&httpwg, &coordinator.addr.to_string());
    coordinator.assert_running();
    let failing = run.failing();
    assert!(
        run.cases.len() >= MIN_CASES && failing.is_empty(),
        "httpwg against the native layer: {} of {} cases passed{}; failing:\n  {}\n\
         --- httpwg output (tail) ---\n{}\n--- coordinator log (tail) ---\n{}",
        run.passed.len(),
        run.cases.len(),
        run.summary.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
        failing.join("\n  "),
        tail(&run.output, 12_000),
        coordinator.log_tail(),
    );
    eprintln!("{}", run.summary.as_deref().unwrap_or("httpwg: every case passed"));
}

/// `httpwg` on PATH, or where `cargo install` puts it.
fn find_httpwg() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(cargo_home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(HTTPWG)).find(|p| p.is_file())
}

/// One httpwg run: the cases it started and those that passed.
struct Run {
    cases: Vec<String>,
    passed: Vec<String>,
    summary: Option<String>,
    output: String,
}

impl Run {
    /// Started and not passed: failed, panicked (httpwg reports a panicking case only by its
    /// backtrace) or never finished.
    fn failing(&self) -> Vec<String> {
        self.cases.iter().filter(|c| !self.passed.contains(c)).cloned().collect()
    }
}

/// Runs the whole catalog against `addr`, one case at a time, within [`RUN_TIMEOUT`].
fn run_httpwg(httpwg: &PathBuf, addr: &str) -> Run {
    let mut child = Command::new(httpwg)
        .args(["-v", "--frame-timeout", FRAME_TIMEOUT_MS, "--connect-timeout", FRAME_TIMEOUT_MS])
        .args(["-a", addr])
        // One connection at a time: 107 at once on a shared two-core machine time out.
        .env("SEQUENTIAL", "1")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", httpwg.display()));
    // Both pipes drained on threads, so a chatty run cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let timed_out = loop {
        match child.try_wait().expect("waiting for httpwg") {
            Some(_) => break false,
            None if Instant::now() >= deadline => {
                // Our own child, by its pid.
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut output = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&stderr.join().unwrap_or_default()));
    let output = strip_ansi(&output);
    assert!(!timed_out, "httpwg ran past {RUN_TIMEOUT:?}:\n{}", tail(&output, 12_000));
    let names = |marker: &str| -> Vec<String> {
        output.lines().filter_map(|l| l.split_once(marker)).map(|(_, n)| n.trim().into()).collect()
    };
    Run {
        cases: names("Running test: "),
        passed: names("Test passed: "),
        summary: output
            .lines()
            .find(|l| l.contains("Passed ") && l.contains(" tests in "))
            .map(|l| l.trim().to_string()),
        output,
    }
}

/// `s` without its ANSI escape sequences (httpwg colours its summary).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then a final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The last `max` bytes of `s` (at a character boundary).
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
