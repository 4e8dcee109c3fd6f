//! [`EnforcingHooks`]: the policy set in force, the shared analysis cache, the workload
//! identity, and the reload of changed files.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use dbwarden_policy::analyze::{AnalysisCache, AnalyzeConfig};
use dbwarden_policy::{EndUser, Identity, ServiceAccount};

use super::EnforceError;
use super::check::SessionEnforcer;
use super::load::{PolicySet, Stamp, load_all, stamps};
use crate::config::{Config, ConfigError};
use crate::hook::{Denial, HookFactory, SessionHooks, SessionInfo};
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
    /// Reload counts and policy age, once [`EnforcingHooks::with_metrics`] was called.
    metrics: OnceLock<Arc<Metrics>>,
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
        let hooks = Self::load(
            files.clone(),
            ServiceAccount::new(namespace, name),
            identity.pod.clone(),
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

    /// Loads `files` for a workload running as `service_account`.
    pub fn load(
        files: Vec<PathBuf>,
        service_account: ServiceAccount,
        pod: Option<String>,
    ) -> Result<Self, EnforceError> {
        let seen = stamps(&files);
        let set = load_all(&files, &service_account.namespace)?;
        tracing::info!(
            policies = set.len(),
            files = files.len(),
            service_account = %service_account,
            "policies loaded"
        );
        if set.is_empty() {
            tracing::warn!("no policy is loaded: every statement will be refused");
        }
        Ok(Self {
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
                metrics: OnceLock::new(),
            }),
        })
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
        match load_all(&self.files, &self.service_account.namespace) {
            Ok(set) => {
                tracing::info!(policies = set.len(), "policies reloaded");
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
                identity,
                session.audit.clone(),
            ))),
            rows: None,
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
