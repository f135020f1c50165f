//! The storage node: its local engine and (later) the gRPC service in front of it.

pub mod engine;
