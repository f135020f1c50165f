//! [`Client`] and the state its clones share (one lazily connected channel per address, the
//! preferred address, the update locks). The rest of the client lives in submodules:
//!
//! - `builder`: [`ClientBuilder`] and the defaults;
//! - `options`: per-call options and the results of key-value calls;
//! - `kv`: get, put, delete;
//! - `update`: read-modify-write and its per-key locks;
//! - `admin`: tenant, node and migration calls;
//! - `retry`: the retry and failover loop every call runs through.

mod admin;
mod builder;
mod kv;
mod options;
mod retry;
mod update;

use std::{
    sync::{atomic::AtomicUsize, Arc, OnceLock},
    time::Duration,
};

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

pub use builder::{
    ClientBuilder, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT,
};
pub use options::{new_idempotency_key, ReadOptions, Versioned, WriteOptions, Written};

use crate::{error::Result, proto::coordinator_service_client::CoordinatorServiceClient};
use update::KeyLocks;

/// Adds `authorization: Bearer <token>` to every call when the client has a token.
#[derive(Clone)]
pub(crate) struct Auth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The generated stub, with the token added to every call.
pub(crate) type Stub = CoordinatorServiceClient<InterceptedService<Channel, Auth>>;

/// One coordinator address and its lazily created channel.
struct Target {
    address: String,
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
    auth: Auth,
}

impl Target {
    fn client(&self) -> Stub {
        // `connect_lazy` spawns the channel's worker task, so it runs on first use, inside the
        // caller's runtime, and not in `build`.
        let channel = self.channel.get_or_init(|| self.endpoint.connect_lazy());
        CoordinatorServiceClient::with_interceptor(channel.clone(), self.auth.clone())
    }
}

/// What the clones of one client share.
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
}
