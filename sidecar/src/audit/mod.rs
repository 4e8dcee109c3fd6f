//! Audit in the sidecar: one [`dbwarden_audit::Auditor`] per process, fed by the connection
//! walk (`connection.open`/`close`, `auth.failure`) and the statement hook (`statement`).
//!
//! - [`AuditSettings`]: everything the auditor needs, from the standalone `audit:` section
//!   ([`AuditSettings::from_config`]) or, in Kubernetes, from a policy's `spec.audit`.
//!   [`AuditSettings::open`] makes the process's [`SidecarAudit`].
//! - [`SessionAudit`]: the small per-connection handle the proxy gives each session's hooks; it
//!   also carries the metrics, so a session without audit still counts its statements.
//!
//! A statement's events are sealed into the chain when it is decided and written to the spool
//! before it is forwarded, in one `write(2)` shared by the sessions busy at the same moment
//! (the session settles the [`dbwarden_audit::Ticket`]); shipping runs on its own task. Under failure policy `closed`, a statement whose event cannot be stored
//! is refused (`42501`, message "dbwarden: audit spool full ...").

mod session;
mod statement;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dbwarden_audit::{
    AuditConfig, Auditor, Event, FailurePolicy, Format, FsyncPolicy, Kind, OpenError, RecordError,
    ShipperConfig, SpoolConfig, StatementText, Token,
};

pub use session::SessionAudit;
pub use statement::{Outcome, StatementTrail};

use crate::config::{
    AuditFileConfig, AuditFormat, Config, FailureMode, FsyncMode, TextMode, valid_instance,
};
use crate::metrics::Metrics;

/// Why auditing could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    /// A file named in the settings could not be read.
    #[error("audit: reading {field} {path}")]
    Read {
        /// The setting.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The auditor refused the settings or the spool could not be opened.
    #[error("audit: opening the auditor")]
    Open(#[from] OpenError),
}

/// The workload events are about (fixed per process).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// The ServiceAccount's name.
    pub service_account: Option<String>,
    /// The namespace.
    pub namespace: Option<String>,
    /// The pod.
    pub pod: Option<String>,
}

/// Everything needed to audit, whatever the source of the settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The chain id (stable for the life of the spool directory).
    pub instance: String,
    /// The collector and how to reach it.
    pub shipper: ShipperConfig,
    /// The spool: directory, size, fsync and failure policy.
    pub spool: SpoolConfig,
    /// How much statement text events carry.
    pub statement_text: StatementText,
    /// Who the workload is.
    pub workload: Workload,
    /// Time spent delivering what is left at shutdown.
    pub drain: Duration,
}

impl AuditSettings {
    /// The settings of a standalone configuration's `audit:` section (`Ok(None)` without one).
    pub fn from_config(config: &Config) -> Result<Option<Self>, AuditSetupError> {
        let Some(a) = &config.audit else {
            return Ok(None);
        };
        let read = |field: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| AuditSetupError::Read {
                field,
                path: path.clone(),
                source,
            })
        };
        let mut shipper = ShipperConfig::new(a.collector_url.clone());
        shipper.format = match a.format {
            AuditFormat::Ndjson => Format::Ndjson,
            AuditFormat::Otlp => Format::Otlp,
        };
        shipper.backoff_max = Duration::from_millis(a.retry_max_ms);
        if let Some(path) = &a.bearer_token_file {
            let text = String::from_utf8_lossy(&read("audit.bearer_token_file", path)?)
                .trim()
                .to_owned();
            shipper.bearer_token = Some(Token(text));
        }
        if let Some(path) = &a.ca_file {
            shipper.ca_pem = Some(read("audit.ca_file", path)?);
        }
        let mut spool = SpoolConfig::new(a.spool_dir.clone());
        spool.max_bytes = a.spool_max_bytes;
        spool.segment_bytes = spool.segment_bytes.min(a.spool_max_bytes / 4);
        spool.fsync = match a.fsync {
            FsyncMode::EveryBatch => FsyncPolicy::EveryBatch,
            FsyncMode::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(a.fsync_interval_ms))
            }
            FsyncMode::Never => FsyncPolicy::Never,
        };
        spool.failure_policy = match a.failure_policy {
            FailureMode::Open => FailurePolicy::Open,
            FailureMode::Closed => FailurePolicy::Closed,
        };
        let mut workload = Workload::default();
        if let Some(identity) = &config.identity {
            if let Ok((namespace, name)) = identity.service_account_parts() {
                workload.namespace = Some(namespace.to_owned());
                workload.service_account = Some(name.to_owned());
            }
            workload.pod = identity.pod.clone();
        }
        Ok(Some(Self {
            instance: instance(a, workload.pod.as_deref()),
            shipper,
            spool,
            statement_text: match a.statement_text {
                TextMode::Full => StatementText::Full,
                TextMode::Redacted => StatementText::Redacted,
                TextMode::None => StatementText::None,
            },
            workload,
            drain: Duration::from_secs(a.drain_secs),
        }))
    }

    /// Opens the spool and starts shipping on the current Tokio runtime.
    pub fn open(self, metrics: Arc<Metrics>) -> Result<Arc<SidecarAudit>, AuditSetupError> {
        let auditor = Auditor::open(AuditConfig {
            instance: self.instance.clone(),
            spool: self.spool.clone(),
            shipper: self.shipper.clone(),
        })?;
        metrics.watch_audit(auditor.stats());
        tracing::info!(
            instance = %self.instance, collector = %self.shipper.url,
            spool = %self.spool.dir.display(), policy = ?self.spool.failure_policy,
            statement_text = ?self.statement_text, "audit events are recorded"
        );
        Ok(Arc::new(SidecarAudit {
            auditor,
            instance: self.instance,
            text: self.statement_text,
            workload: self.workload,
            drain: self.drain,
            connections: AtomicU64::new(0),
            metrics,
        }))
    }
}

/// The chain id: the configured one, else the pod, else the host name, made valid.
fn instance(a: &AuditFileConfig, pod: Option<&str>) -> String {
    if let Some(id) = &a.instance {
        return id.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned());
    let raw = pod
        .map(str::to_owned)
        .or(host)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dbwarden-sidecar".to_owned());
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    if valid_instance(&cleaned) {
        cleaned
    } else {
        "dbwarden-sidecar".to_owned()
    }
}

/// The process's auditor and what every event shares.
#[derive(Debug)]
pub struct SidecarAudit {
    auditor: Auditor,
    /// The chain id: a `statement.result` names its `statement` event as `<instance>-<seq>`.
    instance: String,
    text: StatementText,
    workload: Workload,
    drain: Duration,
    connections: AtomicU64,
    metrics: Arc<Metrics>,
}

impl SidecarAudit {
    /// The next connection number: never below the chain's next seq, so numbers stay unique
    /// per instance across restarts on the same spool (each open takes at least one seq).
    fn next_connection(&self) -> u64 {
        let floor = self.auditor.next_seq();
        let previous = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(last.saturating_add(1).max(floor))
            })
            .unwrap_or_else(|last| last);
        previous.saturating_add(1).max(floor)
    }

    /// Records `events` in one write (all or none) before returning, counting them by kind.
    fn record(&self, events: Vec<Event>) -> Result<(), Arc<RecordError>> {
        for e in &events {
            self.metrics.audit_event(e.kind);
        }
        self.auditor.record_all(events).map(drop)
    }

    /// Records an authentication failure (`reason` never holds the token).
    pub fn auth_failure(&self, listener: &str, database: &str, peer: &str, reason: &str) {
        let event = Event::new(Kind::AuthFailure)
            .identity(dbwarden_audit::Identity {
                service_account: self.workload.service_account.clone(),
                pod: self.workload.pod.clone(),
                namespace: self.workload.namespace.clone(),
                ..Default::default()
            })
            .database(database)
            .peer(peer)
            .error(format!("listener {listener}: {reason}"));
        if let Err(e) = self.record(vec![event]) {
            tracing::error!(error = %e, kind = e.label(), "audit: auth.failure event not recorded");
        }
    }

    /// Records an `approval.requested` or `approval.decided` event about `request`, for the
    /// statement of `who` that the approval rule `rule` held (the approvals desk calls this).
    pub fn approval(
        &self,
        kind: Kind,
        who: &dbwarden_policy::Identity,
        database: &str,
        rule: &str,
        approval: dbwarden_audit::Approval,
    ) {
        let (user, groups) = match &who.end_user {
            Some(end_user) => (Some(end_user.username.clone()), end_user.groups.clone()),
            None => (None, Vec::new()),
        };
        let event = Event::new(kind)
            .identity(dbwarden_audit::Identity {
                user,
                groups,
                service_account: Some(who.service_account.name.clone()),
                pod: who.pod.clone(),
                namespace: Some(who.service_account.namespace.clone()),
            })
            .database(database)
            .decision(
                dbwarden_audit::Decision::ApprovalRequested,
                Some(rule.to_owned()),
            )
            .approval(approval);
        if let Err(e) = self.record(vec![event]) {
            tracing::error!(error = %e, kind = e.label(), "audit: approval event not recorded");
        }
    }

    /// The auditor, for its counters and `flush`.
    pub fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    /// Delivers what it can within the drain time and releases the spool. When sessions still
    /// hold the auditor, only waits for delivery.
    pub async fn close(self: Arc<Self>) {
        let drain = self.drain;
        match Arc::try_unwrap(self) {
            Ok(audit) => audit.auditor.shutdown(drain).await,
            Err(shared) => {
                if !shared.auditor.flush(drain).await {
                    tracing::warn!(
                        "audit: undelivered events stay in the spool for the next start"
                    );
                }
            }
        }
    }
}

/// The client-facing message when an event cannot be stored under policy `closed`.
pub(crate) fn refusal_message(error: &RecordError) -> String {
    format!(
        "dbwarden: {error}: the audit failure policy is closed, so nothing runs until the \
         audit collector has taken enough events"
    )
}
