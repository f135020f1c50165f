//! `pairdb-loadtest`: closed- and open-loop load against a PairDB coordinator or storage node,
//! with latency percentiles from merged HdrHistograms.
//!
//! - [`zipf`]: key choice (uniform, YCSB zipfian).
//! - [`schedule`]: the open-loop send schedule and its coordinated-omission correction.
//! - [`workload`]: the operation mix and the calls each target takes.
//! - [`stats`]: per-executor counters, merging, the per-second timeline, and the report.
//! - [`run`]: executors, connections, closed and open loops, progress lines.
//! - [`report`]: the HTML report (`--report DIR`) and the A/B comparison (`compare`).
//!
//! The binary (`src/main.rs`) parses and checks its flags and nothing else; `run` gets a typed
//! [`run::Config`]. The library exists so that tests can build reports from synthetic stats.

pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod workload;
pub mod zipf;
