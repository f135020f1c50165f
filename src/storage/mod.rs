//! The storage node: a durable local engine ([`engine`]), its gRPC service ([`service`]) and the
//! per-core server that hosts both ([`node`]).

pub mod engine;
pub mod node;
pub mod service;
