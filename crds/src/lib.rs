//! The `dbwarden.io/v1alpha1` custom resources, shared by the operator and the sidecar.
//!
//! - [`DatabaseAccessPolicy`] (`dap`): which workloads may reach which database, as whom, doing
//!   what, with which guardrails, masking, approvals and audit.
//! - [`ApprovalRequest`] (`ar`): one statement waiting for a person's decision.
//!
//! The OpenAPI schema (with its CEL rules) is what the API server enforces at apply time;
//! [`validate`] checks what a schema cannot say well (glob syntax, durations, JWT settings) and is
//! run by the operator's admission webhook and by the sidecar before it trusts a policy.

pub mod approval;
pub mod common;
pub mod docs;
pub mod duration;
pub mod glob;
pub mod operation;
pub mod policy;
pub mod validate;

#[cfg(test)]
mod tests;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResourceExt;

pub use approval::{
    ApprovalPhase, ApprovalRequest, ApprovalRequestSpec, ApprovalRequestStatus, Decision,
    DecisionKind, Requester,
};
pub use common::{SecretKeyRef, Subjects};
pub use duration::{ParseDurationError, parse_duration};
pub use glob::{ColumnPattern, GlobError, TablePattern};
pub use operation::Operation;
pub use policy::{DatabaseAccessPolicy, DatabaseAccessPolicySpec, DatabaseAccessPolicyStatus};
pub use validate::{Problem, ValidationError};

/// The API group of every dbwarden resource.
pub const GROUP: &str = "dbwarden.io";
/// The API version this crate serves.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get` category that lists every dbwarden resource.
pub const CATEGORY: &str = "dbwarden";

/// Every CustomResourceDefinition with the file name `crdgen` writes it to (under `crds/`).
///
/// Install these rather than `DatabaseAccessPolicy::crd()`: the descriptions here are re-flowed
/// (doc comments' line breaks removed within paragraphs) so `kubectl explain` wraps them well.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        (
            "databaseaccesspolicies.yaml",
            tidy(DatabaseAccessPolicy::crd()),
        ),
        ("approvalrequests.yaml", tidy(ApprovalRequest::crd())),
    ]
}

fn tidy(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            reflow(schema);
        }
    }
    crd
}

/// Joins the lines of each paragraph of every description in `schema`.
fn reflow(schema: &mut JSONSchemaProps) {
    if let Some(description) = &mut schema.description {
        *description = description
            .split("\n\n")
            .map(|paragraph| {
                paragraph
                    .split('\n')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        reflow(property);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &mut schema.items {
        reflow(items);
    }
}
