//! `pairdb storage` configuration (`config/storage.yaml`), and the storage engine's defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{check_durations, invalid, resolve, AdminConfig, ConfigError, LogConfig, RpcSection};
use crate::rpc::framing::DEFAULT_MAX_MESSAGE_BYTES;

/// Default group-commit interval: 5 ms. It bounds what a simultaneous power loss of every
/// replica of a key can lose to ~5 ms of acknowledged writes (a process crash loses nothing in
/// either mode). Shorter intervals fsync more often for no gain in the common case of one node
/// failing, since the other replicas hold the write; longer ones make each fsync, and so the
/// journal-mutex stall a request core may see (`storage::engine` module doc), longer.
pub const DEFAULT_GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(5);

/// Default tombstone grace: 10 days, as Cassandra's `gc_grace_seconds`. A tombstone may be purged
/// only once no replica can still receive the value it deletes: the grace must exceed how long
/// hints are kept, how long a node may be down and still rejoin without a full rebuild, and the
/// interval between anti-entropy repairs. Ten days covers a node lost over a long weekend plus
/// a week of repair cycle; the cost is disk for deleted keys.
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(10 * 24 * 3600);

/// Suggested interval for the engine's purger (`Engine::spawn_purger`): hourly. Purge scans the
/// whole keyspace, and an hour is negligible against the 10-day grace.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Default block cache: 256 MiB. fjall's own 32 MiB default suits an embedded library; a storage
/// node is a dedicated host, and fjall recommends 20-25% of RAM, which config should set.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Default nice value of the engine's flush and compaction threads (`background_nice`): the
/// lowest priority, so that a memtable flush uses the CPU the request cores leave idle instead
/// of taking it from them (docs/PERFORMANCE.md, "Background threads at a lower priority").
pub const DEFAULT_BACKGROUND_NICE: i32 = 19;

/// Default admin port of a storage node.
pub const DEFAULT_STORAGE_ADMIN_PORT: u16 = 9091;

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
    /// Nice value (0-19) of the engine's flush and compaction threads: 19 (the default) runs
    /// them on the CPU the request cores leave idle; 0 runs them at the request cores' priority.
    pub background_nice: i32,
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
    /// The gRPC transport (`rpc.http2`).
    pub rpc: RpcSection,
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
            group_commit_ms: DEFAULT_GROUP_COMMIT_INTERVAL.as_millis() as u64,
            cache_mb: DEFAULT_CACHE_BYTES >> 20,
            background_nice: DEFAULT_BACKGROUND_NICE,
            tombstone_grace_secs: DEFAULT_TOMBSTONE_GRACE.as_secs(),
            purge_interval_secs: DEFAULT_PURGE_INTERVAL.as_secs(),
            shutdown_timeout_secs: 10,
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            rpc: RpcSection::default(),
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
        if !(0..=19).contains(&self.background_nice) {
            return Err(invalid("background_nice", "must be between 0 and 19"));
        }
        check_durations(&[
            ("tombstone_grace_secs", self.tombstone_grace_secs),
            ("purge_interval_secs", self.purge_interval_secs),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs),
        ])?;
        self.admin_addr()?;
        self.log.validate()?;
        self.rpc.validate()?;
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load;

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
    fn shipped_storage_config_parses_and_validates() {
        let cfg: StorageConfig =
            load(Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/storage.yaml"))))
                .unwrap();
        cfg.validate().unwrap();
    }
}
