//! `rpc.tls:` TLS on the gRPC ports (rustls, ring provider): the server side (a coordinator's or
//! storage node's gRPC port, optionally requiring client certificates) and the client side of a
//! coordinator's links to its storage nodes.
//!
//! Everything here reads PEM files and builds rustls configurations; the transport that uses
//! them is `rpc::tls`. Every error names the key whose file is at fault, so a process with an
//! unreadable or invalid file refuses to start with that key in its message.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock, Weak},
};

use rustls::{
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    RootCertStore, SignatureScheme,
};
use serde::Deserialize;

use super::{invalid, ConfigError};

/// The ALPN protocol both sides offer: gRPC runs on HTTP/2 only.
pub const ALPN_H2: &[u8] = b"h2";

/// `rpc.tls:` section. Unset files: plaintext, as before.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// The server's certificate chain (PEM, leaf first). With `key_file`, the gRPC port accepts
    /// TLS only.
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that clients' certificates must chain to: when set, every client
    /// must present one (mutual TLS). Needs `cert_file` and `key_file`.
    pub client_ca_file: Option<PathBuf>,
    /// Coordinator only: CA certificates (PEM) that storage nodes' certificates must chain to.
    /// When set, the coordinator speaks TLS to its storage nodes.
    pub storage_ca_file: Option<PathBuf>,
    /// Coordinator only: the client certificate chain (PEM) presented to storage nodes (mutual
    /// TLS). Needs `storage_key_file` and `storage_ca_file`.
    pub storage_cert_file: Option<PathBuf>,
    /// Coordinator only: the private key of `storage_cert_file`.
    pub storage_key_file: Option<PathBuf>,
    /// Coordinator only: the name every storage node's certificate is checked against. Unset:
    /// the node's IP address (its certificate then needs that IP as a subject alternative name).
    pub storage_server_name: Option<String>,
}

/// The process's crypto provider: ring (no OpenSSL, no aws-lc). rustls marks ring's provider
/// deprecated because it lacks post-quantum key exchange (aws-lc-rs has it, but needs cmake and
/// a C toolchain to build); classical X25519/P-256 key exchange is what every gRPC peer speaks.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSection {
    /// True when the gRPC port serves TLS.
    pub fn server_enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Checks every file and combination: the same work as building the configurations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server_config()?;
        self.storage_client_config()?;
        Ok(())
    }

    /// The server configuration (ALPN `h2`, client certificates required when
    /// `client_ca_file` is set); None without `cert_file`/`key_file`.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (None, None) => {
                if self.client_ca_file.is_some() {
                    return Err(invalid(
                        "rpc.tls.client_ca_file",
                        "needs rpc.tls.cert_file and rpc.tls.key_file (client certificates are \
                         checked only on a TLS port)",
                    ));
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(invalid("rpc.tls.key_file", "is required with rpc.tls.cert_file"))
            }
            (None, Some(_)) => {
                return Err(invalid("rpc.tls.cert_file", "is required with rpc.tls.key_file"))
            }
        };
        let resolver = ReloadingCert::new("rpc.tls.cert_file", cert, "rpc.tls.key_file", key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("rpc.tls", &e.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = read_roots("rpc.tls.client_ca_file", path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| invalid("rpc.tls.client_ca_file", &e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// The client configuration of a coordinator's links to storage nodes (ALPN `h2`, the
    /// coordinator's certificate when `storage_cert_file` is set); None without
    /// `storage_ca_file`.
    pub fn storage_client_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
        let Some(ca) = &self.storage_ca_file else {
            for (field, set) in [
                ("rpc.tls.storage_cert_file", self.storage_cert_file.is_some()),
                ("rpc.tls.storage_key_file", self.storage_key_file.is_some()),
                ("rpc.tls.storage_server_name", self.storage_server_name.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        field,
                        "needs rpc.tls.storage_ca_file (TLS to storage nodes is on only with it)",
                    ));
                }
            }
            return Ok(None);
        };
        self.storage_server_name()?;
        let roots = read_roots("rpc.tls.storage_ca_file", ca)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("rpc.tls", &e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&self.storage_cert_file, &self.storage_key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(c), Some(k)) => builder.with_client_cert_resolver(ReloadingCert::new(
                "rpc.tls.storage_cert_file",
                c,
                "rpc.tls.storage_key_file",
                k,
            )?),
            (Some(_), None) => {
                return Err(invalid(
                    "rpc.tls.storage_key_file",
                    "is required with rpc.tls.storage_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "rpc.tls.storage_cert_file",
                    "is required with rpc.tls.storage_key_file",
                ))
            }
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// `storage_server_name` as a TLS server name (a DNS name or an IP address).
    pub fn storage_server_name(&self) -> Result<Option<ServerName<'static>>, ConfigError> {
        match &self.storage_server_name {
            None => Ok(None),
            Some(name) => ServerName::try_from(name.clone()).map(Some).map_err(|e| {
                invalid("rpc.tls.storage_server_name", &format!("{name:?} is no server name: {e}"))
            }),
        }
    }
}

/// A certificate chain and its key, read from files and read again by [`reload_all`] (on
/// SIGHUP), so that certificates can be renewed without a restart. Serves as the certificate of
/// a TLS port (`cert_file`/`key_file`) and as a coordinator's client certificate
/// (`storage_cert_file`/`storage_key_file`).
#[derive(Debug)]
pub struct ReloadingCert {
    cert_field: &'static str,
    cert_path: PathBuf,
    key_field: &'static str,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

/// Every [`ReloadingCert`] alive, for [`reload_all`]; dropped ones (say, those built only to
/// validate the configuration) fall out.
static RELOADABLE: Mutex<Vec<Weak<ReloadingCert>>> = Mutex::new(Vec::new());

impl ReloadingCert {
    /// Reads the files now (errors name the key) and registers for [`reload_all`].
    pub fn new(
        cert_field: &'static str,
        cert_path: &Path,
        key_field: &'static str,
        key_path: &Path,
    ) -> Result<Arc<ReloadingCert>, ConfigError> {
        let current = RwLock::new(load_certified(cert_field, cert_path, key_field, key_path)?);
        let this = Arc::new(ReloadingCert {
            cert_field,
            cert_path: cert_path.to_owned(),
            key_field,
            key_path: key_path.to_owned(),
            current,
        });
        let mut all = RELOADABLE.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&this));
        Ok(this)
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let fresh =
            load_certified(self.cert_field, &self.cert_path, self.key_field, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Reads every certificate and key file in use again (SIGHUP): renewed certificates serve new
/// connections, open ones keep theirs. A file that fails (unreadable, no PEM, a key that does
/// not fit) is logged with its key and leaves its old certificate in use. CA files
/// (`client_ca_file`, `storage_ca_file`) are read at start only. Returns (reloaded, failed).
pub fn reload_all() -> (usize, usize) {
    let live: Vec<Arc<ReloadingCert>> = {
        let mut all = RELOADABLE.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    let (mut ok, mut failed) = (0, 0);
    for cert in live {
        match cert.reload() {
            Ok(()) => ok += 1,
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; the old one stays in use");
                failed += 1;
            }
        }
    }
    (ok, failed)
}

fn load_certified(
    cert_field: &'static str,
    cert_path: &Path,
    key_field: &'static str,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let chain = read_certs(cert_field, cert_path)?;
    let key = read_key(key_field, key_path)?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| invalid(key_field, &format!("does not fit {cert_field}: {e}")))
}

/// Reads a PEM certificate chain (at least one certificate).
pub fn read_certs(
    field: &'static str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(field, &format!("reading {shown}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, &format!("{shown}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(field, &format!("{shown} holds no PEM certificate")));
    }
    Ok(certs)
}

/// Reads a PEM private key (the first key of the file).
pub fn read_key(
    field: &'static str,
    path: &std::path::Path,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    // Read first so that a missing file reads as such, not as "no key".
    let raw = std::fs::read(path)
        .map_err(|e| invalid(field, &format!("reading {}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&raw).map_err(|e| {
        invalid(field, &format!("{} holds no usable PEM private key: {e}", path.display()))
    })
}

/// Reads PEM CA certificates into a root store.
pub fn read_roots(
    field: &'static str,
    path: &std::path::Path,
) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(field, path)? {
        roots.add(cert).map_err(|e| {
            invalid(field, &format!("{}: not a usable CA certificate: {e}", path.display()))
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        _dir: tempfile::TempDir,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        other_key: PathBuf,
        garbage: PathBuf,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Files {
            ca: write("ca.pem", &ca.pem()),
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            other_key: write("other.pem", &rcgen::KeyPair::generate().unwrap().serialize_pem()),
            garbage: write("garbage.pem", "not a PEM file\n"),
            _dir: dir,
        }
    }

    fn err(tls: &TlsSection) -> String {
        tls.validate().unwrap_err().to_string()
    }

    #[test]
    fn off_by_default() {
        let tls = TlsSection::default();
        tls.validate().unwrap();
        assert!(tls.server_config().unwrap().is_none());
        assert!(tls.storage_client_config().unwrap().is_none());
    }

    #[test]
    fn valid_files_build_both_sides() {
        let f = files();
        let tls = TlsSection {
            cert_file: Some(f.cert.clone()),
            key_file: Some(f.key.clone()),
            client_ca_file: Some(f.ca.clone()),
            storage_ca_file: Some(f.ca.clone()),
            storage_cert_file: Some(f.cert.clone()),
            storage_key_file: Some(f.key.clone()),
            storage_server_name: Some("storage.pairdb.internal".into()),
        };
        tls.validate().unwrap();
        let server = tls.server_config().unwrap().unwrap();
        assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(tls.storage_client_config().unwrap().is_some());
    }

    #[test]
    fn errors_name_the_key() {
        let f = files();
        let missing = f.ca.with_file_name("missing.pem");
        #[rustfmt::skip]
        let cases: Vec<(TlsSection, &str)> = vec![
            (TlsSection { cert_file: Some(f.cert.clone()), ..Default::default() }, "rpc.tls.key_file"),
            (TlsSection { key_file: Some(f.key.clone()), ..Default::default() }, "rpc.tls.cert_file"),
            (TlsSection { cert_file: Some(missing.clone()), key_file: Some(f.key.clone()), ..Default::default() }, "rpc.tls.cert_file"),
            (TlsSection { cert_file: Some(f.garbage.clone()), key_file: Some(f.key.clone()), ..Default::default() }, "rpc.tls.cert_file"),
            (TlsSection { cert_file: Some(f.cert.clone()), key_file: Some(f.garbage.clone()), ..Default::default() }, "rpc.tls.key_file"),
            (TlsSection { cert_file: Some(f.cert.clone()), key_file: Some(f.other_key.clone()), ..Default::default() }, "rpc.tls.key_file"),
            (TlsSection { client_ca_file: Some(f.ca.clone()), ..Default::default() }, "rpc.tls.client_ca_file"),
            (TlsSection { cert_file: Some(f.cert.clone()), key_file: Some(f.key.clone()), client_ca_file: Some(missing.clone()), ..Default::default() }, "rpc.tls.client_ca_file"),
            (TlsSection { storage_ca_file: Some(f.garbage.clone()), ..Default::default() }, "rpc.tls.storage_ca_file"),
            (TlsSection { storage_cert_file: Some(f.cert.clone()), ..Default::default() }, "rpc.tls.storage_cert_file"),
            (TlsSection { storage_ca_file: Some(f.ca.clone()), storage_cert_file: Some(f.cert.clone()), ..Default::default() }, "rpc.tls.storage_key_file"),
            (TlsSection { storage_ca_file: Some(f.ca.clone()), storage_cert_file: Some(f.cert.clone()), storage_key_file: Some(missing), ..Default::default() }, "rpc.tls.storage_key_file"),
            (TlsSection { storage_ca_file: Some(f.ca.clone()), storage_server_name: Some("not a name!".into()), ..Default::default() }, "rpc.tls.storage_server_name"),
        ];
        for (tls, key) in cases {
            let e = err(&tls);
            assert!(e.contains(key), "{tls:?}: {e}");
        }
    }

    #[test]
    fn keys_come_from_yaml_and_the_environment() {
        let f = files();
        let yaml = format!(
            "rpc:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            f.cert.display(),
            f.key.display()
        );
        let cfg: crate::config::StorageConfig = serde_yaml::from_str(&yaml).unwrap();
        cfg.validate().unwrap();
        assert!(cfg.rpc.tls.server_enabled());
        assert!(serde_yaml::from_str::<crate::config::StorageConfig>("rpc: { tls: { cert: x } }")
            .is_err());
        let vars = vec![
            ("PAIRDB_RPC_TLS_CERT_FILE".to_owned(), f.cert.display().to_string()),
            ("PAIRDB_RPC_TLS_KEY_FILE".to_owned(), f.garbage.display().to_string()),
        ];
        let (cfg, applied) =
            crate::config::load_with_env::<crate::config::CoordinatorConfig>(None, vars).unwrap();
        assert_eq!(applied.used.len(), 2, "{:?}", applied.unknown);
        assert!(cfg.rpc.validate().unwrap_err().to_string().contains("rpc.tls.key_file"));
    }
}
