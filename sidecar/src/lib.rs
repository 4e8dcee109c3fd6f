//! The dbwarden sidecar: a PostgreSQL wire-protocol proxy that enforces access policy.
//!
//! One statement's walk: [`frontend`] (TLS, startup, client identity) -> [`session`]
//! (decode each message, ask the [`hook`]) -> [`backend`] (the real database, with
//! credentials the client never sees) -> rows back through the row hook -> client.
//! [`protocol`] holds the wire messages; [`proxy`] runs listeners and shutdown.
//! [`enforce`] applies policies; [`cluster`] is the sidecar as injected into a pod (policies
//! watched from the API server).

pub mod audit;
pub mod backend;
pub mod cluster;
pub mod config;
pub mod enforce;
pub mod frontend;
pub mod health;
pub mod hook;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod proxy;
pub mod session;

pub use config::Config;
pub use proxy::{Sidecar, SidecarHandle, StartError};
