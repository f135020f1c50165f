//! The `pairdb` binary: subcommands parse flags, load config, start, wait.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use pairdb::{
    config::{self, StorageConfig},
    runtime::{
        listen,
        pool::{self, PoolConfig},
        shutdown::Shutdown,
        signals,
    },
    storage::node::StorageNode,
};

#[derive(Parser)]
#[command(name = "pairdb", version, about = "PairDB: a Dynamo-style, multi-tenant key-value store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a storage node (serves pairdb.storage.v1.StorageService).
    Storage(StorageArgs),
}

#[derive(Args)]
struct StorageArgs {
    /// YAML config file (see config/storage.yaml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id.
    #[arg(long)]
    node_id: Option<String>,
    /// Address to listen on.
    #[arg(long)]
    host: Option<String>,
    /// gRPC port (0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Executors, one per core (0 = one per allowed CPU).
    #[arg(long)]
    cores: Option<usize>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Storage(args) => run_storage(args),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAIRDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run_storage(args: StorageArgs) -> anyhow::Result<()> {
    let mut cfg: StorageConfig = config::load(args.config.as_deref())?;
    if let Some(v) = args.node_id {
        cfg.node_id = v;
    }
    if let Some(v) = args.host {
        cfg.host = v;
    }
    if let Some(v) = args.port {
        cfg.port = v;
    }
    if let Some(v) = args.data_dir {
        cfg.data_dir = v;
    }
    if let Some(v) = args.cores {
        cfg.cores = v;
    }
    cfg.validate()?;
    if args.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let shutdown = Shutdown::new();
    signals::install(shutdown.clone()).context("installing signal handling")?;
    let reservation = listen::reserve(cfg.listen_addr()?).context("binding the gRPC port")?;
    let node = StorageNode::open(&cfg, reservation.addr)
        .with_context(|| format!("opening the engine in {}", cfg.data_dir.display()))?;
    let pool_cfg = PoolConfig { cores: cfg.cores, name: "pairdb-storage".into(), ..Default::default() };
    let cores = pool_cfg.effective_cores();
    let bound = Arc::new(AtomicUsize::new(0));
    let entry_node = node.clone();
    let node_id = cfg.node_id.clone();
    let reservation = Arc::new(std::sync::Mutex::new(Some(reservation)));
    pool::run_per_core(&pool_cfg, move |core| {
        let (node, shutdown, bound, node_id, reservation) =
            (entry_node.clone(), shutdown.clone(), bound.clone(), node_id.clone(), reservation.clone());
        async move {
            let listener = match node.bind() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(core, error = %e, "cannot bind; shutting down");
                    shutdown.trigger();
                    return;
                }
            };
            if bound.fetch_add(1, Ordering::SeqCst) + 1 == cores {
                // Every core listens: release the placeholder and announce the address.
                reservation.lock().map(|mut r| r.take()).ok();
                println!("pairdb storage {node_id} listening on {} ({cores} cores)", node.addr());
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
            node.serve_core(listener, shutdown).await;
        }
    })?;
    node.sync().context("final journal sync")?;
    tracing::info!("storage node stopped");
    Ok(())
}
