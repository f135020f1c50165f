//! Typed configuration, parsed from YAML once at start-up.
//!
//! Every key has a default (so an empty file is a valid config) and unknown keys are refused by
//! name, so a typo fails loudly at start instead of being silently ignored. Command-line flags
//! override the file. The files under `config/` document every key with its unit, default and
//! reason. `PAIRDB_*` environment variables override the file and are overridden by flags:
//! `PAIRDB_` + the key path upper-cased, `_` between levels (see [`env`]).

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{de::DeserializeOwned, Deserialize};

pub mod env;

use crate::{
    rpc::framing::DEFAULT_MAX_MESSAGE_BYTES,
    storage::engine::{self, Durability, EngineConfig},
};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_yaml's description, which names the field and line.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The offending key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses `path` as YAML into `T` (a missing `path`, None, gives the defaults), then applies the
/// `PAIRDB_*` environment variables (see [`env`]). Unknown `PAIRDB_*` variables are reported on
/// stderr and otherwise ignored: they may belong to the other role.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let (cfg, applied) = load_with_env(path, std::env::vars())?;
    for name in applied.unknown {
        eprintln!("warning: {name} matches no configuration key of this role; ignored");
    }
    Ok(cfg)
}

/// [`load`] with the environment given as `vars`.
pub fn load_with_env<T: DeserializeOwned + Default>(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(T, env::Applied), ConfigError> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?,
        None => String::new(),
    };
    let shown = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(no config file)"));
    let mut doc = if text.trim().is_empty() {
        serde_yaml::Value::Null
    } else {
        // The file alone first, so that its errors carry line numbers.
        serde_yaml::from_str::<T>(&text)
            .map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?;
        serde_yaml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?
    };
    let applied = env::apply::<T>(&mut doc, vars);
    if doc.is_null() {
        return Ok((T::default(), applied));
    }
    // Through text again rather than `from_value`: text errors name the key's path.
    let merged = serde_yaml::to_string(&doc)
        .map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?;
    let cfg = serde_yaml::from_str(&merged).map_err(|e| ConfigError::Parse {
        path: shown,
        message: format!("{e} (with overrides from {})", applied.used.join(", ")),
    })?;
    Ok((cfg, applied))
}

/// `durability` key: when an acknowledged write is on disk.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    /// Written to the OS before the ack, fsynced every `group_commit_ms` (default).
    #[default]
    GroupCommit,
    /// fsynced before every ack.
    Sync,
}

/// `admin:` section: the admin HTTP port (`/metrics`, `/health/live`, `/health/ready`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin port at all.
    pub enabled: bool,
    /// Address to listen on; empty means the same as the gRPC `host`.
    pub host: String,
    /// Port; 0 picks a free one (printed at start). Unset: the role's default, 9090 for
    /// coordinators (Prometheus' convention for a first exporter), 9091 for storage nodes, so
    /// both fit on one host.
    pub port: Option<u16>,
}

impl AdminConfig {
    /// The resolved admin address: `grpc_host` when `host` is empty, `default_port` when `port`
    /// is unset.
    pub fn listen_addr(
        &self,
        grpc_host: &str,
        default_port: u16,
    ) -> Result<SocketAddr, ConfigError> {
        let host = if self.host.is_empty() { grpc_host } else { &self.host };
        resolve("admin.host", host, self.port.unwrap_or(default_port))
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { enabled: true, host: String::new(), port: None }
    }
}

/// Default admin port of a coordinator.
pub const DEFAULT_COORDINATOR_ADMIN_PORT: u16 = 9090;
/// Default admin port of a storage node.
pub const DEFAULT_STORAGE_ADMIN_PORT: u16 = 9091;

/// `log.format`: how log lines look on stderr.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event (default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `log:` section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Level filter, in `tracing` directive syntax (`info`, `warn,pairdb=debug`). The
    /// `PAIRDB_LOG` environment variable, when set, replaces it.
    pub level: String,
    /// Coordinator: key-value requests slower than this are logged (tenant, key hash, level,
    /// per-replica timings), milliseconds; 0 turns it off. Storage nodes ignore it.
    pub slow_request_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        // 100 ms: a hundred times a healthy LAN request, far below a client's patience.
        Self { format: LogFormat::Text, level: "info".into(), slow_request_ms: 100 }
    }
}

impl LogConfig {
    /// Checks that `level` parses as a filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| invalid("log.level", &e.to_string()))
    }
}

/// `pairdb storage` configuration (`config/storage.yaml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// This node's id, as coordinators know it.
    pub node_id: String,
    /// Address to listen on.
    pub host: String,
    /// gRPC port; 0 picks a free one (printed at start).
    pub port: u16,
    /// Where the engine keeps its files.
    pub data_dir: PathBuf,
    /// Executors (one per core); 0 means one per CPU the process may use.
    pub cores: usize,
    /// Largest gRPC message accepted or sent, bytes.
    pub max_message_bytes: usize,
    /// `group_commit` or `sync`.
    pub durability: DurabilityMode,
    /// fsync interval in `group_commit` mode, milliseconds.
    pub group_commit_ms: u64,
    /// Engine block cache, MiB.
    pub cache_mb: u64,
    /// How long tombstones are kept before purge, seconds.
    pub tombstone_grace_secs: u64,
    /// How often the purge runs, seconds.
    pub purge_interval_secs: u64,
    /// How long a shutdown waits for in-flight calls, seconds.
    pub shutdown_timeout_secs: u64,
    /// The admin HTTP port (default port 9091).
    pub admin: AdminConfig,
    /// Log format and level.
    pub log: LogConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            node_id: "storage-1".into(),
            host: "127.0.0.1".into(),
            port: 50061,
            data_dir: PathBuf::from("data/storage-1"),
            cores: 0,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            durability: DurabilityMode::GroupCommit,
            group_commit_ms: engine::DEFAULT_GROUP_COMMIT_INTERVAL.as_millis() as u64,
            cache_mb: engine::DEFAULT_CACHE_BYTES >> 20,
            tombstone_grace_secs: engine::DEFAULT_TOMBSTONE_GRACE.as_secs(),
            purge_interval_secs: engine::DEFAULT_PURGE_INTERVAL.as_secs(),
            shutdown_timeout_secs: 10,
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl StorageConfig {
    /// Checks ranges and names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() {
            return Err(invalid("node_id", "must not be empty"));
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > 64 << 20 {
            return Err(invalid("max_message_bytes", "must be between 1024 and 67108864"));
        }
        if self.durability == DurabilityMode::GroupCommit && self.group_commit_ms == 0 {
            return Err(invalid("group_commit_ms", "must be at least 1 in group_commit mode"));
        }
        if self.purge_interval_secs == 0 {
            return Err(invalid("purge_interval_secs", "must be at least 1"));
        }
        check_durations(&[
            ("tombstone_grace_secs", self.tombstone_grace_secs),
            ("purge_interval_secs", self.purge_interval_secs),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs),
        ])?;
        self.admin_addr()?;
        self.log.validate()?;
        self.listen_addr().map(|_| ())
    }

    /// The resolved listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve("host", &self.host, self.port)
    }

    /// The resolved admin address.
    pub fn admin_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.admin.listen_addr(&self.host, DEFAULT_STORAGE_ADMIN_PORT)
    }

    /// The engine settings this config asks for.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            durability: match self.durability {
                DurabilityMode::Sync => Durability::Sync,
                DurabilityMode::GroupCommit => Durability::GroupCommit {
                    interval: Duration::from_millis(self.group_commit_ms),
                },
            },
            cache_bytes: self.cache_mb << 20,
        }
    }
}

/// A storage node listed in the coordinator's config (more can be added with `AddStorageNode`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StorageNodeEntry {
    /// The node's id (its ring tokens derive from it).
    pub node_id: String,
    /// Host of its gRPC port.
    pub host: String,
    /// Its gRPC port.
    pub port: u16,
    /// Ring weight; default 150.
    #[serde(default = "default_virtual_nodes")]
    pub virtual_nodes: u32,
}

fn default_virtual_nodes() -> u32 {
    crate::core::ring::DEFAULT_VIRTUAL_NODES
}

/// `pairdb coordinator` configuration (`config/coordinator.yaml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// This coordinator's id; its cores are the vector-clock actors `{node_id}/{core}`.
    pub node_id: String,
    /// Address to listen on.
    pub host: String,
    /// gRPC port; 0 picks a free one.
    pub port: u16,
    /// Where the embedded metadata database lives.
    pub data_dir: PathBuf,
    /// Executors (one per core); 0 means one per allowed CPU.
    pub cores: usize,
    /// Largest gRPC message accepted or sent, bytes.
    pub max_message_bytes: usize,
    /// Largest key, bytes.
    pub max_key_bytes: usize,
    /// Largest value, bytes.
    pub max_value_bytes: usize,
    /// Replication factor of tenants created without one.
    pub default_replication_factor: u32,
    /// Per-replica deadline, milliseconds.
    pub replica_timeout_ms: u64,
    /// HTTP/2 connections per storage node per core.
    pub connections_per_node: usize,
    /// Send storage operations as Batch calls.
    pub batching: bool,
    /// Most operations per Batch call.
    pub max_batch_ops: usize,
    /// Outstanding Batch calls per storage node per core.
    pub max_inflight_batches: usize,
    /// How often storage nodes are health-checked, milliseconds.
    pub health_check_interval_ms: u64,
    /// How often pending hints are replayed to nodes that are up, milliseconds.
    pub hint_replay_interval_ms: u64,
    /// How long hints are kept before they are dropped, seconds.
    pub hint_retention_secs: u64,
    /// Most hints kept in the hint store (one per key and target node, the newest version). When
    /// full, hints for further keys are dropped and left to read repair: a node down for hours
    /// under heavy writes must not fill the metadata disk or database.
    pub hint_max_stored: u64,
    /// How long an idempotent response is remembered, seconds.
    pub idempotency_ttl_secs: u64,
    /// Most idempotency records kept in memory.
    pub idempotency_max_records: usize,
    /// Read repairs queued per core before new ones are dropped.
    pub read_repair_queue: usize,
    /// Attempts per read repair.
    pub read_repair_attempts: u32,
    /// Storage nodes to register at start (kept in the metadata store).
    pub storage_nodes: Vec<StorageNodeEntry>,
    /// How long a shutdown waits for in-flight calls, seconds.
    pub shutdown_timeout_secs: u64,
    /// The admin HTTP port.
    pub admin: AdminConfig,
    /// Log format, level and the slow-request threshold.
    pub log: LogConfig,
    /// Where tenants, nodes, migrations and hints live.
    pub metadata: MetadataSection,
    /// Where idempotency records live.
    pub idempotency: IdempotencySection,
}

/// `metadata.backend`: which store keeps tenants, nodes, migrations and hints.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetadataBackend {
    /// One redb file in `data_dir`, private to this coordinator (default).
    #[default]
    Embedded,
    /// A PostgreSQL database shared by every coordinator of the cluster.
    Postgres,
}

/// The `metadata:` section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataSection {
    /// `embedded` or `postgres`.
    pub backend: MetadataBackend,
    /// Connection URL when `backend: postgres`.
    pub postgres_url: String,
    /// How often the tenant and node lists are reloaded from PostgreSQL even without a
    /// notification, seconds: the backstop for a missed LISTEN/NOTIFY.
    pub reload_interval_secs: u64,
    /// How long a starting coordinator keeps trying to reach PostgreSQL before it gives up,
    /// seconds (0: one attempt).
    pub startup_wait_secs: u64,
}

impl Default for MetadataSection {
    fn default() -> Self {
        Self {
            backend: MetadataBackend::Embedded,
            postgres_url: String::new(),
            reload_interval_secs: 30,
            startup_wait_secs: 60,
        }
    }
}

/// `idempotency.backend`: which store keeps idempotency records.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyBackendKind {
    /// A lock-free map in this process's memory (default).
    #[default]
    Embedded,
    /// A Redis server shared by every coordinator of the cluster.
    Redis,
}

/// `idempotency.on_unavailable`: what a write does when the idempotency store cannot answer.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Run the write without idempotency, with a warning and a counter (default).
    #[default]
    Proceed,
    /// Answer UNAVAILABLE: the client retries later.
    Reject,
}

/// The `idempotency:` section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencySection {
    /// `embedded` or `redis`.
    pub backend: IdempotencyBackendKind,
    /// Connection URL when `backend: redis`.
    pub redis_url: String,
    /// `proceed` or `reject`.
    pub on_unavailable: OnUnavailable,
    /// Longest wait for one Redis round trip (and for connecting), milliseconds.
    pub redis_timeout_ms: u64,
    /// Also store the response of a write sent without an idempotency key, under the key the
    /// coordinator generated and returned, so that a client that learned it can retry with it.
    pub store_generated_keys: bool,
}

impl Default for IdempotencySection {
    fn default() -> Self {
        Self {
            backend: IdempotencyBackendKind::Embedded,
            redis_url: String::new(),
            on_unavailable: OnUnavailable::Proceed,
            redis_timeout_ms: 1000,
            store_generated_keys: true,
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            node_id: "coord-1".into(),
            host: "127.0.0.1".into(),
            port: 50051,
            data_dir: PathBuf::from("data/coordinator"),
            cores: 0,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            default_replication_factor: 3,
            replica_timeout_ms: 1000,
            connections_per_node: 2,
            batching: true,
            max_batch_ops: 256,
            max_inflight_batches: 8,
            health_check_interval_ms: 1000,
            hint_replay_interval_ms: 1000,
            hint_retention_secs: 3 * 3600,
            hint_max_stored: crate::meta::DEFAULT_MAX_HINTS,
            idempotency_ttl_secs: 24 * 3600,
            idempotency_max_records: 1_000_000,
            read_repair_queue: 10_000,
            read_repair_attempts: 3,
            storage_nodes: Vec::new(),
            shutdown_timeout_secs: 10,
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            metadata: MetadataSection::default(),
            idempotency: IdempotencySection::default(),
        }
    }
}

impl CoordinatorConfig {
    /// Checks ranges and names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() || self.node_id.contains('/') {
            return Err(invalid("node_id", "must be non-empty and contain no '/'"));
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > 64 << 20 {
            return Err(invalid("max_message_bytes", "must be between 1024 and 67108864"));
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > 16 << 10 {
            return Err(invalid("max_key_bytes", "must be between 1 and 16384"));
        }
        if self.max_value_bytes == 0
            || self.max_value_bytes + self.max_key_bytes + 1024 > self.max_message_bytes
        {
            return Err(invalid(
                "max_value_bytes",
                "must be at least 1 and leave room for the key within max_message_bytes",
            ));
        }
        if !(1..=10).contains(&self.default_replication_factor) {
            return Err(invalid("default_replication_factor", "must be between 1 and 10"));
        }
        for (field, v) in [
            ("replica_timeout_ms", self.replica_timeout_ms),
            ("health_check_interval_ms", self.health_check_interval_ms),
            ("hint_replay_interval_ms", self.hint_replay_interval_ms),
            ("hint_max_stored", self.hint_max_stored),
            ("idempotency_ttl_secs", self.idempotency_ttl_secs),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        for (field, v) in [
            ("connections_per_node", self.connections_per_node),
            ("max_batch_ops", self.max_batch_ops),
            ("max_inflight_batches", self.max_inflight_batches),
            ("read_repair_queue", self.read_repair_queue),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        for n in &self.storage_nodes {
            if n.node_id.is_empty() {
                return Err(invalid("storage_nodes.node_id", "must not be empty"));
            }
            resolve("storage_nodes.host", &n.host, n.port)?;
        }
        if self.metadata.backend == MetadataBackend::Postgres
            && self.metadata.postgres_url.is_empty()
        {
            return Err(invalid("metadata.postgres_url", "is required with backend: postgres"));
        }
        if self.metadata.reload_interval_secs == 0 {
            return Err(invalid("metadata.reload_interval_secs", "must be at least 1"));
        }
        if self.idempotency.backend == IdempotencyBackendKind::Redis
            && self.idempotency.redis_url.is_empty()
        {
            return Err(invalid("idempotency.redis_url", "is required with backend: redis"));
        }
        if self.idempotency.redis_timeout_ms == 0 {
            return Err(invalid("idempotency.redis_timeout_ms", "must be at least 1"));
        }
        check_durations(&[
            ("hint_retention_secs", self.hint_retention_secs),
            ("idempotency_ttl_secs", self.idempotency_ttl_secs),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs),
            ("metadata.reload_interval_secs", self.metadata.reload_interval_secs),
            ("metadata.startup_wait_secs", self.metadata.startup_wait_secs),
        ])?;
        self.admin_addr()?;
        self.log.validate()?;
        self.listen_addr().map(|_| ())
    }

    /// The resolved listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve("host", &self.host, self.port)
    }

    /// The resolved admin address.
    pub fn admin_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.admin.listen_addr(&self.host, DEFAULT_COORDINATOR_ADMIN_PORT)
    }
}

/// Resolves `host:port` to one socket address.
pub fn resolve(field: &'static str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(field, &format!("cannot resolve {host:?}: {e}")))?
        .next()
        .ok_or_else(|| invalid(field, &format!("{host:?} resolves to no address")))
}

/// Longest duration any `_secs` key takes: 10 years. Far beyond any sensible setting, and far
/// below what the monotonic clock can add without overflowing.
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

/// Rejects a `_secs` setting above [`MAX_DURATION_SECS`].
fn check_durations(fields: &[(&'static str, u64)]) -> Result<(), ConfigError> {
    for &(field, secs) in fields {
        if secs > MAX_DURATION_SECS {
            return Err(invalid(field, "must be at most 315360000 (10 years)"));
        }
    }
    Ok(())
}

fn invalid(field: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err =
            serde_yaml::from_str::<StorageConfig>("node_id: a\nprot: 5\n").unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = StorageConfig { group_commit_ms: 0, ..Default::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("group_commit_ms"));
    }

    #[test]
    fn shipped_coordinator_config_parses_and_validates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/coordinator.yaml");
        let cfg: CoordinatorConfig = load(Some(Path::new(path))).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.storage_nodes.len(), 3);
    }

    #[test]
    fn backend_sections_default_to_embedded() {
        let cfg: CoordinatorConfig = serde_yaml::from_str("node_id: c\n").unwrap();
        assert_eq!(cfg.metadata.backend, MetadataBackend::Embedded);
        assert_eq!(cfg.idempotency.backend, IdempotencyBackendKind::Embedded);
        assert_eq!(cfg.idempotency.on_unavailable, OnUnavailable::Proceed);
        let yaml = "metadata: { backend: postgres, postgres_url: 'postgres://p@h/db' }\n\
                    idempotency: { backend: redis, redis_url: 'redis://h', on_unavailable: reject }\n";
        let cfg: CoordinatorConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(cfg.metadata.backend, MetadataBackend::Postgres);
        assert_eq!(cfg.idempotency.backend, IdempotencyBackendKind::Redis);
        assert_eq!(cfg.idempotency.on_unavailable, OnUnavailable::Reject);
        cfg.validate().unwrap();
    }

    #[test]
    fn a_shared_backend_without_its_url_is_refused() {
        let yaml = "metadata: { backend: postgres }\n";
        let cfg: CoordinatorConfig = serde_yaml::from_str(yaml).unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("metadata.postgres_url"));
        let yaml = "idempotency: { backend: redis, on_unavailable: reject }\n";
        let cfg: CoordinatorConfig = serde_yaml::from_str(yaml).unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("idempotency.redis_url"));
        assert!(serde_yaml::from_str::<CoordinatorConfig>("metadata: { backend: x }").is_err());
    }

    #[test]
    fn durations_beyond_ten_years_are_refused() {
        let cfg: CoordinatorConfig =
            serde_yaml::from_str("metadata: { startup_wait_secs: 18446744073709551615 }\n")
                .unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("metadata.startup_wait_secs"));
        let cfg: CoordinatorConfig =
            serde_yaml::from_str("hint_retention_secs: 315360001\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("hint_retention_secs"));
        let cfg: StorageConfig =
            serde_yaml::from_str("shutdown_timeout_secs: 315360001\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("shutdown_timeout_secs"));
        let cfg: CoordinatorConfig =
            serde_yaml::from_str(&format!("idempotency_ttl_secs: {MAX_DURATION_SECS}\n")).unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn shipped_storage_config_parses_and_validates() {
        let cfg: StorageConfig =
            load(Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/storage.yaml"))))
                .unwrap();
        cfg.validate().unwrap();
    }
}
