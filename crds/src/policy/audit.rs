//! `spec.audit`: where audit events go.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// Shipping of audit events to a collector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Audit {
    /// HTTP(S) URL events are POSTed to in batches.
    #[schemars(length(min = 8, max = 2048), regex(pattern = "^https?://"))]
    pub sink_url: String,
    /// `ndjson`: one JSON event per line. `otlp`: OpenTelemetry logs over HTTP (JSON encoding).
    #[serde(default)]
    pub format: AuditFormat,
    /// How much statement text events carry.
    #[serde(default)]
    pub statement_text: StatementText,
    /// What happens when the collector is down and the local spool is full: `closed` refuses
    /// statements, `open` lets them run and counts the lost events.
    #[serde(default)]
    pub failure_policy: AuditFailurePolicy,
    /// Bearer token sent to the collector, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
}

/// Encoding of shipped audit events.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuditFormat {
    /// Newline-delimited JSON, one event per line.
    #[default]
    Ndjson,
    /// OpenTelemetry logs over HTTP (OTLP/HTTP, JSON).
    Otlp,
}

/// How much of a statement's text audit events keep.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StatementText {
    /// The statement as sent, literals included.
    Full,
    /// The statement with every literal replaced by `?`.
    #[default]
    Redacted,
    /// No text; the fingerprint, operation and tables only.
    None,
}

/// Behaviour when audit events cannot be delivered or spooled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuditFailurePolicy {
    /// Keep serving; lost events are counted and logged.
    Open,
    /// Refuse statements until events can be recorded again.
    #[default]
    Closed,
}
