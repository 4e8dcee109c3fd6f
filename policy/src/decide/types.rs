//! What a decision says: allow, deny with a reason, or wait for approval.

use std::sync::Arc;
use std::time::Duration;

use dbwarden_crds::policy::ApprovalMode;

/// The decision on one statement for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The statement may run.
    Allow(Allowed),
    /// The statement is refused (SQLSTATE `42501`, message [`Denial::reason`]).
    Deny(Denial),
    /// The statement may run once an `ApprovalRequest` for it is approved.
    NeedsApproval(ApprovalNeeded),
}

impl Decision {
    /// True when the statement may be forwarded now (observe-only outcomes included).
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// A bounded label for metrics: `allow`, `deny`, `needs_approval`, or `observed_deny` /
    /// `observed_approval` in observe-only mode.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Allow(Allowed {
                observed: Some(Observed::Denied(_)),
                ..
            }) => "observed_deny",
            Self::Allow(Allowed {
                observed: Some(Observed::NeedsApproval(_)),
                ..
            }) => "observed_approval",
            Self::Allow(_) => "allow",
            Self::Deny(_) => "deny",
            Self::NeedsApproval(_) => "needs_approval",
        }
    }

    /// The denial, if refused.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Self::Deny(denial) => Some(denial),
            _ => None,
        }
    }

    /// The SQLSTATE the sidecar sends for a refusal: `42501` (insufficient privilege).
    pub const SQLSTATE_DENIED: &'static str = "42501";
}

/// An allowed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The allow rule that covered the statement; `None` for session housekeeping (`BEGIN`, `SET`,
    /// ...), statements allowed by `unparseable: allow`, and observe-only outcomes.
    pub rule: Option<Arc<str>>,
    /// True when results must go through a mask plan (the policy masks and this identity is not
    /// exempt).
    pub masking: bool,
    /// True when the statement could not be analysed and `unparseable: allow` let it through:
    /// rules and approvals did not apply; results are still masked by their column sources.
    pub unparsed: bool,
    /// In observe-only mode, what would have happened instead.
    pub observed: Option<Observed>,
}

/// What observe-only mode let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Would have been refused.
    Denied(Denial),
    /// Would have waited for approval.
    NeedsApproval(ApprovalNeeded),
}

/// Why a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `namespace/name` of the policy.
    pub policy: Arc<str>,
    /// What refused it.
    pub cause: DenyCause,
    /// A sentence for the client and the audit log naming the policy, the rule or guardrail, and
    /// why. Never contains literals from the statement.
    pub reason: String,
}

/// What refused a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyCause {
    /// A `deny` rule matched.
    Rule(Arc<str>),
    /// No `allow` rule covered it (default deny).
    NoRule,
    /// A guardrail stopped it.
    Guardrail(Guardrail),
}

impl DenyCause {
    /// The rule name, or the guardrail's field name, for audit events.
    pub fn rule(&self) -> &str {
        match self {
            Self::Rule(name) => name,
            Self::NoRule => "default-deny",
            Self::Guardrail(g) => g.field(),
        }
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Rule(_) => "rule",
            Self::NoRule => "default_deny",
            Self::Guardrail(g) => g.label(),
        }
    }
}

/// The guardrails, including the fixed ones no policy can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guardrail {
    /// The statement could not be analysed (`unparseable: deny`).
    Unparseable,
    /// `ALTER SYSTEM` (always refused).
    AlterSystem,
    /// `SET ROLE` / `SET SESSION AUTHORIZATION` and their `RESET` forms (always refused: they
    /// change who the session is, behind the identity the policy decided for).
    SetRole,
    /// `COPY ... PROGRAM` (`blockCopyProgram`).
    CopyProgram,
    /// `COPY ... FROM/TO 'server file'` (also `blockCopyProgram`: server-side access).
    CopyFile,
    /// DDL (`blockDdl`).
    Ddl,
    /// `DROP` (`blockDrop`).
    Drop,
    /// `TRUNCATE` (`blockTruncate`).
    Truncate,
    /// `UPDATE`/`DELETE` without `WHERE` (`requireWhereForUpdateDelete`).
    MissingWhere,
    /// A blocked or known-dangerous function (`blockedFunctions`).
    BlockedFunction,
    /// `EXECUTE` of an SQL-level prepared statement the connection does not know, or a `PREPARE`
    /// of a name it already prepared.
    UnknownPrepared,
    /// A masked column used where its mask cannot follow it (expressions, filters, ordering,
    /// copies); see `docs/masking.md`.
    MaskedColumnUse,
}

impl Guardrail {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unparseable => "unparseable",
            Self::AlterSystem => "alter_system",
            Self::SetRole => "set_role",
            Self::CopyProgram => "copy_program",
            Self::CopyFile => "copy_file",
            Self::Ddl => "ddl",
            Self::Drop => "drop",
            Self::Truncate => "truncate",
            Self::MissingWhere => "missing_where",
            Self::BlockedFunction => "blocked_function",
            Self::UnknownPrepared => "unknown_prepared",
            Self::MaskedColumnUse => "masked_column_use",
        }
    }

    /// The policy field behind it (`guardrails.blockDrop`), or a fixed name for fixed guardrails.
    pub fn field(self) -> &'static str {
        match self {
            Self::Unparseable => "guardrails.unparseable",
            Self::AlterSystem => "fixed:alter-system",
            Self::SetRole => "fixed:set-role",
            Self::CopyProgram | Self::CopyFile => "guardrails.blockCopyProgram",
            Self::Ddl => "guardrails.blockDdl",
            Self::Drop => "guardrails.blockDrop",
            Self::Truncate => "guardrails.blockTruncate",
            Self::MissingWhere => "guardrails.requireWhereForUpdateDelete",
            Self::BlockedFunction => "guardrails.blockedFunctions",
            Self::UnknownPrepared => "fixed:unknown-prepared-statement",
            Self::MaskedColumnUse => "masking.columns",
        }
    }
}

/// A statement that needs a person's approval: what the sidecar puts in the `ApprovalRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeeded {
    /// `namespace/name` of the policy.
    pub policy: Arc<str>,
    /// The approval rule that matched.
    pub rule: Arc<str>,
    /// The allow rule that allowed the statement.
    pub allowed_by: Option<Arc<str>>,
    /// `hold` or `reject`.
    pub mode: ApprovalMode,
    /// How long the request (and an approval) stays usable.
    pub ttl: Duration,
    /// In `hold` mode, how long the client waits.
    pub hold_timeout: Duration,
    /// The client must give a reason.
    pub require_reason: bool,
    /// Distinct approvers needed.
    pub required_approvals: u32,
    /// The statement's kind, never a group.
    pub operation: dbwarden_crds::Operation,
    /// Tables the statement touches, as written (schema-qualified when the statement qualified
    /// them), sorted, without duplicates.
    pub tables: Vec<String>,
    /// The statement's fingerprint (the approval covers this shape only).
    pub fingerprint: String,
    /// A sentence for the client naming the policy and the approval rule.
    pub reason: String,
}
