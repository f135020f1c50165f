//! gRPC over HTTP/2, written on the `h2` crate with `prost` messages (no tonic, no hyper).
//!
//! - [`framing`]: pure length-prefixed message framing.
//! - [`status`]: gRPC status codes, messages and the `pairdb-error-code` trailer.
//! - [`server`]: the per-core server, routing `/pkg.Service/Method` to handlers.
//! - [`client`]: unary calls over one connection.
//! - [`health`], [`reflection`]: the standard services every PairDB server also serves.
//! - [`glommio_io`]: the one adapter between glommio streams and h2's I/O traits.
//! - [`metrics`]: per-core call counts and latencies by method and status.
//! - [`tls`]: TLS (rustls) under both HTTP/2 layers, server and client side (`rpc.tls`).

pub mod client;
pub mod framing;
pub mod glommio_io;
pub mod health;
pub mod http2;
pub mod metrics;
pub mod reflection;
pub mod server;
pub mod status;
pub mod tls;

pub use client::{Channel, ClientConfig};
pub use metrics::RpcMetrics;
pub use server::{CallContext, Router, ServerConfig};
pub use status::{Code, Status};
