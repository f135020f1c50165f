//! TLS for the gRPC transport (`rpc.tls`): rustls (ring provider) over glommio's TCP streams,
//! through `futures-rustls`, which works on the same futures-io traits as glommio.
//!
//! The server accepts a TLS handshake (bounded by the handshake timeout) before either HTTP/2
//! layer sees the connection; the native layer's connection driver is generic over its stream,
//! so the plaintext path is compiled as before. The files are read and checked by
//! `config::tls`; this module only holds the ready configurations.

use std::{net::SocketAddr, sync::Arc};

use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::rpc::status::Status;

/// The server side: what a TLS gRPC port accepts with.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// From a configuration built by `config::TlsSection::server_config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> ServerTls {
        ServerTls { acceptor: TlsAcceptor::from(config) }
    }

    /// Runs the server side of the handshake on `stream`.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<futures_rustls::server::TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// The client side: how a channel opens TLS connections.
#[derive(Clone)]
pub struct ClientTls {
    /// Err: the configuration could not be built; every connection fails with this reason
    /// (closed, never a fall-back to plaintext).
    connector: Result<TlsConnector, String>,
    /// The name every server's certificate is checked against; None: the server's IP address.
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// From a client configuration; `server_name` None checks the server's IP address.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        ClientTls { connector: Ok(TlsConnector::from(config)), server_name }
    }

    /// The coordinator's links to storage nodes, from `rpc.tls.storage_*`: None without
    /// `storage_ca_file`. Files that became unusable since start-up's check give a ClientTls
    /// whose every connection fails (and an error log), never plaintext.
    pub fn for_storage(tls: &crate::config::TlsSection) -> Option<ClientTls> {
        let build = || -> Result<Option<ClientTls>, crate::config::ConfigError> {
            let Some(config) = tls.storage_client_config()? else { return Ok(None) };
            Ok(Some(ClientTls::new(config, tls.storage_server_name()?)))
        };
        match build() {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!(error = %e, "TLS to storage nodes unusable; their calls will fail");
                Some(ClientTls { connector: Err(e.to_string()), server_name: None })
            }
        }
    }

    /// Runs the client side of the handshake with the server at `addr` over `stream`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        stream: TcpStream,
    ) -> Result<futures_rustls::client::TlsStream<TcpStream>, Status> {
        let connector = self
            .connector
            .as_ref()
            .map_err(|why| Status::unavailable(format!("TLS to {addr}: {why}")))?;
        let name =
            self.server_name.clone().unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        connector
            .connect(name, stream)
            .await
            .map_err(|e| Status::unavailable(format!("TLS handshake with {addr}: {e}")))
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("usable", &self.connector.is_ok())
            .field("server_name", &self.server_name)
            .finish()
    }
}
