//! `ApprovalRequest`: one statement waiting for a person's decision.

// The `printcolumn(...)` arguments of `#[kube]` repeat keys by design; clippy reads them as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Operation;

/// CEL rule on the whole object: the phase moves only along the approval state machine.
/// A missing status or phase counts as `Pending`, so a fresh request cannot jump to `Executed`.
const PHASE_RULE: &str = "(has(oldSelf.status) && has(oldSelf.status.phase) ? oldSelf.status.phase : 'Pending') == (has(self.status) && has(self.status.phase) ? self.status.phase : 'Pending') || ((has(oldSelf.status) && has(oldSelf.status.phase) ? oldSelf.status.phase : 'Pending') == 'Pending' && (has(self.status) && has(self.status.phase) ? self.status.phase : 'Pending') in ['Approved', 'Denied', 'Expired']) || ((has(oldSelf.status) && has(oldSelf.status.phase) ? oldSelf.status.phase : 'Pending') == 'Approved' && (has(self.status) && has(self.status.phase) ? self.status.phase : 'Pending') in ['Executed', 'Expired'])";

/// The message of [`PHASE_RULE`], naming the refused move.
const PHASE_MESSAGE: &str = "'status.phase cannot change from ' + (has(oldSelf.status) && has(oldSelf.status.phase) ? oldSelf.status.phase : 'Pending') + ' to ' + (has(self.status) && has(self.status.phase) ? self.status.phase : 'Pending') + '; allowed: Pending to Approved, Denied or Expired; Approved to Executed or Expired'";

/// A statement that needs approval, created by the sidecar. Approvers decide by editing the
/// status (`kubectl patch ar NAME --subresource=status --type=merge -p
/// '{"status":{"phase":"Approved"}}'`); the operator's admission webhook records who decided.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dbwarden.io",
    version = "v1alpha1",
    kind = "ApprovalRequest",
    shortname = "ar",
    category = "dbwarden",
    namespaced,
    status = "ApprovalRequestStatus",
    derive = "PartialEq",
    doc = "A statement waiting for approval. The spec is immutable; decisions go into the status.",
    validation = Rule::new(PHASE_RULE).message(Message::Expression(PHASE_MESSAGE.into())).field_path(".status.phase").reason(Reason::FieldValueForbidden),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Approved, Denied, Expired or Executed"),
    printcolumn(name = "Requester", type_ = "string", json_path = ".spec.requester.user", description = "Who sent the statement"),
    printcolumn(name = "Operation", type_ = "string", json_path = ".spec.operation", description = "Kind of statement"),
    printcolumn(name = "Database", type_ = "string", json_path = ".spec.database", description = "Database the statement is for"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy", priority = 1, description = "DatabaseAccessPolicy that asked for approval"),
    printcolumn(name = "Rule", type_ = "string", json_path = ".spec.rule", priority = 1, description = "Approval rule of the policy"),
    printcolumn(name = "Approvals", type_ = "integer", json_path = ".status.approvals", priority = 1, description = "Approvals received so far"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".spec.fingerprint", priority = 1, description = "Statement fingerprint (literals removed)"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt", priority = 1, description = "When the request lapses"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable; create a new ApprovalRequest instead"))]
pub struct ApprovalRequestSpec {
    /// Name of the DatabaseAccessPolicy (same namespace) whose approval rule matched.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// Name of the approval rule in that policy.
    #[schemars(length(min = 1, max = 63))]
    pub rule: String,
    /// The database, as `host/name`.
    #[schemars(length(min = 1, max = 320))]
    pub database: String,
    /// Environment of the database.
    #[schemars(length(min = 1, max = 63))]
    pub environment: String,
    /// Who sent the statement.
    pub requester: Requester,
    /// The statement, with literals kept or redacted as the policy's `audit.statementText` says.
    #[schemars(length(min = 1, max = 16384))]
    pub statement: String,
    /// Fingerprint of the statement (hash of its text with literals removed); the approval
    /// covers exactly this statement shape.
    #[schemars(length(min = 1, max = 128))]
    pub fingerprint: String,
    /// Kind of statement.
    pub operation: Operation,
    /// Tables the statement touches, schema-qualified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 130)))]
    pub tables: Vec<String>,
    /// The reason the client gave, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// When the request lapses (moves to `Expired` if not decided or not used).
    pub expires_at: Time,
}

/// The identity a statement ran as.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requester {
    /// End user from the token, or `system:serviceaccount:NAMESPACE:NAME` without one.
    #[schemars(length(min = 1, max = 317))]
    pub user: String,
    /// The user's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
    /// ServiceAccount of the pod, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 317))]
    pub service_account: Option<String>,
    /// Pod the statement came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub pod: Option<String>,
}

/// Where a request stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestStatus {
    /// Pending, then Approved, Denied or Expired; an Approved request becomes Executed when the
    /// statement runs, or Expired.
    #[serde(default)]
    pub phase: ApprovalPhase,
    /// Each approver's decision, stamped by the operator from the editor's authenticated identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub decisions: Vec<Decision>,
    /// Number of distinct approvers who approved.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub approvals: i32,
    /// When the approved statement ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_at: Option<Time>,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Phase of an approval request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ApprovalPhase {
    /// Waiting for decisions.
    #[default]
    Pending,
    /// Enough approvers approved; the statement may run once.
    Approved,
    /// An approver denied; the statement will not run.
    Denied,
    /// Lapsed before a decision or before the statement ran.
    Expired,
    /// The approved statement ran.
    Executed,
}

impl ApprovalPhase {
    /// True when the state machine allows moving from `self` to `next` (or staying).
    pub fn can_become(self, next: ApprovalPhase) -> bool {
        use ApprovalPhase::*;
        self == next
            || matches!(
                (self, next),
                (Pending, Approved | Denied | Expired) | (Approved, Executed | Expired)
            )
    }
}

/// One approver's decision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Kubernetes user name of the approver.
    #[schemars(length(min = 1, max = 253))]
    pub by: String,
    /// The approver's groups at the time of the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub groups: Vec<String>,
    /// `Approve` or `Deny`.
    pub decision: DecisionKind,
    /// When the decision was made.
    pub at: Time,
    /// What the approver said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

/// An approver's verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DecisionKind {
    /// Approve the statement.
    Approve,
    /// Deny the statement.
    Deny,
}

impl ApprovalRequest {
    /// Runs the semantic validator on the spec, naming the request `namespace/name`.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        let name = format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        );
        crate::validate::validate_approval_request(&name, &self.spec)
    }
}
