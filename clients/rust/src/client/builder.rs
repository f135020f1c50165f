//! [`ClientBuilder`]: the client's configuration (addresses, tenant, deadlines, attempts,
//! backoff) and its defaults, and [`ClientBuilder::build`], which turns it into a [`Client`].

use std::{
    collections::HashMap,
    sync::{atomic::AtomicUsize, Arc, Mutex, OnceLock},
    time::Duration,
};

use tonic::transport::Endpoint;

use super::{Client, Shared, Target};
use crate::error::{Error, Result};

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
    ///
    /// [`ReadOptions::timeout`]: crate::ReadOptions::timeout
    /// [`WriteOptions::timeout`]: crate::WriteOptions::timeout
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_checks_addresses() {
        assert!(matches!(Client::builder().build(), Err(Error::Config { .. })));
        assert!(matches!(Client::connect("bad address with spaces"), Err(Error::Config { .. })));
        assert!(Client::builder().addresses(["127.0.0.1:1", "http://[::1]:2"]).build().is_ok());
    }
}
