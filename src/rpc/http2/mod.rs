//! PairDB's own gRPC-only HTTP/2 layer (`rpc.http2: native`), sans-IO.
//!
//! - [`frame`]: the frame header, types, flags and frame writers.
//! - [`hpack`]: header compression (RFC 7541): a complete decoder, a stateless encoder.
//! - [`server`]: one server connection as a state machine: bytes in, events out, replies
//!   appended to one output buffer.
//! - [`client`]: one client connection (unary calls), the same way.
//! - [`blocks`]: pre-encoded and status header blocks.
//!
//! Nothing here does I/O: `rpc::server::native` drives a [`server::Conn`] on a glommio socket.
//! The `h2` crate stays behind `rpc.http2: h2` as the reference implementation.

pub mod blocks;
pub mod client;
pub mod frame;
/// Fuzzing harnesses: test support for `fuzz/` and `tests/http2_fuzz_corpus.rs`.
pub mod fuzzing;
pub mod hpack;
pub mod server;
