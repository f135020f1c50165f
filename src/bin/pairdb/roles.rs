//! The server subcommands: `pairdb storage`, `pairdb coordinator` and `pairdb dev`.
//!
//! Both roles start the same way, in [`serve`]: load the config file (with the `PAIRDB_*`
//! variables), apply the flags, validate, install the logger, stop there for `--check-config`,
//! install signal handling, reserve the gRPC port, open the role's state, start the admin port,
//! run one executor per core that binds and serves, print the ready line once every core has
//! bound, and after a shutdown let the role finish. A [`Role`] supplies only what differs: its
//! config type, its names and how to open, serve and finish it. `pairdb dev` runs both roles in
//! one pool and shares the pieces ([`start_admin`], [`Announce`], signals) rather than the
//! sequence.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use anyhow::Context as _;
use clap::Args;
use glommio::net::TcpListener;
use pairdb::{
    admin::AdminSource,
    config::{
        self, ConfigError, CoordinatorConfig, LogConfig, LogFormat, StorageConfig, StorageNodeEntry,
    },
    coordinator::server::{Coordinator, CoreListeners},
    runtime::{
        listen,
        pool::{self, PoolConfig},
        shutdown::Shutdown,
        signals,
    },
    storage::node::StorageNode,
};
use serde::de::DeserializeOwned;

#[derive(Args)]
pub struct StorageArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A storage node to register, as ID=HOST:PORT (repeatable; replaces the config file's list).
    #[arg(long = "storage-node", value_parser = parse_node)]
    storage_nodes: Vec<StorageNodeEntry>,
    /// Send storage operations one RPC each instead of as Batch calls (for comparison).
    #[arg(long)]
    no_batching: bool,
    /// Serve the HTTP/JSON API on this port, on the request cores (0 picks a free one; default:
    /// `http_api.port`, unset = no HTTP API).
    #[arg(long)]
    http_port: Option<u16>,
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

/// The config keys of a role that [`ServerArgs`] override.
struct ServerKeys<'a> {
    node_id: &'a mut String,
    host: &'a mut String,
    port: &'a mut u16,
    data_dir: &'a mut PathBuf,
    cores: &'a mut usize,
    admin_port: &'a mut Option<u16>,
}

impl ServerArgs {
    /// Writes the flags that were given over the loaded config's values.
    fn apply(&self, keys: ServerKeys<'_>) {
        if let Some(v) = &self.node_id {
            keys.node_id.clone_from(v);
        }
        if let Some(v) = &self.host {
            keys.host.clone_from(v);
        }
        if let Some(v) = self.port {
            *keys.port = v;
        }
        if let Some(v) = &self.data_dir {
            keys.data_dir.clone_from(v);
        }
        if let Some(v) = self.cores {
            *keys.cores = v;
        }
        if let Some(v) = self.admin_port {
            *keys.admin_port = Some(v);
        }
    }
}

#[derive(Args)]
pub struct DevArgs {
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
    /// Serve the coordinator's HTTP/JSON API on this port (0 picks a free one; default: none).
    #[arg(long)]
    http_port: Option<u16>,
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

/// Logs to stderr in `log.format`, filtered by `PAIRDB_LOG` when set, else by `log.level`.
///
/// Text is coloured only when stderr is a terminal (and `NO_COLOR` is unset or empty): a log
/// redirected to a file, a pipe or a container runtime's collector stays plain text, with no ANSI
/// escapes. JSON is never coloured.
pub fn init_logging(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("PAIRDB_LOG") {
        Ok(directive) => tracing_subscriber::EnvFilter::try_new(&directive)
            .with_context(|| format!("PAIRDB_LOG={directive:?} is not a log filter"))?,
        Err(_) => tracing_subscriber::EnvFilter::try_new(&log.level)
            .with_context(|| format!("log.level {:?} is not a log filter", log.level))?,
    };
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Json => logger.json().with_ansi(false).try_init(),
        LogFormat::Text => logger.with_ansi(colour_stderr()).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Whether text logs on stderr get ANSI colours: only on a terminal, and not under `NO_COLOR`
/// (<https://no-color.org>).
fn colour_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

// ------------------------------------------------------------------------------------------------
// The start sequence both roles share.
// ------------------------------------------------------------------------------------------------

/// What differs between the server roles; everything else is [`serve`].
trait Role {
    /// The role's config file type.
    type Config: DeserializeOwned + Default;
    /// What the role opens once and shares with every core.
    type Server: Send + Sync + 'static;
    /// What one core listens on.
    type Listener: 'static;
    /// The role in the ready line: `pairdb {NAME} {node_id} listening on ...`.
    const NAME: &'static str;
    /// The executor threads' name prefix.
    const THREADS: &'static str;

    /// The keys the common flags override.
    fn keys(cfg: &mut Self::Config) -> ServerKeys<'_>;
    /// Checks ranges, naming the first offending key.
    fn validate(cfg: &Self::Config) -> Result<(), ConfigError>;
    /// The `log:` section.
    fn log(cfg: &Self::Config) -> &LogConfig;
    /// The gRPC address to reserve.
    fn listen_addr(cfg: &Self::Config) -> Result<SocketAddr, ConfigError>;
    /// Whether the admin port is served, and where.
    fn admin(cfg: &Self::Config) -> Result<(bool, SocketAddr), ConfigError>;
    /// Opens the role's state (blocking, before the executors start) on the reserved `addr`.
    fn open(cfg: Self::Config, addr: SocketAddr, cores: usize)
        -> anyhow::Result<Arc<Self::Server>>;
    /// What the admin port serves.
    fn admin_source(server: &Self::Server) -> AdminSource;
    /// The gRPC address served.
    fn addr(server: &Self::Server) -> SocketAddr;
    /// Binds this core's listener.
    fn bind(server: &Self::Server) -> std::io::Result<Self::Listener>;
    /// What the ready line says after the admin address (other ports served); empty by default.
    fn ready_suffix(_server: &Self::Server) -> String {
        String::new()
    }
    /// Serves on core `core` until the shutdown fired and calls drained.
    fn serve_core(
        server: Arc<Self::Server>,
        core: usize,
        listener: Self::Listener,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + 'static;
    /// Runs after every core stopped: final syncs, and the last log line.
    fn finish(server: Arc<Self::Server>) -> anyhow::Result<()>;
}

/// Runs one server role from the command line to its shutdown.
fn serve<R: Role>(args: &ServerArgs, overrides: impl FnOnce(&mut R::Config)) -> anyhow::Result<()> {
    let mut cfg: R::Config = config::load(args.config.as_deref())?;
    args.apply(R::keys(&mut cfg));
    overrides(&mut cfg);
    R::validate(&cfg)?;
    init_logging(R::log(&cfg))?;
    if args.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let shutdown = Shutdown::new();
    signals::install(shutdown.clone()).context("installing signal handling")?;
    let reservation = listen::reserve(R::listen_addr(&cfg)?).context("binding the gRPC port")?;
    let keys = R::keys(&mut cfg);
    let pool_cfg = PoolConfig { cores: *keys.cores, name: R::THREADS.into(), ..Default::default() };
    let cores = pool_cfg.effective_cores();
    let node_id = keys.node_id.clone();
    let (admin_enabled, admin_addr) = R::admin(&cfg)?;
    let server = R::open(cfg, reservation.addr, cores)?;
    let admin = start_admin(admin_enabled, admin_addr, R::admin_source(&server))?;
    let announce = Announce::new(
        cores,
        reservation,
        format!(
            "pairdb {} {node_id} listening on {} ({cores} cores){admin}{}",
            R::NAME,
            R::addr(&server),
            R::ready_suffix(&server)
        ),
    );
    let entry_server = server.clone();
    pool::run_per_core(&pool_cfg, move |core| {
        let (server, shutdown, announce) =
            (entry_server.clone(), shutdown.clone(), announce.clone());
        async move {
            let listener = match R::bind(&server) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(core, error = %e, "cannot bind; shutting down");
                    shutdown.trigger();
                    return;
                }
            };
            announce.bound();
            R::serve_core(server, core, listener, shutdown).await;
        }
    })?;
    R::finish(server)
}

/// `pairdb storage`.
struct Storage;

impl Role for Storage {
    type Config = StorageConfig;
    type Server = StorageNode;
    type Listener = TcpListener;
    const NAME: &'static str = "storage";
    const THREADS: &'static str = "pairdb-storage";

    fn keys(c: &mut StorageConfig) -> ServerKeys<'_> {
        ServerKeys {
            node_id: &mut c.node_id,
            host: &mut c.host,
            port: &mut c.port,
            data_dir: &mut c.data_dir,
            cores: &mut c.cores,
            admin_port: &mut c.admin.port,
        }
    }

    fn validate(cfg: &StorageConfig) -> Result<(), ConfigError> {
        cfg.validate()
    }

    fn log(cfg: &StorageConfig) -> &LogConfig {
        &cfg.log
    }

    fn listen_addr(cfg: &StorageConfig) -> Result<SocketAddr, ConfigError> {
        cfg.listen_addr()
    }

    fn admin(cfg: &StorageConfig) -> Result<(bool, SocketAddr), ConfigError> {
        Ok((cfg.admin.enabled, cfg.admin_addr()?))
    }

    fn open(
        cfg: StorageConfig,
        addr: SocketAddr,
        _cores: usize,
    ) -> anyhow::Result<Arc<StorageNode>> {
        StorageNode::open(&cfg, addr)
            .with_context(|| format!("opening the engine in {}", cfg.data_dir.display()))
    }

    fn admin_source(node: &StorageNode) -> AdminSource {
        node.admin_source()
    }

    fn addr(node: &StorageNode) -> SocketAddr {
        node.addr()
    }

    fn bind(node: &StorageNode) -> std::io::Result<TcpListener> {
        node.bind()
    }

    fn serve_core(
        node: Arc<StorageNode>,
        _core: usize,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + 'static {
        node.serve_core(listener, shutdown)
    }

    fn finish(node: Arc<StorageNode>) -> anyhow::Result<()> {
        node.sync().context("final journal sync")?;
        tracing::info!("storage node stopped");
        Ok(())
    }
}

/// `pairdb coordinator`.
struct CoordinatorRole;

impl Role for CoordinatorRole {
    type Config = CoordinatorConfig;
    type Server = Coordinator;
    type Listener = CoreListeners;
    const NAME: &'static str = "coordinator";
    const THREADS: &'static str = "pairdb-coord";

    fn keys(c: &mut CoordinatorConfig) -> ServerKeys<'_> {
        ServerKeys {
            node_id: &mut c.node_id,
            host: &mut c.host,
            port: &mut c.port,
            data_dir: &mut c.data_dir,
            cores: &mut c.cores,
            admin_port: &mut c.admin.port,
        }
    }

    fn validate(cfg: &CoordinatorConfig) -> Result<(), ConfigError> {
        cfg.validate()
    }

    fn log(cfg: &CoordinatorConfig) -> &LogConfig {
        &cfg.log
    }

    fn listen_addr(cfg: &CoordinatorConfig) -> Result<SocketAddr, ConfigError> {
        cfg.listen_addr()
    }

    fn admin(cfg: &CoordinatorConfig) -> Result<(bool, SocketAddr), ConfigError> {
        Ok((cfg.admin.enabled, cfg.admin_addr()?))
    }

    fn open(
        cfg: CoordinatorConfig,
        addr: SocketAddr,
        cores: usize,
    ) -> anyhow::Result<Arc<Coordinator>> {
        let data_dir = cfg.data_dir.clone();
        let http = match cfg.http_api_addr()? {
            Some(http) => Some(listen::reserve(http).with_context(|| {
                format!("binding the HTTP API port {http} (http_api.port, --http-port)")
            })?),
            None => None,
        };
        Coordinator::open(cfg, addr, http, cores)
            .with_context(|| format!("opening the metadata store in {}", data_dir.display()))
    }

    fn admin_source(coordinator: &Coordinator) -> AdminSource {
        coordinator.admin_source()
    }

    fn addr(coordinator: &Coordinator) -> SocketAddr {
        coordinator.addr()
    }

    fn bind(coordinator: &Coordinator) -> std::io::Result<CoreListeners> {
        coordinator.bind()
    }

    fn ready_suffix(coordinator: &Coordinator) -> String {
        http_suffix(coordinator)
    }

    fn serve_core(
        coordinator: Arc<Coordinator>,
        core: usize,
        listener: CoreListeners,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + 'static {
        coordinator.serve_core(core, listener, shutdown)
    }

    fn finish(coordinator: Arc<Coordinator>) -> anyhow::Result<()> {
        drop(coordinator);
        tracing::info!("coordinator stopped");
        Ok(())
    }
}

/// `pairdb storage`.
pub fn run_storage(args: StorageArgs) -> anyhow::Result<()> {
    serve::<Storage>(&args.server, |_| {})
}

/// `pairdb coordinator`.
pub fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let CoordinatorArgs { server, storage_nodes, no_batching, http_port } = args;
    serve::<CoordinatorRole>(&server, move |cfg| {
        if !storage_nodes.is_empty() {
            cfg.storage_nodes = storage_nodes;
        }
        if no_batching {
            cfg.batching = false;
        }
        if let Some(port) = http_port {
            cfg.http_api.port = Some(port);
        }
    })
}

/// The ready line's mention of the HTTP API (`, http api on http://ADDR`), empty when off.
fn http_suffix(coordinator: &Coordinator) -> String {
    coordinator.http_addr().map(|a| format!(", http api on http://{a}")).unwrap_or_default()
}

/// Binds the admin HTTP port and serves it from a thread of its own. Returns the suffix for the
/// ready line (`, admin on http://ADDR`), empty when disabled.
fn start_admin(enabled: bool, addr: SocketAddr, source: AdminSource) -> anyhow::Result<String> {
    if !enabled {
        return Ok(String::new());
    }
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the admin port {addr} (admin.port, --admin-port)"))?;
    let bound = listener.local_addr()?;
    pairdb::admin::spawn(listener, Arc::new(source)).context("starting the admin thread")?;
    Ok(format!(", admin on http://{bound}"))
}

/// Prints the ready line once every core has bound, and releases the port reservations then.
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

// ------------------------------------------------------------------------------------------------
// `pairdb dev`.
// ------------------------------------------------------------------------------------------------

/// `pairdb dev`: a coordinator and three storage nodes in one pool, tenant `default` created.
pub fn run_dev(args: DevArgs) -> anyhow::Result<()> {
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
    let http_reservation = match args.http_port {
        // SO_REUSEPORT would let it join a listener group of this process: refuse instead.
        Some(port)
            if port != 0
                && (port == coordinator_reservation.addr.port()
                    || storage.iter().any(|(cfg, _)| cfg.port == port)) =>
        {
            anyhow::bail!(
                "--http-port {port} is the gRPC port of the coordinator or a storage node"
            )
        }
        Some(port) => Some(
            listen::reserve(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .with_context(|| format!("HTTP API port {port} is taken; pass --http-port"))?,
        ),
        None => None,
    };
    let coordinator_cfg = CoordinatorConfig {
        port: coordinator_reservation.addr.port(),
        http_api: pairdb::config::HttpApiSection {
            port: http_reservation.as_ref().map(|r| r.addr.port()),
            ..Default::default()
        },
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
    let coordinator =
        Coordinator::open(coordinator_cfg, coordinator_reservation.addr, http_reservation, cores)
            .context("opening the coordinator's metadata store")?;
    let admin = start_admin(true, admin_addr, coordinator.admin_source())?;
    if coordinator.ensure_tenant("default", 3)? {
        tracing::info!("created tenant default (replication factor 3)");
    }
    let addr = coordinator.addr();
    let nodes: Vec<String> =
        storage.iter().map(|(c, n)| format!("{} on {}", c.node_id, n.addr())).collect();
    reservations.push(coordinator_reservation);
    let http = http_suffix(&coordinator);
    let http_try = match coordinator.http_addr() {
        Some(a) => {
            format!("http: curl -s 'http://{a}/v1/key-value?tenant_id=default&key=greeting'\n")
        }
        None => String::new(),
    };
    let line = format!(
        "pairdb dev: coordinator on {addr} ({cores} cores){admin}{http}, storage nodes {}; data in {}\n\
         try:  pairdb kv put --addr {addr} greeting hello && pairdb kv get --addr {addr} greeting\n\
         or:   grpcurl -plaintext -d '{{\"tenant_id\":\"default\",\"key\":\"greeting\"}}' {addr} \
         pairdb.coordinator.v1.CoordinatorService/ReadKeyValue\n\
         {http_try}\
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
