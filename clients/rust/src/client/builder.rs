//! [`ClientBuilder`]: the client's configuration (addresses, tenant, deadlines, attempts,
//! backoff) and its defaults, and [`ClientBuilder::build`], which turns it into a [`Client`].

use std::{
    collections::HashMap,
    sync::{atomic::AtomicUsize, Arc, Mutex, OnceLock},
    time::Duration,
};

use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

use super::{Auth, Client, Shared, Target};
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
#[derive(Clone)]
pub struct ClientBuilder {
    addresses: Vec<String>,
    tenant: String,
    timeout: Duration,
    attempt_timeout: Option<Duration>,
    connect_timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    token: Option<String>,
    tls: Option<Tls>,
}

/// TLS settings: the root certificate(s) that sign the coordinators' certificates, the name to
/// check them against, and an optional client certificate.
#[derive(Clone, Default)]
struct Tls {
    ca_pem: Vec<u8>,
    domain: Option<String>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Never prints the token or keys.
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addresses", &self.addresses)
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &(self.backoff_base, self.backoff_max))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
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
            token: None,
            tls: None,
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

    /// A bearer token (`pdb_<id>_<secret>`, from `CreateToken` or `pairdb token create`, or the
    /// bootstrap admin token), sent as `authorization: Bearer <token>` on every call. Needed
    /// when the coordinators run with `auth.mode: required`. Never printed by `Debug`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Speaks TLS to the coordinators and trusts the certificates signed by these PEM root
    /// certificates (the CA named by the coordinators' `rpc.tls` setup). Addresses without a
    /// scheme become `https://`.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.get_or_insert_with(Tls::default).ca_pem = pem.into();
        self
    }

    /// The name the coordinators' certificates must carry (default: the host of each address).
    /// Needed when addresses are IP addresses and the certificates name a DNS name.
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.tls.get_or_insert_with(Tls::default).domain = Some(domain.into());
        self
    }

    /// A client certificate chain and its private key (PEM), for coordinators that require
    /// mutual TLS.
    pub fn tls_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.get_or_insert_with(Tls::default).identity =
            Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Builds the client. No connection is made here: each address connects on its first use
    /// (and reconnects after a failure), so building never fails because a coordinator is down.
    ///
    /// Fails with [`Error::Config`] when there is no address or one does not parse, when the
    /// token is not a valid header value, or when TLS is asked for without a root certificate.
    pub fn build(self) -> Result<Client> {
        if self.addresses.is_empty() {
            return Err(Error::Config { message: "no coordinator address given".into() });
        }
        let auth = match &self.token {
            None => Auth(None),
            Some(token) => {
                let mut value = MetadataValue::try_from(format!("Bearer {}", token.trim()))
                    .map_err(|_| Error::Config {
                        message: "the token is not a valid header value (printable ASCII only)"
                            .into(),
                    })?;
                value.set_sensitive(true);
                Auth(Some(value))
            }
        };
        let tls = match &self.tls {
            None => None,
            Some(tls) if tls.ca_pem.is_empty() => {
                return Err(Error::Config {
                    message: "TLS needs a root certificate: call tls_ca_pem".into(),
                })
            }
            Some(tls) => {
                let mut config =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
                if let Some(domain) = &tls.domain {
                    config = config.domain_name(domain.clone());
                }
                if let Some((cert, key)) = &tls.identity {
                    config = config.identity(Identity::from_pem(cert, key));
                }
                Some(config)
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoints = Vec::with_capacity(self.addresses.len());
        for address in &self.addresses {
            let uri = if address.contains("://") {
                address.clone()
            } else {
                format!("{scheme}://{address}")
            };
            let bad = |e: &dyn std::fmt::Display| Error::Config {
                message: format!("bad coordinator address {address:?}: {e}"),
            };
            let mut endpoint = Endpoint::from_shared(uri).map_err(|e| bad(&e))?;
            if let Some(config) = &tls {
                endpoint = endpoint.tls_config(config.clone()).map_err(|e| bad(&e))?;
            }
            let endpoint = endpoint.connect_timeout(self.connect_timeout).tcp_nodelay(true);
            endpoints.push(Target {
                address: address.clone(),
                endpoint,
                channel: OnceLock::new(),
                auth: auth.clone(),
            });
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

    #[test]
    fn build_checks_the_token_and_tls() {
        let base = || Client::builder().address("127.0.0.1:1");
        assert!(base().token("pdb_0123456789abcdef_0123").build().is_ok());
        assert!(matches!(base().token("bad\ntoken").build(), Err(Error::Config { .. })));
        assert!(matches!(base().tls_domain("db.example").build(), Err(Error::Config { .. })));
        let printed = format!("{:?}", base().token("pdb_secret_value"));
        assert!(!printed.contains("secret"), "{printed}");
    }
}
