//! Small types shared by both resources.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the policy's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the resource that refers to it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Who a rule is about: people and groups as the token issuer or the API server names them, and
/// ServiceAccounts of workloads that connect without an end-user token.
///
/// Names are matched exactly (case-sensitive). A connection is matched when any one entry matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0) || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0)"
).message("name at least one subject: users, groups or serviceAccounts"))]
pub struct Subjects {
    /// End users, by the value of the token's username claim (e.g. `alice@example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub users: Vec<String>,
    /// Groups, by the value of the token's groups claim (e.g. `dba`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub groups: Vec<String>,
    /// ServiceAccounts of connecting pods, as `name` (same namespace as the policy) or
    /// `namespace/name`. They apply when the client presents no end-user token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 317)), extend("x-kubernetes-list-type" = "set"))]
    pub service_accounts: Vec<String>,
}

impl Subjects {
    /// True when no user, group or ServiceAccount is named.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.service_accounts.is_empty()
    }
}
