//! A real `pairdb dev` cluster for the client's tests, and fake coordinators that fail in
//! chosen ways.
//!
//! The cluster is the `pairdb` binary of this workspace, found at `$PAIRDB_BIN`, else next to
//! the test executable's profile directory (`target/debug/pairdb`), else in `$CARGO_TARGET_DIR`
//! or `<workspace>/target`. `cargo test --workspace` builds it first; a missing binary fails the
//! test with the command that builds it, never skips.

#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

/// How long `pairdb dev` may take to print its banner: generous, for a debug build on a loaded
/// two-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `pairdb` binary to run.
pub fn pairdb_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PAIRDB_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "PAIRDB_BIN={} is not a file", bin.display());
        return bin;
    }
    let mut candidates = Vec::new();
    // target/<profile>/deps/<test exe> -> target/<profile>/pairdb
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("pairdb"));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_relative() { workspace.join(dir) } else { dir };
        candidates.push(dir.join("debug/pairdb"));
    }
    candidates.push(workspace.join("target/debug/pairdb"));
    for candidate in &candidates {
        if candidate.is_file() {
            return candidate.clone();
        }
    }
    panic!(
        "the pairdb binary is missing (looked at {candidates:?}): run `cargo build --bin pairdb` \
         in the workspace first (cargo test --workspace does), or set PAIRDB_BIN"
    );
}

/// A running `pairdb dev` (a coordinator and three storage nodes, tenant `default`), with its
/// data in a temporary directory. SIGKILLed by PID when dropped.
pub struct Dev {
    child: Child,
    /// The coordinator's address, `127.0.0.1:PORT`.
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dev {
    /// Starts `pairdb dev --port 0 --cores 1` and waits for its banner.
    pub fn start() -> Dev {
        Dev::start_with(&[], &[])
    }

    /// [`Dev::start`] with extra arguments (`--tls-cert`, ...) and environment variables
    /// (`PAIRDB_AUTH_MODE`, ...).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("dev.log");
        let log_file = std::fs::File::create(&log).expect("creating the log");
        let mut cmd = Command::new(pairdb_bin());
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--port", "0", "--cores", "1", "--admin-port", "0"])
            .env("PAIRDB_LOG", std::env::var("PAIRDB_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        cmd.args(args);
        for (name, value) in env {
            cmd.env(name, value);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Dies with the thread that started it, even if no destructor runs.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
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
        let mut dev = Dev { child, addr: String::new(), log, _dir: dir };
        let prefix = "pairdb dev: coordinator on ";
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.starts_with(prefix) => {
                let addr = line[prefix.len()..].split_whitespace().next().unwrap_or_default();
                assert!(addr.parse::<SocketAddr>().is_ok(), "no address in {line:?}");
                dev.addr = addr.to_owned();
                dev
            }
            outcome => {
                let exited = dev.child.try_wait().ok().flatten();
                panic!(
                    "pairdb dev printed no {prefix:?} line within {READY_TIMEOUT:?} (got \
                     {outcome:?}, exit status {exited:?}); log:\n{}",
                    dev.log_tail()
                );
            }
        }
    }

    /// The last lines of the cluster's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child, not reaped yet (only `Child::wait` reaps it), so
        // the pid cannot have been reused.
        unsafe { libc::kill(pid, signal) };
    }
}

impl Drop for Dev {
    /// SIGKILLs the cluster by PID and reaps it. Not SIGTERM: a graceful shutdown waits for
    /// clients to close their connections, and the test's client (on a current-thread runtime
    /// blocked in this very drop) cannot.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// An address where nothing listens: connections are refused.
pub fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    drop(listener);
    addr.to_string()
}

/// A listener that never accepts: connections complete (the kernel's backlog) but nothing ever
/// answers. Keep it alive for as long as the address is used.
pub fn silent_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr").to_string();
    (listener, addr)
}

/// A listener that accepts every connection and closes it at once, counting them.
pub fn closing_listener() -> (Arc<AtomicUsize>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (accepted, addr)
}

/// What a [`FakeCoordinator`] answers one request with.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A Trailers-Only error: gRPC code and `pairdb-error-code` (empty: none).
    Fail(i32, &'static str),
    /// OK with this encoded protobuf message.
    Ok(Vec<u8>),
}

/// One request a [`FakeCoordinator`] received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Which fake (its `name`).
    pub server: &'static str,
    /// The method path.
    pub path: String,
    /// The request message (the gRPC frame's payload).
    pub message: Vec<u8>,
}

/// A fake coordinator on a raw HTTP/2 server: it answers each request by `script(n)`, `n`
/// counting the requests of all fakes sharing `log`, and records every request in `log`.
pub struct FakeCoordinator {
    /// Its address.
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

/// The requests shared by a set of fakes, in arrival order.
pub type Log = Arc<std::sync::Mutex<Vec<Received>>>;

impl FakeCoordinator {
    /// Starts a fake named `name` on a free port, in the current tokio runtime.
    pub async fn start(
        name: &'static str,
        log: Log,
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> FakeCoordinator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr").to_string();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else { return };
                    while let Some(Ok((request, respond))) = conn.accept().await {
                        let (log, script) = (log.clone(), script.clone());
                        tokio::spawn(answer(name, request, respond, log, script));
                    }
                });
            }
        });
        FakeCoordinator { addr, task }
    }
}

impl Drop for FakeCoordinator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    name: &'static str,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    log: Log,
    script: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
) {
    let path = request.uri().path().to_owned();
    let mut body = request.into_body();
    let mut frame = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        frame.extend_from_slice(&chunk);
    }
    let message = frame.get(5..).unwrap_or_default().to_vec();
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Received { server: name, path, message });
        log.len() - 1
    };
    let grpc = |status: i32| {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", status.to_string())
    };
    match script(n) {
        Reply::Fail(code, error_code) => {
            let mut response = grpc(code).header("grpc-message", "scripted");
            if !error_code.is_empty() {
                response = response.header("pairdb-error-code", error_code);
            }
            let _ = respond.send_response(response.body(()).unwrap(), true);
        }
        Reply::Ok(message) => {
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let Ok(mut stream) = respond.send_response(response, false) else { return };
            let mut data = vec![0u8];
            data.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
            data.extend_from_slice(&message);
            let _ = stream.send_data(data.into(), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = stream.send_trailers(trailers);
        }
    }
}
