//! The end-to-end story of dbwarden, as a library: the integration test (`tests/story.rs`) runs it
//! and checks every step; `make demo` (`src/bin/dbwarden-demo.rs`) runs the same steps, narrates
//! them for a newcomer, and leaves the environment up to try.

#![forbid(unsafe_code)]

pub mod story;
pub mod support;

pub use story::{STEPS, Step, Story};
