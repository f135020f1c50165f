//! The client subcommands of the `pairdb` binary: `kv`, `tenant`, `node` and `migration`, each a
//! thin wrapper over one `pairdb.coordinator.v1.CoordinatorService` call.
//!
//! This module owns argument parsing for those commands, the one-shot call (a fresh glommio
//! executor thread, one connection, one unary call) and the rendering of replies for people and,
//! with `--json`, for scripts. It leaves the wire to `pairdb::rpc` and every rule about keys,
//! tenants and replication factors to the coordinator: values that the coordinator validates
//! (replication factor, virtual nodes) are passed through unchecked, so the CLI can never
//! disagree with the server about what is allowed.
//!
//! The JSON is rendered by hand (a dozen fixed shapes) rather than through `serde_json`, because
//! the generated protobuf types carry no serde derives and the mapping would be manual anyway.
//!
//! Exit codes are part of the contract, so scripts can tell "the server said no" from "there is
//! no server":
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | the coordinator answered with an error status, or a local I/O error |
//! | 2 | invalid command line (clap's own exit code) |
//! | 3 | no connection: the address does not resolve or nobody accepts on it |

use std::{
    ffi::OsString,
    fmt::{self, Write as _},
    io::{self, IsTerminal as _, Read as _, Write as _},
    net::{SocketAddr, ToSocketAddrs as _},
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::{Args, Subcommand, ValueEnum};
use glommio::{LocalExecutorBuilder, Placement};
use pairdb::{
    proto::coordinator as api,
    rpc::{Channel, ClientConfig, Status},
};
use prost::Message;

/// Exit code when the coordinator answered with an error, or reading or writing a local file
/// failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code when there is no connection to the coordinator.
pub const EXIT_NO_CONNECTION: i32 = 3;

/// The default address: the coordinator that `pairdb dev` starts.
const DEFAULT_ADDR: &str = "127.0.0.1:50051";

/// The service every client subcommand calls.
const SERVICE: &str = "/pairdb.coordinator.v1.CoordinatorService/";

/// Locked memory for the client executor's io_uring buffers. One call needs little; 1 MiB, as
/// each server core, stays well inside the common 8 MiB RLIMIT_MEMLOCK.
const IO_MEMORY_BYTES: usize = 1 << 20;

/// The client subcommands, flattened into the binary's top-level commands.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Write, read and delete keys.
    Kv(KvArgs),
    /// Create tenants, show them and change their replication factor.
    Tenant(TenantArgs),
    /// Add, remove and list storage nodes.
    Node(NodeArgs),
    /// Show the state of a migration.
    Migration(MigrationArgs),
}

/// Where and how to call the coordinator; accepted by every client subcommand.
#[derive(Args)]
pub struct Connection {
    /// Coordinator address, HOST:PORT or http://HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "PAIRDB_ADDR",
        default_value = DEFAULT_ADDR,
        value_parser = parse_addr
    )]
    addr: String,
    /// Deadline for connecting plus the call, e.g. 5s, 500ms, 1m (a bare number is seconds).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the response as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
pub struct KvArgs {
    #[command(flatten)]
    connection: Connection,
    /// The tenant the key belongs to.
    #[arg(long, global = true, default_value = "default")]
    tenant: String,
    /// How many replicas must answer before the coordinator does.
    #[arg(long, global = true, value_enum, default_value_t = Consistency::Quorum)]
    consistency: Consistency,
    /// Also print the key, replica count and vector clock of `get` (on stderr).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    op: KvOp,
}

#[derive(Subcommand)]
enum KvOp {
    /// Store VALUE (or the bytes of --value-file) under KEY.
    Put {
        /// The key (UTF-8).
        key: String,
        /// The value, as given (bytes, not necessarily UTF-8).
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<OsString>,
        /// Read the value from this file instead; `-` reads stdin.
        #[arg(long)]
        value_file: Option<PathBuf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print the value of KEY on stdout (raw bytes) and its vector clock on stderr.
    Get {
        /// The key (UTF-8).
        key: String,
    },
    /// Delete KEY (writes a tombstone).
    Delete {
        /// The key (UTF-8).
        key: String,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Options shared by the two writes, `put` and `delete`.
#[derive(Args)]
struct WriteArgs {
    /// Makes a retry of this request apply once; a retry reports itself as a duplicate.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The version this write supersedes, as printed by `get`: ACTOR=COUNTER,ACTOR=COUNTER.
    #[arg(long, value_parser = parse_clock)]
    vector_clock: Option<api::VectorClock>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Consistency {
    One,
    Quorum,
    All,
}

impl From<Consistency> for api::Consistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::One => api::Consistency::One,
            Consistency::Quorum => api::Consistency::Quorum,
            Consistency::All => api::Consistency::All,
        }
    }
}

#[derive(Args)]
pub struct TenantArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: TenantOp,
}

#[derive(Subcommand)]
enum TenantOp {
    /// Create tenant ID.
    Create {
        id: String,
        /// Copies of each key, 1 to 10 (the coordinator's default, 3, when omitted).
        #[arg(long, allow_negative_numbers = true)]
        replication_factor: Option<i32>,
    },
    /// Show tenant ID.
    Get { id: String },
    /// Change tenant ID's replication factor to N.
    SetRf {
        id: String,
        #[arg(allow_negative_numbers = true)]
        n: i32,
    },
}

#[derive(Args)]
pub struct NodeArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: NodeOp,
}

#[derive(Subcommand)]
enum NodeOp {
    /// Add storage node ID at HOST:PORT to the ring.
    Add {
        id: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        /// Ring positions the node owns (the coordinator's default, 150, when omitted).
        #[arg(long)]
        virtual_nodes: Option<i32>,
    },
    /// Remove storage node ID from the ring.
    Remove {
        id: String,
        /// Remove it even if it still holds keys (their copies on it are lost).
        #[arg(long)]
        force: bool,
    },
    /// List the storage nodes with their state, key count and disk usage.
    List,
}

#[derive(Args)]
pub struct MigrationArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: MigrationOp,
}

#[derive(Subcommand)]
enum MigrationOp {
    /// Show migration ID (as returned by `tenant set-rf`, `node add` and `node remove`).
    Status { id: String },
}

/// Runs one client subcommand and returns the process exit code.
pub fn run(command: ClientCommand) -> i32 {
    let result = match command {
        ClientCommand::Kv(args) => run_kv(args),
        ClientCommand::Tenant(args) => run_tenant(args),
        ClientCommand::Node(args) => run_node(args),
        ClientCommand::Migration(args) => run_migration(args),
    };
    let code = match result {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    };
    let _ = io::stdout().flush();
    code
}

// ------------------------------------------------------------------------------------------------
// Commands.
// ------------------------------------------------------------------------------------------------

fn run_kv(args: KvArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    let consistency = api::Consistency::from(args.consistency) as i32;
    match args.op {
        KvOp::Put { key, value, value_file, write } => {
            let value = match (value, value_file) {
                (Some(v), _) => os_bytes(v),
                (None, Some(path)) => read_value(&path)?,
                // VALUE is required unless --value-file is present: clap rejected neither.
                (None, None) => unreachable!("clap requires VALUE or --value-file"),
            };
            let req = api::WriteKeyValueRequest {
                tenant_id: args.tenant,
                key,
                value: value.into(),
                consistency,
                idempotency_key: write.idempotency_key.unwrap_or_default(),
                vector_clock: write.vector_clock,
            };
            let resp: api::WriteKeyValueResponse = call(conn, "WriteKeyValue", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("key", Json::str(&resp.key)),
                    ("idempotency_key", Json::str(&resp.idempotency_key)),
                    ("vector_clock", clock_json(resp.vector_clock.as_ref())),
                    ("replica_count", Json::Int(resp.replica_count.into())),
                    ("consistency", Json::str(consistency_name(resp.consistency))),
                    ("is_duplicate", Json::Bool(resp.is_duplicate)),
                ]));
            }
            print_out(&format!(
                "ok ({}{}, idempotency key {}, clock {})\n",
                if resp.is_duplicate { "duplicate of an earlier request, " } else { "" },
                replicas(resp.replica_count),
                resp.idempotency_key,
                clock_text(resp.vector_clock.as_ref()),
            ))
        }
        KvOp::Get { key } => {
            let req = api::ReadKeyValueRequest { tenant_id: args.tenant, key, consistency };
            let resp: api::ReadKeyValueResponse = call(conn, "ReadKeyValue", req)?;
            if conn.json {
                let text = std::str::from_utf8(&resp.value).map(Json::str).unwrap_or(Json::Null);
                return print_json(&Json::obj([
                    ("key", Json::str(&resp.key)),
                    ("value", text),
                    ("value_base64", Json::Str(base64(&resp.value))),
                    ("vector_clock", clock_json(resp.vector_clock.as_ref())),
                    ("replica_count", Json::Int(resp.replica_count.into())),
                ]));
            }
            let mut stdout = io::stdout().lock();
            write_or_pipe_closed(&mut stdout, &resp.value)?;
            // Raw bytes exactly when redirected; a terminal also gets the missing newline.
            if io::stdout().is_terminal() && !resp.value.ends_with(b"\n") {
                write_or_pipe_closed(&mut stdout, b"\n")?;
            }
            drop(stdout);
            let clock = clock_text(resp.vector_clock.as_ref());
            if args.verbose {
                eprintln!("key {:?}, {}, clock {clock}", resp.key, replicas(resp.replica_count));
            } else {
                eprintln!("clock {clock}");
            }
            Ok(())
        }
        KvOp::Delete { key, write } => {
            let req = api::DeleteKeyValueRequest {
                tenant_id: args.tenant,
                key,
                consistency,
                idempotency_key: write.idempotency_key.unwrap_or_default(),
                vector_clock: write.vector_clock,
            };
            let resp: api::DeleteKeyValueResponse = call(conn, "DeleteKeyValue", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("key", Json::str(&resp.key)),
                    ("idempotency_key", Json::str(&resp.idempotency_key)),
                    ("vector_clock", clock_json(resp.vector_clock.as_ref())),
                    ("replica_count", Json::Int(resp.replica_count.into())),
                    ("is_duplicate", Json::Bool(resp.is_duplicate)),
                ]));
            }
            print_out(&format!(
                "deleted ({}{}, idempotency key {}, clock {})\n",
                if resp.is_duplicate { "duplicate of an earlier request, " } else { "" },
                replicas(resp.replica_count),
                resp.idempotency_key,
                clock_text(resp.vector_clock.as_ref()),
            ))
        }
    }
}

fn run_tenant(args: TenantArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    match args.op {
        TenantOp::Create { id, replication_factor } => {
            let req = api::CreateTenantRequest {
                tenant_id: id,
                replication_factor: replication_factor.unwrap_or(0),
            };
            let resp: api::CreateTenantResponse = call(conn, "CreateTenant", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("replication_factor", Json::Int(resp.replication_factor.into())),
                    ("created_at", Json::Int(resp.created_at)),
                ]));
            }
            print_out(&format!(
                "created tenant {} (replication factor {})\n",
                resp.tenant_id, resp.replication_factor
            ))
        }
        TenantOp::Get { id } => {
            let req = api::GetTenantRequest { tenant_id: id };
            let resp: api::GetTenantResponse = call(conn, "GetTenant", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("replication_factor", Json::Int(resp.replication_factor.into())),
                    ("created_at", Json::Int(resp.created_at)),
                    ("updated_at", Json::Int(resp.updated_at)),
                ]));
            }
            print_out(&format!(
                "tenant {}\n  replication factor: {}\n  created at:         {}\n  \
                 updated at:         {}\n",
                resp.tenant_id,
                resp.replication_factor,
                unix_time(resp.created_at),
                unix_time(resp.updated_at),
            ))
        }
        TenantOp::SetRf { id, n } => {
            let req =
                api::UpdateReplicationFactorRequest { tenant_id: id, new_replication_factor: n };
            let resp: api::UpdateReplicationFactorResponse =
                call(conn, "UpdateReplicationFactor", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("old_replication_factor", Json::Int(resp.old_replication_factor.into())),
                    ("new_replication_factor", Json::Int(resp.new_replication_factor.into())),
                    ("migration_id", Json::str(&resp.migration_id)),
                    ("updated_at", Json::Int(resp.updated_at)),
                ]));
            }
            print_out(&format!(
                "tenant {}: replication factor {} -> {} (migration {})\n",
                resp.tenant_id,
                resp.old_replication_factor,
                resp.new_replication_factor,
                resp.migration_id
            ))
        }
    }
}

fn run_node(args: NodeArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    match args.op {
        NodeOp::Add { id, host, port, virtual_nodes } => {
            let req = api::AddStorageNodeRequest {
                node_id: id,
                host,
                port: port.into(),
                virtual_nodes: virtual_nodes.unwrap_or(0),
            };
            let resp: api::AddStorageNodeResponse = call(conn, "AddStorageNode", req)?;
            print_node_change("added", &resp.node_id, &resp.migration_id, &resp.message, conn)
        }
        NodeOp::Remove { id, force } => {
            let req = api::RemoveStorageNodeRequest { node_id: id, force };
            let resp: api::RemoveStorageNodeResponse = call(conn, "RemoveStorageNode", req)?;
            print_node_change("removed", &resp.node_id, &resp.migration_id, &resp.message, conn)
        }
        NodeOp::List => {
            let resp: api::ListStorageNodesResponse =
                call(conn, "ListStorageNodes", api::ListStorageNodesRequest {})?;
            if conn.json {
                let nodes = resp.nodes.iter().map(|n| {
                    Json::obj([
                        ("node_id", Json::str(&n.node_id)),
                        ("host", Json::str(&n.host)),
                        ("port", Json::Int(n.port.into())),
                        ("status", Json::str(&n.status)),
                        ("virtual_nodes", Json::Int(n.virtual_nodes.into())),
                        ("keys_count", Json::Int(n.keys_count)),
                        ("disk_usage_percent", Json::Float(n.disk_usage_percent)),
                    ])
                });
                return print_json(&Json::obj([("nodes", Json::Arr(nodes.collect()))]));
            }
            print_out(&node_table(&resp.nodes))
        }
    }
}

fn print_node_change(
    verb: &str,
    node_id: &str,
    migration_id: &str,
    message: &str,
    conn: &Connection,
) -> Result<(), Failure> {
    if conn.json {
        return print_json(&Json::obj([
            ("node_id", Json::str(node_id)),
            ("migration_id", Json::str(migration_id)),
            ("message", Json::str(message)),
        ]));
    }
    print_out(&format!("{verb} node {node_id} (migration {migration_id}): {message}\n"))
}

/// The `node list` table. Stats the coordinator could not fetch (-1 on the wire) show as `?`.
fn node_table(nodes: &[api::StorageNodeInfo]) -> String {
    let header = ["NODE", "ADDRESS", "STATUS", "VNODES", "KEYS", "DISK"];
    let rows: Vec<[String; 6]> = nodes
        .iter()
        .map(|n| {
            [
                n.node_id.clone(),
                format!("{}:{}", n.host, n.port),
                n.status.clone(),
                n.virtual_nodes.to_string(),
                if n.keys_count < 0 { "?".into() } else { n.keys_count.to_string() },
                if n.disk_usage_percent < 0.0 {
                    "?".into()
                } else {
                    format!("{:.1}%", n.disk_usage_percent)
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns align left, numbers right.
            let _ = if i < 3 { write!(text, "{cell:<w$}  ") } else { write!(text, "{cell:>w$}  ") };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn run_migration(args: MigrationArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    let MigrationOp::Status { id } = args.op;
    let req = api::GetMigrationStatusRequest { migration_id: id };
    let resp: api::GetMigrationStatusResponse = call(conn, "GetMigrationStatus", req)?;
    let progress = resp.progress.unwrap_or_default();
    if conn.json {
        return print_json(&Json::obj([
            ("migration_id", Json::str(&resp.migration_id)),
            ("migration_type", Json::str(&resp.migration_type)),
            ("node_id", Json::str(&resp.node_id)),
            ("status", Json::str(&resp.status)),
            (
                "progress",
                Json::obj([
                    ("keys_migrated", Json::Int(progress.keys_migrated)),
                    ("total_keys", Json::Int(progress.total_keys)),
                    ("percentage", Json::Float(progress.percentage)),
                ]),
            ),
            ("started_at", Json::Int(resp.started_at)),
            ("completed_at", Json::Int(resp.completed_at)),
            ("error_message", Json::str(&resp.error_message)),
        ]));
    }
    let mut out = format!(
        "migration {}\n  type:      {}\n  node:      {}\n  status:    {}\n  \
         progress:  {}/{} keys ({:.1}%)\n  started:   {}\n  completed: {}\n",
        resp.migration_id,
        resp.migration_type,
        resp.node_id,
        resp.status,
        progress.keys_migrated,
        progress.total_keys,
        progress.percentage,
        unix_time(resp.started_at),
        unix_time(resp.completed_at),
    );
    if !resp.error_message.is_empty() {
        let _ = writeln!(out, "  error:     {}", resp.error_message);
    }
    print_out(&out)
}

// ------------------------------------------------------------------------------------------------
// The call.
// ------------------------------------------------------------------------------------------------

/// Why a command failed; decides the message and the exit code.
#[derive(Debug)]
enum Failure {
    /// No connection to `addr` could be made.
    NoConnection { addr: String, reason: String },
    /// The coordinator answered with an error status (or the call timed out).
    Status(Status),
    /// Something on this machine failed: reading the value, writing stdout, the executor.
    Local(String),
}

impl Failure {
    fn exit_code(&self) -> i32 {
        match self {
            Failure::NoConnection { .. } => EXIT_NO_CONNECTION,
            Failure::Status(_) | Failure::Local(_) => EXIT_FAILED,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoConnection { addr, reason } => {
                write!(f, "cannot connect to {addr}: {reason} (is `pairdb dev` running?)")
            }
            // `CODE [PAIRDB_ERROR_CODE]: message`, as `Status` displays itself.
            Failure::Status(status) => write!(f, "{status}"),
            Failure::Local(message) => f.write_str(message),
        }
    }
}

/// Calls `method` once on a fresh connection, from a glommio executor thread of its own (the
/// client only runs inside one), within `conn.timeout` in total.
fn call<Req, Resp>(conn: &Connection, method: &str, req: Req) -> Result<Resp, Failure>
where
    Req: Message + Send + 'static,
    Resp: Message + Default + Send + 'static,
{
    let started = Instant::now();
    let addr = conn.addr.clone();
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Failure::NoConnection { addr: addr.clone(), reason: e.to_string() })?
        .collect();
    let timeout = conn.timeout;
    let path = format!("{SERVICE}{method}");
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("pairdb-cli")
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            let config = ClientConfig { connect_timeout: timeout, ..ClientConfig::default() };
            // `localhost` may resolve to ::1 first while the server listens on 127.0.0.1 only.
            let mut reason = String::from("the address resolves to nothing");
            let mut channel = None;
            for candidate in candidates {
                match Channel::connect(candidate, &config).await {
                    Ok(c) => {
                        channel = Some(c);
                        break;
                    }
                    Err(status) => {
                        // Drop the client's own "connect to ADDR: " prefix; we name the address.
                        let prefix = format!("connect to {candidate}: ");
                        reason =
                            status.message.strip_prefix(&prefix).unwrap_or(&status.message).into();
                    }
                }
            }
            let Some(channel) = channel else {
                return Err(Failure::NoConnection { addr, reason });
            };
            // At least a millisecond, so a connect that used up the budget still gets an answer.
            let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
            channel.unary(&path, &req, Some(left)).await.map_err(Failure::Status)
        })
        .map_err(|e| Failure::Local(format!("cannot start the client executor: {e}")))?;
    handle.join().map_err(|e| Failure::Local(format!("client executor failed: {e}")))?
}

// ------------------------------------------------------------------------------------------------
// Input.
// ------------------------------------------------------------------------------------------------

/// Accepts `HOST:PORT`, `[V6]:PORT` and `http://HOST:PORT[/]`; returns `HOST:PORT`.
fn parse_addr(s: &str) -> Result<String, String> {
    if s.starts_with("https://") {
        return Err("TLS is not supported; use http://HOST:PORT or HOST:PORT".into());
    }
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').ok_or("expected HOST:PORT")?;
    if host.is_empty() || host.contains('/') {
        return Err("expected HOST:PORT".into());
    }
    port.parse::<u16>().map_err(|e| format!("bad port {port:?}: {e}"))?;
    Ok(hostport.to_owned())
}

/// `5s`, `500ms`, `2m`, `100us`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("expected a duration like 5s, got {s:?}"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use us, ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration"))
}

/// `ACTOR=COUNTER,ACTOR=COUNTER`, the form [`clock_text`] prints. Actors may contain `=`: the
/// counter is after the last one.
fn parse_clock(s: &str) -> Result<api::VectorClock, String> {
    let mut entries = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (actor, counter) =
            part.rsplit_once('=').ok_or_else(|| format!("{part:?} is not ACTOR=COUNTER"))?;
        if actor.is_empty() {
            return Err(format!("{part:?} has an empty actor"));
        }
        let counter: i64 = counter
            .parse()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| format!("{part:?}: the counter must be a number from 0"))?;
        entries.push(api::VectorClockEntry {
            coordinator_node_id: actor.to_owned(),
            logical_timestamp: counter,
        });
    }
    Ok(api::VectorClock { entries })
}

/// The bytes of a command-line argument, as the OS passed them.
fn os_bytes(s: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt as _;
    s.into_vec()
}

fn read_value(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    if path.as_os_str() == "-" {
        let mut value = Vec::new();
        io::stdin()
            .read_to_end(&mut value)
            .map_err(|e| Failure::Local(format!("cannot read the value from stdin: {e}")))?;
        return Ok(value);
    }
    std::fs::read(path)
        .map_err(|e| Failure::Local(format!("cannot read the value from {}: {e}", path.display())))
}

// ------------------------------------------------------------------------------------------------
// Output.
// ------------------------------------------------------------------------------------------------

fn print_out(text: &str) -> Result<(), Failure> {
    write_or_pipe_closed(&mut io::stdout().lock(), text.as_bytes())
}

fn print_json(value: &Json) -> Result<(), Failure> {
    print_out(&format!("{value}\n"))
}

/// Writes `bytes`; a reader that went away (`pairdb kv get k | head -c 10`) is not an error.
fn write_or_pipe_closed(out: &mut impl io::Write, bytes: &[u8]) -> Result<(), Failure> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::Local(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn replicas(n: i32) -> String {
    if n == 1 {
        "1 replica".into()
    } else {
        format!("{n} replicas")
    }
}

/// `ACTOR=COUNTER,...`, which `--vector-clock` accepts back.
fn clock_text(clock: Option<&api::VectorClock>) -> String {
    let entries = clock.map(|c| c.entries.as_slice()).unwrap_or_default();
    if entries.is_empty() {
        return "(empty)".into();
    }
    let parts: Vec<String> = entries
        .iter()
        .map(|e| format!("{}={}", e.coordinator_node_id, e.logical_timestamp))
        .collect();
    parts.join(",")
}

/// A clock as a JSON object from actor to counter.
fn clock_json(clock: Option<&api::VectorClock>) -> Json {
    let entries = clock.map(|c| c.entries.as_slice()).unwrap_or_default();
    Json::Obj(
        entries
            .iter()
            .map(|e| (e.coordinator_node_id.clone(), Json::Int(e.logical_timestamp)))
            .collect(),
    )
}

fn consistency_name(c: i32) -> &'static str {
    match api::Consistency::try_from(c) {
        Ok(api::Consistency::One) => "ONE",
        Ok(api::Consistency::All) => "ALL",
        // Unspecified means QUORUM on the wire.
        Ok(api::Consistency::Quorum | api::Consistency::Unspecified) => "QUORUM",
        Err(_) => "UNKNOWN",
    }
}

/// Unix seconds as RFC 3339 UTC; `-` for 0 (never set).
fn unix_time(secs: i64) -> String {
    if secs == 0 {
        return "-".into();
    }
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: proleptic Gregorian date of a day count from 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Standard base64 with padding, for values that are not UTF-8 in `--json` output.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Just enough JSON for the replies: objects keep their field order.
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(n) => write!(f, "{n}"),
            // JSON has no NaN or infinity.
            Json::Float(x) if !x.is_finite() => f.write_str("null"),
            Json::Float(x) => write!(f, "{x}"),
            Json::Str(s) => write_json_string(f, s),
            Json::Arr(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Obj(fields) => {
                f.write_char('{')?;
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_json_string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cases = [
            ("127.0.0.1:50051", Ok("127.0.0.1:50051")),
            ("http://localhost:7000", Ok("localhost:7000")),
            ("http://[::1]:7000/", Ok("[::1]:7000")),
            ("localhost", Err(())),
            ("https://h:1", Err(())),
            ("h:99999", Err(())),
        ];
        for (input, want) in cases {
            let got = parse_addr(input);
            assert_eq!(got.as_deref().map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("5s", Some(Duration::from_secs(5))),
            ("5", Some(Duration::from_secs(5))),
            ("250ms", Some(Duration::from_millis(250))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("2m", Some(Duration::from_secs(120))),
            ("0s", None),
            ("5h", None),
            ("s", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok(), want, "{input}");
        }
    }

    #[test]
    fn clocks_round_trip_through_text() {
        let text = "coord-1/0=3,coord-2/1=12";
        let clock = parse_clock(text).unwrap();
        assert_eq!(clock.entries.len(), 2);
        assert_eq!(clock_text(Some(&clock)), text);
        assert!(parse_clock("a=-1").is_err());
        assert!(parse_clock("=1").is_err());
        assert!(parse_clock("a").is_err());
        assert_eq!(parse_clock("").unwrap().entries.len(), 0);
    }

    #[test]
    fn json_rendering() {
        let value = Json::obj([
            ("s", Json::str("a\"b\\c\n\u{1}é")),
            ("n", Json::Int(-3)),
            ("x", Json::Float(f64::NAN)),
            ("a", Json::Arr(vec![Json::Bool(true), Json::Null, Json::Float(12.5)])),
        ]);
        let want = r#"{"s":"a\"b\\c\n\u0001é","n":-3,"x":null,"a":[true,null,12.5]}"#;
        assert_eq!(value.to_string(), want);
    }

    #[test]
    fn base64_matches_rfc4648() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn unix_times() {
        assert_eq!(unix_time(0), "-");
        assert_eq!(unix_time(1), "1970-01-01T00:00:01Z");
        assert_eq!(unix_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
