//! Helpers of the end-to-end story.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod binaries;
pub mod daemon;
pub mod jwt;
pub mod workload;
