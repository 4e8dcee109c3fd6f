//! SQL analysis and policy decisions: what a statement does, and whether it may.

pub mod analyze;
