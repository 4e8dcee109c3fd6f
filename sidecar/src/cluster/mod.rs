//! Kubernetes mode (`dbwarden-sidecar --kubernetes`): the sidecar as the operator injects it.
//!
//! - [`env`]: the environment contract with the injector (pod, namespace, ServiceAccount,
//!   labels file, the policies chosen at admission, mounted Secrets, spool, health address).
//! - [`labels`]: the pod's labels from the downward API file, to match `workloadSelector`.
//! - [`policies`]: a watch on the namespace's `DatabaseAccessPolicy` objects, compiled into
//!   the policies in force (last good version kept; deny until the first list).
//! - [`listeners`]: listeners and upstreams derived from the admitted policies.
//! - [`approvals`]: statements that need approval become `ApprovalRequest` objects.
//!
//! Start-up order: nothing listens (so `/readyz` fails and the app waits) until the first
//! complete list of policies is in force; then the listeners open. The set of listeners is
//! fixed for the pod's life (ports were fixed at admission); policy content follows the API
//! server live.

pub mod approvals;
pub mod env;
pub mod labels;
pub mod listeners;
pub mod policies;

use std::path::PathBuf;
use std::sync::Arc;

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_policy::ServiceAccount;
use kube::Api;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::{AuditSettings, AuditSetupError};
use crate::enforce::{EnforceError, EnforcingHooks, MaskingOptions, PolicySet};
use crate::identity::{CA_FILE_ENV, PolicyIdentity};
use crate::metrics::Metrics;
use crate::{Sidecar, SidecarHandle, StartError};

pub use env::{EnvError, PodEnv};

/// Why the sidecar could not start in a pod.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The pod's labels could not be read.
    #[error(transparent)]
    Labels(#[from] labels::LabelsError),
    /// The policy watch ended before the first list (the runtime is shutting down).
    #[error("the policy watch stopped before the first list of policies arrived")]
    WatchEnded,
    /// No admitted policy yields a listener.
    #[error("no listener can be opened: none of the policies {0:?} is usable")]
    NoListeners(Vec<String>),
    /// A listener's catalog connection (for masking) cannot be set up.
    #[error(transparent)]
    Masking(#[from] EnforceError),
    /// Auditing could not start (spool, bearer token).
    #[error(transparent)]
    Audit(#[from] AuditSetupError),
    /// The proxy itself did not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The running sidecar and the watch that keeps its policies current.
#[derive(Debug)]
pub struct ClusterSidecar {
    /// The proxy.
    pub handle: SidecarHandle,
    /// The policy watch (aborted at shutdown).
    pub watch: JoinHandle<()>,
}

/// Starts the sidecar for the pod described by `env`, with policies from `client`'s API server.
pub async fn start(
    env: PodEnv,
    client: kube::Client,
    metrics: Arc<Metrics>,
) -> Result<ClusterSidecar, ClusterError> {
    let labels = labels::read(&env.labels_file)?;
    let hooks = EnforcingHooks::with_policies(
        PolicySet::default(),
        ServiceAccount::new(&env.namespace, &env.service_account),
        Some(env.pod.clone()),
        Some(env.secrets_dir.clone()),
    );
    let hooks = hooks.with_metrics(metrics.clone());
    let desk = Arc::new(approvals::KubeApprovals::new(
        client.clone(),
        &env.namespace,
        metrics.clone(),
    ));
    hooks.attach_approvals(desk.clone());
    let api: Api<DatabaseAccessPolicy> = Api::namespaced(client, &env.namespace);
    let (first_tx, first_rx) = oneshot::channel();
    tracing::info!(
        namespace = %env.namespace, pod = %env.pod, service_account = %env.service_account,
        admitted = ?env.policies, "waiting for the first list of DatabaseAccessPolicies"
    );
    let watch = tokio::spawn(policies::watch(
        api,
        policies::Selection::new(labels, Some(env.secrets_dir.clone())),
        hooks.clone(),
        first_tx,
    ));
    let objects = first_rx.await.map_err(|_| ClusterError::WatchEnded)?;

    let (config, problems) = listeners::config(&env, &objects);
    for problem in &problems {
        tracing::error!(error = %problem, "listener not opened");
    }
    if config.listeners.is_empty() {
        watch.abort();
        return Err(ClusterError::NoListeners(env.policies.clone()));
    }
    // Masking resolves column sources through one catalog connection per listener.
    hooks.attach_catalogs(MaskingOptions::from_config(&config)?.catalogs);
    // End-user tokens are verified per the policies' spec.identity, kept in step by the watch.
    let workload = format!("{}/{}", env.namespace, env.service_account);
    let identity = Arc::new(PolicyIdentity::new(
        workload,
        config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.upstream.database.clone())),
        std::env::var_os(CA_FILE_ENV).map(PathBuf::from),
    ));
    hooks.attach_identity(identity.clone());
    let mut sidecar = Sidecar::new(config.clone())
        .with_hooks(Arc::new(hooks))
        .with_identity(identity)
        .with_metrics(metrics.clone());
    match AuditSettings::from_config(&config)? {
        Some(settings) => {
            let audit = settings.open(metrics)?;
            desk.attach_audit(audit.clone());
            sidecar = sidecar.with_audit(audit);
        }
        None => tracing::warn!("no admitted policy sets spec.audit: no audit events are recorded"),
    }
    let handle = sidecar.start().await?;
    Ok(ClusterSidecar { handle, watch })
}
