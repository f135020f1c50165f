//! The storage node: a durable local engine ([`engine`]), its gRPC service ([`service`]) and the
//! per-core server that hosts both ([`node`]), and the id of its data directory
//! ([`incarnation`]), and the shortcut from a coordinator in the same process ([`local`]).

pub mod engine;
pub mod incarnation;
pub mod local;
pub mod node;
pub mod service;
