//! Typed configuration, parsed from YAML once at start-up.
//!
//! Every key has a default (so an empty file is a valid config) and unknown keys are refused by
//! name, so a typo fails loudly at start instead of being silently ignored. Command-line flags
//! override the file. The files under `config/` document every key with its unit, default and
//! reason. `PAIRDB_*` environment variables override the file and are overridden by flags:
//! `PAIRDB_` + the key path upper-cased, `_` between levels (see [`env`]).
//!
//! This file holds what every role shares: loading ([`load`]), errors, the `admin:` and `log:`
//! sections and the checks ([`resolve`], duration limits). Each role's own keys are in a file of
//! their own, re-exported here: [`StorageConfig`] (`storage.rs`) and [`CoordinatorConfig`]
//! (`coordinator.rs`). Configuration depends on no server module: the storage engine reads its
//! defaults from here, not the other way round.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Deserialize};

mod coordinator;
pub mod env;
mod storage;
pub mod tls;

pub use coordinator::{
    AuthMode, AuthSection, CoordinatorConfig, HttpApiSection, IdempotencyBackendKind,
    IdempotencySection, LimitsSection, MetadataBackend, MetadataSection, MigrationSection,
    OnUnavailable, StorageNodeEntry, DEFAULT_COORDINATOR_ADMIN_PORT, DEFAULT_HINT_MAX_STORED,
};
pub use storage::{
    DurabilityMode, StorageConfig, DEFAULT_BACKGROUND_NICE, DEFAULT_CACHE_BYTES,
    DEFAULT_GROUP_COMMIT_INTERVAL, DEFAULT_PURGE_INTERVAL, DEFAULT_STORAGE_ADMIN_PORT,
    DEFAULT_TOMBSTONE_GRACE,
};
pub use tls::TlsSection;

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

/// `rpc:` section: the gRPC transport, the same for coordinators and storage nodes.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RpcSection {
    /// The HTTP/2 implementation under gRPC, for the server and for the coordinator's
    /// connections to storage nodes: `native` (PairDB's own layer) or `h2` (the `h2` crate,
    /// kept as the reference implementation).
    pub http2: Http2Impl,
    /// A file holding the cluster secret (at least [`MIN_CLUSTER_SECRET_BYTES`] bytes after
    /// trimming whitespace). A storage node with a secret refuses every storage call that does
    /// not carry `authorization: Bearer <secret>`; a coordinator sends it on every call to its
    /// storage nodes. Unset (and no `cluster_secret`): no check, nothing sent.
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret itself, meant for the `PAIRDB_RPC_CLUSTER_SECRET` environment
    /// variable (a file keeps it out of `ps` and config dumps). Never both.
    pub cluster_secret: Option<String>,
    /// TLS on the gRPC port and on a coordinator's links to storage nodes (`rpc.tls.*`).
    pub tls: TlsSection,
}

/// The shortest cluster secret accepted, in bytes: 256 bits, out of any brute force's reach.
pub const MIN_CLUSTER_SECRET_BYTES: usize = 32;

/// Never prints the secret.
impl std::fmt::Debug for RpcSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcSection")
            .field("http2", &self.http2)
            .field("cluster_secret_file", &self.cluster_secret_file)
            .field("cluster_secret", &self.cluster_secret.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl RpcSection {
    /// Checks the cluster secret (not both keys, the file readable, long enough) and the TLS
    /// files (readable, valid PEM, keys that fit their certificates).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster_secret_bytes()?;
        self.tls.validate()
    }

    /// The cluster secret, trimmed, read from `cluster_secret_file` or `cluster_secret`; None
    /// when neither is set. Errors name the key, never the secret.
    pub fn cluster_secret_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let (field, secret) = match (&self.cluster_secret_file, &self.cluster_secret) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "rpc.cluster_secret",
                    "set either rpc.cluster_secret (PAIRDB_RPC_CLUSTER_SECRET) or \
                     rpc.cluster_secret_file, not both",
                ))
            }
            (Some(path), None) => {
                let raw = std::fs::read(path).map_err(|e| {
                    invalid("rpc.cluster_secret_file", &format!("reading {}: {e}", path.display()))
                })?;
                ("rpc.cluster_secret_file", raw.trim_ascii().to_vec())
            }
            (None, Some(text)) => ("rpc.cluster_secret", text.trim().as_bytes().to_vec()),
        };
        if secret.len() < MIN_CLUSTER_SECRET_BYTES {
            return Err(invalid(
                field,
                &format!(
                    "the cluster secret must be at least {MIN_CLUSTER_SECRET_BYTES} bytes \
                     (it has {}); make one with `openssl rand -hex 32`",
                    secret.len()
                ),
            ));
        }
        if secret.iter().any(|b| !(0x21..=0x7e).contains(b)) {
            return Err(invalid(
                field,
                "the cluster secret must be printable ASCII without spaces (it travels in an \
                 HTTP header); `openssl rand -hex 32` makes one",
            ));
        }
        Ok(Some(secret))
    }

    /// The `authorization` header value a coordinator sends to its storage nodes
    /// (`Bearer <secret>`), None without a secret. An unreadable secret (which `validate`
    /// refuses at start) gives None and a warning.
    pub fn storage_authorization(&self) -> Option<bytes::Bytes> {
        match self.cluster_secret_bytes() {
            Ok(secret) => secret.map(|s| {
                let mut v = b"Bearer ".to_vec();
                v.extend_from_slice(&s);
                bytes::Bytes::from(v)
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no cluster secret sent to storage nodes");
                None
            }
        }
    }
}

/// Which HTTP/2 implementation serves gRPC.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Http2Impl {
    /// PairDB's own gRPC-only layer (`rpc::http2`).
    #[default]
    Native,
    /// The `h2` crate.
    H2,
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
pub(crate) fn check_durations(fields: &[(&'static str, u64)]) -> Result<(), ConfigError> {
    for &(field, secs) in fields {
        if secs > MAX_DURATION_SECS {
            return Err(invalid(field, "must be at most 315360000 (10 years)"));
        }
    }
    Ok(())
}

pub(crate) fn invalid(field: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The storage engine depends on configuration (its defaults live here), so the other way
    /// round would be a cycle.
    #[test]
    fn config_imports_no_storage_module() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config");
        // Spelled in pieces so that this file does not match itself.
        let needle = ["crate", "storage"].join("::");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(&needle), "{} uses {needle}", path.display());
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn cluster_secret_is_off_by_default() {
        let rpc = RpcSection::default();
        rpc.validate().unwrap();
        assert_eq!(rpc.cluster_secret_bytes().unwrap(), None);
        assert_eq!(rpc.storage_authorization(), None);
        StorageConfig::default().validate().unwrap();
    }

    #[test]
    fn cluster_secret_from_a_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("  {SECRET}\n")).unwrap();
        let yaml = format!("rpc: {{ cluster_secret_file: {} }}\n", path.display());
        let cfg: StorageConfig = serde_yaml::from_str(&yaml).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.rpc.cluster_secret_bytes().unwrap().unwrap(), SECRET.as_bytes());
        assert_eq!(
            cfg.rpc.storage_authorization().unwrap(),
            bytes::Bytes::from(format!("Bearer {SECRET}"))
        );
        // A missing file names the key.
        let rpc = RpcSection {
            cluster_secret_file: Some(dir.path().join("missing")),
            ..Default::default()
        };
        assert!(rpc.validate().unwrap_err().to_string().contains("rpc.cluster_secret_file"));
    }

    #[test]
    fn cluster_secret_errors_name_the_key_and_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort-but-secret\n").unwrap();
        let rpc = RpcSection { cluster_secret_file: Some(short), ..Default::default() };
        let e = rpc.validate().unwrap_err().to_string();
        assert!(e.contains("rpc.cluster_secret_file") && e.contains("32"), "{e}");
        assert!(!e.contains("tooshort"), "{e}");

        let rpc = RpcSection { cluster_secret: Some("x".repeat(31)), ..Default::default() };
        let e = rpc.validate().unwrap_err().to_string();
        assert!(e.contains("rpc.cluster_secret") && !e.contains("xxx"), "{e}");

        let spaced = format!("{} {}", &SECRET[..16], &SECRET[16..]);
        let rpc = RpcSection { cluster_secret: Some(spaced), ..Default::default() };
        assert!(rpc.validate().unwrap_err().to_string().contains("printable"));

        let both = RpcSection {
            cluster_secret: Some(SECRET.into()),
            cluster_secret_file: Some(dir.path().join("short")),
            ..Default::default()
        };
        assert!(both.validate().unwrap_err().to_string().contains("not both"));
        // The coordinator's `rpc:` section is the same type.
        let cfg: CoordinatorConfig =
            serde_yaml::from_str(&format!("rpc: {{ cluster_secret: {SECRET} }}\n")).unwrap();
        cfg.rpc.validate().unwrap();
        assert!(!format!("{cfg:?}").contains(SECRET), "Debug prints the secret");
    }

    #[test]
    fn cluster_secret_comes_from_the_environment() {
        let vars = vec![("PAIRDB_RPC_CLUSTER_SECRET".to_owned(), SECRET.to_owned())];
        let (cfg, applied) = load_with_env::<StorageConfig>(None, vars).unwrap();
        assert_eq!(applied.used, ["PAIRDB_RPC_CLUSTER_SECRET"]);
        assert_eq!(cfg.rpc.cluster_secret.as_deref(), Some(SECRET));
        cfg.validate().unwrap();
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
}
