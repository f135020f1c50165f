//! [`Client`], its [`ClientBuilder`], per-call options and the retry loop.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::{
    error::{Error, Result},
    proto::{self, coordinator_service_client::CoordinatorServiceClient},
    Consistency, VectorClock,
};

/// Default deadline of one logical call, retries and backoff included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of attempts of one logical call (the first one and up to three retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default first backoff delay.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Default ceiling of a backoff delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Default TCP connect timeout per address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Configures and builds a [`Client`]. Start from [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    addresses: Vec<String>,
    tenant: String,
    timeout: Duration,
    attempt_timeout: Option<Duration>,
    connect_timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            tenant: "default".into(),
            timeout: DEFAULT_TIMEOUT,
            attempt_timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl ClientBuilder {
    /// Adds one coordinator address: `host:port` or `http://host:port`. Calls go to the first
    /// address that works, in the order given.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.addresses.push(address.into());
        self
    }

    /// Adds several coordinator addresses (see [`ClientBuilder::address`]).
    pub fn addresses<I, S>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.addresses.extend(addresses.into_iter().map(Into::into));
        self
    }

    /// The tenant of key-value calls (default: `"default"`); see also [`Client::with_tenant`].
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// The default deadline of one logical call, all its attempts and backoff included
    /// (default: 5 s). Overridable per call ([`ReadOptions::timeout`],
    /// [`WriteOptions::timeout`], [`Client::with_timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A deadline for each attempt, within the call's deadline (default: none, an attempt may
    /// use what is left of the call's). Set it below the call's deadline so that a coordinator
    /// that accepts connections but never answers costs one attempt and not the whole call.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The TCP connect timeout per address (default: 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many attempts one logical call makes at most, the first included (default: 4; at
    /// least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff between retries: the first delay and the ceiling (defaults: 50 ms, 1 s). The
    /// delay doubles per retry and is jittered to between half and all of it. A retry that moves
    /// to an address this call has not tried yet does not wait.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    /// Builds the client. No connection is made here: each address connects on its first use
    /// (and reconnects after a failure), so building never fails because a coordinator is down.
    ///
    /// Fails with [`Error::Config`] when there is no address or one does not parse.
    pub fn build(self) -> Result<Client> {
        if self.addresses.is_empty() {
            return Err(Error::Config { message: "no coordinator address given".into() });
        }
        let mut endpoints = Vec::with_capacity(self.addresses.len());
        for address in &self.addresses {
            let uri =
                if address.contains("://") { address.clone() } else { format!("http://{address}") };
            let endpoint = Endpoint::from_shared(uri).map_err(|e| Error::Config {
                message: format!("bad coordinator address {address:?}: {e}"),
            })?;
            let endpoint = endpoint.connect_timeout(self.connect_timeout).tcp_nodelay(true);
            endpoints.push(Target { address: address.clone(), endpoint, channel: OnceLock::new() });
        }
        Ok(Client {
            shared: Arc::new(Shared {
                targets: endpoints,
                preferred: AtomicUsize::new(0),
                attempt_timeout: self.attempt_timeout,
                max_attempts: self.max_attempts,
                backoff_base: self.backoff_base,
                backoff_max: self.backoff_max,
                key_locks: Mutex::new(HashMap::new()),
            }),
            tenant: Arc::from(self.tenant),
            timeout: self.timeout,
        })
    }
}

/// One coordinator address and its lazily created channel.
struct Target {
    address: String,
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
}

impl Target {
    fn client(&self) -> CoordinatorServiceClient<Channel> {
        // `connect_lazy` spawns the channel's worker task, so it runs on first use, inside the
        // caller's runtime, and not in `build`.
        let channel = self.channel.get_or_init(|| self.endpoint.connect_lazy());
        CoordinatorServiceClient::new(channel.clone())
    }
}

type KeyLocks = Mutex<HashMap<(Arc<str>, String), Arc<tokio::sync::Mutex<()>>>>;

struct Shared {
    targets: Vec<Target>,
    /// The address calls start at: the last one that answered.
    preferred: AtomicUsize,
    attempt_timeout: Option<Duration>,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    /// Serializes [`Client::update`] per (tenant, key) among the clones of one client.
    key_locks: KeyLocks,
}

/// A PairDB client: cheap to clone (clones share connections), safe to use from many tasks.
///
/// Needs a tokio runtime with the time driver enabled. Each address's connection is made on its
/// first use and belongs to that runtime: build a client per runtime (not one `static` client
/// shared by several `#[tokio::test]` runtimes). See the crate documentation for the retry and
/// idempotency rules.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    tenant: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field(
                "addresses",
                &self.shared.targets.iter().map(|t| t.address.as_str()).collect::<Vec<_>>(),
            )
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Options of one read. `ReadOptions::default()` reads at QUORUM within the client's deadline.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
}

impl ReadOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many replicas must answer (default: QUORUM).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Options of one write or delete. `WriteOptions::default()` writes at QUORUM, blind (no causal
/// context), with a generated idempotency key, within the client's deadline.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
    idempotency_key: Option<String>,
    context: Option<VectorClock>,
}

impl WriteOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many replicas must acknowledge (default: QUORUM).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Uses this idempotency key instead of a generated one: to make a retry of your own (after
    /// the client gave up, or from another process) apply once. Sending the same key with a
    /// different request (value, consistency, context) on the same key fails with
    /// [`Error::IdempotencyKeyConflict`].
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The causal context: the clock of the version this write replaces (from
    /// [`Versioned::clock`]). The write then supersedes that version instead of being ordered
    /// against it by timestamp.
    pub fn context(mut self, clock: VectorClock) -> Self {
        self.context = Some(clock);
        self
    }
}

/// A value read, with its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The version's vector clock: pass it as [`WriteOptions::context`] to supersede it.
    pub clock: VectorClock,
    /// Replicas whose replies were considered.
    pub replica_count: u32,
}

/// The outcome of a write or a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The key.
    pub key: String,
    /// The idempotency key the write was sent with (generated unless given).
    pub idempotency_key: String,
    /// The clock of the new version.
    pub clock: VectorClock,
    /// Replicas that acknowledged before the answer.
    pub replica_count: u32,
    /// True when the server answered with the stored response of an earlier request with the
    /// same idempotency key: this request applied nothing.
    pub is_duplicate: bool,
}

/// A fresh idempotency key: 128 random bits in lower-case hex.
pub fn new_idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether a call may be repeated after a timeout (it cannot apply twice).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotence {
    /// Reads, and writes that carry an idempotency key.
    Safe,
    /// Admin changes: retried on UNAVAILABLE only.
    Unsafe,
}

impl Client {
    /// A builder with the defaults: tenant `"default"`, 5 s deadline, 4 attempts, backoff 50 ms
    /// doubling up to 1 s.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client for one address with the defaults.
    pub fn connect(address: impl Into<String>) -> Result<Client> {
        Client::builder().address(address).build()
    }

    /// A clone that sends key-value calls to `tenant`, sharing this client's connections.
    pub fn with_tenant(&self, tenant: impl Into<String>) -> Client {
        Client { tenant: Arc::from(tenant.into()), ..self.clone() }
    }

    /// A clone whose calls have this deadline by default, sharing this client's connections.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client { timeout, ..self.clone() }
    }

    /// The tenant of this client's key-value calls.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    // --------------------------------------------------------------------------------------------
    // Key-value calls.
    // --------------------------------------------------------------------------------------------

    /// Reads `key` at QUORUM. A key never written or deleted fails with
    /// [`Error::KeyNotFound`]; see [`Client::get_opt`] for an `Option`.
    pub async fn get(&self, key: impl Into<String>) -> Result<Versioned> {
        self.get_with(key, ReadOptions::default()).await
    }

    /// Reads `key`, `None` when it has no live version.
    pub async fn get_opt(&self, key: impl Into<String>) -> Result<Option<Versioned>> {
        match self.get(key).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::KeyNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `key` with these options.
    pub async fn get_with(
        &self,
        key: impl Into<String>,
        options: ReadOptions,
    ) -> Result<Versioned> {
        let request = proto::ReadKeyValueRequest {
            tenant_id: self.tenant.to_string(),
            key: key.into(),
            consistency: options.consistency.unwrap_or_default().to_proto(),
        };
        let timeout = options.timeout.unwrap_or(self.timeout);
        let r = self
            .call(timeout, Idempotence::Safe, |mut c, t| {
                let request = request.clone();
                async move { c.read_key_value(with_timeout(request, t)).await }
            })
            .await?;
        Ok(Versioned {
            key: r.key,
            value: r.value,
            clock: r.vector_clock.unwrap_or_default(),
            replica_count: u32::try_from(r.replica_count).unwrap_or(0),
        })
    }

    /// Writes `value` under `key` at QUORUM, blind, with a generated idempotency key.
    pub async fn put(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Result<Written> {
        self.put_with(key, value, WriteOptions::default()).await
    }

    /// Writes `value` under `key` with these options. The idempotency key (given or generated
    /// here, once) is the same on every retry of this call.
    pub async fn put_with(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        options: WriteOptions,
    ) -> Result<Written> {
        let request = proto::WriteKeyValueRequest {
            tenant_id: self.tenant.to_string(),
            key: key.into(),
            value: value.into(),
            consistency: options.consistency.unwrap_or_default().to_proto(),
            idempotency_key: options.idempotency_key.unwrap_or_else(new_idempotency_key),
            vector_clock: options.context,
        };
        let timeout = options.timeout.unwrap_or(self.timeout);
        let r = self
            .call(timeout, Idempotence::Safe, |mut c, t| {
                let request = request.clone();
                async move { c.write_key_value(with_timeout(request, t)).await }
            })
            .await?;
        Ok(Written {
            key: r.key,
            idempotency_key: r.idempotency_key,
            clock: r.vector_clock.unwrap_or_default(),
            replica_count: u32::try_from(r.replica_count).unwrap_or(0),
            is_duplicate: r.is_duplicate,
        })
    }

    /// Deletes `key` (writes a tombstone) at QUORUM, with a generated idempotency key. Deleting
    /// a key that does not exist succeeds.
    pub async fn delete(&self, key: impl Into<String>) -> Result<Written> {
        self.delete_with(key, WriteOptions::default()).await
    }

    /// Deletes `key` with these options (see [`Client::put_with`]).
    pub async fn delete_with(
        &self,
        key: impl Into<String>,
        options: WriteOptions,
    ) -> Result<Written> {
        let request = proto::DeleteKeyValueRequest {
            tenant_id: self.tenant.to_string(),
            key: key.into(),
            consistency: options.consistency.unwrap_or_default().to_proto(),
            idempotency_key: options.idempotency_key.unwrap_or_else(new_idempotency_key),
            vector_clock: options.context,
        };
        let timeout = options.timeout.unwrap_or(self.timeout);
        let r = self
            .call(timeout, Idempotence::Safe, |mut c, t| {
                let request = request.clone();
                async move { c.delete_key_value(with_timeout(request, t)).await }
            })
            .await?;
        Ok(Written {
            key: r.key,
            idempotency_key: r.idempotency_key,
            clock: r.vector_clock.unwrap_or_default(),
            replica_count: u32::try_from(r.replica_count).unwrap_or(0),
            is_duplicate: r.is_duplicate,
        })
    }

    /// Read-modify-write of `key` at QUORUM: see [`Client::update_with`].
    pub async fn update<F>(&self, key: impl Into<String>, f: F) -> Result<Option<Written>>
    where
        F: FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    {
        self.update_with(key, WriteOptions::default(), f).await
    }

    /// Read-modify-write: reads `key` (with its vector clock), calls `f` with the current value
    /// (`None` when the key has no live version) and, if `f` returns a new value, writes it with
    /// the clock it read as causal context. Returns the write, or `None` when `f` returned
    /// `None` (nothing is written).
    ///
    /// `options` apply to both the read and the write (consistency, deadline of each); a given
    /// [`WriteOptions::context`] is replaced by the clock read, and a given idempotency key is
    /// used for the write.
    ///
    /// # What it guarantees
    ///
    /// - The new version supersedes the version read: it carries that version's clock, so a
    ///   replica never keeps the old value because of timestamps (a writer whose clock runs
    ///   behind still replaces what it read).
    /// - Updates of the same key through one [`Client`] (and its clones, from any number of
    ///   tasks) run one after the other: each reads after the previous one's write was
    ///   acknowledged. With QUORUM (or ALL) reads and writes, R + W > N, so the read sees that
    ///   write and no update is lost: two tasks each incrementing a counter N times end at 2N.
    /// - The write is retried like any write (same idempotency key); `f` is called once.
    ///
    /// # What it does not guarantee
    ///
    /// - Updates from other clients or processes are not serialized with these: PairDB has no
    ///   compare-and-set. Two updates that read the same version are both accepted; one of them
    ///   wins by the winner rule (timestamp, then writer id) and the other's change is lost,
    ///   with no error to either writer. Keep one writer per key (or one `Client`) when updates
    ///   must not be lost.
    /// - With consistency ONE the read may miss the previous write, and so lose it.
    /// - A deleted key reads as absent without its tombstone's clock, so the first write after a
    ///   delete is blind (ordered against the tombstone by timestamp).
    /// - If the write fails, `f` has run but nothing may have been written (or, for a
    ///   [`Error::QuorumNotReached`], some replicas may hold the new value).
    pub async fn update_with<F>(
        &self,
        key: impl Into<String>,
        options: WriteOptions,
        f: F,
    ) -> Result<Option<Written>>
    where
        F: FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    {
        let key = key.into();
        let _guard = self.lock_key(&key).await;
        let mut read = ReadOptions::new();
        read.consistency = options.consistency;
        read.timeout = options.timeout;
        let current = match self.get_with(key.clone(), read).await {
            Ok(v) => Some(v),
            Err(Error::KeyNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let Some(value) = f(current.as_ref().map(|v| v.value.as_slice())) else {
            return Ok(None);
        };
        let mut write = options;
        write.context = current.map(|v| v.clock);
        self.put_with(key, value, write).await.map(Some)
    }

    // --------------------------------------------------------------------------------------------
    // Tenant and admin calls.
    // --------------------------------------------------------------------------------------------

    /// Creates a tenant; `replication_factor` 0 means the server's default (3). Fails with
    /// [`Error::TenantExists`] when it exists (also when an earlier attempt of this call created
    /// it and its answer was lost).
    pub async fn create_tenant(
        &self,
        tenant_id: impl Into<String>,
        replication_factor: u32,
    ) -> Result<proto::CreateTenantResponse> {
        let request = proto::CreateTenantRequest {
            tenant_id: tenant_id.into(),
            replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
        };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.create_tenant(with_timeout(request, t)).await }
        })
        .await
    }

    /// A tenant's configuration; [`Error::TenantNotFound`] when it does not exist.
    pub async fn get_tenant(
        &self,
        tenant_id: impl Into<String>,
    ) -> Result<proto::GetTenantResponse> {
        let request = proto::GetTenantRequest { tenant_id: tenant_id.into() };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.get_tenant(with_timeout(request, t)).await }
        })
        .await
    }

    /// Changes a tenant's replication factor; the answer names the migration it starts.
    pub async fn update_replication_factor(
        &self,
        tenant_id: impl Into<String>,
        replication_factor: u32,
    ) -> Result<proto::UpdateReplicationFactorResponse> {
        let request = proto::UpdateReplicationFactorRequest {
            tenant_id: tenant_id.into(),
            new_replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
        };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.update_replication_factor(with_timeout(request, t)).await }
        })
        .await
    }

    /// The registered storage nodes.
    pub async fn list_storage_nodes(&self) -> Result<Vec<proto::StorageNodeInfo>> {
        let r = self
            .call(self.timeout, Idempotence::Safe, |mut c, t| async move {
                c.list_storage_nodes(with_timeout(proto::ListStorageNodesRequest {}, t)).await
            })
            .await?;
        Ok(r.nodes)
    }

    /// Registers a storage node; `virtual_nodes` 0 means the default (150).
    pub async fn add_storage_node(
        &self,
        node_id: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        virtual_nodes: u32,
    ) -> Result<proto::AddStorageNodeResponse> {
        let request = proto::AddStorageNodeRequest {
            node_id: node_id.into(),
            host: host.into(),
            port: i32::from(port),
            virtual_nodes: i32::try_from(virtual_nodes).unwrap_or(i32::MAX),
        };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.add_storage_node(with_timeout(request, t)).await }
        })
        .await
    }

    /// Removes a storage node; `force` removes it even when it may hold the only copy of keys.
    pub async fn remove_storage_node(
        &self,
        node_id: impl Into<String>,
        force: bool,
    ) -> Result<proto::RemoveStorageNodeResponse> {
        let request = proto::RemoveStorageNodeRequest { node_id: node_id.into(), force };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.remove_storage_node(with_timeout(request, t)).await }
        })
        .await
    }

    /// A migration's status.
    pub async fn get_migration_status(
        &self,
        migration_id: impl Into<String>,
    ) -> Result<proto::GetMigrationStatusResponse> {
        let request = proto::GetMigrationStatusRequest { migration_id: migration_id.into() };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.get_migration_status(with_timeout(request, t)).await }
        })
        .await
    }

    // --------------------------------------------------------------------------------------------
    // The retry loop.
    // --------------------------------------------------------------------------------------------

    /// Runs one logical call: attempts on the preferred address, moving to the next on
    /// transport failures and UNAVAILABLE, retrying what is safe with backoff, at most
    /// `max_attempts` times and within `timeout` in all.
    async fn call<T, F, Fut>(
        &self,
        timeout: Duration,
        idempotence: Idempotence,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut(CoordinatorServiceClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let shared = &*self.shared;
        let n = shared.targets.len();
        let deadline = Instant::now() + timeout;
        let mut index = shared.preferred.load(Ordering::Relaxed) % n;
        let mut tried = vec![false; n];
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            tried[index] = true;
            let target = &shared.targets[index];
            let left = deadline.saturating_duration_since(Instant::now());
            let budget = shared.attempt_timeout.map_or(left, |t| t.min(left));
            // `silent`: this address gave no answer in time (tonic enforces the `grpc-timeout`
            // it sends; the outer timeout is a backstop).
            let (error, silent) = if budget.is_zero() {
                let message = format!("the call's deadline of {timeout:?} passed before an answer");
                (Error::DeadlineExceeded { message }, false)
            } else {
                let no_answer = || Error::DeadlineExceeded {
                    message: format!(
                        "no answer from {} within {budget:?} (attempt {attempt})",
                        target.address
                    ),
                };
                match tokio::time::timeout(budget, f(target.client(), budget)).await {
                    Ok(Ok(response)) => {
                        shared.preferred.store(index, Ordering::Relaxed);
                        return Ok(response.into_inner());
                    }
                    Ok(Err(status)) if crate::error::is_client_timeout(&status) => {
                        (no_answer(), true)
                    }
                    Ok(Err(status)) => (Error::from_status(&status, &target.address), false),
                    Err(_) => (no_answer(), true),
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let retryable =
                error.is_retryable() || (error.is_timeout() && idempotence == Idempotence::Safe);
            if !retryable || attempt >= shared.max_attempts || left.is_zero() {
                return Err(error);
            }
            // A coordinator that is down, unreachable, or silent: move to the next address (and
            // start later calls there). A server's DEADLINE_EXCEEDED or an in-progress duplicate
            // retries where it was, where its idempotency record is.
            let moved = n > 1 && (error.moves_to_next_address() || silent);
            if moved {
                index = (index + 1) % n;
                shared.preferred.store(index, Ordering::Relaxed);
            }
            // Failing over to an address this call has not tried yet is immediate; anything
            // else (the same address again, a second round) waits first.
            if !moved || tried[index] {
                let delay = backoff_delay(shared.backoff_base, shared.backoff_max, attempt);
                if delay >= left {
                    return Err(error);
                }
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Holds the update lock of (tenant, key) among this client's clones.
    async fn lock_key(&self, key: &str) -> KeyGuard {
        let map_key = (self.tenant.clone(), key.to_owned());
        let lock = {
            let mut locks = self.shared.key_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(map_key.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        KeyGuard { shared: self.shared.clone(), key: map_key, lock, guard: Some(guard) }
    }
}

/// Releases an update lock, and forgets it when no one else holds or waits for it. (A waiter
/// cancelled while waiting leaves the entry behind; the next update of that key removes it.)
struct KeyGuard {
    shared: Arc<Shared>,
    key: (Arc<str>, String),
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.shared.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else holds or waits (waiters clone it under the
        // map's mutex, which we hold).
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

/// The delay before retry number `attempt` (1 = the first retry): `base * 2^(attempt-1)`,
/// capped at `max`, jittered to between half and all of it.
fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// A tonic request that tells the server the attempt's deadline (`grpc-timeout`), so that it
/// stops working on it (and releases its idempotency claim) when the client stops waiting.
fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_128_bit_hex_and_fresh() {
        let a = new_idempotency_key();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_idempotency_key());
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(350));
        for _ in 0..100 {
            let d1 = backoff_delay(base, max, 1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= base, "{d1:?}");
            let d2 = backoff_delay(base, max, 2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = backoff_delay(base, max, 40);
            assert!(d9 >= Duration::from_millis(175) && d9 <= max);
        }
    }

    #[tokio::test]
    async fn update_locks_serialize_per_tenant_and_key_and_are_forgotten() {
        let c = Client::connect("127.0.0.1:1").unwrap();
        let held = c.lock_key("k").await;
        // Another key, or the same key of another tenant, is not blocked.
        drop(c.lock_key("other").await);
        drop(c.with_tenant("t2").lock_key("k").await);
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { drop(c2.lock_key("k").await) });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "the same key waits");
        assert_eq!(c.shared.key_locks.lock().unwrap().len(), 1);
        drop(held);
        waiter.await.unwrap();
        assert!(c.shared.key_locks.lock().unwrap().is_empty(), "no lock outlives its users");
    }

    #[test]
    fn build_checks_addresses() {
        assert!(matches!(Client::builder().build(), Err(Error::Config { .. })));
        assert!(matches!(Client::connect("bad address with spaces"), Err(Error::Config { .. })));
        assert!(Client::builder().addresses(["127.0.0.1:1", "http://[::1]:2"]).build().is_ok());
    }
}
