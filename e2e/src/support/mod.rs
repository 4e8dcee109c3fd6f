//! Helpers of the end-to-end story: the binaries it runs, its long-running processes, the
//! identity provider it plays, and what it adapts from examples/.

pub mod binaries;
pub mod daemon;
pub mod jwt;
pub mod workload;
