//! Shared support for the integration tests: real `pairdb storage` and `pairdb coordinator`
//! processes, a glommio executor to run our client in, polling with a deadline, a raw `h2` client
//! for sending what our own client never would, and builders for gRPC messages and hand-made
//! HTTP/2 frames.
//!
//! Every test binary includes this module (`mod common;`) and uses a different part of it, hence
//! the `dead_code` allowance. Processes are owned by a guard that SIGKILLs them by PID on drop,
//! and they also get `PR_SET_PDEATHSIG`, so a test harness that dies on its own takes its
//! servers with it instead of leaving them listening.

#![allow(dead_code)]

use std::{
    future::Future,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use glommio::{BuilderErrorKind, GlommioError, LocalExecutorBuilder, Placement};
use h2::client::SendRequest;
use http::{HeaderMap, Request, StatusCode};
use pairdb::{
    proto::storage::{HealthCheckRequest, HealthCheckResponse},
    rpc::{framing, glommio_io::GlommioIo, Channel, ClientConfig, Code, Status},
};
use prost::Message;

/// How long a `pairdb storage` process may take to print its ready line. Generous: a debug build
/// on a loaded two-core CI machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Deadline for single calls in tests: far above any real latency, so it only stops a hung test.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Storage service method paths.
pub const STORAGE: &str = "/pairdb.storage.v1.StorageService/";

/// The path of a storage service method.
pub fn storage_path(method: &str) -> String {
    format!("{STORAGE}{method}")
}

// ------------------------------------------------------------------------------------------------
// A `pairdb storage` process.
// ------------------------------------------------------------------------------------------------

/// A running `pairdb storage` process. SIGKILLed by PID when dropped.
pub struct StorageProcess {
    child: Child,
    /// Where it serves gRPC.
    pub addr: SocketAddr,
    /// The `--node-id` it was started with.
    pub node_id: String,
    /// Its admin HTTP port (`/metrics`, `/health/...`), started on a free port.
    pub admin: SocketAddr,
    log: PathBuf,
}

impl StorageProcess {
    /// Starts `pairdb storage` on a free port, one core, with its data in `dir/data` and its log
    /// appended to `dir/storage.log`, and waits for its ready line.
    pub fn start(dir: &Path, node_id: &str) -> StorageProcess {
        Self::start_with_cores(dir, node_id, 1)
    }

    /// As [`StorageProcess::start`], with `cores` executors.
    pub fn start_with_cores(dir: &Path, node_id: &str, cores: usize) -> StorageProcess {
        Self::start_on_port(dir, node_id, cores, 0)
    }

    /// As [`StorageProcess::start_with_cores`], on `port` (0 picks a free one). Restarting a
    /// node on the port and `dir` it had before brings it back where its peers know it.
    pub fn start_on_port(dir: &Path, node_id: &str, cores: usize, port: u16) -> StorageProcess {
        Self::start_configured(dir, node_id, cores, port, "")
    }

    /// As [`StorageProcess::start_on_port`], with `config_yaml` written to `dir/storage.yaml`
    /// and passed as `--config` (the flags still override it); empty means no config file.
    pub fn start_configured(
        dir: &Path,
        node_id: &str,
        cores: usize,
        port: u16,
        config_yaml: &str,
    ) -> StorageProcess {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairdb"));
        cmd.arg("storage");
        if config_yaml.contains("http2:") {
            // A test that names its HTTP/2 layer gets it, whatever PAIRDB_RPC_HTTP2 says.
            cmd.env_remove("PAIRDB_RPC_HTTP2");
        }
        if !config_yaml.is_empty() {
            let config = dir.join("storage.yaml");
            std::fs::write(&config, config_yaml)
                .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
            cmd.arg("--config").arg(config);
        }
        cmd.args(["--port", &port.to_string(), "--host", "127.0.0.1", "--node-id", node_id])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--cores", &cores.to_string(), "--admin-port", "0"]);
        let log = dir.join("storage.log");
        let (child, addr, admin, _) =
            launch(cmd, &log, &format!("pairdb storage {node_id} listening on "));
        StorageProcess { child, addr, node_id: node_id.into(), admin, log }
    }

    /// The process id.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("pairdb storage exited unexpectedly ({status}). Log:\n{}", self.log_tail());
        }
    }

    /// SIGKILLs the process and reaps it: a crash, with no chance to flush or sync anything.
    pub fn kill9(mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.child.wait().expect("wait after SIGKILL")
    }

    /// SIGTERMs the process and waits up to `timeout` for it to exit; panics if it does not.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("pairdb storage ignored SIGTERM for {timeout:?}. Log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        signal_child(&self.child, signal);
    }
}

impl Drop for StorageProcess {
    fn drop(&mut self) {
        kill_unreaped(&mut self.child);
    }
}

/// Spawns `cmd` (a `pairdb` server subcommand) with its stderr appended to `log`, and waits for
/// the stdout line starting with `ready_prefix`, which must go on with the listening address and
/// name the admin address (`admin on http://ADDR`); a coordinator serving the HTTP API names it
/// too (`http api on http://ADDR`). The process gets `PR_SET_PDEATHSIG`: it dies with the thread
/// that called this.
fn launch(
    mut cmd: Command,
    log: &Path,
    ready_prefix: &str,
) -> (Child, SocketAddr, SocketAddr, Option<SocketAddr>) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    cmd.env("PAIRDB_LOG", std::env::var("PAIRDB_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // The process dies with the thread that started it, even if the harness is
            // SIGKILLed and no destructor runs.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawning target/debug/pairdb");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    let prefix = ready_prefix.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(&prefix) {
                let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                let after = |marker: &str| {
                    rest.split_once(marker)
                        .map(|(_, a)| a.split([',', ' ']).next().unwrap_or_default().to_owned())
                };
                let admin = after("admin on http://").unwrap_or_default();
                let http = after("http api on http://");
                let _ = tx.send((addr, admin, http));
                break;
            }
        }
        // Keep draining so that the process never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok((addr, admin, http)) => match (addr.parse(), admin.parse()) {
            (Ok(addr), Ok(admin)) => {
                let http = http.map(|h| h.parse().expect("unparsable http api address"));
                (child, addr, admin, http)
            }
            (addr, admin) => {
                kill_unreaped(&mut child);
                panic!("unparsable addresses in the ready line: {addr:?}, admin {admin:?}")
            }
        },
        Err(e) => {
            let exited = child.try_wait().ok().flatten();
            kill_unreaped(&mut child);
            panic!(
                "{cmd:?} did not print {ready_prefix:?} within {READY_TIMEOUT:?} ({e}; exit \
                 status {exited:?}). Log:\n{}",
                log_tail(log)
            );
        }
    }
}

/// The last 40 lines of `log`.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn signal_child(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid; the child is not reaped yet (its owner holds the
    // `Child` and reaps it only through it), so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// SIGKILLs `child` by PID and reaps it, unless it has exited already.
fn kill_unreaped(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        signal_child(child, libc::SIGKILL);
        let _ = child.wait();
    }
}

// ------------------------------------------------------------------------------------------------
// A `pairdb coordinator` process.
// ------------------------------------------------------------------------------------------------

/// Coordinator service method paths.
pub const COORDINATOR: &str = "/pairdb.coordinator.v1.CoordinatorService/";

/// The path of a coordinator service method.
pub fn coordinator_path(method: &str) -> String {
    format!("{COORDINATOR}{method}")
}

/// How to start a `pairdb coordinator`.
pub struct CoordinatorOptions<'a> {
    /// `--node-id`; its cores are the vector-clock actors `{node_id}/{core}`.
    pub node_id: &'a str,
    /// `--cores`.
    pub cores: usize,
    /// `--storage-node ID=HOST:PORT`, one per entry.
    pub storage_nodes: Vec<(String, SocketAddr)>,
    /// YAML written to `dir/coordinator.yaml` and passed as `--config` (flags override it), for
    /// the knobs that have no flag (intervals, timeouts). Empty: no config file.
    pub config_yaml: &'a str,
}

/// A running `pairdb coordinator` process. SIGKILLed by PID when dropped.
pub struct CoordinatorProcess {
    child: Child,
    /// Where it serves gRPC (every core listens on it, SO_REUSEPORT).
    pub addr: SocketAddr,
    /// The `--node-id` it was started with.
    pub node_id: String,
    /// Its admin HTTP port (`/metrics`, `/health/...`), started on a free port.
    pub admin: SocketAddr,
    /// Its HTTP/JSON API, when its config sets `http_api.port`.
    pub http: Option<SocketAddr>,
    log: PathBuf,
}

impl CoordinatorProcess {
    /// Starts `pairdb coordinator` on a free port with its metadata in `dir/meta` and its log
    /// appended to `dir/coordinator.log`, and waits for its ready line.
    pub fn start(dir: &Path, options: &CoordinatorOptions<'_>) -> CoordinatorProcess {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairdb"));
        cmd.arg("coordinator");
        if options.config_yaml.contains("http2:") {
            // A test that names its HTTP/2 layer gets it, whatever PAIRDB_RPC_HTTP2 says.
            cmd.env_remove("PAIRDB_RPC_HTTP2");
        }
        if !options.config_yaml.is_empty() {
            let config = dir.join("coordinator.yaml");
            std::fs::write(&config, options.config_yaml)
                .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
            cmd.arg("--config").arg(config);
        }
        cmd.args(["--port", "0", "--host", "127.0.0.1", "--node-id", options.node_id])
            .arg("--data-dir")
            .arg(dir.join("meta"))
            .args(["--cores", &options.cores.to_string(), "--admin-port", "0"]);
        for (id, addr) in &options.storage_nodes {
            cmd.arg("--storage-node").arg(format!("{id}={addr}"));
        }
        let log = dir.join("coordinator.log");
        let prefix = format!("pairdb coordinator {} listening on ", options.node_id);
        let (child, addr, admin, http) = launch(cmd, &log, &prefix);
        CoordinatorProcess { child, addr, node_id: options.node_id.into(), admin, http, log }
    }

    /// The process id.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("pairdb coordinator exited unexpectedly ({status}). Log:\n{}", self.log_tail());
        }
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn sigterm(&self) {
        signal_child(&self.child, libc::SIGTERM);
    }

    /// SIGKILLs the process and waits for it.
    pub fn kill9(&mut self) -> ExitStatus {
        signal_child(&self.child, libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits up to `timeout` for the process to exit and returns its status; panics (with the
    /// log) if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "pairdb coordinator still running after {timeout:?}. Log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        kill_unreaped(&mut self.child);
    }
}

/// A coordinator (`{name}-coord`, `cores` cores) in front of `nodes` storage nodes
/// (`{name}-s1`, ...), each process in its own folder under `dir`.
pub struct TestCluster {
    /// The storage nodes, in order.
    pub storage: Vec<StorageProcess>,
    /// The coordinator, which knows every node.
    pub coordinator: CoordinatorProcess,
}

/// Starts a [`TestCluster`]; `config_yaml` is the coordinator's config (see
/// [`CoordinatorOptions::config_yaml`]).
pub fn start_cluster(
    dir: &Path,
    name: &str,
    nodes: usize,
    cores: usize,
    config_yaml: &str,
) -> TestCluster {
    let storage: Vec<StorageProcess> = (1..=nodes)
        .map(|i| {
            let id = format!("{name}-s{i}");
            StorageProcess::start(&dir.join(&id), &id)
        })
        .collect();
    let coordinator = CoordinatorProcess::start(
        &dir.join("coordinator"),
        &CoordinatorOptions {
            node_id: &format!("{name}-coord"),
            cores,
            storage_nodes: storage.iter().map(|s| (s.node_id.clone(), s.addr)).collect(),
            config_yaml,
        },
    );
    TestCluster { storage, coordinator }
}

/// How often [`eventually`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Probes every [`POLL_INTERVAL`] (inside an executor) until `probe` returns `Ok`, and returns
/// that; panics with `what` and the last `Err` once `timeout` has passed. For what the system
/// does in the background (hint replay, read repair, health checks): a deadline, never a sleep.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: still not so after {timeout:?}: {e}")
            }
            Err(_) => glommio::timer::sleep(POLL_INTERVAL).await,
        }
    }
}

/// True when `status` says the process was killed by SIGKILL.
pub fn killed_by_sigkill(status: &ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

// ------------------------------------------------------------------------------------------------
// Executors and our own client.
// ------------------------------------------------------------------------------------------------

/// Runs `make()`'s future to completion on a fresh glommio executor thread and returns its
/// output. A panic inside resurfaces as this call's panic, with its original payload.
pub fn run_local<G, F, T>(make: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("test-executor")
        .spawn(make)
        .expect("starting a glommio executor");
    match handle.join() {
        Ok(v) => v,
        Err(GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(payload))) => {
            std::panic::resume_unwind(payload)
        }
        Err(e) => panic!("glommio executor failed: {e}"),
    }
}

/// Opens one of our channels to `addr` (inside an executor), on the HTTP/2 layer that
/// `PAIRDB_RPC_HTTP2` names (`native`, the default, or `h2`), as the processes under test use.
pub async fn channel(addr: SocketAddr) -> Channel {
    let http2 = match std::env::var("PAIRDB_RPC_HTTP2").as_deref() {
        Ok("h2") => pairdb::rpc::client::Http2Impl::H2,
        _ => pairdb::rpc::client::Http2Impl::Native,
    };
    Channel::connect(addr, &ClientConfig { http2, ..ClientConfig::default() })
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// Asserts that the storage node at `addr` answers `StorageService/HealthCheck` on a brand-new
/// connection with `node_id` and SERVING.
pub async fn assert_serves(addr: SocketAddr, node_id: &str) {
    let ch = channel(addr).await;
    let reply: HealthCheckResponse = ch
        .unary(&storage_path("HealthCheck"), &HealthCheckRequest {}, Some(CALL_TIMEOUT))
        .await
        .unwrap_or_else(|e| panic!("HealthCheck on a new connection failed: {e}"));
    assert_eq!(reply.status, "SERVING");
    assert_eq!(reply.node_id, node_id);
}

// ------------------------------------------------------------------------------------------------
// gRPC message builders.
// ------------------------------------------------------------------------------------------------

/// `msg` as one length-prefixed gRPC message.
pub fn grpc_frame<M: Message>(msg: &M) -> Bytes {
    framing::encode_to_bytes(msg)
}

/// A length-prefixed message with any flag byte and any declared length, followed by `body`
/// (which may be shorter or longer than declared).
pub fn raw_grpc_frame(flag: u8, declared_len: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(framing::PREFIX_LEN + body.len());
    out.put_u8(flag);
    out.put_u32(declared_len);
    out.put_slice(body);
    out.freeze()
}

// ------------------------------------------------------------------------------------------------
// A raw h2 client: sends whatever headers and bytes a case needs, returns the reply as it came.
// ------------------------------------------------------------------------------------------------

/// One HTTP/2 connection driven by the `h2` crate directly, without any gRPC logic of ours.
pub struct RawClient {
    send: SendRequest<Bytes>,
    driver: glommio::Task<()>,
    addr: SocketAddr,
}

/// A reply exactly as the server sent it.
#[derive(Debug)]
pub struct RawReply {
    /// The HTTP status.
    pub http_status: StatusCode,
    /// The response HEADERS.
    pub headers: HeaderMap,
    /// True when the response HEADERS carried END_STREAM (a gRPC Trailers-Only reply).
    pub trailers_only: bool,
    /// Every DATA byte of the reply, concatenated.
    pub body: Bytes,
    /// The trailing HEADERS, if any.
    pub trailers: Option<HeaderMap>,
}

impl RawReply {
    /// The gRPC status: from the HEADERS of a Trailers-Only reply, else from the trailers.
    pub fn status(&self) -> Option<Status> {
        if self.trailers_only {
            Status::from_headers(&self.headers)
        } else {
            self.trailers.as_ref().and_then(Status::from_headers)
        }
    }

    /// Asserts a Trailers-Only error reply: HTTP 200, `application/grpc`, END_STREAM on the
    /// HEADERS, no body, `grpc-status` = `code` and `pairdb-error-code` = `error_code`.
    pub fn assert_error(&self, code: Code, error_code: &str) -> Status {
        assert_eq!(self.http_status, StatusCode::OK, "{self:?}");
        assert!(self.trailers_only, "expected a Trailers-Only reply, got {self:?}");
        assert!(self.body.is_empty(), "{self:?}");
        assert_eq!(
            self.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/grpc"[..]),
            "{self:?}"
        );
        let status = self.status().unwrap_or_else(|| panic!("no grpc-status in {self:?}"));
        assert_eq!(status.code, code, "{status}");
        assert_eq!(status.error_code.as_deref(), Some(error_code), "{status}");
        status
    }

    /// Asserts an OK reply with one message and decodes it.
    pub fn assert_ok<M: Message + Default>(&self) -> M {
        assert_eq!(self.http_status, StatusCode::OK, "{self:?}");
        assert!(!self.trailers_only, "{self:?}");
        let status = self.status().unwrap_or_else(|| panic!("no grpc-status in {self:?}"));
        assert_eq!(status.code, Code::OK, "{status}");
        let mut buf = BytesMut::from(&self.body[..]);
        let msg = framing::decode(&mut buf, usize::MAX)
            .expect("valid framing")
            .unwrap_or_else(|| panic!("incomplete reply message in {self:?}"));
        assert!(buf.is_empty(), "more than one reply message");
        M::decode(msg).expect("decodable reply")
    }
}

impl RawClient {
    /// Connects and completes the HTTP/2 handshake (inside an executor).
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let tcp = glommio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let (send, conn) = h2::client::Builder::new()
            .handshake::<_, Bytes>(GlommioIo(tcp))
            .await
            .unwrap_or_else(|e| panic!("HTTP/2 handshake with {addr}: {e}"));
        let driver = glommio::spawn_local(async move {
            let _ = conn.await;
        });
        RawClient { send, driver, addr }
    }

    /// A gRPC-looking POST to `path` with `content-type: application/grpc` and `te: trailers`,
    /// plus `extra` headers (which replace those two when they name them).
    pub fn request(&self, path: &str, extra: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::post(format!("http://{}{path}", self.addr))
            .body(())
            .unwrap_or_else(|e| panic!("bad request for {path}: {e}"));
        let headers = req.headers_mut();
        headers.insert("content-type", "application/grpc".parse().expect("static"));
        headers.insert("te", "trailers".parse().expect("static"));
        for (name, value) in extra {
            let name = http::HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
            headers.insert(name, value.parse().expect("valid header value"));
        }
        req
    }

    /// Opens a stream with `req`'s HEADERS (END_STREAM when `end_stream`) and leaves the rest to
    /// the caller: send DATA on the returned stream, await the reply with [`RawClient::reply`].
    pub async fn open(
        &self,
        req: Request<()>,
        end_stream: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let mut send = self.send.clone().ready().await.expect("connection ready for a stream");
        send.send_request(req, end_stream).expect("send_request")
    }

    /// Waits (at most [`CALL_TIMEOUT`]) for the whole reply to a stream opened with
    /// [`RawClient::open`].
    pub async fn reply(response: h2::client::ResponseFuture) -> RawReply {
        let call = async {
            let response = response.await.expect("a response to the request");
            read_reply(response).await
        };
        match glommio::timer::timeout(CALL_TIMEOUT, async { Ok(call.await) }).await {
            Ok(reply) => reply,
            Err(_) => panic!("no complete reply within {CALL_TIMEOUT:?}"),
        }
    }

    /// Sends `req`, then each of `chunks` as its own DATA frame, the last with END_STREAM when
    /// `end_stream`, and reads the whole reply.
    pub async fn call(&self, req: Request<()>, chunks: Vec<Bytes>, end_stream: bool) -> RawReply {
        let (response, mut stream) = self.open(req, chunks.is_empty() && end_stream).await;
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            // The server may answer and reset the stream before it has read everything (an
            // oversized message): then the rest cannot be sent, which is fine.
            if stream.send_data(chunk, end_stream && i + 1 == n).is_err() {
                break;
            }
        }
        Self::reply(response).await
    }

    /// A unary call with one well-formed message.
    pub async fn unary<M: Message>(&self, path: &str, msg: &M) -> RawReply {
        self.call(self.request(path, &[]), vec![grpc_frame(msg)], true).await
    }

    /// Asserts that this same connection still serves a storage HealthCheck.
    pub async fn assert_serves(&self, node_id: &str) {
        let reply: HealthCheckResponse =
            self.unary(&storage_path("HealthCheck"), &HealthCheckRequest {}).await.assert_ok();
        assert_eq!(reply.status, "SERVING");
        assert_eq!(reply.node_id, node_id);
    }

    /// Drops the TCP connection without any HTTP/2 goodbye.
    pub async fn vanish(self) {
        drop(self.send);
        self.driver.cancel().await;
    }
}

async fn read_reply(response: http::Response<h2::RecvStream>) -> RawReply {
    let (parts, mut body) = response.into_parts();
    let trailers_only = body.is_end_stream();
    if trailers_only {
        // Nothing follows; the server may already have reset the stream to stop our upload.
        return RawReply {
            http_status: parts.status,
            headers: parts.headers,
            trailers_only,
            body: Bytes::new(),
            trailers: None,
        };
    }
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("reply DATA");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("reply trailers");
    RawReply {
        http_status: parts.status,
        headers: parts.headers,
        trailers_only,
        body: data.freeze(),
        trailers,
    }
}

// ------------------------------------------------------------------------------------------------
// Hand-made HTTP/2 frames (RFC 9113), for clients that misbehave below what `h2` lets us do.
// ------------------------------------------------------------------------------------------------

/// The client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame: 9-byte header then `payload`.
pub fn h2_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame fits");
    assert!(len < 1 << 14, "frame larger than the default SETTINGS_MAX_FRAME_SIZE");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An empty SETTINGS frame.
pub fn h2_settings() -> Vec<u8> {
    h2_frame(FRAME_SETTINGS, 0, 0, &[])
}

/// A HEADERS frame (END_HEADERS) whose block encodes every field as an HPACK literal without
/// indexing and without Huffman coding, so it needs no encoder state.
pub fn h2_headers(stream_id: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
    h2_frame(FRAME_HEADERS, flags, stream_id, &block)
}

/// A DATA frame.
pub fn h2_data(stream_id: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    h2_frame(FRAME_DATA, if end_stream { FLAG_END_STREAM } else { 0 }, stream_id, payload)
}

/// A PING frame carrying `payload`.
pub fn h2_ping(payload: [u8; 8]) -> Vec<u8> {
    h2_frame(FRAME_PING, 0, 0, &payload)
}

/// Reads the server's frames until the ACK of the PING carrying `payload`. The server processes
/// frames in order, so once it acknowledged a PING sent after some frames, it has seen those.
pub fn h2_wait_ping_ack(stream: &mut std::net::TcpStream, payload: [u8; 8], timeout: Duration) {
    stream.set_read_timeout(Some(timeout)).expect("set_read_timeout");
    loop {
        let mut header = [0u8; 9];
        stream.read_exact(&mut header).expect("a frame from the server before the PING ACK");
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).expect("a frame body");
        if header[3] == FRAME_PING && header[4] & FLAG_ACK != 0 && body == payload {
            return;
        }
    }
}

/// The request HEADERS of a gRPC call to `path` on `authority`.
pub fn h2_grpc_headers(stream_id: u32, authority: &str, path: &str) -> Vec<u8> {
    h2_headers(
        stream_id,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
        false,
    )
}

/// An HPACK string literal, no Huffman: length as a 7-bit-prefix integer, then the bytes.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 0x7f {
        out.push(len as u8);
    } else {
        out.push(0x7f);
        len -= 0x7f;
        while len >= 0x80 {
            out.push((len % 0x80) as u8 | 0x80);
            len /= 0x80;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s);
}

/// Reads from a blocking socket until the peer closes it (EOF or reset) and returns what came,
/// or panics if it is still open after `timeout`.
pub fn read_until_closed(stream: &mut std::net::TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the server kept the connection open for {timeout:?}");
        stream.set_read_timeout(Some(left)).expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server kept the connection open for {timeout:?}")
            }
            Err(e) => panic!("reading from the server: {e}"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Python.
// ------------------------------------------------------------------------------------------------

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Checks that python3 and the gRPC packages of `tests/python/requirements.txt` are importable;
/// panics (never skips) with what to do when they are not.
pub fn require_python_grpc() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2, \
             grpc_reflection.v1alpha.proto_reflection_descriptor_database",
        ])
        .output();
    let hint = "the interop tests need python3 with grpcio, grpcio-tools, grpcio-reflection and \
                grpcio-health-checking: run scripts/test (it pip-installs \
                tests/python/requirements.txt), or `python3 -m pip install -r \
                tests/python/requirements.txt`";
    match out {
        Err(e) => panic!("cannot run python3 ({e}); {hint}"),
        Ok(out) if !out.status.success() => {
            panic!("{hint}\npython3 said:\n{}", String::from_utf8_lossy(&out.stderr))
        }
        Ok(_) => {}
    }
}

/// Generates Python stubs into `out`: `pairdb/storage/v1/storage_pb2{,_grpc}.py` from our protos,
/// and `reflection_v1_pb2{,_grpc}.py` for `grpc.reflection.v1` (grpcio-reflection ships only
/// v1alpha stubs). The reflection proto is copied under a new file name so its generated module
/// cannot collide with the `grpc` package itself.
pub fn generate_python_stubs(out: &Path) {
    let root = repo_root();
    let reflection_dir = out.join("reflection-proto");
    std::fs::create_dir_all(&reflection_dir).expect("mkdir");
    std::fs::copy(
        root.join("proto/grpc/reflection/v1/reflection.proto"),
        reflection_dir.join("reflection_v1.proto"),
    )
    .expect("copy reflection.proto");
    let runs: [(PathBuf, &str); 2] = [
        (root.join("proto"), "pairdb/storage/v1/storage.proto"),
        (reflection_dir, "reflection_v1.proto"),
    ];
    for (include, file) in runs {
        let output = Command::new("python3")
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .arg(file)
            .output()
            .expect("running python3 -m grpc_tools.protoc");
        assert!(
            output.status.success(),
            "grpc_tools.protoc failed on {file}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A child process killed by PID on drop (the Python interop server).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `cmd` to completion with its output captured; kills it and panics if it takes longer
/// than `timeout`.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {timeout:?}.\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Spawns `cmd` with stdout piped and waits up to `timeout` for a stdout line starting with
/// `prefix`; returns the child (killed on drop) and the rest of that line. Later stdout is
/// drained; stderr goes to the test's stderr.
pub fn spawn_until_line(
    cmd: &mut Command,
    prefix: &str,
    timeout: Duration,
) -> (ChildGuard, String) {
    let mut child = ChildGuard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")),
    );
    let stdout = child.0.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let wanted = prefix.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(&wanted) {
                let _ = tx.send(rest.to_owned());
                break;
            }
        }
        for _ in lines {}
    });
    match rx.recv_timeout(timeout) {
        Ok(rest) => (child, rest),
        Err(e) => {
            let status = child.0.try_wait().ok().flatten();
            panic!("{cmd:?} printed no line {prefix:?} within {timeout:?} ({e}; exit {status:?})")
        }
    }
}
