//! Running a coordinator process: open the stores, register configured storage nodes, then on
//! every core build the [`Core`], its background tasks and its gRPC server.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::fd::{FromRawFd, IntoRawFd},
    rc::Rc,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use glommio::net::TcpListener;

use crate::{
    admin::AdminSource,
    config::CoordinatorConfig,
    coordinator::{backends, background, http, report, shard::Shard, Shared, Update},
    meta::{
        HintStore, MetaError, MetadataStore, MigrationRecord, NodeRecord, NodeState, TenantRecord,
    },
    metrics::{self, MetricsHub, Sample},
    rpc::RpcMetrics,
    rpc::{health, health::HealthState, reflection, server, Router, ServerConfig},
    runtime::{
        accept::{AcceptGate, Spread},
        listen::Reservation,
        shutdown::Shutdown,
    },
};

/// One core's listeners: gRPC, and the HTTP/JSON API when `http_api.port` is set.
pub struct CoreListeners {
    /// The gRPC listener.
    pub grpc: TcpListener,
    /// This core's place among the cores sharing the gRPC listener (`balance_connections`).
    pub grpc_gate: Option<AcceptGate>,
    /// The HTTP API listener.
    pub http: Option<TcpListener>,
}

/// One coordinator process, shared by its cores until each has built its own state.
pub struct Coordinator {
    shared: Arc<Shared>,
    inboxes: Mutex<Vec<Option<flume::Receiver<Update>>>>,
    nodes: Vec<crate::coordinator::ResolvedNode>,
    tenants: Vec<TenantRecord>,
    addr: SocketAddr,
    /// The HTTP API address, when it is served.
    http_addr: Option<SocketAddr>,
    /// Holds the HTTP API port (0 resolved) until every core has bound it.
    http_reservation: Mutex<Option<Reservation>>,
    http_bound: AtomicUsize,
    /// The gRPC listening socket every core shares, and how many connections each serves, when
    /// `balance_connections` is on (created by the first core to bind).
    grpc_shared: Mutex<Option<socket2::Socket>>,
    spread: Option<Arc<Spread>>,
    cores: usize,
    server: ServerConfig,
    metrics: MetricsHub,
}

impl Coordinator {
    /// Opens the configured stores (see [`backends`]), registers the configured storage nodes
    /// and loads the membership and tenants. Blocking: call before the executors start. `http`
    /// is the reserved HTTP API port ([`crate::runtime::listen::reserve`] of
    /// `config.http_api_addr()`), `None` to serve no HTTP API.
    pub fn open(
        config: CoordinatorConfig,
        addr: SocketAddr,
        http: Option<Reservation>,
        cores: usize,
    ) -> Result<Arc<Coordinator>, MetaError> {
        // Checked at start-up already (`rpc.validate`); a file gone since stops the start here.
        let tls = config
            .rpc
            .tls
            .server_config()
            .map_err(|e| MetaError::Unavailable { backend: "rpc.tls", source: Box::new(e) })?;
        let stores = backends::open(&config)?;
        let balance = config.balance_connections && cores > 1;
        let store = stores.meta.clone();
        let now = crate::coordinator::shard::unix_now_secs();
        let known = store.nodes()?;
        for n in &config.storage_nodes {
            let existing = known.iter().find(|k| k.node_id == n.node_id);
            if existing.is_none() && !known.is_empty() {
                // The cluster has members already: a configured node that is not one of them
                // was removed by a migration (or is new); joining takes a migration too.
                tracing::warn!(
                    node = %n.node_id,
                    "storage node in the configuration is not a member of the cluster (removed by a migration?); not registering it: add it with `pairdb node add`"
                );
                continue;
            }
            let record = NodeRecord {
                node_id: n.node_id.clone(),
                host: n.host.clone(),
                port: n.port,
                virtual_nodes: n.virtual_nodes,
                state: existing.map(|k| k.state).unwrap_or(NodeState::Active),
                added_at: existing.map(|k| k.added_at).unwrap_or(now),
            };
            store.upsert_node(&record)?;
        }
        let nodes = store.nodes()?;
        let tenants = store.tenants()?;
        let tokens = store.tokens()?;
        let auth = crate::coordinator::auth::AuthShared::new(&config, &tokens).map_err(|e| {
            tracing::error!(error = %e, "authentication settings unusable");
            MetaError::Invalid {
                kind: crate::meta::RecordKind::Token,
                reason: "auth.bootstrap_token_file or auth.bootstrap_token is unusable",
            }
        })?;
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| flume::bounded(crate::coordinator::INBOX_CAPACITY)).unzip();
        let server = ServerConfig {
            max_message_bytes: config.max_message_bytes,
            http2: config.rpc.http2,
            tls: tls.map(crate::rpc::tls::ServerTls::new),
            ..ServerConfig::default()
        };
        let config_is_shared = config.metadata.backend == crate::config::MetadataBackend::Postgres;
        let shared = Arc::new(Shared {
            config,
            meta: store,
            hints: stores.hints.clone(),
            idempotency: stores.idempotency.clone(),
            sent: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            resync: (0..cores).map(|_| std::sync::atomic::AtomicBool::new(false)).collect(),
            inbox_full: AtomicU64::new(0),
            mesh: senders,
            epoch: AtomicU64::new(1),
            health: HealthState::default(),
            placement: crate::coordinator::placement::PlacementState::new(cores, config_is_shared),
            foreground: crate::coordinator::foreground::Foreground::new(cores),
            auth,
        });
        stores
            .watch(&shared, &tenants, &nodes)
            .map_err(|e| MetaError::Unavailable { backend: "postgres", source: Box::new(e) })?;
        crate::coordinator::placement::spawn_follower(&shared)
            .map_err(|e| MetaError::Unavailable { backend: "placement", source: Box::new(e) })?;
        Ok(Arc::new(Coordinator {
            shared,
            inboxes: Mutex::new(receivers.into_iter().map(Some).collect()),
            nodes: crate::coordinator::resolve_nodes(nodes),
            tenants,
            addr,
            http_addr: http.as_ref().map(|r| r.addr),
            http_reservation: Mutex::new(http),
            http_bound: AtomicUsize::new(0),
            grpc_shared: Mutex::new(None),
            spread: balance.then(|| Spread::new(cores)),
            cores,
            server,
            metrics: MetricsHub::new(),
        }))
    }

    /// Creates `tenant_id` with `replication_factor` unless it exists. Blocking.
    pub fn ensure_tenant(
        &self,
        tenant_id: &str,
        replication_factor: u32,
    ) -> Result<bool, MetaError> {
        let now = crate::coordinator::shard::unix_now_secs();
        let record = TenantRecord {
            tenant_id: tenant_id.into(),
            replication_factor,
            created_at: now,
            updated_at: now,
            limits: Default::default(),
        };
        match self.shared.meta.create_tenant(&record) {
            Ok(()) => Ok(true),
            Err(MetaError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What the admin port reports: every core's metrics, readiness, the hints pending in the
    /// hint store and the migrations by status (both read at scrape time, on the admin thread).
    pub fn admin_source(&self) -> AdminSource {
        let hints = self.shared.hints.clone();
        let meta = self.shared.meta.clone();
        let spread = self.spread.clone();
        AdminSource {
            hub: self.metrics.clone(),
            health: self.shared.health.clone(),
            extra: Box::new(move |out| {
                hint_samples(hints.as_ref(), meta.as_ref(), out);
                migration_samples(meta.as_ref(), out);
                if let Some(spread) = &spread {
                    spread_samples(spread, out);
                }
            }),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the HTTP API is served, when it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Binds this core's listeners: gRPC (with `balance_connections`, a copy of the one socket
    /// all cores share and this core's gate; otherwise a SO_REUSEPORT socket of its own), and the
    /// HTTP API when it is served (SO_REUSEPORT).
    pub fn bind(&self) -> std::io::Result<CoreListeners> {
        let (grpc, grpc_gate) = match &self.spread {
            None => (TcpListener::bind(self.addr)?, None),
            Some(spread) => {
                let mut shared = self
                    .grpc_shared
                    .lock()
                    .map_err(|_| std::io::Error::other("gRPC listener lock poisoned"))?;
                let socket = match shared.as_ref() {
                    Some(socket) => socket.try_clone()?,
                    None => {
                        let socket = crate::runtime::listen::listening_socket(self.addr)?;
                        let copy = socket.try_clone()?;
                        *shared = Some(socket);
                        copy
                    }
                };
                let gate = spread.gate();
                if gate.slot() + 1 >= self.cores {
                    // Every core has its copy: the cores' copies alone keep the socket open, so
                    // that it closes when they stop.
                    shared.take();
                }
                // SAFETY: `socket` is a listening TCP socket this function owns; the listener
                // takes it over.
                let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
                (listener, Some(gate))
            }
        };
        let http = match self.http_addr {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)?;
                if self.http_bound.fetch_add(1, Ordering::SeqCst) + 1 == self.cores {
                    // Every core listens: the reservation has done its job.
                    if let Ok(mut r) = self.http_reservation.lock() {
                        r.take();
                    }
                }
                Some(listener)
            }
        };
        Ok(CoreListeners { grpc, grpc_gate, http })
    }

    /// Builds core `index` and serves on it until `shutdown` fired and calls drained.
    pub async fn serve_core(
        self: Arc<Self>,
        index: usize,
        listeners: CoreListeners,
        shutdown: Shutdown,
    ) {
        let inbox =
            self.inboxes.lock().ok().and_then(|mut v| v.get_mut(index).and_then(Option::take));
        let Some(inbox) = inbox else {
            tracing::error!(index, "core started twice or beyond the configured core count");
            return;
        };
        // Tenants created since open() are in the store; the newest copy wins via broadcasts.
        let core = Shard::new(
            index,
            self.shared.clone(),
            inbox.clone(),
            self.nodes.clone(),
            self.tenants.clone(),
        );
        glommio::spawn_local(background::inbox(core.clone(), inbox)).detach();
        let flusher = glommio::spawn_local(background::flush_hints(core.clone(), shutdown.clone()));
        if index == 0 {
            glommio::spawn_local(background::supervise(core.clone(), shutdown.clone())).detach();
            glommio::spawn_local(crate::coordinator::migrate::adopt::adopt(
                core.clone(),
                shutdown.clone(),
            ))
            .detach();
            glommio::spawn_local(crate::coordinator::migrate::anti_entropy::watch(
                core.clone(),
                shutdown.clone(),
            ))
            .detach();
            glommio::spawn_local(crate::coordinator::migrate::anti_entropy::digests(
                core.clone(),
                shutdown.clone(),
            ))
            .detach();
            let health = self.shared.health.clone();
            let stop = shutdown.clone();
            glommio::spawn_local(async move {
                stop.wait().await;
                health.set_serving(false);
            })
            .detach();
        }
        let rpc = Rc::new(RpcMetrics::default());
        let http_metrics = Rc::new(http::HttpMetrics::default());
        let scrapes = self.metrics.register();
        let (scraped, scraped_rpc, scraped_http) =
            (core.clone(), rpc.clone(), http_metrics.clone());
        let lag = Rc::new(crate::runtime::lag::PollLag::default());
        let shared = self.shared.clone();
        glommio::spawn_local(crate::runtime::lag::probe_with(
            lag.clone(),
            shutdown.clone(),
            move |late| shared.foreground.record_lag(index, late),
        ))
        .detach();
        glommio::spawn_local(metrics::answer_scrapes(scrapes, move || {
            let mut samples = report::samples(&scraped, &scraped_rpc);
            scraped_http.samples(&mut samples);
            lag.samples(index, &mut samples);
            samples
        }))
        .detach();
        let mut router =
            reflection::add(health::add(core.register(Router::new()), self.shared.health.clone()))
                .with_metrics(rpc);
        if self.shared.auth.required && !self.shared.config.auth.open_health_and_reflection {
            let core = core.clone();
            router = router.check_token_for(
                &["/grpc.health.v1.Health/", "/grpc.reflection."],
                move |authorization| {
                    super::auth::authenticate(&core.shared.auth, &core.tokens(), authorization)
                        .map(drop)
                        .map_err(crate::rpc::status::Status::from)
                },
            );
        }
        let drain = Duration::from_secs(self.shared.config.shutdown_timeout_secs);
        let http_api = listeners.http.map(|listener| {
            let max_body = http::max_body_bytes(&self.shared.config);
            glommio::spawn_local(http::serve(
                listener,
                core.clone(),
                http_metrics,
                max_body,
                shutdown.clone(),
                drain,
            ))
        });
        server::serve(
            listeners.grpc,
            listeners.grpc_gate,
            Rc::new(router),
            Rc::new(self.server.clone()),
            shutdown,
            drain,
        )
        .await;
        if let Some(http_api) = http_api {
            http_api.await;
        }
        // In-flight calls are done: persist the hints they produced.
        flusher.await;
        background::persist_hints(&core).await;
        let (batches, ops) = (core.link_stats.batches.get(), core.link_stats.batched_ops.get());
        tracing::info!(
            core = index,
            batches,
            batched_ops = ops,
            ops_per_batch = if batches > 0 { ops as f64 / batches as f64 } else { 0.0 },
            failed_ops = core.link_stats.failed_ops.get(),
            repairs_queued = core.repairs.borrow().stats().queued,
            repairs_done = core.repairs.borrow().stats().done,
            repairs_dropped = {
                let r = core.repairs.borrow().stats();
                r.dropped_full + r.dropped_attempts
            },
            hints_stored = core.stats.hints_stored.get(),
            hints_dropped = core.stats.hints_dropped.get(),
            quorum_failures = core.stats.quorum_failures.get(),
            "core stopped"
        );
    }
}

/// `pairdb_coordinator_grpc_connections{core}` and
/// `pairdb_coordinator_accept_deferred_total`: how the cores share the gRPC connections.
fn spread_samples(spread: &Spread, out: &mut Vec<Sample>) {
    for (core, n) in spread.open().into_iter().enumerate() {
        out.push(
            Sample::gauge(
                "pairdb_coordinator_grpc_connections",
                "Client gRPC connections open, per core (balance_connections).",
                n as f64,
            )
            .label("core", core.to_string()),
        );
    }
    out.push(Sample::counter(
        "pairdb_coordinator_accept_deferred_total",
        "Times a core left the next gRPC connection to a core serving fewer (balance_connections).",
        spread.deferred(),
    ));
}

/// `pairdb_hints_pending`, read from the hint store at scrape time: one series per node with
/// hints, and a 0 for every registered node without any, so that the series exist before the
/// first hint.
fn hint_samples(hints: &dyn HintStore, meta: &dyn MetadataStore, out: &mut Vec<Sample>) {
    let mut pending: BTreeMap<String, u64> = match meta.nodes() {
        Ok(nodes) => nodes.into_iter().map(|n| (n.node_id, 0)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list storage nodes for /metrics");
            BTreeMap::new()
        }
    };
    match hints.pending_counts() {
        Ok(counts) => pending.extend(counts),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count pending hints for /metrics");
            return;
        }
    }
    for (node, n) in pending {
        out.push(
            Sample::gauge(
                "pairdb_hints_pending",
                "Hints in the hint store waiting for their node, per node.",
                n as f64,
            )
            .label("node", node),
        );
    }
}

/// `pairdb_migrations`, read from the metadata store at scrape time: migration records by
/// status, each known status present (0 when none), and the data-movement counters
/// (`coordinator::migrate::METRICS`) of this process.
fn migration_samples(meta: &dyn MetadataStore, out: &mut Vec<Sample>) {
    let mut by_status: BTreeMap<String, u64> = [
        MigrationRecord::PENDING,
        MigrationRecord::IN_PROGRESS,
        MigrationRecord::COMPLETED,
        MigrationRecord::FAILED,
        MigrationRecord::CANCELLED,
    ]
    .into_iter()
    .map(|s| (s.to_owned(), 0))
    .collect();
    match meta.migration_counts() {
        Ok(counts) => by_status.extend(counts),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count migrations for /metrics");
            return;
        }
    }
    for (status, n) in by_status {
        out.push(
            Sample::gauge(
                "pairdb_migrations",
                "Migration records in the metadata store, by status.",
                n as f64,
            )
            .label("status", status),
        );
    }
    use crate::coordinator::migrate::METRICS as M;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    for (name, help, value) in [
        (
            "pairdb_migration_keys_streamed_total",
            "Entries copied to new replicas by data movement.",
            load(&M.keys_streamed),
        ),
        (
            "pairdb_migration_bytes_streamed_total",
            "Bytes of the entries copied by data movement.",
            load(&M.bytes_streamed),
        ),
        (
            "pairdb_migration_keys_evicted_total",
            "Entries evicted from nodes that no longer own them.",
            load(&M.keys_evicted),
        ),
        (
            "pairdb_migration_backoffs_total",
            "Times a slow target halved the data-movement rate.",
            load(&M.backoffs),
        ),
        (
            "pairdb_migration_foreground_backoffs_total",
            "Times a rise of the foreground's latency halved the data-movement rate.",
            load(&M.foreground_backoffs),
        ),
        (
            "pairdb_migration_event_waits_total",
            "Times a data-movement task waited for the driver's full event queue.",
            load(&M.event_waits),
        ),
        (
            "pairdb_anti_entropy_keys_repaired_total",
            "Entries anti-entropy copied that changed a replica (wiped nodes refilled, differing ranges repaired).",
            load(&M.anti_entropy_keys),
        ),
        (
            "pairdb_anti_entropy_ranges_compared_total",
            "Token ranges whose replicas' digests anti-entropy compared.",
            load(&M.anti_entropy_ranges_compared),
        ),
        (
            "pairdb_anti_entropy_ranges_repaired_total",
            "Token ranges whose replicas disagreed, repaired by anti-entropy.",
            load(&M.anti_entropy_ranges_repaired),
        ),
        (
            "pairdb_anti_entropy_rebuilds_total",
            "Storage nodes found restarted with a wiped data directory.",
            load(&M.anti_entropy_rebuilds),
        ),
    ] {
        out.push(Sample::counter_f64(name, help, value));
    }
    out.push(Sample::counter_f64(
        "pairdb_migration_throttle_seconds_total",
        "Time data-movement streams waited on the byte rate (and on the pacer's calibration).",
        load(&M.throttled_us) / 1e6,
    ));
    out.push(Sample::gauge(
        "pairdb_migration_rate_bytes_per_second",
        "The data-movement streams' current rate limit, bytes per second.",
        load(&M.rate),
    ));
    out.push(Sample::gauge(
        "pairdb_migration_progress_percent",
        "Percentage of the migration this coordinator drives (100 once completed).",
        load(&M.percentage),
    ));
}
