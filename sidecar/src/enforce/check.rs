//! The per-session [`StatementHook`]: analyse (through the shared cache), let every applicable
//! policy decide, turn the first refusal into a [`Verdict::Deny`].

use std::sync::Arc;
use std::time::Instant;

use dbwarden_policy::decide::Observed;
use dbwarden_policy::{CompiledPolicy, Decision, Identity};

use super::hooks::Inner;
use crate::audit::{Outcome, SessionAudit, StatementTrail};
use crate::hook::{Denial, Statement, StatementHook, Verdict};

/// One session's statement hook.
pub(super) struct SessionEnforcer {
    inner: Arc<Inner>,
    database: String,
    identity: Identity,
    audit: SessionAudit,
}

impl SessionEnforcer {
    pub(super) fn new(
        inner: Arc<Inner>,
        database: String,
        identity: Identity,
        audit: SessionAudit,
    ) -> Self {
        Self {
            inner,
            database,
            identity,
            audit,
        }
    }

    fn deny(&self, message: String, detail: Option<String>, label: &'static str) -> Verdict {
        tracing::info!(database = %self.database, identity = %self.identity, cause = label, "statement refused");
        Verdict::Deny(Denial { message, detail })
    }

    // --- audit: every decision is counted and recorded; under failure policy `closed` a
    // decision whose event cannot be stored refuses the statement. ---
    fn check_sql(&self, sql: &str) -> Verdict {
        let started = Instant::now();
        let mut trail = StatementTrail::new(started, 1);
        let (verdict, analysis) = self.decide_sql(sql, &mut trail);
        let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
        audited(verdict, recorded)
    }

    fn decide_sql(
        &self,
        sql: &str,
        trail: &mut StatementTrail,
    ) -> (Verdict, Option<Arc<dbwarden_policy::analyze::Analysis>>) {
        let set = self.inner.policies.load();
        let policies = set.for_database(&self.database);
        if policies.is_empty() {
            let message = format!(
                "no dbwarden policy governs database {:?}: every statement is refused",
                self.database
            );
            trail.refuse(Outcome::refused("no-policy", message.clone()));
            return (self.deny(message, None, "no_policy"), None);
        }
        let analysis = match self.inner.cache.analyze(sql) {
            Ok(analysis) => analysis,
            Err(error) => {
                for policy in policies {
                    let decision = policy.decide_unparsed(&self.identity, &error);
                    trail.note(0, &decision);
                    if let Some(verdict) = self.refusal(policy, &decision, None, 0, 1) {
                        return (verdict, None);
                    }
                }
                return (Verdict::Allow, None);
            }
        };
        let count = analysis.statements.len();
        *trail = StatementTrail::new(trail.started(), count);
        for policy in policies {
            let decided = policy.decide_string(&self.identity, sql, &analysis);
            for (index, decision) in decided.decisions.iter().enumerate() {
                trail.note(index, decision);
                let fingerprint = analysis
                    .statements
                    .get(index)
                    .map(|s| s.fingerprint.hash.as_str());
                if let Some(verdict) = self.refusal(policy, decision, fingerprint, index, count) {
                    return (verdict, Some(analysis));
                }
            }
        }
        tracing::debug!(database = %self.database, statements = count, "statement allowed");
        (Verdict::Allow, Some(analysis))
    }
    // --- end audit ---

    /// The verdict when `decision` refuses statement `index` of `count`; logs observe-only
    /// outcomes. `None` when the statement may run.
    fn refusal(
        &self,
        policy: &CompiledPolicy,
        decision: &Decision,
        fingerprint: Option<&str>,
        index: usize,
        count: usize,
    ) -> Option<Verdict> {
        let detail = (count > 1).then(|| {
            format!(
                "statement {} of {count} in this query string was refused; none of them ran",
                index + 1
            )
        });
        let fingerprint = fingerprint.unwrap_or("unparsed");
        match decision {
            Decision::Allow(allowed) => {
                if let Some(observed) = &allowed.observed {
                    let (outcome, cause) = match observed {
                        Observed::Denied(d) => ("deny", d.cause.label()),
                        Observed::NeedsApproval(_) => ("needs_approval", "approval"),
                    };
                    tracing::warn!(
                        policy = policy.name(),
                        outcome,
                        cause,
                        fingerprint,
                        "observe-only: statement allowed that the policy would refuse"
                    );
                }
                None
            }
            Decision::Deny(denial) => {
                tracing::info!(
                    policy = policy.name(), cause = denial.cause.label(),
                    rule = denial.cause.rule(), fingerprint, identity = %self.identity,
                    "statement refused"
                );
                Some(Verdict::Deny(Denial {
                    message: denial.reason.clone(),
                    detail,
                }))
            }
            Decision::NeedsApproval(needed) => {
                tracing::info!(
                    policy = policy.name(), rule = &*needed.rule, fingerprint,
                    identity = %self.identity,
                    "statement refused: needs approval, unavailable in standalone mode"
                );
                Some(Verdict::Deny(Denial {
                    message: format!(
                        "statement needs approval (rule {:?} of policy {}); approvals are not available in standalone mode yet",
                        &*needed.rule,
                        policy.name()
                    ),
                    detail,
                }))
            }
        }
    }
}

impl StatementHook for SessionEnforcer {
    fn check(&mut self, statement: Statement<'_>) -> Verdict {
        match statement {
            Statement::Query { sql } | Statement::Parse { sql, .. } => self.check_sql(sql),
            Statement::FunctionCall { oid } => {
                let message = format!(
                    "fast-path function calls are not allowed under a policy (function OID {oid})"
                );
                // --- audit ---
                let mut trail = StatementTrail::new(Instant::now(), 1);
                trail.refuse(Outcome::refused("function-call", message.clone()));
                let _ = self.audit.statements(None, None, trail);
                // --- end audit ---
                self.deny(message, None, "function_call")
            }
        }
    }
}

/// The verdict once the audit has had its say: a refusal to record refuses an allowed statement.
fn audited(verdict: Verdict, recorded: Result<(), String>) -> Verdict {
    match (verdict, recorded) {
        (Verdict::Allow, Err(message)) => Verdict::Deny(Denial {
            message,
            detail: None,
        }),
        (verdict, _) => verdict,
    }
}
