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
//! One file per command ([`kv`], [`tenant`], [`node`], [`migration`]; and [`probe`], which calls
//! the admin port rather than the coordinator's gRPC port); [`input`] parses what the command
//! line gives, [`output`] renders replies; this file holds what they share: the connection
//! flags, the call and the failure that decides the exit code.
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
//! | 1 | the coordinator answered with an error status, a local I/O error, or a watched migration ended FAILED or CANCELLED |
//! | 2 | invalid command line (clap's own exit code) |
//! | 3 | no connection: the address does not resolve or nobody accepts on it |

use std::{
    fmt,
    io::{self, Write as _},
    net::{SocketAddr, ToSocketAddrs as _},
    time::{Duration, Instant},
};

use clap::{Args, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};
use pairdb::rpc::{Channel, ClientConfig, Status};
use prost::Message;

use self::{
    input::{parse_addr, parse_duration},
    kv::KvArgs,
    migration::MigrationArgs,
    node::NodeArgs,
    tenant::TenantArgs,
    token::TokenArgs,
};

mod input;
mod kv;
mod migration;
mod node;
mod output;
pub mod probe;
mod tenant;
mod token;

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
    /// Show, follow, list and cancel migrations.
    Migration(MigrationArgs),
    /// Create, list and revoke bearer tokens (admin token needed).
    Token(TokenArgs),
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
    /// Bearer token sent with every call (`authorization: Bearer <token>`), for a coordinator
    /// with `auth.mode: required`. Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, global = true, env = "PAIRDB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) that the coordinator's certificate must chain to: speak TLS to a
    /// coordinator whose gRPC port has `rpc.tls`. The certificate is checked against the host
    /// of `--addr` (a DNS name or an IP address).
    #[arg(long, global = true, env = "PAIRDB_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
}

/// Runs one client subcommand and returns the process exit code.
pub fn run(command: ClientCommand) -> i32 {
    let result = match command {
        ClientCommand::Kv(args) => kv::run_kv(args),
        ClientCommand::Tenant(args) => tenant::run_tenant(args),
        ClientCommand::Node(args) => node::run_node(args),
        ClientCommand::Migration(args) => migration::run_migration(args),
        ClientCommand::Token(args) => token::run_token(args),
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
    /// The calls worked but what the command waited for ended badly: a watched migration
    /// FAILED or was CANCELLED.
    Outcome(String),
}

impl Failure {
    fn exit_code(&self) -> i32 {
        match self {
            Failure::NoConnection { .. } => EXIT_NO_CONNECTION,
            Failure::Status(_) | Failure::Local(_) | Failure::Outcome(_) => EXIT_FAILED,
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
            Failure::Local(message) | Failure::Outcome(message) => f.write_str(message),
        }
    }
}

/// TLS trusting the CA certificates in `ca`, checking the certificate against the host of
/// `addr` (`HOST:PORT`).
fn client_tls(ca: &std::path::Path, addr: &str) -> Result<pairdb::rpc::tls::ClientTls, String> {
    let roots = pairdb::config::tls::read_roots("--tls-ca", ca).map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(pairdb::config::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![pairdb::config::tls::ALPN_H2.to_vec()];
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("--addr host {host:?} is no TLS server name: {e}"))?;
    Ok(pairdb::rpc::tls::ClientTls::new(std::sync::Arc::new(config), Some(name)))
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
    let token = conn.token.clone();
    let tls = match &conn.tls_ca {
        None => None,
        Some(ca) => Some(client_tls(ca, &addr).map_err(Failure::Local)?),
    };
    let path = format!("{SERVICE}{method}");
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("pairdb-cli")
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            let config = ClientConfig {
                connect_timeout: timeout,
                authorization: token.map(|t| bytes::Bytes::from(format!("Bearer {}", t.trim()))),
                tls,
                ..ClientConfig::default()
            };
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
