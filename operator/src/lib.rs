//! The dbwarden operator: reconciles `DatabaseAccessPolicy` (and, as it lands,
//! `ApprovalRequest`), and serves the operator's HTTP endpoints.
//!
//! Laid out like kube-rs' controller-rs: one module per controller with its `reconcile` and
//! `error_policy`, shared [`Context`], [`metrics`], [`telemetry`], and the HTTP endpoints in
//! [`http`]. `main.rs` only wires them together.

pub mod approval;
pub mod certs;
pub mod conditions;
pub mod error;
pub mod http;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod telemetry;
pub mod webhook;

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};

pub use error::Error;
pub use metrics::Metrics;

/// The name the operator uses as its field manager and event reporter.
pub const MANAGER: &str = "dbwarden-operator";

/// What every controller's reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// The API server client.
    pub client: kube::Client,
    /// Prometheus metrics of every controller.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events on the objects the operator acts on.
    pub recorder: Recorder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose events are reported as `dbwarden-operator` (`instance`: this replica,
    /// normally the pod name).
    pub fn new(client: kube::Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            metrics,
            recorder,
        }
    }
}
