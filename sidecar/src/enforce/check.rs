//! The per-session [`StatementHook`]: analyse (through the shared cache), let every applicable
//! policy decide, turn the first refusal into a [`Verdict::Deny`].

use std::sync::Arc;
use std::time::Instant;

use dbwarden_crds::policy::StatementText;
use dbwarden_policy::analyze::Operation;
use dbwarden_policy::decide::{ApprovalNeeded, Observed};
use dbwarden_policy::{CompiledPolicy, Decision, Identity};

use super::approval::{ApprovalAsk, leading_reason, set_reason};

use super::hooks::Inner;
use super::prepared::{MAX_STATEMENT_BYTES, MAX_STATEMENTS, Prepared, Run, SqlPrepared, Tracker};
use crate::audit::{Outcome, SessionAudit, StatementTrail};
use crate::hook::{Denial, Statement, StatementHook, Verdict};
use dbwarden_audit::Ticket;

/// One session's statement hook.
pub(super) struct SessionEnforcer {
    inner: Arc<Inner>,
    database: String,
    identity: Identity,
    audit: SessionAudit,
    /// The session's `SET dbwarden.reason`, for approval requests.
    reason: Option<String>,
    /// Prepared statements and portals, to audit each Execute.
    prepared: Tracker,
    /// SQL-level `PREPARE`d statements, to decide each SQL `EXECUTE`.
    sql_prepared: SqlPrepared,
    /// A Parse waiting for an approval: it becomes a prepared statement only if forwarded.
    held_parse: Option<(Box<[u8]>, Prepared)>,
    /// Events recorded since the session last settled (see [`StatementHook::take_ticket`]).
    ticket: Option<Ticket>,
    /// The `statement` events (their seqs) of the Query or Execute decided last, whose
    /// results the row hook records (see [`StatementHook::take_runs`]).
    runs: Vec<Option<u64>>,
}

/// A statement an approval rule matched, waiting to be handed to the desk.
struct Pending {
    policy: Arc<CompiledPolicy>,
    needed: ApprovalNeeded,
    index: usize,
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
            reason: None,
            prepared: Tracker::default(),
            sql_prepared: SqlPrepared::default(),
            held_parse: None,
            ticket: None,
            runs: Vec::new(),
        }
    }

    /// A string about to be forwarded (or held for approval) takes the names it `PREPARE`s; when
    /// it never reaches the server the names stay taken, which only refuses their reuse.
    fn forwarding(
        &mut self,
        verdict: &Verdict,
        analysis: Option<&dbwarden_policy::analyze::Analysis>,
    ) {
        if !matches!(verdict, Verdict::Deny(_))
            && let Some(analysis) = analysis
        {
            self.sql_prepared.remember(analysis);
        }
    }

    fn deny(&self, message: String, detail: Option<String>, label: &'static str) -> Verdict {
        tracing::info!(database = %self.database, identity = %self.identity, cause = label, "statement refused");
        Verdict::Deny(Denial { message, detail })
    }

    /// The verdict once the audit has had its say: a refusal to record refuses a statement
    /// that would run (now, or after its approval). Otherwise the ticket of what was recorded
    /// is kept for the session to settle before forwarding.
    fn audited(&mut self, verdict: Verdict, recorded: Result<Option<Ticket>, String>) -> Verdict {
        match (verdict, recorded) {
            (verdict, Ok(None)) => verdict,
            (verdict, Ok(Some(ticket))) => {
                match self.ticket.as_mut() {
                    Some(held) => held.merge(ticket),
                    None => self.ticket = Some(ticket),
                }
                verdict
            }
            (Verdict::Allow | Verdict::Hold(_), Err(message)) => Verdict::Deny(Denial {
                message,
                detail: None,
            }),
            (verdict, Err(_)) => verdict,
        }
    }

    // --- audit: every decision is counted and recorded; under failure policy `closed` a
    // decision whose event cannot be stored refuses the statement. ---
    fn check_sql(&mut self, sql: &str) -> Verdict {
        self.held_parse = None;
        if let Some(reason) = set_reason(sql) {
            self.reason = reason;
        }
        let started = Instant::now();
        let mut trail = StatementTrail::new(started, 1);
        let (verdict, analysis) = self.decide_sql(sql, &mut trail);
        self.forwarding(&verdict, analysis.as_deref());
        let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
        self.runs.clear();
        self.runs.extend(seqs(&recorded).map(Some));
        self.audited(verdict, recorded)
    }

    /// A Parse: decided now, audited now only when it is refused, waits for approval or is
    /// observed (`would_deny`); a plainly allowed statement is audited at each Execute.
    fn check_parse(&mut self, name: &[u8], sql: &str) -> Verdict {
        self.held_parse = None;
        if let Some(reason) = set_reason(sql) {
            self.reason = reason;
        }
        let mut trail = StatementTrail::new(Instant::now(), 1);
        let (verdict, analysis) = self.decide_sql(sql, &mut trail);
        self.forwarding(&verdict, analysis.as_deref());
        if matches!(verdict, Verdict::Deny(_)) {
            // Not forwarded: the server keeps whatever had this name.
            let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
            return self.audited(verdict, recorded);
        }
        if let Err(exists) = self.prepared.may_parse(name) {
            let message = exists.message();
            trail.refuse(Outcome::refused(
                "prepared-statement-exists",
                message.clone(),
            ));
            let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
            let verdict = self.deny(message, None, "prepared_statement_exists");
            return self.audited(verdict, recorded);
        }
        let outcome = trail.single().cloned();
        let plain = outcome
            .as_ref()
            .is_none_or(|o| o.decision == dbwarden_audit::Decision::Allowed);
        let prepared = Prepared {
            sql: sql.into(),
            analysis: analysis.clone(),
            outcome: outcome.map(Outcome::when_run),
        };
        if matches!(verdict, Verdict::Hold(_)) {
            let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
            let verdict = self.audited(verdict, recorded);
            // Until the approval, the server still has whatever had this name before.
            if matches!(verdict, Verdict::Hold(_)) {
                self.held_parse = Some((name.into(), prepared));
            }
            return verdict;
        }
        if let Err(full) = self.prepared.parse(name, prepared) {
            let message = full.message();
            trail.refuse(Outcome::refused("prepared-statements", message.clone()));
            let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
            let verdict = self.deny(message, None, "prepared_statements");
            return self.audited(verdict, recorded);
        }
        if plain {
            return verdict;
        }
        let recorded = self.audit.statements(Some(sql), analysis.as_deref(), trail);
        self.audited(verdict, recorded)
    }

    /// An Execute: the statement its portal runs is recorded with the decision made at Parse.
    fn check_execute(&mut self, portal: &[u8]) -> Verdict {
        let started = Instant::now();
        self.runs.clear();
        // Every Execute of an audited session has one entry, so its answer is matched to it.
        let follow = self.audit.records();
        match self.prepared.execute(portal) {
            Ok(Run::Resumed(run)) => {
                // More rows of the same run: another result for the same `statement` event.
                if follow {
                    self.runs.push(run);
                }
                Verdict::Allow
            }
            Ok(Run::First(prepared)) => {
                let Some(outcome) = prepared.outcome.clone() else {
                    if follow {
                        self.runs.push(None);
                    }
                    return Verdict::Allow;
                };
                let trail = StatementTrail::ran(started, outcome);
                let recorded =
                    self.audit
                        .statements(Some(&prepared.sql), prepared.analysis.as_deref(), trail);
                let seq = seqs(&recorded).next();
                if let Some(seq) = seq {
                    self.prepared.executed_as(portal, seq);
                }
                if follow {
                    self.runs.push(seq);
                }
                self.audited(Verdict::Allow, recorded)
            }
            Err(unknown) => {
                let message = unknown.message();
                let mut trail = StatementTrail::new(started, 1);
                trail.refuse(Outcome::refused("unknown-portal", message.clone()));
                let recorded = self.audit.statements(None, None, trail);
                let verdict = self.deny(message, None, "unknown_portal");
                self.audited(verdict, recorded)
            }
        }
    }

    fn decide_sql(
        &self,
        sql: &str,
        trail: &mut StatementTrail,
    ) -> (Verdict, Option<Arc<dbwarden_policy::analyze::Analysis>>) {
        let set = self.inner.policies.load();
        let policies = set.for_database(&self.database);
        if policies.is_empty() {
            let message = match set.refusal(&self.database) {
                Some(why) => why.to_owned(),
                None => format!(
                    "no dbwarden policy governs database {:?}: every statement is refused",
                    self.database
                ),
            };
            trail.refuse(Outcome::refused("no-policy", message.clone()));
            return (self.deny(message, None, "no_policy"), None);
        }
        let mut pending = None;
        let analysis = match self.inner.cache.analyze(sql) {
            Ok(analysis) => analysis,
            Err(error) => {
                self.inner.invalidate_catalogs(); // masking: could be DDL
                for policy in policies {
                    let decision = policy.decide_unparsed(&self.identity, &error);
                    trail.note(0, &decision);
                    if let Some(verdict) = self.refusal(policy, &decision, None, 0, 1, &mut pending)
                    {
                        return (verdict, None);
                    }
                }
                if let Some(pending) = pending {
                    return (self.ask(pending, None, sql, 1, trail), None);
                }
                return (Verdict::Allow, None);
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
        *trail = StatementTrail::new(trail.started(), count);
        if !self.sql_prepared.fits(&analysis) {
            let message = format!(
                "dbwarden: this session holds too many SQL-level prepared statements to follow \
                 (at most {MAX_STATEMENTS}, {} MiB of text)",
                MAX_STATEMENT_BYTES >> 20
            );
            trail.refuse(Outcome::refused("prepared-statements", message.clone()));
            return (
                self.deny(message, None, "prepared_statements"),
                Some(analysis),
            );
        }
        for policy in policies {
            let decided = policy.decide_string_with(&self.identity, sql, &analysis, &|name| {
                self.sql_prepared.get(name)
            });
            for (index, decision) in decided.decisions.iter().enumerate() {
                trail.note(index, decision);
                let fingerprint = analysis
                    .statements
                    .get(index)
                    .map(|s| s.fingerprint.hash.as_str());
                if let Some(verdict) =
                    self.refusal(policy, decision, fingerprint, index, count, &mut pending)
                {
                    return (verdict, Some(analysis));
                }
            }
        }
        if let Some(pending) = pending {
            let statement = match pending.policy.statement_text() {
                StatementText::Full => Some(sql.to_owned()),
                StatementText::Redacted => analysis
                    .statements
                    .get(pending.index)
                    .map(|s| s.fingerprint.normalized.clone()),
                StatementText::None => None,
            };
            return (
                self.ask(pending, statement, sql, count, trail),
                Some(analysis),
            );
        }
        tracing::debug!(database = %self.database, statements = count, "statement allowed");
        (Verdict::Allow, Some(analysis))
    }
    // --- end audit ---

    /// Hands a statement that needs approval to the desk (held or refused there), or refuses it
    /// here when it cannot be asked for (and says so in its audit event).
    fn ask(
        &self,
        pending: Pending,
        statement: Option<String>,
        sql: &str,
        count: usize,
        trail: &mut StatementTrail,
    ) -> Verdict {
        let policy = &pending.policy;
        let rule = &*pending.needed.rule;
        let mut refuse = |message: String, label: &'static str| {
            trail.refuse(Outcome::refused(label, message.clone()));
            self.deny(message, None, label)
        };
        let Some(desk) = self.inner.approvals.get() else {
            return refuse(
                format!(
                    "statement needs approval (rule {rule:?} of policy {}); approvals need the sidecar in Kubernetes mode",
                    policy.name()
                ),
                "approval_unavailable",
            );
        };
        if count > 1 {
            return refuse(
                format!(
                    "statement needs approval (rule {rule:?} of policy {}); send it on its own, not in a string of {count} statements",
                    policy.name()
                ),
                "approval_multi_statement",
            );
        }
        let reason = leading_reason(sql).or_else(|| self.reason.clone());
        if pending.needed.require_reason && reason.is_none() {
            return refuse(
                format!(
                    "statement needs approval (rule {rule:?} of policy {}) and the rule requires a reason: start the statement with /* reason: ... */ or run SET dbwarden.reason = '...' first",
                    policy.name()
                ),
                "approval_reason_missing",
            );
        }
        tracing::info!(
            policy = policy.name(), rule, fingerprint = %pending.needed.fingerprint,
            identity = %self.identity, mode = ?pending.needed.mode,
            "statement needs approval"
        );
        Verdict::Hold(desk.submit(ApprovalAsk {
            policy: policy.name().to_owned(),
            database: policy.database().to_owned(),
            environment: policy.environment().to_owned(),
            needed: pending.needed,
            identity: self.identity.clone(),
            statement,
            reason,
        }))
    }

    /// The verdict when `decision` refuses statement `index` of `count`; logs observe-only
    /// outcomes. `None` when the statement may run.
    /// A statement an approval rule matched is noted in `pending` (only one per string: a
    /// second one is refused), to be asked for once no policy refuses the string outright.
    fn refusal(
        &self,
        policy: &Arc<CompiledPolicy>,
        decision: &Decision,
        fingerprint: Option<&str>,
        index: usize,
        count: usize,
        pending: &mut Option<Pending>,
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
                if pending.is_some() {
                    return Some(self.deny(
                        format!(
                            "statement needs approval under more than one rule or policy (rule {:?} of policy {}); split it so each needs one approval",
                            &*needed.rule,
                            policy.name()
                        ),
                        detail,
                        "approval_ambiguous",
                    ));
                }
                *pending = Some(Pending {
                    policy: policy.clone(),
                    needed: needed.clone(),
                    index,
                });
                None
            }
        }
    }
}

/// The seqs of the events a decision recorded (none when nothing was recorded).
fn seqs(recorded: &Result<Option<Ticket>, String>) -> std::ops::Range<u64> {
    match recorded {
        Ok(Some(ticket)) => ticket.seqs(),
        _ => 0..0,
    }
}

impl StatementHook for SessionEnforcer {
    fn check(&mut self, statement: Statement<'_>) -> Verdict {
        match statement {
            Statement::Query { sql } => self.check_sql(sql),
            Statement::Parse { name, sql } => self.check_parse(name.as_bytes(), sql),
            Statement::FunctionCall { oid } => {
                let message = format!(
                    "fast-path function calls are not allowed under a policy (function OID {oid})"
                );
                // --- audit ---
                let mut trail = StatementTrail::new(Instant::now(), 1);
                trail.refuse(Outcome::refused("function-call", message.clone()));
                let recorded = self.audit.statements(None, None, trail);
                // --- end audit ---
                let verdict = self.deny(message, None, "function_call");
                self.audited(verdict, recorded)
            }
        }
    }

    fn take_ticket(&mut self) -> Option<Ticket> {
        self.ticket.take()
    }

    fn take_runs(&mut self, into: &mut Vec<Option<u64>>) {
        into.append(&mut self.runs);
    }

    fn bind(&mut self, portal: &[u8], statement: &[u8]) -> Verdict {
        self.prepared.bind(portal, statement);
        Verdict::Allow
    }

    fn execute(&mut self, portal: &[u8]) -> Verdict {
        self.check_execute(portal)
    }

    fn held(&mut self, forwarded: bool) {
        if let Some((name, prepared)) = self.held_parse.take()
            && forwarded
            && let Err(full) = self.prepared.parse(&name, prepared)
        {
            // Approved, but past the bound: its executions will be refused as unknown.
            tracing::warn!(cause = ?full, "approved prepared statement cannot be followed");
            self.prepared.close_statement(&name);
        }
    }

    fn close(&mut self, portal: bool, name: &[u8]) {
        if portal {
            self.prepared.close_portal(name);
        } else {
            self.prepared.close_statement(name);
        }
    }
}
