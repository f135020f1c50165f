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
    config::{self, CoordinatorConfig, LogConfig, LogFormat, StorageConfig, StorageNodeEntry},
    coordinator::server::Coordinator,
    runtime::{
        listen,
        pool::{self, PoolConfig},
        shutdown::Shutdown,
        signals,
    },
    storage::node::StorageNode,
};

mod cli;

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
    Storage(StorageArgs),
    /// Run a coordinator (serves pairdb.coordinator.v1.CoordinatorService).
    Coordinator(CoordinatorArgs),
    /// Run a local cluster: a coordinator and three storage nodes on loopback, tenant `default`.
    Dev(DevArgs),
    /// Exit 0 when an admin URL answers 200 (for container health checks; no curl needed).
    Probe(ProbeArgs),
    /// Client commands: `kv`, `tenant`, `node`, `migration` (call a running coordinator).
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Args)]
struct CoordinatorArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A storage node to register, as ID=HOST:PORT (repeatable; replaces the config file's list).
    #[arg(long = "storage-node", value_parser = parse_node)]
    storage_nodes: Vec<StorageNodeEntry>,
    /// Send storage operations one RPC each instead of as Batch calls (for comparison).
    #[arg(long)]
    no_batching: bool,
}

/// Flags every server role takes; each overrides the config key of the same name.
#[derive(Args)]
struct ServerArgs {
    /// YAML config file (config/storage.yaml or config/coordinator.yaml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This server's id (a coordinator's cores are the vector-clock actors `{id}/{core}`).
    #[arg(long)]
    node_id: Option<String>,
    /// Address to listen on.
    #[arg(long)]
    host: Option<String>,
    /// gRPC port (0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory (a storage node's engine, a coordinator's embedded metadata database).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Executors, one per core (0 = one per allowed CPU).
    #[arg(long)]
    cores: Option<usize>,
    /// Admin HTTP port for /metrics and /health/{live,ready} (0 picks a free one).
    #[arg(long)]
    admin_port: Option<u16>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

impl ServerArgs {
    /// Writes the flags that were given over the loaded config's values.
    fn apply(
        &self,
        node_id: &mut String,
        host: &mut String,
        port: &mut u16,
        data_dir: &mut PathBuf,
        cores: &mut usize,
        admin_port: &mut Option<u16>,
    ) {
        if let Some(v) = &self.node_id {
            node_id.clone_from(v);
        }
        if let Some(v) = &self.host {
            host.clone_from(v);
        }
        if let Some(v) = self.port {
            *port = v;
        }
        if let Some(v) = &self.data_dir {
            data_dir.clone_from(v);
        }
        if let Some(v) = self.cores {
            *cores = v;
        }
        if let Some(v) = self.admin_port {
            *admin_port = Some(v);
        }
    }
}

#[derive(Args)]
struct ProbeArgs {
    /// The URL to GET: http://HOST:PORT/PATH (the admin port's /health/ready or /health/live).
    #[arg(long, env = "PAIRDB_PROBE_URL", default_value = "http://127.0.0.1:9090/health/ready")]
    url: String,
    /// How long to wait for the answer, milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

#[derive(Args)]
struct DevArgs {
    /// Where the cluster keeps its data (default: pairdb-dev in the system temp directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The coordinator's gRPC port; the storage nodes take the next free ports.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Executors, one per core (0 = one per allowed CPU).
    #[arg(long, default_value_t = 0)]
    cores: usize,
    /// Send storage operations one RPC each instead of as Batch calls (for comparison).
    #[arg(long)]
    no_batching: bool,
    /// The coordinator's admin HTTP port for /metrics and /health/{live,ready} (default 0:
    /// a free one, printed at start).
    #[arg(long, default_value_t = 0)]
    admin_port: u16,
}

fn parse_node(s: &str) -> Result<StorageNodeEntry, String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=HOST:PORT")?;
    let (host, port) = addr.rsplit_once(':').ok_or("expected ID=HOST:PORT")?;
    let port = port.parse().map_err(|e| format!("bad port {port:?}: {e}"))?;
    Ok(StorageNodeEntry {
        node_id: id.into(),
        host: host.into(),
        port,
        virtual_nodes: pairdb::core::ring::DEFAULT_VIRTUAL_NODES,
    })
}

#[derive(Args)]
struct StorageArgs {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Servers install the logger once their config (log.format, log.level) is loaded.
    match cli.command {
        Command::Storage(args) => run_storage(args),
        Command::Coordinator(args) => run_coordinator(args),
        Command::Dev(args) => {
            init_logging(&LogConfig::default())?;
            run_dev(args)
        }
        Command::Probe(args) => std::process::exit(run_probe(&args)),
        Command::Client(command) => {
            init_logging(&LogConfig::default())?;
            std::process::exit(cli::run(command))
        }
    }
}

/// `pairdb probe`: 0 when the URL answers 200, 1 otherwise (with the reason on stderr).
fn run_probe(args: &ProbeArgs) -> i32 {
    let parsed = args.url.strip_prefix("http://").and_then(|rest| {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        use std::net::ToSocketAddrs as _;
        let addr = authority.to_socket_addrs().ok()?.next()?;
        Some((addr, if path.is_empty() { "/" } else { path }))
    });
    let Some((addr, path)) = parsed else {
        eprintln!("cannot use {:?}: expected http://HOST:PORT/PATH", args.url);
        return 2;
    };
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    match pairdb::admin::get(addr, path, timeout) {
        Ok((200, body)) => {
            print!("{body}");
            0
        }
        Ok((status, body)) => {
            eprintln!("{} answered {status}: {}", args.url, body.trim_end());
            1
        }
        Err(e) => {
            eprintln!("{}: {e}", args.url);
            1
        }
    }
}

/// Logs to stderr in `log.format`, filtered by `PAIRDB_LOG` when set, else by `log.level`.
fn init_logging(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("PAIRDB_LOG") {
        Ok(directive) => tracing_subscriber::EnvFilter::try_new(&directive)
            .with_context(|| format!("PAIRDB_LOG={directive:?} is not a log filter"))?,
        Err(_) => tracing_subscriber::EnvFilter::try_new(&log.level)
            .with_context(|| format!("log.level {:?} is not a log filter", log.level))?,
    };
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Json => logger.json().try_init(),
        LogFormat::Text => logger.try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

fn run_storage(args: StorageArgs) -> anyhow::Result<()> {
    let mut cfg: StorageConfig = config::load(args.server.config.as_deref())?;
    let c = &mut cfg;
    args.server.apply(
        &mut c.node_id,
        &mut c.host,
        &mut c.port,
        &mut c.data_dir,
        &mut c.cores,
        &mut c.admin.port,
    );
    cfg.validate()?;
    init_logging(&cfg.log)?;
    if args.server.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let shutdown = Shutdown::new();
    signals::install(shutdown.clone()).context("installing signal handling")?;
    let reservation = listen::reserve(cfg.listen_addr()?).context("binding the gRPC port")?;
    let node = StorageNode::open(&cfg, reservation.addr)
        .with_context(|| format!("opening the engine in {}", cfg.data_dir.display()))?;
    let admin = start_admin(cfg.admin.enabled, cfg.admin_addr()?, node.admin_source())?;
    let pool_cfg =
        PoolConfig { cores: cfg.cores, name: "pairdb-storage".into(), ..Default::default() };
    let cores = pool_cfg.effective_cores();
    let bound = Arc::new(AtomicUsize::new(0));
    let entry_node = node.clone();
    let node_id = cfg.node_id.clone();
    let reservation = Arc::new(std::sync::Mutex::new(Some(reservation)));
    pool::run_per_core(&pool_cfg, move |core| {
        let (node, shutdown, bound, node_id, reservation, admin) = (
            entry_node.clone(),
            shutdown.clone(),
            bound.clone(),
            node_id.clone(),
            reservation.clone(),
            admin.clone(),
        );
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
                // Every core listens: release the port reservation and announce the address.
                reservation.lock().map(|mut r| r.take()).ok();
                println!(
                    "pairdb storage {node_id} listening on {} ({cores} cores){admin}",
                    node.addr()
                );
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

fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let mut cfg: CoordinatorConfig = config::load(args.server.config.as_deref())?;
    let c = &mut cfg;
    args.server.apply(
        &mut c.node_id,
        &mut c.host,
        &mut c.port,
        &mut c.data_dir,
        &mut c.cores,
        &mut c.admin.port,
    );
    if !args.storage_nodes.is_empty() {
        cfg.storage_nodes = args.storage_nodes;
    }
    if args.no_batching {
        cfg.batching = false;
    }
    cfg.validate()?;
    init_logging(&cfg.log)?;
    if args.server.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let shutdown = Shutdown::new();
    signals::install(shutdown.clone()).context("installing signal handling")?;
    let reservation = listen::reserve(cfg.listen_addr()?).context("binding the gRPC port")?;
    let pool_cfg =
        PoolConfig { cores: cfg.cores, name: "pairdb-coord".into(), ..Default::default() };
    let cores = pool_cfg.effective_cores();
    let node_id = cfg.node_id.clone();
    let data_dir = cfg.data_dir.clone();
    let (admin_enabled, admin_addr) = (cfg.admin.enabled, cfg.admin_addr()?);
    let coordinator = Coordinator::open(cfg, reservation.addr, cores)
        .with_context(|| format!("opening the metadata store in {}", data_dir.display()))?;
    let admin = start_admin(admin_enabled, admin_addr, coordinator.admin_source())?;
    let announce = Announce::new(
        cores,
        reservation,
        format!(
            "pairdb coordinator {node_id} listening on {} ({cores} cores){admin}",
            coordinator.addr()
        ),
    );
    pool::run_per_core(&pool_cfg, move |core| {
        let (coordinator, shutdown, announce) =
            (coordinator.clone(), shutdown.clone(), announce.clone());
        async move {
            let listener = match coordinator.bind() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(core, error = %e, "cannot bind; shutting down");
                    shutdown.trigger();
                    return;
                }
            };
            announce.bound();
            coordinator.serve_core(core, listener, shutdown).await;
        }
    })?;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Binds the admin HTTP port and serves it from a thread of its own. Returns the suffix for the
/// ready line (`, admin on http://ADDR`), empty when disabled.
fn start_admin(
    enabled: bool,
    addr: std::net::SocketAddr,
    source: pairdb::admin::AdminSource,
) -> anyhow::Result<String> {
    if !enabled {
        return Ok(String::new());
    }
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the admin port {addr} (admin.port, --admin-port)"))?;
    let bound = listener.local_addr()?;
    pairdb::admin::spawn(listener, Arc::new(source)).context("starting the admin thread")?;
    Ok(format!(", admin on http://{bound}"))
}

/// Prints the ready line once every core has bound, and releases the port reservation then.
#[derive(Clone)]
struct Announce {
    inner: Arc<(AtomicUsize, usize, std::sync::Mutex<Vec<listen::Reservation>>, String)>,
}

impl Announce {
    fn new(cores: usize, reservation: listen::Reservation, line: String) -> Self {
        Self::many(cores, vec![reservation], line)
    }

    fn many(cores: usize, reservations: Vec<listen::Reservation>, line: String) -> Self {
        Self {
            inner: Arc::new((
                AtomicUsize::new(0),
                cores,
                std::sync::Mutex::new(reservations),
                line,
            )),
        }
    }

    fn bound(&self) {
        let (count, cores, reservations, line) = &*self.inner;
        if count.fetch_add(1, Ordering::SeqCst) + 1 == *cores {
            if let Ok(mut r) = reservations.lock() {
                r.clear();
            }
            println!("{line}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        }
    }
}

fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| std::env::temp_dir().join("pairdb-dev"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let shutdown = Shutdown::new();
    signals::install(shutdown.clone()).context("installing signal handling")?;
    let coordinator_reservation =
        listen::reserve(std::net::SocketAddr::from(([127, 0, 0, 1], args.port)))
            .with_context(|| format!("port {} is taken; pass --port", args.port))?;
    // Storage nodes: the next free ports after the coordinator's.
    let mut storage = Vec::new();
    let mut reservations = Vec::new();
    let mut next_port = coordinator_reservation.addr.port().saturating_add(1);
    for i in 1..=3 {
        let reservation = loop {
            if next_port == u16::MAX {
                anyhow::bail!("no free port for storage node {i}");
            }
            let candidate = std::net::SocketAddr::from(([127, 0, 0, 1], next_port));
            next_port += 1;
            if let Ok(r) = listen::reserve(candidate) {
                break r;
            }
        };
        let cfg = StorageConfig {
            node_id: format!("storage-{i}"),
            port: reservation.addr.port(),
            data_dir: data_dir.join(format!("storage-{i}")),
            ..StorageConfig::default()
        };
        let node = StorageNode::open(&cfg, reservation.addr)
            .with_context(|| format!("opening storage node {i} in {}", cfg.data_dir.display()))?;
        storage.push((cfg, node));
        reservations.push(reservation);
    }
    let coordinator_cfg = CoordinatorConfig {
        port: coordinator_reservation.addr.port(),
        data_dir: data_dir.join("coordinator"),
        cores: args.cores,
        batching: !args.no_batching,
        storage_nodes: storage
            .iter()
            .map(|(cfg, _)| StorageNodeEntry {
                node_id: cfg.node_id.clone(),
                host: cfg.host.clone(),
                port: cfg.port,
                virtual_nodes: pairdb::core::ring::DEFAULT_VIRTUAL_NODES,
            })
            .collect(),
        ..CoordinatorConfig::default()
    };
    coordinator_cfg.validate()?;
    let pool_cfg =
        PoolConfig { cores: args.cores, name: "pairdb-dev".into(), ..Default::default() };
    let cores = pool_cfg.effective_cores();
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.admin_port));
    let coordinator = Coordinator::open(coordinator_cfg, coordinator_reservation.addr, cores)
        .context("opening the coordinator's metadata store")?;
    let admin = start_admin(true, admin_addr, coordinator.admin_source())?;
    if coordinator.ensure_tenant("default", 3)? {
        tracing::info!("created tenant default (replication factor 3)");
    }
    let addr = coordinator.addr();
    let nodes: Vec<String> =
        storage.iter().map(|(c, n)| format!("{} on {}", c.node_id, n.addr())).collect();
    reservations.push(coordinator_reservation);
    let line = format!(
        "pairdb dev: coordinator on {addr} ({cores} cores){admin}, storage nodes {}; data in {}\n\
         try:  pairdb kv put --addr {addr} greeting hello && pairdb kv get --addr {addr} greeting\n\
         or:   grpcurl -plaintext -d '{{\"tenant_id\":\"default\",\"key\":\"greeting\"}}' {addr} \
         pairdb.coordinator.v1.CoordinatorService/ReadKeyValue\n\
         load: cargo run --release -p pairdb-loadtest -- --addr {addr} --duration 10s\n\
         press Ctrl-C to stop",
        nodes.join(", "),
        data_dir.display()
    );
    let announce = Announce::many(cores, reservations, line);
    let storage_nodes: Vec<_> = storage.into_iter().map(|(_, n)| n).collect();
    pool::run_per_core(&pool_cfg, move |core| {
        let (coordinator, storage_nodes, shutdown, announce) =
            (coordinator.clone(), storage_nodes.clone(), shutdown.clone(), announce.clone());
        async move {
            let mut serving = Vec::new();
            for node in storage_nodes {
                match node.bind() {
                    Ok(l) => {
                        serving.push(glommio::spawn_local(node.serve_core(l, shutdown.clone())))
                    }
                    Err(e) => {
                        tracing::error!(core, error = %e, "cannot bind a storage node; shutting down");
                        shutdown.trigger();
                        return;
                    }
                }
            }
            let listener = match coordinator.bind() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(core, error = %e, "cannot bind the coordinator; shutting down");
                    shutdown.trigger();
                    return;
                }
            };
            announce.bound();
            coordinator.serve_core(core, listener, shutdown).await;
            for s in serving {
                s.await;
            }
        }
    })?;
    tracing::info!("dev cluster stopped");
    Ok(())
}
