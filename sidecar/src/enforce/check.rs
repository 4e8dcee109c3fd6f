//! The per-session [`StatementHook`]: analyse (through the shared cache), let every applicable
//! policy decide, turn the first refusal into a [`Verdict::Deny`].

use std::sync::Arc;

use dbwarden_policy::analyze::Operation;
use dbwarden_policy::decide::Observed;
use dbwarden_policy::{CompiledPolicy, Decision, Identity};

use super::hooks::Inner;
use crate::hook::{Denial, Statement, StatementHook, Verdict};

/// One session's statement hook.
pub(super) struct SessionEnforcer {
    inner: Arc<Inner>,
    database: String,
    identity: Identity,
}

impl SessionEnforcer {
    pub(super) fn new(inner: Arc<Inner>, database: String, identity: Identity) -> Self {
        Self {
            inner,
            database,
            identity,
        }
    }

    fn deny(&self, message: String, detail: Option<String>, label: &'static str) -> Verdict {
        tracing::info!(database = %self.database, identity = %self.identity, cause = label, "statement refused");
        Verdict::Deny(Denial { message, detail })
    }

    fn check_sql(&self, sql: &str) -> Verdict {
        let set = self.inner.policies.load();
        let policies = set.for_database(&self.database);
        if policies.is_empty() {
            return self.deny(
                format!(
                    "no dbwarden policy governs database {:?}: every statement is refused",
                    self.database
                ),
                None,
                "no_policy",
            );
        }
        let analysis = match self.inner.cache.analyze(sql) {
            Ok(analysis) => analysis,
            Err(error) => {
                self.inner.invalidate_catalogs(); // masking: could be DDL
                for policy in policies {
                    let decision = policy.decide_unparsed(&self.identity, &error);
                    if let Some(verdict) = self.refusal(policy, &decision, None, 0, 1) {
                        return verdict;
                    }
                }
                return Verdict::Allow;
            }
        };
        let count = analysis.statements.len();
        // --- masking: DDL may rename columns; forget resolved column sources ---
        if analysis.statements.iter().any(|s| {
            s.operation.is_ddl()
                || matches!(
                    s.operation,
                    Operation::Call | Operation::Do | Operation::Other
                )
        }) {
            self.inner.invalidate_catalogs();
        }
        // --- end masking ---
        for policy in policies {
            let decided = policy.decide_string(&self.identity, sql, &analysis);
            for (index, decision) in decided.decisions.iter().enumerate() {
                let fingerprint = analysis
                    .statements
                    .get(index)
                    .map(|s| s.fingerprint.hash.as_str());
                if let Some(verdict) = self.refusal(policy, decision, fingerprint, index, count) {
                    return verdict;
                }
            }
        }
        tracing::debug!(database = %self.database, statements = count, "statement allowed");
        Verdict::Allow
    }

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
            Statement::FunctionCall { oid } => self.deny(
                format!(
                    "fast-path function calls are not allowed under a policy (function OID {oid})"
                ),
                None,
                "function_call",
            ),
        }
    }
}
