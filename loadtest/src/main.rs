//! The `pairdb-loadtest` binary: flags, their checks, and the output (see the library, `lib.rs`,
//! for the modules that do the work).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};

use pairdb_loadtest::{
    report::{self, RunData},
    run::{self, Config},
    stats::{self, Report},
    workload::{Consistency, Mix, Target},
    zipf::{KeyChooser, Zipfian},
};

/// Load generator for PairDB.
///
/// Closed loop by default (`--connections` x `--inflight` calls outstanding); open loop with
/// `--rate`, where latency counts from each call's intended send time. Progress goes to stderr
/// once a second; the report goes to stdout (JSON with `--json`). Exits non-zero when it cannot
/// connect, or when every call failed.
///
/// `--report DIR` also writes DIR/index.html (plots of throughput, latency and errors per
/// second, and the latency percentile curve) and DIR/report.json. Two runs' report.json files
/// compare with `pairdb-loadtest compare A/report.json B/report.json --report DIR`.
#[derive(Parser, Debug)]
#[command(name = "pairdb-loadtest", version)]
struct Args {
    /// Server address; several, comma-separated, spread the connections round-robin over them
    /// (for example the three members of an etcd cluster).
    #[arg(long, default_value = "127.0.0.1:50051", value_delimiter = ',', num_args = 1..)]
    addr: Vec<SocketAddr>,
    /// What the server is: a coordinator (client API) or a storage node (internal API).
    #[arg(long, value_enum, default_value_t = Target::Coordinator)]
    target: Target,
    /// Tenant every key belongs to.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Keys are named `<prefix><index>`.
    #[arg(long, default_value = "lt-")]
    key_prefix: String,
    /// Executors, one pinned per CPU this process may use (see `taskset`); they wrap around when
    /// there are more executors than CPUs.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// HTTP/2 connections in total, dealt round-robin over the executors.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Closed loop: calls outstanding on each connection.
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Open loop: total calls per second. Without it the load is closed-loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most calls outstanding per executor; beyond it the generator falls behind
    /// (counted as late sends, and the wait counts as latency).
    #[arg(long, default_value_t = 1024)]
    max_inflight: usize,
    /// Measurement window, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the window that is not measured.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per-call deadline (sent as grpc-timeout and enforced locally).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// How keys are picked.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    distribution: Distribution,
    /// Zipfian skew, in (0, 1); YCSB's default.
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Percentage of reads.
    #[arg(long, default_value_t = 50)]
    read_pct: u32,
    /// Percentage of writes.
    #[arg(long, default_value_t = 50)]
    write_pct: u32,
    /// Percentage of deletes.
    #[arg(long, default_value_t = 0)]
    delete_pct: u32,
    /// Replicas a coordinator waits for.
    #[arg(long, value_enum, default_value_t = Consistency::Quorum)]
    consistency: Consistency,
    /// Write every key once before the warmup, so reads find data.
    #[arg(long)]
    prefill: bool,
    /// Coordinator target: send every write and delete with its own, never repeated, idempotency
    /// key, so that each one claims and completes an idempotency record (the cost of
    /// idempotency, not of answering duplicates).
    #[arg(long)]
    idempotency_keys: bool,
    /// Busy-poll this long before an idle executor parks. Parking and waking cost tens of µs of
    /// CPU per call on a VM, which limits open-loop precision at high rates; spinning makes sends
    /// punctual at the price of the executor's whole CPU. Default 0: park at once.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    spin_before_park: Duration,
    /// Open loop: wake to send only at multiples of this tick (e.g. 500us), sending every call
    /// that fell due in the tick together, instead of waking for each call at its own time. Cuts
    /// the generator's wake-ups (and so its CPU, which it takes from the server it measures when
    /// both share a machine) at the price of sending in small bursts; latency still counts from
    /// each call's intended time, so the wait for the tick is in the measured latency.
    /// Default 0: wake for each call.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    send_tick: Duration,
    /// Leave the executor threads to the kernel's scheduler (within the CPUs `taskset` allows)
    /// instead of pinning each to a CPU. For a generator that shares its machine with the server
    /// it measures: pinned, the generator's thread and the server core pinned to the same CPU
    /// contend for it while another CPU idles, and the server's tail shows the generator's
    /// placement.
    #[arg(long)]
    no_pin: bool,
    /// Seed of the key and operation choice (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Also write an HTML report with plots, DIR/index.html, and its data, DIR/report.json (the
    /// `--json` report plus the per-second timeline and the percentile curves).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

/// Compares two runs: `pairdb-loadtest compare A/report.json B/report.json --report DIR` writes
/// DIR/index.html overlaying their throughput, latency and percentile curves, with a summary
/// table of both and their ratios (B / A).
#[derive(Parser, Debug)]
#[command(name = "pairdb-loadtest compare", bin_name = "pairdb-loadtest compare")]
struct CompareArgs {
    /// report.json of the baseline run (A).
    a: PathBuf,
    /// report.json of the run compared with it (B).
    b: PathBuf,
    /// Directory to write index.html to.
    #[arg(long, value_name = "DIR")]
    report: PathBuf,
    /// Name of run A in the page (default: the directory holding its report.json).
    #[arg(long)]
    name_a: Option<String>,
    /// Name of run B in the page (default: the directory holding its report.json).
    #[arg(long)]
    name_b: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Distribution {
    Uniform,
    Zipfian,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "compare") {
        return compare(CompareArgs::parse_from(std::env::args_os().skip(1)));
    }
    let args = Args::parse();
    let json = args.json;
    let result = config(&args).and_then(|cfg| {
        if let Some(dir) = &args.report {
            // Fail before the load, not after it.
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let settings = settings(&args, &cfg);
        let outcomes = run::run(cfg.clone())?;
        let report = Report::build(settings, &outcomes.stats, outcomes.measured, cfg.rate);
        Ok((report, outcomes))
    });
    match result {
        Ok((report, outcomes)) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("pairdb-loadtest: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.human());
            }
            let all_failed = report.completed > 0 && report.ok + report.misses == 0;
            if let Some(dir) = &args.report {
                let data = RunData {
                    percentile_curves: stats::percentile_curves(&outcomes.stats),
                    report,
                    command: report::command_line(),
                    timeline: outcomes.timeline,
                };
                match report::write_run(dir, &data) {
                    Ok(page) => eprintln!("pairdb-loadtest: report written to {}", page.display()),
                    Err(e) => {
                        eprintln!("pairdb-loadtest: cannot write the report: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if all_failed {
                eprintln!("pairdb-loadtest: every call failed (see errors by status)");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pairdb-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `pairdb-loadtest compare`.
fn compare(args: CompareArgs) -> ExitCode {
    let name = |path: &PathBuf, given: &Option<String>, fallback: &str| {
        given.clone().unwrap_or_else(|| {
            path.canonicalize()
                .ok()
                .and_then(|p| p.parent()?.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| fallback.to_owned())
        })
    };
    let (mut name_a, mut name_b) =
        (name(&args.a, &args.name_a, "A"), name(&args.b, &args.name_b, "B"));
    if name_a == name_b {
        (name_a, name_b) = (format!("A ({name_a})"), format!("B ({name_b})"));
    }
    let result = RunData::read(&args.a).and_then(|a| {
        let b = RunData::read(&args.b)?;
        report::write_compare(&args.report, (&name_a, &a), (&name_b, &b))
    });
    match result {
        Ok(page) => {
            eprintln!("pairdb-loadtest: comparison written to {}", page.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pairdb-loadtest compare: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the flags and turns them into a [`Config`].
fn config(args: &Args) -> anyhow::Result<Config> {
    if args.read_pct + args.write_pct + args.delete_pct != 100 {
        bail!(
            "--read-pct, --write-pct and --delete-pct must add up to 100 (they add up to {})",
            args.read_pct + args.write_pct + args.delete_pct
        );
    }
    if args.threads == 0 || args.connections < args.threads {
        bail!("need 1 <= --threads <= --connections (every executor drives a connection)");
    }
    if args.inflight == 0 || args.max_inflight == 0 {
        bail!("--inflight and --max-inflight must be at least 1");
    }
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if args.timeout.is_zero() {
        bail!("--timeout must be positive");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of calls per second");
        }
    }
    let chooser = match args.distribution {
        Distribution::Uniform => KeyChooser::Uniform { keys: args.keys },
        Distribution::Zipfian => {
            if !(args.zipf_theta > 0.0 && args.zipf_theta < 1.0) {
                bail!("--zipf-theta must be in (0, 1)");
            }
            if args.keys < 2 {
                KeyChooser::Uniform { keys: args.keys }
            } else {
                KeyChooser::Zipfian(Zipfian::new(args.keys, args.zipf_theta))
            }
        }
    };
    let seed = match args.seed {
        Some(seed) => seed,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_nanos() as u64,
    };
    Ok(Config {
        addrs: args.addr.clone(),
        target: args.target,
        tenant: args.tenant.clone(),
        key_prefix: args.key_prefix.clone(),
        threads: args.threads,
        connections: args.connections,
        inflight: args.inflight,
        rate: args.rate,
        max_inflight: args.max_inflight,
        duration: args.duration,
        warmup: args.warmup,
        keys: args.keys,
        chooser,
        value_size: args.value_size,
        mix: Mix {
            read_pct: args.read_pct,
            write_pct: args.write_pct,
            delete_pct: args.delete_pct,
        },
        consistency: args.consistency,
        timeout: args.timeout,
        prefill: args.prefill,
        idempotency_keys: args.idempotency_keys,
        spin_before_park: args.spin_before_park,
        send_tick: args.send_tick,
        pin: !args.no_pin,
        seed,
        quiet: args.quiet,
    })
}

/// The settings echoed in the report, so a JSON file says what produced it.
fn settings(args: &Args, cfg: &Config) -> serde_json::Value {
    serde_json::json!({
        "addr": cfg.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "target": cfg.target,
        "tenant": cfg.tenant,
        "mode": if cfg.rate.is_some() { "open" } else { "closed" },
        "threads": cfg.threads,
        "cpus": pairdb::runtime::pool::allowed_cpus(),
        "connections": cfg.connections,
        "inflight_per_connection": cfg.rate.is_none().then_some(cfg.inflight),
        "rate": cfg.rate,
        "max_inflight_per_thread": cfg.rate.is_some().then_some(cfg.max_inflight),
        "duration_secs": cfg.duration.as_secs_f64(),
        "warmup_secs": cfg.warmup.as_secs_f64(),
        "timeout_ms": cfg.timeout.as_millis() as u64,
        "keys": cfg.keys,
        "distribution": args.distribution,
        "zipf_theta": (args.distribution == Distribution::Zipfian).then_some(args.zipf_theta),
        "hottest_key_share": cfg.chooser.hottest_share(),
        "value_size": cfg.value_size,
        "mix": cfg.mix,
        "consistency": cfg.consistency,
        "prefill": cfg.prefill,
        "idempotency_keys": cfg.idempotency_keys,
        "spin_before_park_us": cfg.spin_before_park.as_micros() as u64,
        "send_tick_us": cfg.rate.is_some().then_some(cfg.send_tick.as_micros() as u64),
        "pinned": cfg.pin,
        "seed": cfg.seed,
    })
}

/// Parses `10s`, `250ms`, `100us`, `2m`, `1.5s` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 10s"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use us, ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        //        text     expected
        for (text, want) in [
            ("10s", Duration::from_secs(10)),
            ("3", Duration::from_secs(3)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("100us", Duration::from_micros(100)),
            ("2m", Duration::from_secs(120)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn mix_must_add_up_and_threads_need_connections() {
        let base = ["pairdb-loadtest"];
        let parse = |extra: &[&str]| {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            config(&Args::try_parse_from(argv).unwrap())
        };
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--read-pct", "90", "--write-pct", "5"]).is_err());
        assert!(parse(&["--read-pct", "90", "--write-pct", "5", "--delete-pct", "5"]).is_ok());
        assert!(parse(&["--threads", "8", "--connections", "4"]).is_err());
        assert!(parse(&["--distribution", "zipfian", "--zipf-theta", "1.0"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
    }
}
