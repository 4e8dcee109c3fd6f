//! `spec.rules`: who may run which operations on which tables.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Subjects;
use crate::operation::Operation;

/// One access rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRule {
    /// Name of the rule, unique in the policy; denials and audit events cite it.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Whom the rule applies to.
    pub subjects: Subjects,
    /// `allow` or `deny` the matched statements.
    #[serde(default)]
    pub action: Action,
    /// Statement kinds the rule matches (`select`, `delete`, or a group such as `ddl` or `all`).
    #[schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "set"))]
    pub operations: Vec<Operation>,
    /// Table patterns (`orders`, `public.*`, `*`). A statement matches when every table it
    /// touches matches one pattern. Default: every table.
    #[serde(default = "all_tables")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 130)), extend("x-kubernetes-list-type" = "set"))]
    pub tables: Vec<String>,
}

pub(crate) fn all_tables() -> Vec<String> {
    vec!["*".into()]
}

/// What a matching rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Let the statement through (subject to guardrails, masking and approvals).
    #[default]
    Allow,
    /// Refuse the statement with SQLSTATE 42501, naming the rule.
    Deny,
}
