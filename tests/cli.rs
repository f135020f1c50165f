//! End-to-end tests of the client subcommands (`pairdb kv|tenant|node|migration`): each test
//! starts a real `pairdb dev` cluster (a coordinator and three storage nodes, one core) on free
//! loopback ports, runs the `pairdb` binary against it as a subprocess, and checks exit codes,
//! stdout bytes and the `error: CODE [PAIRDB_CODE]: message` lines on stderr.
//!
//! Every test owns its cluster, so tests can run in parallel and a failure in one cannot leave
//! state behind for another. The cluster is SIGTERMed (then SIGKILLed) by PID when its guard
//! drops, and gets `PR_SET_PDEATHSIG`, so a harness that dies without unwinding takes it along.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// How long `pairdb dev` may take to print its banner: generous, for a debug build on a loaded
/// two-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `pairdb dev` gets to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The CLI's own deadline in these tests: far above any real latency, so it only stops a hang.
const CALL_TIMEOUT: &str = "20s";

/// Attempts at starting a cluster: a free port found by binding and dropping can be taken by
/// someone else before `pairdb dev` binds it.
const START_ATTEMPTS: usize = 3;

/// A running `pairdb dev` process with its data in a temporary directory.
struct Dev {
    child: Child,
    /// The coordinator's address, `127.0.0.1:PORT`.
    addr: String,
    log: PathBuf,
    /// The admin HTTP address from the banner (`admin on http://ADDR`).
    admin: String,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start() -> Dev {
        Dev::start_with(&["--cores", "1"])
    }

    /// Starts `pairdb dev` with `args` added.
    fn start_with(args: &[&str]) -> Dev {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Dev::try_start(args) {
                Ok(dev) => return dev,
                Err(e) => failures.push(e),
            }
        }
        panic!("pairdb dev did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(args: &[&str]) -> Result<Dev, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        // The coordinator takes PORT; its storage nodes take the next free ports, preferably
        // the next three.
        let port = free_port_run(4);
        let log = dir.path().join("dev.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{log:?}: {e}"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairdb"));
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--port", &port.to_string()])
            .args(args)
            .env("PAIRDB_LOG", std::env::var("PAIRDB_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Dies with the thread that started it, even if no destructor runs.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawning pairdb dev: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining, so that the process never blocks on a full pipe.
            for _ in lines {}
        });
        let want = format!("pairdb dev: coordinator on 127.0.0.1:{port} ");
        let mut dev =
            Dev { child, addr: format!("127.0.0.1:{port}"), log, admin: String::new(), _dir: dir };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.starts_with(&want) => {
                dev.admin = line
                    .split("admin on http://")
                    .nth(1)
                    .and_then(|rest| rest.split([',', ' ']).next())
                    .unwrap_or_default()
                    .to_owned();
                Ok(dev)
            }
            outcome => {
                let exited = dev.child.try_wait().ok().flatten();
                Err(format!(
                    "no banner starting with {want:?} within {READY_TIMEOUT:?} (got {outcome:?}, \
                     exit status {exited:?}); log:\n{}",
                    dev.log_tail()
                ))
            }
        }
    }

    /// Runs `pairdb ARGS --addr ADDR --timeout ...` against this cluster.
    fn cli(&self, args: &[&str]) -> Run {
        self.cli_with_stdin(args, b"")
    }

    fn cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--addr", &self.addr, "--timeout", CALL_TIMEOUT]);
        pairdb(&all, stdin)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child, not reaped yet (only `Child::wait` reaps it), so the
        // pid cannot have been reused.
        unsafe { libc::kill(pid, signal) };
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A free loopback port PORT such that PORT+1 .. PORT+n-1 were free too when checked.
fn free_port_run(n: u16) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let port = first.local_addr().expect("local_addr").port();
        if port > u16::MAX - n {
            continue;
        }
        // Held until all are checked, so that the run is free at one moment.
        let rest: Result<Vec<TcpListener>, _> =
            (1..n).map(|i| TcpListener::bind(("127.0.0.1", port + i))).collect();
        if rest.is_ok() {
            return port;
        }
    }
    panic!("no run of {n} free ports on 127.0.0.1");
}

/// One finished CLI run.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    args: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics, showing the run, unless it exited 0.
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    /// Panics unless the run exited with `code` and stderr's first line is
    /// `error: STATUS [PAIRDB_CODE]: ...`.
    #[track_caller]
    fn failed(self, code: i32, status: &str, pairdb_code: &str) -> Run {
        assert_eq!(self.code, code, "{self}");
        let prefix = format!("error: {status} [{pairdb_code}]: ");
        assert!(self.stderr.starts_with(&prefix), "stderr should start with {prefix:?}: {self}");
        assert!(self.stdout.is_empty(), "a failed call prints nothing on stdout: {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`pairdb {}` exited {}\nstdout: {}\nstderr: {}",
            self.args,
            self.code,
            self.stdout(),
            self.stderr
        )
    }
}

/// Runs the `pairdb` binary with `args`, feeding it `stdin`.
fn pairdb(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairdb"))
        .args(args)
        .env_remove("PAIRDB_ADDR")
        .env("PAIRDB_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning pairdb");
    let mut input = child.stdin.take().expect("stdin is piped");
    // A command that does not read stdin may exit first; a broken pipe then is fine.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().expect("waiting for pairdb");
    Run {
        // Killed by a signal: no code, and never a pass.
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        args: args.join(" "),
    }
}

/// The clock that `kv get` prints on stderr (`clock ACTOR=COUNTER,...`).
fn clock_of(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.strip_prefix("clock "))
        .unwrap_or_else(|| panic!("no clock line: {run}"))
        .to_owned()
}

#[test]
fn kv_put_get_round_trips_exact_bytes() {
    let dev = Dev::start();

    let put = dev.cli(&["kv", "put", "greeting", "hello, world"]).ok();
    assert!(put.stdout().starts_with("ok ("), "{put}");
    assert!(put.stdout().contains("replicas"), "{put}");
    let got = dev.cli(&["kv", "get", "greeting"]).ok();
    assert_eq!(got.stdout, b"hello, world", "{got}");
    assert!(clock_of(&got).contains('='), "{got}");

    // Every byte value, through stdin; and a trailing newline, through a file.
    let all_bytes: Vec<u8> = (0..=255).collect();
    dev.cli_with_stdin(&["kv", "put", "binary", "--value-file", "-"], &all_bytes).ok();
    let got = dev.cli(&["kv", "get", "binary"]).ok();
    assert_eq!(got.stdout, all_bytes, "{got}");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), b"line one\nline two\n").expect("writing the value file");
    let path = file.path().to_str().expect("utf-8 temp path");
    dev.cli(&["kv", "put", "file", "--value-file", path, "--consistency", "all"]).ok();
    let got = dev.cli(&["kv", "get", "file", "--consistency", "one"]).ok();
    assert_eq!(got.stdout, b"line one\nline two\n", "{got}");

    // A write that carries the clock it read supersedes that version.
    let clock = clock_of(&got);
    dev.cli(&["kv", "put", "file", "v2", "--vector-clock", &clock]).ok();
    let got = dev.cli(&["kv", "get", "file"]).ok();
    assert_eq!(got.stdout, b"v2", "{got}");

    // JSON, and the http:// form of the address.
    let json =
        pairdb(&["kv", "get", "binary", "--json", "--addr", &format!("http://{}", dev.addr)], b"")
            .ok();
    let text = json.stdout();
    assert!(text.starts_with("{\"key\":\"binary\","), "{json}");
    assert!(text.contains("\"value\":null"), "not UTF-8, so no text value: {json}");
    assert!(text.contains("\"value_base64\":\"AAECAwQF"), "{json}");
    assert!(text.contains("\"replica_count\":"), "{json}");

    // Tenants are separate key spaces.
    dev.cli(&["tenant", "create", "other"]).ok();
    dev.cli(&["kv", "get", "greeting", "--tenant", "other"]).failed(
        1,
        "NOT_FOUND",
        "KEY_NOT_FOUND",
    );
}

/// `pairdb dev`'s one /metrics shows each in-process storage node's engine, labelled `node`:
/// here, that writes at ALL reached all three nodes (through the coordinator's in-process path to
/// them, `local_storage_calls`).
#[test]
fn dev_metrics_show_each_storage_node_engine() {
    let dev = Dev::start();
    for key in ["a", "b", "c"] {
        dev.cli(&["kv", "put", key, "v", "--consistency", "all"]).ok();
    }
    let mut stream = std::net::TcpStream::connect(&dev.admin)
        .unwrap_or_else(|e| panic!("admin {:?}: {e}", dev.admin));
    use std::io::{Read as _, Write as _};
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    for node in ["storage-1", "storage-2", "storage-3"] {
        let line = format!("pairdb_storage_records{{node=\"{node}\"}} 3\n");
        assert!(body.contains(&line), "no {line:?} in:\n{body}");
        assert!(body.contains(&format!("pairdb_storage_l0_tables{{node=\"{node}\"}}")), "{body}");
    }
}

impl Dev {
    /// The admin port's /metrics page.
    fn metrics(&self) -> String {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&self.admin)
            .unwrap_or_else(|e| panic!("admin {:?}: {e}", self.admin));
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    }

    /// `pairdb_coordinator_grpc_connections` per core, in core order.
    fn connections_per_core(&self) -> Vec<u64> {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("pairdb_coordinator_grpc_connections{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .collect()
    }

    /// Waits up to 5 s for the cores to serve `total` client connections between them, and
    /// returns how many each serves.
    fn await_connections(&self, total: u64) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let open = self.connections_per_core();
            if open.iter().sum::<u64>() == total || Instant::now() > deadline {
                return open;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Client connections spread evenly over the coordinator's cores (`balance_connections`, on by
/// default): 16 connections to a 2-core `pairdb dev` are served 8 + 8, where the kernel's
/// SO_REUSEPORT hash alone splits them that evenly about one time in five. Calls on connections
/// served by either core work, and closed connections leave the count.
#[test]
fn client_connections_spread_evenly_over_the_cores() {
    let dev = Dev::start_with(&["--cores", "2"]);
    assert_eq!(dev.connections_per_core(), vec![0, 0], "{}", dev.metrics());
    let clients: Vec<_> =
        (0..16).map(|_| std::net::TcpStream::connect(&dev.addr).expect("connect")).collect();
    assert_eq!(dev.await_connections(16), vec![8, 8]);
    // 17 and 18 open with one more on each core; each CLI call is a connection of its own, and
    // whichever core serves it, it works.
    for i in 0..6 {
        dev.cli(&["kv", "put", &format!("k{i}"), "v"]).ok();
        assert_eq!(dev.cli(&["kv", "get", &format!("k{i}")]).ok().stdout, b"v");
    }
    drop(clients);
    assert_eq!(dev.await_connections(0), vec![0, 0]);
    assert!(dev.metrics().contains("pairdb_coordinator_accept_deferred_total"));
}

#[test]
fn kv_delete_then_get_is_key_not_found() {
    let dev = Dev::start();
    dev.cli(&["kv", "put", "doomed", "soon gone"]).ok();
    let deleted = dev.cli(&["kv", "delete", "doomed"]).ok();
    assert!(deleted.stdout().starts_with("deleted ("), "{deleted}");
    let got = dev.cli(&["kv", "get", "doomed"]).failed(1, "NOT_FOUND", "KEY_NOT_FOUND");
    assert!(got.stderr.contains("doomed"), "{got}");
    dev.cli(&["kv", "get", "k", "--tenant", "missing"]).failed(1, "NOT_FOUND", "TENANT_NOT_FOUND");
}

#[test]
fn idempotent_put_twice_reports_duplicate() {
    let dev = Dev::start();
    let args = ["kv", "put", "counter", "1", "--idempotency-key", "req-42"];
    let first = dev.cli(&args).ok();
    assert!(!first.stdout().contains("duplicate"), "{first}");
    assert!(first.stdout().contains("idempotency key req-42"), "{first}");
    let second = dev.cli(&args).ok();
    assert!(second.stdout().contains("duplicate"), "{second}");
    let json = dev.cli(&[&args[..], &["--json"]].concat()).ok();
    assert!(json.stdout().contains("\"is_duplicate\":true"), "{json}");
    // The same idempotency key with a different body is a conflict, not a duplicate.
    dev.cli(&["kv", "put", "counter", "2", "--idempotency-key", "req-42"]).failed(
        1,
        "FAILED_PRECONDITION",
        "IDEMPOTENCY_KEY_CONFLICT",
    );
    let del = ["kv", "delete", "counter", "--idempotency-key", "del-1"];
    assert!(!dev.cli(&del).ok().stdout().contains("duplicate"));
    assert!(dev.cli(&del).ok().stdout().contains("duplicate"));
}

#[test]
fn tenant_create_get_set_rf_and_errors() {
    let dev = Dev::start();
    let created = dev.cli(&["tenant", "create", "acme", "--replication-factor", "2"]).ok();
    assert_eq!(created.stdout(), "created tenant acme (replication factor 2)\n");
    let got = dev.cli(&["tenant", "get", "acme"]).ok();
    assert!(got.stdout().contains("replication factor: 2"), "{got}");

    let changed = dev.cli(&["tenant", "set-rf", "acme", "3"]).ok();
    assert!(changed.stdout().starts_with("tenant acme: replication factor 2 -> 3"), "{changed}");
    // The change is a migration; the tenant has its new factor once it completed.
    let id = changed
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("migration: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no migration id in {changed}"));
    let watched = dev.cli(&["migration", "status", &id, "--watch", "--interval-ms", "100"]).ok();
    assert!(watched.stdout().contains("completed"), "{watched}");
    let json = dev.cli(&["tenant", "get", "acme", "--json"]).ok();
    assert!(json.stdout().starts_with("{\"tenant_id\":\"acme\",\"replication_factor\":3,"));

    // The replication factor change is recorded as a migration.
    let json = dev.cli(&["tenant", "set-rf", "acme", "1", "--json"]).ok().stdout();
    let id = json
        .split("\"migration_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no migration_id in {json}"))
        .to_owned();
    dev.cli(&["migration", "status", &id, "--watch", "--interval-ms", "100"]).ok();
    let status = dev.cli(&["migration", "status", &id]).ok();
    assert!(status.stdout().contains("REPLICATION_CHANGE"), "{status}");
    assert!(status.stdout().contains("COMPLETED"), "{status}");
    let listed = dev.cli(&["migration", "list"]).ok();
    assert!(listed.stdout().contains(&id), "{listed}");

    dev.cli(&["tenant", "set-rf", "acme", "11"]).failed(
        1,
        "INVALID_ARGUMENT",
        "INVALID_REPLICATION_FACTOR",
    );
    dev.cli(&["tenant", "create", "big", "--replication-factor", "11"]).failed(
        1,
        "INVALID_ARGUMENT",
        "INVALID_REPLICATION_FACTOR",
    );
    dev.cli(&["tenant", "create", "acme"]).failed(1, "ALREADY_EXISTS", "TENANT_EXISTS");
    dev.cli(&["tenant", "get", "nobody"]).failed(1, "NOT_FOUND", "TENANT_NOT_FOUND");
    // The failed calls changed nothing.
    let got = dev.cli(&["tenant", "get", "acme"]).ok();
    assert!(got.stdout().contains("replication factor: 1"), "{got}");
}

#[test]
fn node_list_shows_three_nodes() {
    let dev = Dev::start();
    let list = dev.cli(&["node", "list"]).ok();
    let text = list.stdout();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three nodes: {list}");
    assert!(lines[0].starts_with("NODE "), "{list}");
    for (i, line) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], format!("storage-{}", i + 1), "{list}");
        assert_eq!(cells[2], "ACTIVE", "{list}");
    }
    let json = dev.cli(&["node", "list", "--json"]).ok().stdout();
    assert_eq!(json.matches("\"node_id\":").count(), 3, "{json}");
    dev.cli(&["node", "remove", "storage-404"]).failed(1, "NOT_FOUND", "NODE_NOT_FOUND");
}

#[test]
fn migration_status_of_unknown_id_is_not_found() {
    let dev = Dev::start();
    dev.cli(&["migration", "status", "mig-unknown"]).failed(1, "NOT_FOUND", "MIGRATION_NOT_FOUND");
}

#[test]
fn connection_failure_exits_3_with_cannot_connect() {
    // Nobody listens on a port that was just free.
    let addr = format!("127.0.0.1:{}", free_port_run(1));
    let run = pairdb(&["kv", "get", "k", "--addr", &addr], b"");
    assert_eq!(run.code, 3, "{run}");
    let want = format!("error: cannot connect to {addr}: ");
    assert!(run.stderr.starts_with(&want), "{run}");
    assert!(run.stderr.contains("is `pairdb dev` running?"), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["kv", "put", "k"][..],
        &["kv", "put", "k", "v", "--value-file", "f"],
        &["kv", "get", "k", "--consistency", "most"],
        &["kv", "put", "k", "v", "--vector-clock", "not-a-clock"],
        &["kv", "get", "k", "--addr", "https://127.0.0.1:1"],
        &["kv", "get", "k", "--timeout", "soon"],
        &["node", "add", "n", "--host", "h"],
    ] {
        let run = pairdb(args, b"");
        assert_eq!(run.code, 2, "{run}");
    }
}
