//! The thread-per-core runtime: one pinned glommio executor per core, and the signals that cross
//! cores.

pub mod accept;
pub mod lag;
pub mod listen;
pub mod pool;
pub mod priority;
pub mod shutdown;
pub mod signals;
