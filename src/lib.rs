//! PairDB: a Dynamo-style, multi-tenant key-value store.
//!
//! Crate map:
//! - [`core`]: sans-IO rules (ring, vector clocks, versions, quorum). No sockets, no executor.
//! - [`proto`]: generated protobuf types and the descriptor set for reflection.

pub mod convert;
pub mod core;
pub mod proto;
pub mod rpc;
pub mod runtime;
pub mod storage;
