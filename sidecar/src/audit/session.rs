//! [`SessionAudit`]: one connection's handle on the audit and the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dbwarden_audit::{
    Decision, Draft, Durations, Event, Identity as AuditIdentity, Kind, Masked, Shared,
    StatementText, Tail, Ticket, clock,
};
use dbwarden_policy::analyze::{Analysis, StatementAnalysis};

use super::statement::StatementTrail;
use super::{SidecarAudit, refusal_message};
use crate::hook::{Completion, EndedBy, Identity, RunEnd};
use crate::metrics::Metrics;

/// The audit and metrics of one session; cheap to clone. Without an auditor it only counts.
#[derive(Debug, Clone)]
pub struct SessionAudit {
    metrics: Arc<Metrics>,
    conn: Option<Arc<Conn>>,
}

#[derive(Debug)]
struct Conn {
    audit: Arc<SidecarAudit>,
    number: u64,
    identity: AuditIdentity,
    database: String,
    /// `identity`, `database` and `connection`, rendered once for every statement's events.
    shared: Shared,
    peer: SocketAddr,
    opened: Instant,
}

impl Conn {
    fn event(&self, kind: Kind) -> Event {
        Event::new(kind)
            .identity(self.identity.clone())
            .database(self.database.clone())
            .connection(self.number)
    }
}

impl SessionAudit {
    /// Counts only: no auditor configured.
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            conn: None,
        }
    }

    /// Records `connection.open` for an authenticated client. `Err` holds the message to refuse
    /// the connection with (failure policy `closed` and no room in the spool).
    pub fn open(
        audit: Option<&Arc<SidecarAudit>>,
        metrics: Arc<Metrics>,
        database: &str,
        identity: &Identity,
        peer: SocketAddr,
    ) -> Result<Self, String> {
        let Some(audit) = audit else {
            return Ok(Self::disabled(metrics));
        };
        let w = &audit.workload;
        let (user, groups) = if identity.end_user {
            (Some(identity.subject.clone()), identity.groups.clone())
        } else {
            (None, Vec::new())
        };
        let service_account = w
            .service_account
            .clone()
            .or_else(|| (!identity.end_user).then(|| identity.subject.clone()));
        let number = audit.next_connection();
        let identity = AuditIdentity {
            user,
            groups,
            service_account,
            pod: w.pod.clone(),
            namespace: w.namespace.clone(),
        };
        let shared = Shared::new(&identity, Some(database), Some(number))
            .map_err(|e| format!("dbwarden: the audit event cannot be encoded: {e}"))?;
        let conn = Conn {
            audit: Arc::clone(audit),
            number,
            identity,
            shared,
            database: database.to_owned(),
            peer,
            opened: Instant::now(),
        };
        let event = conn.event(Kind::ConnectionOpen).peer(peer.to_string());
        match audit.record(vec![event]) {
            Ok(()) => {}
            Err(e) if e.must_refuse() => return Err(refusal_message(&e)),
            Err(e) => tracing::error!(error = %e, "audit: connection.open event not recorded"),
        }
        Ok(Self {
            metrics,
            conn: Some(Arc::new(conn)),
        })
    }

    /// True when this session's events are recorded (an auditor is configured).
    pub fn records(&self) -> bool {
        self.conn.is_some()
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records `connection.close` with how the session ended (`end` is a bounded label) and how
    /// long it lasted.
    pub fn close(&self, end: &str) {
        let Some(conn) = &self.conn else { return };
        let took = u64::try_from(conn.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        let event = conn
            .event(Kind::ConnectionClose)
            .peer(conn.peer.to_string())
            .reason(end)
            .session_duration(took);
        if let Err(e) = conn.audit.record(vec![event]) {
            tracing::error!(error = %e, "audit: connection.close event not recorded");
        }
    }

    /// Counts and records the decisions on one query string (`analysis` is `None` when it could
    /// not be analysed or no analysis was needed). `Ok` holds the ticket to settle before the
    /// string is forwarded; `Err` the message to refuse the whole string with: its events
    /// could not be stored under failure policy `closed`.
    pub fn statements(
        &self,
        sql: Option<&str>,
        analysis: Option<&Analysis>,
        trail: StatementTrail,
    ) -> Result<Option<Ticket>, String> {
        let m = &self.metrics;
        let count = trail.outcomes.len();
        let refused = trail.refused;
        let mut decided = Vec::with_capacity(count);
        // The proxy's part: from the statement's arrival to its decision (one clock read).
        let proxy_us = u64::try_from(trail.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        for (index, outcome) in trail.outcomes.into_iter().enumerate() {
            let statement = analysis.and_then(|a| a.statements.get(index));
            let operation = match (statement, sql) {
                (Some(s), _) => s.label(),
                (None, Some(_)) => "unparsed",
                (None, None) => "function_call",
            };
            // Statements of a refused string that were not refused themselves did not run.
            let outcome = match (outcome, refused) {
                (Some(o), _) if o.decision == Decision::Denied => o,
                (_, Some(k)) => super::Outcome {
                    decision: Decision::Denied,
                    policy: None,
                    rule: None,
                    error: Some(format!(
                        "not run: statement {} of {count} in the same query string was refused",
                        k + 1
                    )),
                },
                (Some(o), None) => o,
                (None, None) => continue,
            };
            if refused == Some(index) {
                m.denial(
                    outcome.policy.as_deref().unwrap_or("none"),
                    outcome.rule.as_deref().unwrap_or("none"),
                );
            }
            decided.push(Decided {
                operation,
                statement,
                outcome,
            });
        }
        let recorded = match &self.conn {
            None => Ok(None),
            Some(conn) => match conn.submit(sql, &decided, proxy_us) {
                Ok(ticket) => Ok(Some(ticket)),
                Err(e) if e.must_refuse() => {
                    tracing::warn!(error = %e, "audit: statement refused, its event cannot be stored");
                    Err(refusal_message(&e))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit: statement events not recorded");
                    Ok(None)
                }
            },
        };
        for d in &decided {
            let decision = d.outcome.decision;
            let label = if recorded.is_err() && decision != Decision::Denied {
                "audit_refused"
            } else {
                decision.label()
            };
            m.statement(d.operation, label);
        }
        m.check_duration(std::time::Duration::from_micros(proxy_us));
        recorded
    }
}

/// One statement of a query string as decided, for its event and its counters.
struct Decided<'a> {
    operation: &'static str,
    statement: Option<&'a StatementAnalysis>,
    outcome: super::Outcome,
}

impl SessionAudit {
    /// Records the `statement.result` of the statement whose `statement` event is `seq`: rows,
    /// what masking changed, the database's time and error, or the refusal of its result. The
    /// event is deferred: it goes out with the next write (what it records already happened,
    /// and nothing waits on it).
    pub fn result(&self, seq: u64, completion: &Completion<'_>, masked: u64, columns: &[Arc<str>]) {
        let Some(conn) = &self.conn else { return };
        let decision = match completion.end {
            RunEnd::Refused(_) => Decision::Denied,
            _ if masked > 0 => Decision::Masked,
            _ => Decision::Allowed,
        };
        let id = dbwarden_audit::chain::event_id(&conn.audit.instance, seq);
        let durations = Durations {
            upstream_us: Some(u64::try_from(completion.upstream.as_micros()).unwrap_or(u64::MAX)),
            proxy_us: None,
            session_us: None,
        };
        let masked = (masked > 0).then(|| Masked {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values: masked,
        });
        let ended;
        let (sqlstate, error) = match completion.end {
            RunEnd::Failed(code) => (
                Some(code).filter(|c| !c.is_empty()),
                Some("the database refused the statement"),
            ),
            RunEnd::Refused(message) => (None, Some(message)),
            RunEnd::NotRun => (
                None,
                Some(
                    "not run: the database skipped it after an earlier statement of the same \
                     query string or pipeline failed",
                ),
            ),
            RunEnd::Abandoned(EndedBy::Other) => (
                None,
                Some("no result: the session ended before the database answered"),
            ),
            RunEnd::Abandoned(EndedBy::Database(None)) => {
                (None, Some("no result: the database ended the session"))
            }
            RunEnd::Abandoned(EndedBy::Database(Some(code))) => {
                ended = format!("no result: the database ended the session (SQLSTATE {code})");
                (None, Some(ended.as_str()))
            }
            RunEnd::Command(_) | RunEnd::Empty | RunEnd::Suspended => (None, None),
        };
        let error = match (error, completion.withheld) {
            (None, true) => Some(
                "ran, but its result was not sent: the sidecar refused an earlier result of the \
                 same exchange",
            ),
            (error, _) => error,
        };
        let time = clock::Timestamp::now();
        let draft = Draft {
            kind: Kind::StatementResult,
            time: time.as_str(),
            shared: &conn.shared,
            tail: Tail {
                statement_id: Some(&id),
                decision: Some(decision),
                masked: masked.as_ref(),
                rows: completion.rows(),
                durations: Some(&durations),
                sqlstate,
                error,
                ..Tail::default()
            },
        };
        self.metrics.audit_event(Kind::StatementResult);
        if let Err(e) = conn.audit.auditor.defer([draft]) {
            tracing::error!(error = %e, kind = e.label(), "audit: statement.result event not recorded");
        }
    }
}

impl Conn {
    /// Seals the `statement` events of one query string's decided statements into the write
    /// shared with the other busy sessions.
    fn submit(
        &self,
        sql: Option<&str>,
        decided: &[Decided<'_>],
        proxy_us: u64,
    ) -> Result<Ticket, dbwarden_audit::RecordError> {
        let time = clock::Timestamp::now();
        let durations = Durations {
            upstream_us: None,
            proxy_us: Some(proxy_us),
            session_us: None,
        };
        let text = self.audit.text;
        let drafts = decided.iter().map(|d| {
            let (statement, fingerprint) = match (d.statement, sql) {
                (Some(s), Some(sql)) => (
                    match text {
                        StatementText::Full => Some(sql),
                        StatementText::Redacted => Some(s.fingerprint.normalized.as_str()),
                        StatementText::None => None,
                    },
                    Some(s.fingerprint.hash.as_str()),
                ),
                // Text that could not be analysed has no literal-free form: only `full` keeps it.
                (None, Some(sql)) if text == StatementText::Full => (Some(sql), None),
                _ => (None, None),
            };
            self.audit.metrics.audit_event(Kind::Statement);
            Draft {
                kind: Kind::Statement,
                time: time.as_str(),
                shared: &self.shared,
                tail: Tail {
                    statement,
                    fingerprint,
                    operation: Some(d.operation),
                    tables: d.statement.map_or(&[], StatementAnalysis::table_names),
                    decision: Some(d.outcome.decision),
                    rule: d.outcome.rule.as_deref(),
                    durations: Some(&durations),
                    error: d.outcome.error.as_deref(),
                    ..Tail::default()
                },
            }
        });
        self.audit.auditor.submit(drafts)
    }
}
