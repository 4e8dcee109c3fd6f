//! The sidecar against real PostgreSQL with real clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod audit;
mod binary;
mod common;
mod drivers;
mod enforce;
mod extended;
mod hold;
mod hooks;
mod hostile;
mod jwt;
mod jwt_support;
mod lifecycle;
mod masking;
mod metrics;
mod programs;
mod psycopg;
mod refused;
mod results;
