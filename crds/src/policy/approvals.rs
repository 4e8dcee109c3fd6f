//! `spec.approvals`: statements that need a person's approval before they run.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DURATION_PATTERN;
use crate::operation::Operation;
use crate::policy::rules::all_tables;

/// A kind of statement that waits for approval, and who may give it.
///
/// The sidecar creates an `ApprovalRequest` for a statement the rules allow and this rule
/// matches; the statement runs once the request is `Approved`, by the same identity, before the
/// request expires.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!has(self.holdTimeout) || self.mode == 'hold'")
        .message("holdTimeout is only used with mode: hold").field_path(".holdTimeout"),
    validation = Rule::new("(has(self.approvers.groups) && size(self.approvers.groups) > 0) || (has(self.approvers.users) && self.requiredApprovals <= size(self.approvers.users))")
        .message("requiredApprovals is more than the number of approvers; name more users or a group").field_path(".requiredApprovals"),
)]
pub struct ApprovalRule {
    /// Name of the rule, unique in the policy; ApprovalRequests cite it.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Which statements need approval.
    pub when: ApprovalWhen,
    /// Who may approve or deny. The requester can never decide their own request.
    pub approvers: Approvers,
    /// Number of distinct approvers who must approve.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub required_approvals: i32,
    /// How long a request stays open, and how long an approval stays usable, e.g. `30m`, `1h`,
    /// `1d` (units d, h, m, s).
    #[serde(default = "default_ttl")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub ttl: String,
    /// `hold`: the client's statement waits for the decision and then runs or fails.
    /// `reject`: the client gets an error naming the request at once, and the same statement
    /// from the same identity runs once after approval.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// In `hold` mode, how long the client waits before its statement fails (the request stays
    /// open until `ttl`). Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub hold_timeout: Option<String>,
    /// When true, the client must give a reason (the `application_name` prefix
    /// `reason=...` or the session setting `dbwarden.reason`), copied into the request.
    #[serde(default)]
    pub require_reason: bool,
}

fn one() -> i32 {
    1
}

fn default_ttl() -> String {
    "1h".into()
}

/// Which statements an approval rule is about. All given conditions must hold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalWhen {
    /// Statement kinds (`delete`, `ddl`, ...).
    #[schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "set"))]
    pub operations: Vec<Operation>,
    /// Table patterns; a statement matches when any table it touches matches. Default: any table.
    #[serde(default = "all_tables")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 130)), extend("x-kubernetes-list-type" = "set"))]
    pub tables: Vec<String>,
    /// Environments (`spec.database.environment`) the rule applies in; any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63)), extend("x-kubernetes-list-type" = "set"))]
    pub environments: Vec<String>,
}

/// Who may decide an approval request, as the API server authenticates them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)"
).message("name at least one approver: users or groups"))]
pub struct Approvers {
    /// Kubernetes user names (`userInfo.username`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub users: Vec<String>,
    /// Kubernetes groups (`userInfo.groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub groups: Vec<String>,
}

/// What the client experiences while a statement waits for approval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalMode {
    /// The statement waits (up to `holdTimeout`) and then runs or fails.
    Hold,
    /// The statement fails at once with an error naming the request; retry after approval.
    #[default]
    Reject,
}
