//! Audit event schema v1: one JSON object per event (documented in `docs/audit.md`, JSON Schema in
//! `docs/audit-event.schema.json`).
//!
//! The sidecar fills an [`Event`] with [`Event::new`] and the builder methods; the chain fields
//! (`id`, `instance`, `seq`, `prev_hash`) are stamped by [`crate::Chain`] when the event is
//! recorded, so callers never set them.

use serde::{Deserialize, Serialize};

use crate::clock;

/// The value of every v1 event's `schema` field.
pub const SCHEMA_V1: &str = "dbwarden.audit/v1";

/// One audit event. Field order is the canonical order the hash is computed over.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Always [`SCHEMA_V1`].
    pub schema: String,
    /// `<instance>-<seq>`: stable across retries, the collector's de-duplication key.
    pub id: String,
    /// When the event happened, RFC 3339 UTC with microseconds.
    pub time: String,
    /// What happened.
    pub kind: Kind,
    /// The sidecar instance whose chain this event belongs to.
    pub instance: String,
    /// Position in the instance's chain, from 0, without gaps.
    pub seq: u64,
    /// SHA-256 (hex) of the previous event's canonical bytes; 64 zeros for `seq` 0.
    pub prev_hash: String,
    /// Who: the end user and the workload.
    pub identity: Identity,
    /// The database name the connection uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Connection number within the instance, tying statements to their connection events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<u64>,
    /// For `statement.result`: the `id` of the `statement` event whose result this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_id: Option<String>,
    /// The client's address (`ip:port`), on connection and authentication events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Why a connection ended (`connection.close`): `terminated`, `client_closed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Statement text as the policy's `statementText` allows (absent for `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Stable fingerprint of the statement's shape (literals removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Statement kind (`select`, `insert`, ...), as rules name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Tables the statement touches, schema-qualified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// What the policy decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The rule, guardrail or approval rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What masking changed in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<Masked>,
    /// Rows returned or affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Time spent upstream and in the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<Durations>,
    /// The approval request, for `approval.*` events and statements that needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The SQLSTATE of the database's error, for `statement.result` of a statement that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Error text sent to the client or received from upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an event records.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A client connection was accepted and authenticated.
    #[serde(rename = "connection.open")]
    ConnectionOpen,
    /// A client connection ended.
    #[serde(rename = "connection.close")]
    ConnectionClose,
    /// A statement was decided (and run, unless denied).
    #[serde(rename = "statement")]
    Statement,
    /// What a statement that ran returned: rows, masking, time, the database's error.
    #[serde(rename = "statement.result")]
    StatementResult,
    /// A client failed to authenticate.
    #[serde(rename = "auth.failure")]
    AuthFailure,
    /// A statement created an approval request.
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    /// An approver's decision on a request was seen.
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
}

impl Kind {
    /// The wire name, also a bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::ConnectionOpen => "connection.open",
            Kind::ConnectionClose => "connection.close",
            Kind::Statement => "statement",
            Kind::StatementResult => "statement.result",
            Kind::AuthFailure => "auth.failure",
            Kind::ApprovalRequested => "approval.requested",
            Kind::ApprovalDecided => "approval.decided",
        }
    }
}

/// The policy's decision on a statement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Ran unchanged.
    Allowed,
    /// Refused by a rule or guardrail.
    Denied,
    /// Ran, with result values masked.
    Masked,
    /// Waiting for (or refused pending) a person's approval.
    ApprovalRequested,
    /// Ran because an approval allowed it.
    Approved,
    /// `observeOnly`: would have been refused, ran anyway.
    WouldDeny,
}

impl Decision {
    /// The wire name, also a bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Masked => "masked",
            Decision::ApprovalRequested => "approval_requested",
            Decision::Approved => "approved",
            Decision::WouldDeny => "would_deny",
        }
    }
}

/// Who ran the statement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// End user from the client's token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The end user's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The workload's ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The workload's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The workload's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What masking changed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Masked {
    /// Result columns that had at least one value masked.
    pub columns: Vec<String>,
    /// Number of values masked.
    pub values: u64,
}

/// Time spent on a statement, in microseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Durations {
    /// From forwarding to the database to its last response message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<u64>,
    /// Time the proxy itself added (decode, decide, mask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_us: Option<u64>,
    /// How long the connection was open (`connection.close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_us: Option<u64>,
}

/// An approval request an event refers to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Name of the `ApprovalRequest`.
    pub request: String,
    /// Where the request stands.
    pub phase: ApprovalPhase,
    /// Who decided, for `approval.decided`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// Phase of an approval request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPhase {
    /// Waiting for a decision.
    #[default]
    Pending,
    /// An approver allowed it.
    Approved,
    /// An approver refused it.
    Rejected,
    /// Nobody decided before its ttl ran out.
    Expired,
}

impl ApprovalPhase {
    /// The wire name.
    pub fn label(&self) -> &'static str {
        match self {
            ApprovalPhase::Pending => "pending",
            ApprovalPhase::Approved => "approved",
            ApprovalPhase::Rejected => "rejected",
            ApprovalPhase::Expired => "expired",
        }
    }
}

/// How much statement text events carry (the policy's `audit.statementText`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StatementText {
    /// The statement as sent.
    Full,
    /// The statement with literals replaced by `?`.
    #[default]
    Redacted,
    /// No text.
    None,
}

impl Event {
    /// A new event of `kind` at the current time; chain fields are stamped when recorded.
    pub fn new(kind: Kind) -> Self {
        Self::at(kind, clock::now_rfc3339())
    }

    /// A new event with an explicit RFC 3339 time (tests, replays).
    pub fn at(kind: Kind, time: String) -> Self {
        Event {
            schema: SCHEMA_V1.to_owned(),
            id: String::new(),
            time,
            kind,
            instance: String::new(),
            seq: 0,
            prev_hash: String::new(),
            identity: Identity::default(),
            database: None,
            connection: None,
            statement_id: None,
            peer: None,
            reason: None,
            statement: None,
            fingerprint: None,
            operation: None,
            tables: Vec::new(),
            decision: None,
            rule: None,
            masked: None,
            rows: None,
            durations: None,
            approval: None,
            sqlstate: None,
            error: None,
        }
    }

    /// Sets the identity.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Sets the database name.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// Sets the connection number.
    pub fn connection(mut self, connection: u64) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Sets the client's address.
    pub fn peer(mut self, peer: impl Into<String>) -> Self {
        self.peer = Some(peer.into());
        self
    }

    /// Sets why a connection ended.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the statement text as `mode` allows: `full` keeps `full`, `redacted` keeps
    /// `redacted` (the analyser's literal-free text), `none` keeps nothing.
    pub fn statement(mut self, mode: StatementText, full: &str, redacted: &str) -> Self {
        self.statement = match mode {
            StatementText::Full => Some(full.to_owned()),
            StatementText::Redacted => Some(redacted.to_owned()),
            StatementText::None => None,
        };
        self
    }

    /// Sets fingerprint, operation and tables from the statement analysis.
    pub fn analysis(
        mut self,
        fingerprint: impl Into<String>,
        operation: impl Into<String>,
        tables: Vec<String>,
    ) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self.operation = Some(operation.into());
        self.tables = tables;
        self
    }

    /// Sets the decision and the rule that made it.
    pub fn decision(mut self, decision: Decision, rule: Option<String>) -> Self {
        self.decision = Some(decision);
        self.rule = rule;
        self
    }

    /// Sets what masking changed.
    pub fn masked(mut self, columns: Vec<String>, values: u64) -> Self {
        self.masked = Some(Masked { columns, values });
        self
    }

    /// Sets rows returned or affected.
    pub fn rows(mut self, rows: u64) -> Self {
        self.rows = Some(rows);
        self
    }

    /// Sets upstream and proxy durations in microseconds.
    pub fn durations(mut self, upstream_us: Option<u64>, proxy_us: Option<u64>) -> Self {
        self.durations = Some(Durations {
            upstream_us,
            proxy_us,
            session_us: None,
        });
        self
    }

    /// Sets how long the connection was open, in microseconds (`connection.close`).
    pub fn session_duration(mut self, session_us: u64) -> Self {
        self.durations
            .get_or_insert_with(Durations::default)
            .session_us = Some(session_us);
        self
    }

    /// Sets the approval request the event refers to.
    pub fn approval(mut self, approval: Approval) -> Self {
        self.approval = Some(approval);
        self
    }

    /// Sets the `statement` event a `statement.result` is about.
    pub fn statement_id(mut self, id: impl Into<String>) -> Self {
        self.statement_id = Some(id.into());
        self
    }

    /// Sets the SQLSTATE of the database's error.
    pub fn sqlstate(mut self, code: impl Into<String>) -> Self {
        self.sqlstate = Some(code.into());
        self
    }

    /// Sets the error text.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}
