//! The server subcommands: `pairdb storage`, `pairdb coordinator` and `pairdb dev`. This file
//! owns their flags and the start sequence the two roles share; `pairdb dev` is in [`dev`] and
//! the logger in [`logging`].
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
    config::{self, ConfigError, CoordinatorConfig, LogConfig, StorageConfig, StorageNodeEntry},
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

mod dev;
mod logging;

pub use dev::{run_dev, DevArgs};
pub use logging::init_logging;

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
        cfg.validate()?;
        // Here rather than in `CoordinatorConfig::validate`: the `rpc:` section is shared.
        cfg.rpc.validate()
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
