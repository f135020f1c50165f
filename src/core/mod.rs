//! The sans-IO core: ring, vector clocks, versions and quorum decisions. Nothing in here opens a
//! socket, reads a clock, spawns a task or draws a random number; callers pass time and replies
//! in, so every rule is unit-testable without an executor.

pub mod ids;
pub mod quorum;
pub mod ring;
pub mod vclock;
pub mod version;
