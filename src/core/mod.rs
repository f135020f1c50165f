//! The sans-IO core: every decision the coordinator makes, as plain data and state machines.
//! Nothing in here opens a socket, reads a clock, spawns a task or draws a random number;
//! callers pass time, randomness and replies in (`handle_*`) and read what to do next
//! (`poll_*`), so every rule is unit-testable without an executor and the whole coordinator can
//! run in the seeded simulation (`tests/sim.rs`).
//!
//! - [`ids`], [`ring`], [`vclock`], [`version`]: placement and versions.
//! - [`quorum`]: counting one request's answers against its level.
//! - [`write`]: stamping a version and driving a write's quorum.
//! - [`read`]: a read's quorum and the read repairs it owes.
//! - [`repair`]: the bounded read-repair queue with retry timers.
//! - [`hints`]: which misses become hints, and the bounded per-key coalescing buffer.
//! - [`health`]: storage-node health from probes, with flap damping.
//! - [`validate`]: request checks that fail with the client's error.
//! - [`limits`]: per-tenant token buckets and size limits.
//! - [`idempotency`]: what claims, completions, releases and time do to an idempotency record,
//!   and THE fingerprint of a keyed request.
//! - [`migration`]: data movement's plan, per-stage read and write sets and driver (not wired to
//!   the server yet).

pub mod auth;
pub mod health;
pub mod hints;
pub mod idempotency;
pub mod ids;
pub mod limits;
pub mod migration;
pub mod quorum;
pub mod read;
pub mod repair;
pub mod ring;
pub mod validate;
pub mod vclock;
pub mod version;
pub mod write;
