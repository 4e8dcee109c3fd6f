//! [`EnforcingHooks`]: the policy set in force, the shared analysis cache, the workload
//! identity, and the reload of changed files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use dbwarden_policy::analyze::{AnalysisCache, AnalyzeConfig};
use dbwarden_policy::{EndUser, Identity, ServiceAccount};

use super::EnforceError;
use super::MaskingOptions;
use super::approval::ApprovalDesk;
use super::catalog::Catalog;
use super::check::SessionEnforcer;
use super::load::{PolicySet, Stamp, load_all, stamps};
use super::mask::SessionMasker;
use crate::config::{Config, ConfigError};
use crate::hook::{Denial, HookFactory, SessionHooks, SessionInfo};
use crate::identity::PolicyIdentity;
use crate::metrics::Metrics;

/// How often the policy files are examined for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Statements the analysis cache keeps (shared by every session).
const CACHE_CAPACITY: usize = 1024;
/// Longest statement text the cache keeps (longer ones are analysed every time).
const CACHE_MAX_ENTRY_BYTES: usize = 8 * 1024;

/// What every session of every listener shares.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) policies: ArcSwap<PolicySet>,
    pub(super) cache: AnalysisCache,
    service_account: ServiceAccount,
    pod: Option<String>,
    files: Vec<PathBuf>,
    /// The files' stamps when last read, successfully or not.
    seen: Mutex<Vec<Option<Stamp>>>,
    /// The identity hook kept in step with the policies' `spec.identity`, if attached.
    identity: ArcSwapOption<PolicyIdentity>,
    /// Where statements that need approval go (Kubernetes mode); unset: they are refused.
    pub(super) approvals: OnceLock<Arc<dyn ApprovalDesk>>,
    /// Where `<secret name>/<key>` files are (hash keys).
    secrets_dir: Option<PathBuf>,
    /// Each listener's catalog, by listener name (none: masked results are refused). Set once:
    /// at load in standalone mode, when the listeners are known in Kubernetes mode.
    catalogs: OnceLock<HashMap<String, Arc<Catalog>>>,
    /// Reload counts and policy age, once [`EnforcingHooks::with_metrics`] was called.
    pub(super) metrics: OnceLock<Arc<Metrics>>,
}

/// The [`HookFactory`] that enforces the configured policies (see [`crate::enforce`]).
#[derive(Debug, Clone)]
pub struct EnforcingHooks {
    inner: Arc<Inner>,
}

impl EnforcingHooks {
    /// The hooks for `config`, when it has `policies:` (`Ok(None)` otherwise). Every file must
    /// load and compile: the error names the first that does not.
    pub fn from_config(config: &Config) -> Result<Option<Self>, EnforceError> {
        let Some(files) = &config.policies else {
            return Ok(None);
        };
        let identity = config
            .identity
            .as_ref()
            .ok_or_else(|| ConfigError::Invalid {
                field: "identity".into(),
                value: "none".into(),
                reason: "policies need the workload's identity".into(),
            })?;
        let (namespace, name) = identity.service_account_parts()?;
        let hooks = Self::load_with(
            files.clone(),
            ServiceAccount::new(namespace, name),
            identity.pod.clone(),
            MaskingOptions::from_config(config)?,
        )?;
        let set = hooks.inner.policies.load();
        for listener in &config.listeners {
            let database = &listener.upstream.database;
            if set.for_database(database).is_empty() {
                tracing::warn!(
                    listener = %listener.name, %database,
                    "no policy governs this listener's database: every statement will be refused"
                );
            }
        }
        Ok(Some(hooks))
    }

    /// Loads `files` for a workload running as `service_account` (no secrets directory and no
    /// catalog: policies with masking refuse their results).
    pub fn load(
        files: Vec<PathBuf>,
        service_account: ServiceAccount,
        pod: Option<String>,
    ) -> Result<Self, EnforceError> {
        Self::load_with(files, service_account, pod, MaskingOptions::default())
    }

    /// [`Self::load`] with the secrets directory and the listeners' catalogs.
    pub fn load_with(
        files: Vec<PathBuf>,
        service_account: ServiceAccount,
        pod: Option<String>,
        masking: MaskingOptions,
    ) -> Result<Self, EnforceError> {
        let seen = stamps(&files);
        let set = load_all(
            &files,
            &service_account.namespace,
            masking.secrets_dir.as_deref(),
        )?;
        tracing::info!(
            policies = set.len(),
            files = files.len(),
            service_account = %service_account,
            "policies loaded"
        );
        if set.is_empty() {
            tracing::warn!("no policy is loaded: every statement will be refused");
        }
        let hooks = Self::build(set, service_account, pod, files, seen, masking.secrets_dir);
        hooks.attach_catalogs(masking.catalogs);
        Ok(hooks)
    }

    /// Hooks whose policies come from elsewhere (the API server): they start with `set` and
    /// change only through [`Self::replace`]; catalogs are attached once the listeners are
    /// known ([`Self::attach_catalogs`]).
    pub fn with_policies(
        set: PolicySet,
        service_account: ServiceAccount,
        pod: Option<String>,
        secrets_dir: Option<PathBuf>,
    ) -> Self {
        Self::build(
            set,
            service_account,
            pod,
            Vec::new(),
            Vec::new(),
            secrets_dir,
        )
    }

    fn build(
        set: PolicySet,
        service_account: ServiceAccount,
        pod: Option<String>,
        files: Vec<PathBuf>,
        seen: Vec<Option<Stamp>>,
        secrets_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                policies: ArcSwap::from_pointee(set),
                cache: AnalysisCache::with_config(
                    CACHE_CAPACITY,
                    CACHE_MAX_ENTRY_BYTES,
                    AnalyzeConfig::default(),
                ),
                service_account,
                pod,
                files,
                seen: Mutex::new(seen),
                identity: ArcSwapOption::empty(),
                approvals: OnceLock::new(),
                secrets_dir,
                catalogs: OnceLock::new(),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// The listeners' catalogs for masking (once; later calls are ignored).
    pub fn attach_catalogs(&self, catalogs: HashMap<String, Arc<Catalog>>) {
        if self.inner.catalogs.set(catalogs).is_err() {
            tracing::warn!("catalogs are already attached; keeping the first");
        }
    }

    /// Puts `set` in force for every statement checked (and every token verified) from now on.
    pub fn replace(&self, set: PolicySet) {
        if let Some(identity) = self.inner.identity.load().as_ref() {
            identity.update(set.identities());
        }
        self.inner.policies.store(Arc::new(set));
        if let Some(m) = self.inner.metrics.get() {
            m.policy_reload(true);
        }
    }

    /// Reports reloads and the policies' age to `metrics` (the set in force counts as loaded now).
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        metrics.policies_loaded();
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// The policy set in force now.
    pub fn current(&self) -> Arc<PolicySet> {
        self.inner.policies.load_full()
    }

    /// Re-reads the files if any changed since last read; swaps the new set in only when every
    /// file compiles. Returns true when a new set was swapped in.
    pub fn reload_if_changed(&self) -> bool {
        self.inner.reload_if_changed()
    }

    /// Keeps `identity` in step with the policies' `spec.identity`, now and on every reload.
    pub fn attach_identity(&self, identity: Arc<PolicyIdentity>) {
        identity.update(self.current().identities());
        self.inner.identity.store(Some(identity));
    }

    /// Sends statements that need approval to `desk` (once; later calls are ignored).
    pub fn attach_approvals(&self, desk: Arc<dyn ApprovalDesk>) {
        if self.inner.approvals.set(desk).is_err() {
            tracing::warn!("an approval desk is already attached; keeping the first");
        }
    }

    /// Polls the files every `every` on the current tokio runtime until the hooks are dropped.
    pub fn spawn_reloader(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.reload_if_changed();
            }
        })
    }
}

impl Inner {
    fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return false;
            }
            // Recorded before loading: a broken file is reported once, not every poll.
            *seen = now;
        }
        match load_all(
            &self.files,
            &self.service_account.namespace,
            self.secrets_dir.as_deref(),
        ) {
            Ok(set) => {
                tracing::info!(policies = set.len(), "policies reloaded");
                if let Some(identity) = self.identity.load().as_ref() {
                    identity.update(set.identities());
                }
                self.policies.store(Arc::new(set));
                if let Some(m) = self.metrics.get() {
                    m.policy_reload(true);
                }
                true
            }
            Err(error) => {
                if let Some(m) = self.metrics.get() {
                    m.policy_reload(false);
                }
                tracing::error!(
                    error = %error, label = error.label(),
                    "policy reload failed: the last good policies stay in force"
                );
                false
            }
        }
    }

    /// Forgets every listener's cached catalog (DDL was let through).
    pub(super) fn invalidate_catalogs(&self) {
        for catalog in self.catalogs.get().into_iter().flat_map(HashMap::values) {
            catalog.invalidate();
        }
    }

    /// The policy identity of a session.
    fn identity(&self, session: &SessionInfo) -> Identity {
        let end_user = session.identity.end_user.then(|| EndUser {
            username: session.identity.subject.clone(),
            groups: session.identity.groups.clone(),
        });
        Identity {
            service_account: self.service_account.clone(),
            end_user,
            pod: self.pod.clone(),
        }
    }
}

impl HookFactory for EnforcingHooks {
    fn open(&self, session: &SessionInfo) -> SessionHooks {
        let identity = self.inner.identity(session);
        tracing::debug!(
            listener = %session.listener, database = %session.database, identity = %identity,
            "enforcing policies on this session"
        );
        SessionHooks {
            statements: Some(Box::new(SessionEnforcer::new(
                Arc::clone(&self.inner),
                session.database.clone(),
                identity.clone(),
                session.audit.clone(),
            ))),
            // Always installed: a reload may add masks or maxRows to an open session.
            rows: Some(Box::new(SessionMasker::new(
                Arc::clone(&self.inner),
                session.database.clone(),
                identity,
                self.inner
                    .catalogs
                    .get()
                    .and_then(|c| c.get(&session.listener))
                    .cloned(),
                session.audit.clone(),
            ))),
        }
    }

    fn check_startup(&self, params: &[(String, String)]) -> Result<(), Denial> {
        match params.iter().find(|(key, _)| {
            REFUSED_PARAMETERS
                .iter()
                .any(|r| key.eq_ignore_ascii_case(r))
        }) {
            Some((key, _)) => {
                tracing::info!(parameter = %key, "startup parameter refused");
                Err(Denial::new(format!(
                    "dbwarden: the startup parameter {key:?} is not allowed under a policy \
                     (it could change the session's role or settings behind the policy's back)"
                )))
            }
            None => Ok(()),
        }
    }
}

/// Startup parameters refused under a policy: `options` can set any setting (`-c role=...`),
/// and `role` / `session_authorization` would bypass the fixed `SET ROLE` guardrail.
const REFUSED_PARAMETERS: [&str; 3] = ["options", "role", "session_authorization"];
