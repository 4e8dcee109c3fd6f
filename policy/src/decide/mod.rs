//! Deciding one analysed statement for one identity.
//!
//! Order (as `docs/resources.md` describes): guardrails, then rules (default deny, deny wins), then
//! approvals. A guardrail refusal overrides rules and approvals. With `observeOnly`, any refusal or
//! approval becomes an [`Allowed`] carrying what would have happened ([`Observed`]), except the
//! refusals that protect masked values (a masked column used in an expression, or a statement
//! that cannot be analysed for an identity columns are masked for): masking is never observe-only.
//!
//! # Semantics worth stating
//!
//! - **Coverage**: a statement needs its own operation, every data-modifying operation inside it
//!   (`data_operations`), `call` when it calls a function not known to be read-only, and `update`
//!   for row locks. Each needed operation must be allowed on every table it writes (or, when it
//!   writes none, every table it reads); every other table it reads needs `select` or one of the
//!   needed operations. Different allow rules may cover different parts. A statement touching no
//!   table needs a rule for its operations, whose tables must include `*` unless the statement is
//!   read-only. Deny rules match a needed operation on any table it touches, and a table-less
//!   statement only when their tables include `*`.
//! - **Unqualified names** (`orders` rather than `public.orders`) resolve through the client's
//!   `search_path`: allow rules cover them only with a schema-less or `*.` pattern; deny and
//!   approval rules match them whenever the table part matches (see [`crate::compile`]'s glob).
//! - **Session housekeeping** (`BEGIN`/`COMMIT`/`ROLLBACK`/`SAVEPOINT`, ordinary `SET`/`RESET`,
//!   `SHOW`, `DISCARD`, `DEALLOCATE`, `FETCH`/`CLOSE`) is allowed for any identity that at least one
//!   allow rule names, because drivers send these on their own; a deny rule naming the operation
//!   with tables `*` still refuses it. Identities no allow rule names get nothing. `SET ROLE` and
//!   `SET SESSION AUTHORIZATION` are fixed guardrails, never housekeeping.
//! - **Statements sqlparser knows but dbwarden does not classify** need a rule naming `all`.
//! - **`PREPARE name AS stmt`** needs `prepare` and is decided as `stmt` too; **`EXECUTE name`**
//!   must be decided with [`CompiledPolicy::decide_execute`] and the statement its `PREPARE`
//!   stored (plain [`CompiledPolicy::decide`] refuses it);
//!   [`CompiledPolicy::decide_string_with`] does both for a connection that keeps its names.
//! - **Masked columns** used in expressions, filters and copies are refused by
//!   [`CompiledPolicy::decide_string`] (see `docs/masking.md`); `decide` alone does not see them.
//! - **Multi-statement strings** are decided per statement ([`CompiledPolicy::decide_all`]); the
//!   sidecar should refuse the whole string when any statement is refused, since PostgreSQL runs
//!   the earlier ones before reaching it.
//! - **Unparseable** strings follow `guardrails.unparseable`; even with `allow`, only identities
//!   some allow rule names get through, and never identities the policy masks columns for
//!   ([`CompiledPolicy::decide_unparsed`]).

mod guardrails;
pub(crate) mod rules;
mod types;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

pub use types::{Allowed, ApprovalNeeded, Decision, Denial, DenyCause, Guardrail, Observed};

use crate::analyze::{Analysis, AnalyzeError, Operation, StatementAnalysis};
use crate::compile::ops::{Needed, is_session_housekeeping};
use crate::compile::{CompiledPolicy, CompiledRule};
use crate::identity::Identity;
use rules::Needs;

/// The decisions on every statement of one client string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringDecision {
    /// One decision per statement, in order.
    pub decisions: Vec<Decision>,
}

impl StringDecision {
    /// The first statement that may not run now (refused, or waiting for approval), by index.
    pub fn first_refused(&self) -> Option<(usize, &Decision)> {
        self.decisions
            .iter()
            .enumerate()
            .find(|(_, d)| !d.is_allowed())
    }

    /// True when every statement may run now.
    pub fn all_allowed(&self) -> bool {
        self.first_refused().is_none()
    }
}

impl CompiledPolicy {
    /// Decides one statement for `identity`.
    pub fn decide(&self, identity: &Identity, statement: &StatementAnalysis) -> Decision {
        let raw = self.decide_raw(identity, statement);
        self.observe(identity, raw)
    }

    /// Decides every statement of a client string.
    pub fn decide_all(&self, identity: &Identity, analysis: &Analysis) -> StringDecision {
        StringDecision {
            decisions: analysis
                .statements
                .iter()
                .map(|s| self.decide(identity, s))
                .collect(),
        }
    }

    /// Decides a whole client string the way the sidecar should: every statement
    /// ([`decide_all`](Self::decide_all)), then, for identities the masks apply to, the check for
    /// masked columns used where masking cannot follow them
    /// ([`check_masked_column_use`](crate::mask::check_masked_column_use)), whose refusal replaces
    /// the decision of the statement it concerns (unless that one was already refused).
    pub fn decide_string(
        &self,
        identity: &Identity,
        sql: &str,
        analysis: &Analysis,
    ) -> StringDecision {
        self.decide_string_with(identity, sql, analysis, &|_| None)
    }

    /// [`decide_string`](Self::decide_string) for a connection that follows its SQL-level
    /// prepared statements: `prepared` gives the statement a `PREPARE name` of an earlier string
    /// stored (`PREPARE`s earlier in this string count too). An `EXECUTE` is decided as the
    /// statement it runs ([`decide_execute`](Self::decide_execute)). A `PREPARE` of a name already
    /// prepared is refused: the server would keep the old statement, and the connection would
    /// decide `EXECUTE`s by the new one.
    pub fn decide_string_with(
        &self,
        identity: &Identity,
        sql: &str,
        analysis: &Analysis,
        prepared: &dyn Fn(&str) -> Option<Arc<StatementAnalysis>>,
    ) -> StringDecision {
        let mut decided = StringDecision {
            decisions: Vec::with_capacity(analysis.statements.len()),
        };
        // What this string's own PREPAREs store, by name, as its statements are decided in order
        // (one pass: a string may hold many thousands of statements).
        let mut preparing: HashMap<&str, &StatementAnalysis> = HashMap::new();
        for statement in &analysis.statements {
            let name = statement.prepared_name.as_deref();
            let decision = match (&statement.operation, name) {
                (Operation::Execute, Some(name)) => {
                    let stored;
                    let inner = match preparing.get(name) {
                        Some(inner) => Some(*inner),
                        None => {
                            stored = prepared(name);
                            stored.as_deref()
                        }
                    };
                    self.decide_execute(identity, statement, inner)
                }
                (Operation::Prepare, Some(name))
                    if preparing.contains_key(name) || prepared(name).is_some() =>
                {
                    self.observe(
                        identity,
                        self.guardrail_denial(
                            Guardrail::UnknownPrepared,
                            format!(
                                "prepared statement {name:?} was already prepared on this \
                                 connection; dbwarden follows each SQL-level name once per \
                                 connection, so use a new name"
                            ),
                        ),
                    )
                }
                _ => self.decide(identity, statement),
            };
            if let (Operation::Prepare, Some(name), Some(inner)) =
                (&statement.operation, name, statement.prepared.as_deref())
            {
                // The server keeps the first statement of a name; a second is refused above.
                preparing.entry(name).or_insert(inner);
            }
            decided.decisions.push(decision);
        }
        if let Err((index, denial)) = crate::mask::check_indexed(self, identity, sql, analysis)
            && let Some(slot) = decided.decisions.get_mut(index)
            && !matches!(slot, Decision::Deny(_))
        {
            // Masking is never only observed: with `observeOnly` the statement would send the
            // masked values in clear.
            *slot = Decision::Deny(denial);
        }
        decided
    }

    /// Decides `EXECUTE name`, given the statement the connection's `PREPARE name` stored (`None`
    /// when the connection knows no such statement: refused).
    pub fn decide_execute(
        &self,
        identity: &Identity,
        execute: &StatementAnalysis,
        prepared: Option<&StatementAnalysis>,
    ) -> Decision {
        let raw = match prepared {
            None => self.guardrail_denial(
                Guardrail::UnknownPrepared,
                "EXECUTE names a prepared statement this connection did not prepare".into(),
            ),
            Some(inner) => match self.decide_plain(identity, execute, true) {
                Decision::Allow(_) => self.decide_raw(identity, inner),
                refused => refused,
            },
        };
        self.observe(identity, raw)
    }

    /// Decides a string that could not be analysed, following `guardrails.unparseable`.
    pub fn decide_unparsed(&self, identity: &Identity, error: &AnalyzeError) -> Decision {
        if self.masks_columns_for(identity) {
            // Only an analysis shows whether a masked column is used where masking cannot follow
            // it (`upper(email)`), so neither `unparseable: allow` nor `observeOnly` lets it run.
            return self.guardrail_denial(
                Guardrail::Unparseable,
                format!(
                    "the statement cannot be analysed ({}), and columns are masked for this \
                     identity",
                    error.label()
                ),
            );
        }
        let raw = if self.guardrails.allow_unparseable && self.admits(identity) {
            Decision::Allow(Allowed {
                rule: None,
                masking: self.masks_for(identity),
                unparsed: true,
                observed: None,
            })
        } else {
            self.guardrail_denial(
                Guardrail::Unparseable,
                format!("the statement cannot be analysed ({})", error.label()),
            )
        };
        self.observe(identity, raw)
    }

    /// True when at least one allow rule names `identity`.
    pub fn admits(&self, identity: &Identity) -> bool {
        self.rules
            .iter()
            .any(|r| r.allow && r.subjects.matches(identity))
    }

    fn observe(&self, identity: &Identity, raw: Decision) -> Decision {
        if !self.guardrails.observe_only {
            return raw;
        }
        let observed = match raw {
            Decision::Allow(_) => return raw,
            Decision::Deny(denial) => Observed::Denied(denial),
            Decision::NeedsApproval(needed) => Observed::NeedsApproval(needed),
        };
        Decision::Allow(Allowed {
            rule: None,
            masking: self.masks_for(identity),
            unparsed: false,
            observed: Some(observed),
        })
    }

    fn guardrail_denial(&self, guardrail: Guardrail, why: String) -> Decision {
        Decision::Deny(Denial {
            reason: format!(
                "policy {} refuses the statement: guardrail {}: {why}",
                self.name,
                guardrail.field()
            ),
            policy: Arc::clone(&self.name),
            cause: DenyCause::Guardrail(guardrail),
        })
    }

    fn decide_raw(&self, identity: &Identity, statement: &StatementAnalysis) -> Decision {
        match (&statement.operation, &statement.prepared) {
            (Operation::Execute, _) => self.guardrail_denial(
                Guardrail::UnknownPrepared,
                "EXECUTE must be decided together with its prepared statement".into(),
            ),
            (Operation::Prepare, Some(inner)) => match self.decide_plain(identity, statement, true)
            {
                Decision::Allow(_) => self.decide_raw(identity, inner),
                refused => refused,
            },
            _ => self.decide_plain(identity, statement, false),
        }
    }

    /// Guardrails, rules and approvals for one statement; `wrapper` for the `PREPARE`/`EXECUTE`
    /// shell (rules only: the wrapped statement gets the full decision).
    fn decide_plain(
        &self,
        identity: &Identity,
        statement: &StatementAnalysis,
        wrapper: bool,
    ) -> Decision {
        if let Some((guardrail, why)) = guardrails::check(&self.guardrails, statement) {
            return self.guardrail_denial(guardrail, why);
        }
        let mine: Vec<&CompiledRule> = self
            .rules
            .iter()
            .filter(|r| r.subjects.matches(identity))
            .collect();
        let needs = Needs::of(statement);
        if let Some(hit) = rules::denied_by(&mine, &needs) {
            let mut reason = format!(
                "policy {}: rule {:?} denies {}",
                self.name,
                &*hit.rule.name,
                hit.op.label()
            );
            if let Some(table) = hit.table {
                let _ = write!(reason, " on {table}");
            }
            let _ = write!(reason, " for {identity}");
            return Decision::Deny(Denial {
                policy: Arc::clone(&self.name),
                cause: DenyCause::Rule(Arc::clone(&hit.rule.name)),
                reason,
            });
        }
        let housekeeping = !wrapper && is_session_housekeeping(&statement.operation);
        let own = needs.ops().first().copied().unwrap_or(Needed::Other);
        let missing_own = || rules::Missing {
            op: own,
            table: None,
        };
        let allowed_by = if wrapper {
            // PREPARE/EXECUTE themselves: a rule for `prepare`, whatever its tables.
            mine.iter()
                .find(|r| r.allow && r.ops.contains(own))
                .map(|r| Some(Arc::clone(&r.name)))
                .ok_or_else(missing_own)
        } else if housekeeping {
            // Admitted identities only (see the module doc).
            if mine.iter().any(|r| r.allow) {
                Ok(None)
            } else {
                Err(missing_own())
            }
        } else {
            rules::allowed_by(&mine, &needs).map(|r| Some(Arc::clone(&r.name)))
        };
        let rule = match allowed_by {
            Ok(rule) => rule,
            Err(missing) => {
                let mut reason = format!(
                    "policy {}: no rule allows {}",
                    self.name,
                    missing.op.label()
                );
                if let Some(table) = missing.table {
                    let _ = write!(reason, " on {table}");
                }
                let _ = write!(reason, " for {identity} (default deny)");
                return Decision::Deny(Denial {
                    policy: Arc::clone(&self.name),
                    cause: DenyCause::NoRule,
                    reason,
                });
            }
        };
        if !housekeeping
            && !wrapper
            && let Some(approval) = rules::approval_for(&self.approvals, &needs, &self.environment)
        {
            return self.needs_approval(approval, rule, &needs);
        }
        Decision::Allow(Allowed {
            rule,
            masking: self.masks_for(identity),
            unparsed: false,
            observed: None,
        })
    }

    fn needs_approval(
        &self,
        approval: &crate::compile::CompiledApproval,
        allowed_by: Option<Arc<str>>,
        needs: &Needs<'_>,
    ) -> Decision {
        let statement = needs.statement;
        let Some(Needed::Op(operation)) = needs.ops().first().copied() else {
            return self.guardrail_denial(
                Guardrail::Unparseable,
                "an unclassified statement cannot be sent for approval".into(),
            );
        };
        let mut tables: Vec<String> = statement
            .tables_read
            .iter()
            .chain(&statement.tables_written)
            .map(ToString::to_string)
            .collect();
        tables.sort();
        tables.dedup();
        Decision::NeedsApproval(ApprovalNeeded {
            reason: format!(
                "policy {}: approval rule {:?} requires {} approval(s) for {}",
                self.name,
                &*approval.name,
                approval.required_approvals,
                operation.label()
            ),
            policy: Arc::clone(&self.name),
            rule: Arc::clone(&approval.name),
            allowed_by,
            mode: approval.mode,
            ttl: approval.ttl,
            hold_timeout: approval.hold_timeout,
            require_reason: approval.require_reason,
            required_approvals: approval.required_approvals,
            operation,
            tables,
            fingerprint: statement.fingerprint.hash.clone(),
        })
    }
}
