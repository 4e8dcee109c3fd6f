//! `DatabaseAccessPolicy`: how the workloads a selector picks may use one database.

// The `printcolumn(...)` arguments of `#[kube]` repeat keys by design; clippy reads them as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod approvals;
mod audit;
mod builder;
mod database;
mod guardrails;
mod identity;
mod masking;
mod rules;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use approvals::{ApprovalMode, ApprovalRule, ApprovalWhen, Approvers};
pub use audit::{Audit, AuditFailurePolicy, AuditFormat, StatementText};
pub use builder::PolicyBuilder;
pub use database::{CredentialsSecretRef, Database, Engine, Tls, TlsMode};
pub use guardrails::{Guardrails, OnMaxRows, Unparseable};
pub use identity::{Identity, Jwt};
pub use masking::{
    ColumnMask, Detector, DetectorMask, Masking, OnUnmaskable, PartialMask, Strategy,
};
pub use rules::{AccessRule, Action};

/// The local port the sidecar listens on when `listenPort` is not set.
pub const DEFAULT_LISTEN_PORT: i32 = 15432;

/// How the workloads a selector picks may use one database: who may connect, which statements
/// are allowed (default deny, deny wins), guardrails, masking of results, approvals for risky
/// statements, and where audit events go.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dbwarden.io",
    version = "v1alpha1",
    kind = "DatabaseAccessPolicy",
    plural = "databaseaccesspolicies",
    shortname = "dap",
    category = "dbwarden",
    namespaced,
    status = "DatabaseAccessPolicyStatus",
    derive = "PartialEq",
    doc = "Governs how the selected workloads use one database: identity, rules, guardrails, masking, approvals and audit.",
    printcolumn(
        name = "Database",
        type_ = "string",
        json_path = ".spec.database.host",
        description = "Host of the governed database"
    ),
    printcolumn(
        name = "Environment",
        type_ = "string",
        json_path = ".spec.database.environment",
        description = "Environment of the database, e.g. production"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the policy is valid and served to its sidecars"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "Why the policy is or is not ready"
    ),
    printcolumn(
        name = "Port",
        type_ = "integer",
        json_path = ".spec.listenPort",
        priority = 1,
        description = "Local port the sidecar listens on"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseAccessPolicySpec {
    /// The database the sidecar forwards to, and how it logs in.
    pub database: Database,
    /// Pods this policy governs, in the policy's namespace. The operator injects the sidecar only
    /// into pods that also carry the annotation `dbwarden.io/inject: "true"`.
    pub workload_selector: LabelSelector,
    /// Port the sidecar listens on inside the pod (on 127.0.0.1); the application connects here.
    #[serde(default = "default_listen_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: i32,
    /// How the sidecar learns who the end user is. Without it, every connection is the pod's
    /// ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Who may run which operations on which tables. Default deny: a statement no rule allows is
    /// refused; when an allow and a deny rule both match, deny wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<AccessRule>,
    /// Checks that stop dangerous statements whoever sends them. On by default.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Which result values are masked before they reach the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masking: Option<Masking>,
    /// Statements that need a person's approval before they run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub approvals: Vec<ApprovalRule>,
    /// Where audit events go. Without it, the sidecar writes them to its standard output as NDJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

fn default_listen_port() -> i32 {
    DEFAULT_LISTEN_PORT
}

/// What the operator observed about a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseAccessPolicyStatus {
    /// Standard conditions. `Ready` is `True` when the policy passed validation (reason `Valid`);
    /// otherwise `False` with reason `Invalid` or `InvalidSelector` and a message naming the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of running pods the workload selector matched at the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_pods: Option<i32>,
}

impl DatabaseAccessPolicy {
    /// Runs the semantic validator on the spec, naming the policy `namespace/name`.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        let name = format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        );
        crate::validate::validate_policy(&name, &self.spec)
    }
}
