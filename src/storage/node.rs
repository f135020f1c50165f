//! A storage node: one [`Engine`] shared by all cores, and on every core a gRPC server with
//! `StorageService`, health and reflection on the same SO_REUSEPORT port.

use std::{net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use glommio::net::TcpListener;

use crate::{
    admin::AdminSource,
    config::StorageConfig,
    metrics::{self, MetricsHub, Sample},
    rpc::RpcMetrics,
    rpc::{health, health::HealthState, reflection, server, Router, ServerConfig},
    runtime::shutdown::Shutdown,
    storage::{
        engine::{Engine, EngineError},
        incarnation,
        service::StorageService,
    },
};

/// The paths a storage node serves without the cluster secret: health checks (load balancers,
/// orchestrators) and reflection (grpcurl). Everything of `StorageService` needs it.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// What every core of a storage node shares.
pub struct StorageNode {
    engine: Arc<Engine>,
    node_id: String,
    /// The data directory's id (see [`crate::storage::incarnation`]).
    incarnation_id: String,
    addr: SocketAddr,
    server: ServerConfig,
    /// `rpc.cluster_secret(_file)`: when set, storage calls must carry it (`Bearer`).
    cluster_secret: Option<Vec<u8>>,
    health: HealthState,
    drain_timeout: Duration,
    metrics: MetricsHub,
    /// The per-core listeners, bound together by the first core to call [`StorageNode::bind`]
    /// so that they join the SO_REUSEPORT group in core order (see `listen::bind_steered`).
    listeners: std::sync::Mutex<Option<Vec<Option<socket2::Socket>>>>,
}

impl StorageNode {
    /// Reads (or, on a new data directory, makes) the incarnation id, opens the engine and starts
    /// its background purge. Blocks on disk I/O: call it before the executors start. `addr` must
    /// carry a concrete port (see `runtime::listen::reserve`).
    pub fn open(config: &StorageConfig, addr: SocketAddr) -> Result<Arc<StorageNode>, EngineError> {
        // First, so that a bad secret fails the start before the engine opens.
        let cluster_secret =
            config.rpc.cluster_secret_bytes().map_err(|e| std::io::Error::other(e.to_string()))?;
        let tls =
            config.rpc.tls.server_config().map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::create_dir_all(&config.data_dir)?;
        let incarnation_id = incarnation::load_or_create(&config.data_dir)?;
        let engine = Arc::new(Engine::open(&config.data_dir, config.engine())?);
        engine.spawn_purger(
            Duration::from_secs(config.purge_interval_secs),
            Duration::from_secs(config.tombstone_grace_secs),
        )?;
        Ok(Arc::new(StorageNode {
            listeners: std::sync::Mutex::new(None),
            engine,
            node_id: config.node_id.clone(),
            incarnation_id,
            addr,
            server: ServerConfig {
                max_message_bytes: config.max_message_bytes,
                http2: config.rpc.http2,
                tls: tls.map(crate::rpc::tls::ServerTls::new),
                ..ServerConfig::default()
            },
            cluster_secret,
            health: HealthState::default(),
            drain_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            metrics: MetricsHub::new(),
        }))
    }

    /// The address the node serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the admin port reports: every core's gRPC metrics and the engine's record counts and
    /// disk use (read at scrape time, on the admin thread); ready while serving (an open engine
    /// is all a storage node needs).
    pub fn admin_source(&self) -> AdminSource {
        let engine = self.engine.clone();
        AdminSource {
            hub: self.metrics.clone(),
            health: self.health.clone(),
            extra: Box::new(move |out| match engine.stats() {
                Ok(s) => {
                    let stalls = engine.stall_waits();
                    out.push(Sample::counter(
                        "pairdb_storage_evicted_total",
                        "Records removed by Evict (data movement's cleanup of keys no longer owned).",
                        engine.evicted_total(),
                    ));
                    out.push(Sample::counter(
                        "pairdb_storage_write_stalls_total",
                        "Writes that waited for fjall to flush sealed memtables before applying.",
                        stalls.count,
                    ));
                    out.push(Sample::counter_f64(
                        "pairdb_storage_write_stall_seconds_total",
                        "Time writes spent waiting for fjall to flush sealed memtables.",
                        stalls.waited.as_secs_f64(),
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_sealed_memtables",
                        "Sealed memtables waiting for flush (fjall stalls writers at 4).",
                        engine.sealed_memtables() as f64,
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_l0_tables",
                        "Tables in level 0, the compaction backlog (fjall delays writers from 20 L0 runs, halts them at 30).",
                        engine.l0_tables() as f64,
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_tables",
                        "Tables (SST files) in all levels of the engine.",
                        engine.tables() as f64,
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_records",
                        "Stored records: live keys plus tombstones not yet purged.",
                        s.key_count as f64,
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_tombstones",
                        "Tombstones among the stored records.",
                        s.tombstone_count as f64,
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_disk_bytes",
                        "Bytes the engine uses on disk (journals and tables).",
                        s.disk_bytes as f64,
                    ));
                    out.push(Sample::gauge(
                        "pairdb_storage_filesystem_used_ratio",
                        "How full the data directory's filesystem is, 0 to 1.",
                        s.disk_usage_percent / 100.0,
                    ));
                }
                Err(e) => tracing::warn!(error = %e, "cannot read engine stats for /metrics"),
            }),
        }
    }

    /// The data directory's incarnation id, as HealthCheck and Stats answer it.
    pub fn incarnation_id(&self) -> &str {
        &self.incarnation_id
    }

    /// The engine, for tests and tools.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Binds this core's listener. Separate from [`StorageNode::serve_core`] so the caller can
    /// announce readiness once every core has bound.
    pub fn bind(&self) -> std::io::Result<TcpListener> {
        let cpus = crate::runtime::pool::pool_cpus();
        if cpus.len() <= 1 {
            return TcpListener::bind(self.addr).map_err(Into::into);
        }
        let core = crate::runtime::pool::current_core().unwrap_or(0);
        let mut listeners = self.listeners.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        if listeners.is_none() {
            let (_, sockets) = crate::runtime::listen::bind_steered(self.addr, &cpus)?;
            *listeners = Some(sockets.into_iter().map(Some).collect());
        }
        let socket = listeners
            .as_mut()
            .and_then(|all| all.get_mut(core))
            .and_then(Option::take)
            .ok_or_else(|| std::io::Error::other(format!("core {core} has no listener left")))?;
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor is a bound, listening TCP socket that we own and hand over.
        Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
    }

    /// Serves on this core until `shutdown` fires and in-flight calls drained.
    pub async fn serve_core(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let service = Arc::new(
            StorageService::new(
                self.engine.clone(),
                self.node_id.clone(),
                self.incarnation_id.clone(),
            )
            .with_max_message_bytes(self.server.max_message_bytes),
        );
        let rpc = Rc::new(RpcMetrics::default());
        // The core index labels per-core metrics (0 outside the pool: benches, tests).
        let core = crate::runtime::pool::current_core().unwrap_or(0);
        let scraped = rpc.clone();
        let lag = Rc::new(crate::runtime::lag::PollLag::default());
        glommio::spawn_local(crate::runtime::lag::probe(lag.clone(), shutdown.clone())).detach();
        glommio::spawn_local(metrics::answer_scrapes(self.metrics.register(), move || {
            let mut out = Vec::new();
            scraped.samples(core, &mut out);
            lag.samples(core, &mut out);
            out
        }))
        .detach();
        // A coordinator core of this process reaches the node without the network while it
        // serves (see `storage::local`).
        let _local = crate::storage::local::register(self.addr, service.clone(), rpc.clone());
        let mut router =
            reflection::add(health::add(service.register(Router::new()), self.health.clone()))
                .with_metrics(rpc);
        if let Some(secret) = &self.cluster_secret {
            // Only coordinators hold the secret; probes and tools keep health and reflection.
            router = router.require_bearer(secret, OPEN_PREFIXES);
        }
        let health = self.health.clone();
        let stop = shutdown.clone();
        glommio::spawn_local(async move {
            stop.wait().await;
            health.set_serving(false);
        })
        .detach();
        server::serve(
            listener,
            None,
            Rc::new(router),
            Rc::new(self.server.clone()),
            shutdown,
            self.drain_timeout,
        )
        .await;
    }

    /// Flushes the engine's journal to disk.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.engine.sync()
    }
}
