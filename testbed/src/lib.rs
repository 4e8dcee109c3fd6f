//! Real PostgreSQL and a real Kubernetes control plane, started in one call for tests and the demo.
//!
//! Everything here runs as local processes on free loopback ports in a temporary directory, and
//! is stopped and removed when the handle drops (also while a failing test unwinds), so tests can
//! run in parallel. Nothing is mocked: etcd is the official binary (crate `etcd-bin-vendored`),
//! kube-apiserver and kubectl are built from Kubernetes' Go modules by `hack/tools.sh`, and
//! PostgreSQL comes from the distribution's packages.
//!
//! Pods are admitted but never run (there are no nodes): [`kubelet`] works out what a kubelet
//! would run for a container of an admitted pod, so tests run the real binary exactly as injected.
//! Tests that skip admission write the pod's files with [`PodFiles`].
//!
//! The helpers every suite needs are here too, so each has one version: [`free_port`],
//! [`http_get`] and [`http_status`] for the binaries' health and metrics endpoints, [`log_tail`].
//!
//! A missing tool is an error that names the tool and the command that installs it; the test
//! bed never skips.

mod collector;
mod control_plane;
mod error;
pub mod kubelet;
mod net;
mod pgbouncer;
pub mod pki;
mod pod_files;
mod postgres;
mod process;
mod run_as;
mod tools;

pub use collector::Collector;
pub use control_plane::{ADMIN, ALICE, BOB, CAROL, ControlPlane, DAVE, User};
pub use error::{Error, Result};
pub use kubelet::{PreparedContainer, prepare_container};
pub use net::{free_port, http_get, http_status};
pub use pgbouncer::PgBouncer;
pub use pod_files::PodFiles;
pub use postgres::{APP, APP_MD5, APP_PLAIN, DATABASE, PgUser, Postgres, psql};
pub use process::{CommandOutput, log_tail};
pub use tools::{pg_tool, tools_bin_dir, workspace_root};

/// Writes `tracing` output of the code under test to the test harness, once per process.
///
/// Filtered by `RUST_LOG` (default `info`); cargo shows it only for failing tests.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call in the same process finds a subscriber already set; that is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
