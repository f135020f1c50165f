//! The `pairdb` binary: parses the command line and hands each subcommand to its module.
//!
//! - [`roles`]: the servers, `pairdb storage`, `pairdb coordinator` and `pairdb dev`.
//! - [`cli`]: the client commands (`kv`, `tenant`, `node`, `migration`) and `pairdb probe`.

use clap::{Parser, Subcommand};
use pairdb::config::LogConfig;

mod cli;
mod roles;

/// mimalloc instead of glibc malloc: the request path allocates small, short-lived buffers on
/// every core, and glibc's arenas spent about a fifth of a write's CPU in malloc/free
/// (perf, docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pairdb", version, about = "PairDB: a Dynamo-style, multi-tenant key-value store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a storage node (serves pairdb.storage.v1.StorageService).
    ///
    /// To trust only coordinators, give every storage node and coordinator the same cluster
    /// secret (at least 32 bytes): `rpc.cluster_secret_file` in the config file, or the
    /// PAIRDB_RPC_CLUSTER_SECRET environment variable. The node then refuses storage calls
    /// without `authorization: Bearer <secret>` (UNAUTHENTICATED, UNAUTHORIZED); health checks
    /// and reflection stay open. Mutual TLS does the same with certificates:
    /// `rpc.tls.cert_file`, `rpc.tls.key_file` and `rpc.tls.client_ca_file` (the CA of the
    /// coordinators' client certificates); SIGHUP re-reads the certificate files. See
    /// docs/SECURITY.md.
    Storage(roles::StorageArgs),
    /// Run a coordinator (serves pairdb.coordinator.v1.CoordinatorService).
    Coordinator(roles::CoordinatorArgs),
    /// Run a local cluster: a coordinator and three storage nodes on loopback, tenant `default`.
    Dev(roles::DevArgs),
    /// Exit 0 when an admin URL answers 200 (for container health checks; no curl needed).
    Probe(cli::probe::ProbeArgs),
    /// Client commands: `kv`, `tenant`, `node`, `migration` (call a running coordinator).
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Servers install the logger once their config (log.format, log.level) is loaded.
    match cli.command {
        Command::Storage(args) => roles::run_storage(args),
        Command::Coordinator(args) => roles::run_coordinator(args),
        Command::Dev(args) => {
            roles::init_logging(&LogConfig::default())?;
            roles::run_dev(args)
        }
        Command::Probe(args) => std::process::exit(cli::probe::run(&args)),
        Command::Client(command) => {
            roles::init_logging(&LogConfig::default())?;
            std::process::exit(cli::run(command))
        }
    }
}
