//! `pairdb coordinator` configuration (`config/coordinator.yaml`).

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use super::{check_durations, invalid, resolve, AdminConfig, ConfigError, LogConfig, RpcSection};
use crate::rpc::framing::DEFAULT_MAX_MESSAGE_BYTES;

/// Default of `hint_max_stored`: a million hints (a few hundred MB at most in the store) covers
/// a node down for minutes under heavy writes, or for hours under light ones; past it, read repair
/// takes over.
pub const DEFAULT_HINT_MAX_STORED: u64 = 1_000_000;

/// Default admin port of a coordinator.
pub const DEFAULT_COORDINATOR_ADMIN_PORT: u16 = 9090;

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
    /// Run a Batch for a storage node served by this same process (`pairdb dev`) on its
    /// service directly, without the network (see `storage::local`).
    pub local_storage_calls: bool,
    /// Spread client connections evenly over the cores: the cores share one listening socket
    /// and a core accepts only while it serves no more connections than any other
    /// (`runtime::accept`). False: one SO_REUSEPORT socket per core, the kernel's hash decides.
    pub balance_connections: bool,
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
    /// The HTTP/JSON API, served on the request cores; off unless `http_api.port` is set.
    pub http_api: HttpApiSection,
    /// Log format, level and the slow-request threshold.
    pub log: LogConfig,
    /// The gRPC transport (`rpc.http2`).
    pub rpc: RpcSection,
    /// Where tenants, nodes, migrations and hints live.
    pub metadata: MetadataSection,
    /// Where idempotency records live.
    pub idempotency: IdempotencySection,
    /// Data movement: throttles, the coordinator lease, the longest migration.
    pub migration: MigrationSection,
    /// Client authentication: bearer tokens (`auth.mode`, off by default).
    pub auth: AuthSection,
    /// Per-tenant limits: the defaults of tenants that set none.
    pub limits: LimitsSection,
}

/// The `limits:` section: the limits of a tenant whose own (`CreateTenant`,
/// `UpdateTenantLimits`) are 0. Rates are per coordinator process (each core enforces its
/// share, see `core::limits`); 0 is unlimited. Sizes of 0 are the global `max_key_bytes` /
/// `max_value_bytes`, which cap every tenant's sizes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Key-value requests per second per tenant; 0 = unlimited (the default).
    pub tenant_requests_per_second: u64,
    /// Key and value bytes per second per tenant; 0 = unlimited (the default).
    pub tenant_bytes_per_second: u64,
    /// Longest key of a tenant, bytes; 0 = `max_key_bytes`.
    pub max_key_bytes: u64,
    /// Longest value of a tenant, bytes; 0 = `max_value_bytes`.
    pub max_value_bytes: u64,
}

impl LimitsSection {
    /// The defaults as a tenant's limits (for `core::limits::effective`).
    pub fn defaults(&self) -> crate::core::limits::TenantLimits {
        crate::core::limits::TenantLimits {
            requests_per_second: self.tenant_requests_per_second,
            bytes_per_second: self.tenant_bytes_per_second,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
        }
    }
}

/// Whether calls need a bearer token.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every call is served without a token (default; a warning is logged at start-up).
    #[default]
    Off,
    /// Every `CoordinatorService` call needs a valid token (gRPC health checks and
    /// reflection stay open unless `open_health_and_reflection` is false).
    Required,
}

/// The `auth:` section. Its `Debug` never shows the bootstrap token.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// `off` or `required`.
    pub mode: AuthMode,
    /// A file holding the bootstrap admin token (at least 32 printable characters, surrounding
    /// whitespace ignored). Never stored in the metadata store.
    pub bootstrap_token_file: String,
    /// The bootstrap admin token itself, meant for `PAIRDB_AUTH_BOOTSTRAP_TOKEN` (prefer the
    /// file); used when `bootstrap_token_file` is empty.
    pub bootstrap_token: String,
    /// Whether gRPC health checks (`grpc.health.v1.Health`) and reflection stay open when
    /// `mode` is `required` (default true); false makes them need a valid token of any role.
    pub open_health_and_reflection: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: AuthMode::Off,
            bootstrap_token_file: String::new(),
            bootstrap_token: String::new(),
            open_health_and_reflection: true,
        }
    }
}

impl std::fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSection")
            .field("mode", &self.mode)
            .field("bootstrap_token_file", &self.bootstrap_token_file)
            .field("bootstrap_token", &if self.bootstrap_token.is_empty() { "" } else { "<set>" })
            .field("open_health_and_reflection", &self.open_health_and_reflection)
            .finish()
    }
}

impl AuthSection {
    /// The bootstrap admin token: read from `bootstrap_token_file` when set, else
    /// `bootstrap_token`; `None` when neither is set. Errors name the key at fault, never the
    /// token.
    pub fn bootstrap(&self) -> Result<Option<String>, ConfigError> {
        let token = if !self.bootstrap_token_file.is_empty() {
            match std::fs::read_to_string(&self.bootstrap_token_file) {
                Ok(s) => s.trim().to_owned(),
                Err(_) => {
                    return Err(invalid("auth.bootstrap_token_file", "cannot be read"));
                }
            }
        } else {
            self.bootstrap_token.trim().to_owned()
        };
        if token.is_empty() {
            return Ok(None);
        }
        if !crate::core::auth::valid_bootstrap(&token) {
            let key = if self.bootstrap_token_file.is_empty() {
                "auth.bootstrap_token"
            } else {
                "auth.bootstrap_token_file"
            };
            return Err(invalid(
                key,
                "the bootstrap token must be at least 32 printable characters, without spaces",
            ));
        }
        Ok(Some(token))
    }
}

/// The `migration:` section: how fast data moves when nodes join or leave or a replication
/// factor changes, and the bounds that keep it safe.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationSection {
    /// Cluster-wide cap on bytes streamed per second (keys plus values).
    pub max_bytes_per_sec: u64,
    /// The rate the streams never go below, however busy the foreground: every migration keeps
    /// moving. Bytes per second; above `max_bytes_per_sec` it is lowered to it.
    pub min_bytes_per_sec: u64,
    /// How far the foreground's p99 latency (and the executors' poll lag) on the coordinator
    /// driving the migration may rise above what it was with nothing streaming before the
    /// streams back off, percent; 0 turns this pacing off (only the byte cap and
    /// `backoff_latency_ms` then apply). See docs/DATA_MOVEMENT.md, "Throttling".
    pub foreground_tolerance_pct: u32,
    /// Segments streaming at once, cluster-wide.
    pub max_active_segments: usize,
    /// Streams reading from, or writing to, one storage node at once.
    pub max_streams_per_node: usize,
    /// Entries per streamed page (one ScanRange call, then one Batch of repairs).
    pub page_entries: u32,
    /// A page's write to its target slower than this halves the stream rate (foreground
    /// traffic shares the target); faster pages win the rate back step by step. Milliseconds.
    pub backoff_latency_ms: u64,
    /// A coordinator that could not report to the metadata store for this long refuses
    /// key-value traffic (PLACEMENT_STALE) until it has caught up; a migration stage advances
    /// without it only after this much longer. Milliseconds.
    pub coordinator_lease_ms: u64,
    /// Longest a migration may run; it must stay below `tombstone_grace_secs`, or a delete could
    /// be purged on one replica before the moved copies of the key reach it.
    pub max_duration_secs: u64,
    /// The storage nodes' `tombstone_grace_secs` (the same value; the default is theirs).
    pub tombstone_grace_secs: u64,
    /// How often a storage node's incarnation is compared, and a node found restarted with a
    /// wiped data directory is refilled from the other replicas (anti-entropy). Milliseconds.
    pub anti_entropy_interval_ms: u64,
    /// Digest anti-entropy: compare every token range's replicas by `RangeDigest` and repair the
    /// ranges where they differ, in the background. On by default.
    pub anti_entropy_digests: bool,
    /// Seconds between two digest passes (the first starts this long after start-up).
    pub anti_entropy_digest_interval_secs: u64,
    /// Pause between two ranges of a digest pass, milliseconds: the pass's rate limit.
    pub anti_entropy_range_pause_ms: u64,
}

impl Default for MigrationSection {
    fn default() -> Self {
        Self {
            max_bytes_per_sec: 64 << 20,
            min_bytes_per_sec: 256 << 10,
            foreground_tolerance_pct: 25,
            max_active_segments: 8,
            max_streams_per_node: 2,
            page_entries: 256,
            backoff_latency_ms: 50,
            coordinator_lease_ms: 2000,
            max_duration_secs: 24 * 3600,
            tombstone_grace_secs: super::DEFAULT_TOMBSTONE_GRACE.as_secs(),
            anti_entropy_interval_ms: 1000,
            anti_entropy_digests: true,
            anti_entropy_digest_interval_secs: 3600,
            anti_entropy_range_pause_ms: 100,
        }
    }
}

/// The `http_api:` section: the HTTP/1.1 + JSON API (`/v1/key-value`, `/v1/tenants`,
/// `/v1/admin/...`), served by every request core on one SO_REUSEPORT port and answered by the
/// same handlers as gRPC. Off by default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApiSection {
    /// Address to listen on; empty means the same as the gRPC `host`.
    pub host: String,
    /// Port; unset (the default) serves no HTTP API at all; 0 picks a free one (printed in the
    /// ready line).
    pub port: Option<u16>,
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
            local_storage_calls: true,
            balance_connections: true,
            max_batch_ops: 256,
            max_inflight_batches: 8,
            health_check_interval_ms: 1000,
            hint_replay_interval_ms: 1000,
            hint_retention_secs: 3 * 3600,
            hint_max_stored: DEFAULT_HINT_MAX_STORED,
            idempotency_ttl_secs: 24 * 3600,
            idempotency_max_records: 1_000_000,
            read_repair_queue: 10_000,
            read_repair_attempts: 3,
            storage_nodes: Vec::new(),
            shutdown_timeout_secs: 10,
            admin: AdminConfig::default(),
            http_api: HttpApiSection::default(),
            log: LogConfig::default(),
            rpc: RpcSection::default(),
            metadata: MetadataSection::default(),
            idempotency: IdempotencySection::default(),
            migration: MigrationSection::default(),
            auth: AuthSection::default(),
            limits: LimitsSection::default(),
        }
    }
}

impl CoordinatorConfig {
    /// Checks ranges and names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth.bootstrap()?;
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
        if self.limits.max_key_bytes > self.max_key_bytes as u64 {
            return Err(invalid("limits.max_key_bytes", "must not be above max_key_bytes"));
        }
        if self.limits.max_value_bytes > self.max_value_bytes as u64 {
            return Err(invalid("limits.max_value_bytes", "must not be above max_value_bytes"));
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
        let m = &self.migration;
        for (field, v) in [
            ("migration.max_bytes_per_sec", m.max_bytes_per_sec),
            ("migration.min_bytes_per_sec", m.min_bytes_per_sec),
            ("migration.max_active_segments", m.max_active_segments as u64),
            ("migration.max_streams_per_node", m.max_streams_per_node as u64),
            ("migration.backoff_latency_ms", m.backoff_latency_ms),
            ("migration.coordinator_lease_ms", m.coordinator_lease_ms),
            ("migration.max_duration_secs", m.max_duration_secs),
            ("migration.anti_entropy_interval_ms", m.anti_entropy_interval_ms),
            ("migration.anti_entropy_digest_interval_secs", m.anti_entropy_digest_interval_secs),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if m.foreground_tolerance_pct > 10_000 {
            return Err(invalid(
                "migration.foreground_tolerance_pct",
                "must be between 0 (pacing off) and 10000",
            ));
        }
        if !(1..=10_000).contains(&m.page_entries) {
            return Err(invalid("migration.page_entries", "must be between 1 and 10000"));
        }
        if m.max_duration_secs >= m.tombstone_grace_secs {
            return Err(invalid(
                "migration.max_duration_secs",
                "must be below migration.tombstone_grace_secs (the storage nodes' tombstone \
                 grace): a longer migration could resurrect deleted keys",
            ));
        }
        check_durations(&[
            ("migration.max_duration_secs", m.max_duration_secs),
            ("migration.tombstone_grace_secs", m.tombstone_grace_secs),
            ("hint_retention_secs", self.hint_retention_secs),
            ("idempotency_ttl_secs", self.idempotency_ttl_secs),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs),
            ("metadata.reload_interval_secs", self.metadata.reload_interval_secs),
            ("metadata.startup_wait_secs", self.metadata.startup_wait_secs),
        ])?;
        self.admin_addr()?;
        self.log.validate()?;
        let grpc = self.listen_addr()?;
        if let Some(http) = self.http_api_addr()? {
            // The same address would join the gRPC listeners' SO_REUSEPORT group, and the kernel
            // would hand HTTP clients to gRPC listeners and the other way round; on another host
            // address it would shadow or be shadowed by gRPC. One port, one protocol.
            if http.port() != 0 && http.port() == grpc.port() {
                return Err(invalid("http_api.port", "must differ from the gRPC port"));
            }
        }
        Ok(())
    }

    /// The resolved listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve("host", &self.host, self.port)
    }

    /// The resolved HTTP API address, `None` when `http_api.port` is unset (the API is off).
    pub fn http_api_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(port) = self.http_api.port else { return Ok(None) };
        let host = if self.http_api.host.is_empty() { &self.host } else { &self.http_api.host };
        resolve("http_api.host", host, port).map(Some)
    }

    /// The resolved admin address.
    pub fn admin_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.admin.listen_addr(&self.host, DEFAULT_COORDINATOR_ADMIN_PORT)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load;

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
    fn http_api_is_off_unless_a_port_is_set() {
        let cfg: CoordinatorConfig = serde_yaml::from_str("node_id: c\n").unwrap();
        assert_eq!(cfg.http_api_addr().unwrap(), None);
        let cfg: CoordinatorConfig = serde_yaml::from_str("http_api: { port: 8080 }\n").unwrap();
        assert_eq!(cfg.http_api_addr().unwrap(), Some("127.0.0.1:8080".parse().unwrap()));
        cfg.validate().unwrap();
        let cfg: CoordinatorConfig =
            serde_yaml::from_str("port: 7000\nhttp_api: { port: 7000 }\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("http_api.port"));
        let cfg: CoordinatorConfig =
            serde_yaml::from_str("port: 7000\nhttp_api: { port: 7000, host: 0.0.0.0 }\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("http_api.port"));
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
    fn the_bootstrap_token_is_checked_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        let token = "t".repeat(40);
        std::fs::write(&file, format!("  {token}\n")).unwrap();
        let mut auth = AuthSection {
            mode: AuthMode::Required,
            bootstrap_token_file: file.display().to_string(),
            ..Default::default()
        };
        assert_eq!(auth.bootstrap().unwrap(), Some(token.clone()), "trimmed");
        std::fs::write(&file, "short").unwrap();
        let e = auth.bootstrap().unwrap_err().to_string();
        assert!(e.contains("auth.bootstrap_token_file") && !e.contains("short"), "{e}");
        auth.bootstrap_token_file = dir.path().join("absent").display().to_string();
        assert!(auth.bootstrap().is_err());
        auth.bootstrap_token_file.clear();
        assert_eq!(auth.bootstrap().unwrap(), None);
        auth.bootstrap_token = token.clone();
        assert_eq!(auth.bootstrap().unwrap(), Some(token.clone()));
        assert!(!format!("{auth:?}").contains(&token));
        auth.bootstrap_token = "has a space in it but is long enough to pass".into();
        assert!(auth.bootstrap().unwrap_err().to_string().contains("auth.bootstrap_token"));
        let cfg = CoordinatorConfig { auth, ..Default::default() };
        assert!(cfg.validate().is_err(), "validate checks the bootstrap token");
    }
}
