//! `pairdb dev`: a coordinator and three storage nodes in one pool, tenant `default` created.
//!
//! It does not go through [`super::serve`]: it shares the pieces ([`super::start_admin`],
//! [`super::Announce`], signals) rather than the sequence.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use pairdb::{
    config::{CoordinatorConfig, StorageConfig, StorageNodeEntry},
    coordinator::server::Coordinator,
    runtime::{
        listen,
        pool::{self, PoolConfig},
        shutdown::Shutdown,
        signals,
    },
    storage::node::StorageNode,
};

use super::{http_suffix, start_admin, Announce};

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
    /// Send the coordinator's Batch calls to the storage nodes over loopback TCP and HTTP/2, as
    /// between separate processes, instead of calling them in-process
    /// (`local_storage_calls: false`; for comparison).
    #[arg(long)]
    no_local_calls: bool,
    /// Give each core its own SO_REUSEPORT socket for client connections and let the kernel's
    /// hash spread them, instead of balancing them over the cores
    /// (`balance_connections: false`; for comparison).
    #[arg(long)]
    no_balance_connections: bool,
    /// The coordinator's admin HTTP port for /metrics and /health/{live,ready} (default 0:
    /// a free one, printed at start).
    #[arg(long, default_value_t = 0)]
    admin_port: u16,
    /// Serve the coordinator's HTTP/JSON API on this port (0 picks a free one; default: none).
    #[arg(long)]
    http_port: Option<u16>,
    /// The HTTP/2 layer of every server and link of the cluster (`rpc.http2`): native (PairDB's
    /// own) or h2 (the h2 crate).
    #[arg(long, env = "PAIRDB_RPC_HTTP2", default_value = "native", value_parser = ["native", "h2"])]
    http2: String,
    /// Serve the coordinator's gRPC port over TLS with this certificate chain (PEM; with
    /// `--tls-key`), as `rpc.tls.cert_file` does. The links to the storage nodes, inside this
    /// one process, stay plaintext.
    #[arg(long, value_name = "FILE", env = "PAIRDB_DEV_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", env = "PAIRDB_DEV_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// `pairdb dev`: a coordinator and three storage nodes in one pool, tenant `default` created.
pub fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| std::env::temp_dir().join("pairdb-dev"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let rpc = pairdb::config::RpcSection {
        http2: if args.http2 == "h2" {
            pairdb::config::Http2Impl::H2
        } else {
            pairdb::config::Http2Impl::Native
        },
        ..Default::default()
    };
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
            rpc: rpc.clone(),
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
        local_storage_calls: !args.no_local_calls,
        balance_connections: !args.no_balance_connections,
        rpc: pairdb::config::RpcSection {
            tls: pairdb::config::TlsSection {
                cert_file: args.tls_cert.clone(),
                key_file: args.tls_key.clone(),
                ..Default::default()
            },
            ..rpc
        },
        storage_nodes: storage
            .iter()
            .map(|(cfg, _)| StorageNodeEntry {
                node_id: cfg.node_id.clone(),
                host: cfg.host.clone(),
                port: cfg.port,
                virtual_nodes: pairdb::core::ring::DEFAULT_VIRTUAL_NODES,
            })
            .collect(),
        // Checked against the longest migration at validation.
        migration: pairdb::config::MigrationSection {
            tombstone_grace_secs: storage
                .iter()
                .map(|(cfg, _)| cfg.tombstone_grace_secs)
                .min()
                .unwrap_or(pairdb::config::DEFAULT_TOMBSTONE_GRACE.as_secs()),
            ..Default::default()
        },
        auth: dev_auth()?,
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
    let admin = start_admin(true, admin_addr, dev_admin_source(&coordinator, &storage))?;
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
    // With --tls-cert, the hints name the CA file the user must pass (their own).
    let (tls, tls_ca, grpcurl_tls) = if args.tls_cert.is_some() {
        (" over TLS", " --tls-ca CA.pem", "-cacert CA.pem")
    } else {
        ("", "", "-plaintext")
    };
    let line = format!(
        "pairdb dev: coordinator on {addr} ({cores} cores{tls}){admin}{http}, storage nodes {}; data in {}\n\
         try:  pairdb kv put --addr {addr}{tls_ca} greeting hello && pairdb kv get --addr {addr}{tls_ca} greeting\n\
         or:   grpcurl {grpcurl_tls} -d '{{\"tenant_id\":\"default\",\"key\":\"greeting\"}}' {addr} \
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

/// The coordinator's admin metrics, plus each storage node's engine samples (flush and
/// compaction backlog, write stalls, tables) labelled with `node`, so that a stalled engine shows
/// on the one `/metrics` that `pairdb dev` serves.
fn dev_admin_source(
    coordinator: &Coordinator,
    storage: &[(StorageConfig, std::sync::Arc<StorageNode>)],
) -> pairdb::admin::AdminSource {
    let mut source = coordinator.admin_source();
    let coordinator_extra = source.extra;
    let nodes: Vec<(String, pairdb::admin::ExtraSamples)> = storage
        .iter()
        .map(|(cfg, node)| (cfg.node_id.clone(), node.admin_source().extra))
        .collect();
    source.extra = Box::new(move |out| {
        coordinator_extra(out);
        for (id, extra) in &nodes {
            let mut samples = Vec::new();
            extra(&mut samples);
            out.extend(samples.into_iter().map(|s| s.label("node", id.clone())));
        }
    });
    source
}

/// `pairdb dev` serves without authentication unless asked: `PAIRDB_AUTH_MODE=required`, with
/// the bootstrap admin token in `PAIRDB_AUTH_BOOTSTRAP_TOKEN` or
/// `PAIRDB_AUTH_BOOTSTRAP_TOKEN_FILE` (the coordinator's own variables).
fn dev_auth() -> anyhow::Result<pairdb::config::AuthSection> {
    let mut auth = pairdb::config::AuthSection::default();
    match std::env::var("PAIRDB_AUTH_MODE").as_deref() {
        Err(_) | Ok("off") => {}
        Ok("required") => auth.mode = pairdb::config::AuthMode::Required,
        Ok(other) => anyhow::bail!("PAIRDB_AUTH_MODE={other:?}: expected off or required"),
    }
    auth.bootstrap_token = std::env::var("PAIRDB_AUTH_BOOTSTRAP_TOKEN").unwrap_or_default();
    auth.bootstrap_token_file =
        std::env::var("PAIRDB_AUTH_BOOTSTRAP_TOKEN_FILE").unwrap_or_default();
    Ok(auth)
}
