//! Compiling a `DatabaseAccessPolicySpec` into a [`CompiledPolicy`]: validated once, with patterns
//! pre-parsed, operation lists expanded into bitsets and subjects resolved, so that deciding a
//! statement never parses or allocates for matching.
//!
//! Compilation runs the crds semantic validator first ([`dbwarden_crds::validate::validate_policy`]),
//! so a policy the operator's webhook would refuse is refused here with the same message, also when
//! it comes from a local file that no API server checked.

pub(crate) mod glob;
pub(crate) mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dbwarden_crds::policy::{ApprovalMode, OnMaxRows, StatementText, Unparseable};
use dbwarden_crds::{DatabaseAccessPolicy, DatabaseAccessPolicySpec, ValidationError};

use crate::identity::SubjectSet;
use crate::mask::{CompiledMasking, HashKey};
use glob::TableGlob;
use ops::OpSet;

/// Why a policy could not be compiled. The sidecar keeps its last good policy (or denies
/// everything before the first) and reports the error on the policy.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The semantic validator refused the policy.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A pattern passed validation but could not be compiled (a validator/compiler mismatch).
    #[error("policy {policy}: {path}: {pattern:?} is not a pattern this sidecar can compile")]
    Pattern {
        /// `namespace/name` of the policy.
        policy: String,
        /// Field path of the pattern.
        path: String,
        /// The pattern as written.
        pattern: String,
        /// What the shared pattern parser said.
        #[source]
        source: dbwarden_crds::GlobError,
    },
    /// A list is longer than this sidecar supports.
    #[error("policy {policy}: {path}: more than {max} entries")]
    TooMany {
        /// `namespace/name` of the policy.
        policy: String,
        /// Field path of the list.
        path: String,
        /// The most entries supported.
        max: usize,
    },
    /// A duration passed validation but could not be read.
    #[error("policy {policy}: {path}: {source}")]
    Duration {
        /// `namespace/name` of the policy.
        policy: String,
        /// Field path of the duration.
        path: String,
        /// What is wrong with it.
        #[source]
        source: dbwarden_crds::ParseDurationError,
    },
}

impl CompileError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_policy",
            Self::Pattern { .. } => "bad_pattern",
            Self::Duration { .. } => "bad_duration",
            Self::TooMany { .. } => "too_many",
        }
    }
}

/// One access rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) name: Arc<str>,
    pub(crate) subjects: SubjectSet,
    pub(crate) allow: bool,
    pub(crate) ops: OpSet,
    pub(crate) tables: Vec<TableGlob>,
    /// True when one of `tables` matches every table (`*`).
    pub(crate) match_all: bool,
}

/// The `maxRows` guardrail, for the sidecar's row counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRows {
    /// Most rows one statement may return.
    pub limit: u64,
    /// What happens past the limit.
    pub on_exceed: OnMaxRows,
}

/// Guardrails, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledGuardrails {
    pub(crate) block_ddl: bool,
    pub(crate) block_drop: bool,
    pub(crate) block_truncate: bool,
    pub(crate) require_where: bool,
    pub(crate) block_copy_program: bool,
    /// `(schema, name)`, lowercase; `None` schema matches any.
    pub(crate) blocked_functions: Vec<(Option<String>, String)>,
    pub(crate) max_rows: Option<MaxRows>,
    pub(crate) allow_unparseable: bool,
    pub(crate) observe_only: bool,
}

/// One approval rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledApproval {
    pub(crate) name: Arc<str>,
    pub(crate) ops: OpSet,
    pub(crate) tables: Vec<TableGlob>,
    pub(crate) environments: Vec<String>,
    pub(crate) mode: ApprovalMode,
    pub(crate) ttl: Duration,
    pub(crate) hold_timeout: Duration,
    pub(crate) require_reason: bool,
    pub(crate) required_approvals: u32,
}

/// A validated policy, ready to decide statements and build mask plans. Cheap to share
/// (`Arc<CompiledPolicy>` behind an `ArcSwap` in the sidecar).
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Unique among the policies compiled by this process (a clone keeps it: same rules). Answers
    /// memoised per policy are keyed by it, never by address, so a policy dropped and another
    /// compiled in its place cannot inherit them.
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) environment: String,
    pub(crate) database: String,
    pub(crate) statement_text: StatementText,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) guardrails: CompiledGuardrails,
    pub(crate) approvals: Vec<CompiledApproval>,
    pub(crate) masking: Option<CompiledMasking>,
    pub(crate) hash_key: Option<HashKey>,
}

/// A fresh [`CompiledPolicy::id`]. A process-wide counter rather than shared state: it only hands
/// out numbers, and 2^64 compilations will not wrap.
fn next_policy_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Default `holdTimeout` of approval rules in `hold` mode.
const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl CompiledPolicy {
    /// Validates and compiles a policy object (named `namespace/name`).
    pub fn from_resource(policy: &DatabaseAccessPolicy) -> Result<Self, CompileError> {
        Self::compile(
            policy.metadata.namespace.as_deref().unwrap_or_default(),
            policy.metadata.name.as_deref().unwrap_or_default(),
            &policy.spec,
        )
    }

    /// Validates and compiles `spec`, for a policy `name` in `namespace` (bare ServiceAccount names
    /// in subjects mean this namespace).
    pub fn compile(
        namespace: &str,
        name: &str,
        spec: &DatabaseAccessPolicySpec,
    ) -> Result<Self, CompileError> {
        let policy = format!("{namespace}/{name}");
        dbwarden_crds::validate::validate_policy(&policy, spec)?;
        let tables = |path: String, patterns: &[String]| -> Result<Vec<TableGlob>, CompileError> {
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    TableGlob::parse(p).map_err(|source| CompileError::Pattern {
                        policy: policy.clone(),
                        path: format!("{path}.tables[{i}]"),
                        pattern: p.clone(),
                        source,
                    })
                })
                .collect()
        };
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, rule) in spec.rules.iter().enumerate() {
            let globs = tables(format!("spec.rules[{i}]"), &rule.tables)?;
            rules.push(CompiledRule {
                name: Arc::from(rule.name.as_str()),
                subjects: SubjectSet::new(&rule.subjects, namespace),
                allow: rule.action == dbwarden_crds::policy::Action::Allow,
                ops: OpSet::of(&rule.operations),
                match_all: globs.iter().any(TableGlob::is_match_all),
                tables: globs,
            });
        }
        let duration = |path: String, text: &str| {
            dbwarden_crds::parse_duration(text).map_err(|source| CompileError::Duration {
                policy: policy.clone(),
                path,
                source,
            })
        };
        let mut approvals = Vec::with_capacity(spec.approvals.len());
        for (i, rule) in spec.approvals.iter().enumerate() {
            approvals.push(CompiledApproval {
                name: Arc::from(rule.name.as_str()),
                ops: OpSet::of(&rule.when.operations),
                tables: tables(format!("spec.approvals[{i}].when"), &rule.when.tables)?,
                environments: rule.when.environments.clone(),
                mode: rule.mode,
                ttl: duration(format!("spec.approvals[{i}].ttl"), &rule.ttl)?,
                hold_timeout: match &rule.hold_timeout {
                    Some(text) => duration(format!("spec.approvals[{i}].holdTimeout"), text)?,
                    None => DEFAULT_HOLD_TIMEOUT,
                },
                require_reason: rule.require_reason,
                required_approvals: u32::try_from(rule.required_approvals.max(1)).unwrap_or(1),
            });
        }
        let g = &spec.guardrails;
        let guardrails = CompiledGuardrails {
            block_ddl: g.block_ddl,
            block_drop: g.block_drop,
            block_truncate: g.block_truncate,
            require_where: g.require_where_for_update_delete,
            block_copy_program: g.block_copy_program,
            blocked_functions: g
                .blocked_functions
                .iter()
                .map(|f| {
                    let f = f.to_ascii_lowercase();
                    match f.rsplit_once('.') {
                        Some((schema, name)) => (Some(schema.to_owned()), name.to_owned()),
                        None => (None, f),
                    }
                })
                .collect(),
            max_rows: g.max_rows.map(|limit| MaxRows {
                limit: u64::try_from(limit).unwrap_or(1).max(1),
                on_exceed: g.on_max_rows,
            }),
            allow_unparseable: g.unparseable == Unparseable::Allow,
            observe_only: g.observe_only,
        };
        let masking = spec
            .masking
            .as_ref()
            .map(|m| CompiledMasking::compile(&policy, namespace, m))
            .transpose()?;
        Ok(Self {
            id: next_policy_id(),
            name: Arc::from(policy.as_str()),
            environment: spec.database.environment.clone(),
            database: format!("{}/{}", spec.database.host, spec.database.name),
            statement_text: spec
                .audit
                .as_ref()
                .map_or_else(StatementText::default, |a| a.statement_text),
            rules,
            guardrails,
            approvals,
            masking,
            hash_key: None,
        })
    }

    /// Sets the key of the `hash` strategy (the bytes of `masking.hashKeySecretRef`). Without it,
    /// a mask plan that needs hashing cannot be built and the statement is refused.
    pub fn with_hash_key(mut self, key: HashKey) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// `namespace/name` of the policy.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The governed database as `host/name` (as approval requests name it).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// How much statement text audit events and approval requests may carry
    /// (`spec.audit.statementText`; literals redacted by default).
    pub fn statement_text(&self) -> StatementText {
        self.statement_text
    }

    /// The database's environment (`spec.database.environment`).
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The `maxRows` guardrail, when set: the sidecar counts DataRows against it.
    pub fn max_rows(&self) -> Option<MaxRows> {
        self.guardrails.max_rows
    }

    /// `guardrails.observeOnly`: denials are recorded, statements still run.
    pub fn observe_only(&self) -> bool {
        self.guardrails.observe_only
    }

    /// True when the policy masks anything (column masks or detectors).
    pub fn has_masking(&self) -> bool {
        self.masking
            .as_ref()
            .is_some_and(CompiledMasking::is_active)
    }
}
