//! PairDB: a Dynamo-style, multi-tenant key-value store.
//!
//! Crate map:
//! - [`core`]: sans-IO rules (ring, vector clocks, versions, quorum). No sockets, no executor.
//! - [`proto`]: generated protobuf types and the descriptor set for reflection.
//! - [`convert`]: conversions between core types and protobuf types.
//! - [`rpc`]: the hand-written gRPC server and client on `h2` (framing, status, health,
//!   reflection). Knows nothing of PairDB's data model.
//! - [`runtime`]: one pinned glommio executor per core, the shutdown signal, SO_REUSEPORT binding.
//! - [`storage`]: the storage node: fjall engine, `StorageService`, per-core serving.
//! - [`meta`]: metadata (tenants, nodes, migrations, hints) on redb or PostgreSQL.
//! - [`idempotency`]: the idempotency records of keyed writes and deletes, in process or in
//!   Redis (their rules and the request fingerprint are in [`core::idempotency`]).
//! - [`metrics`]: per-core counters and histograms, merged at scrape time (Prometheus text).
//! - [`admin`]: the admin HTTP port (`/metrics`, `/health/live`, `/health/ready`).
//! - [`config`]: typed YAML configuration with defaults and validation.
//! - [`error`]: [`error::PairError`], every error a client sees (mapped to gRPC in `rpc::status`).

pub mod admin;
pub mod config;
pub mod convert;
pub mod coordinator;
pub mod core;
pub mod error;
pub mod idempotency;
pub mod meta;
pub mod metrics;
pub mod proto;
pub mod rpc;
pub mod runtime;
pub mod storage;
