//! What a policy's `Ready` condition says: pure logic, separate from the API calls.

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_crds::validate::validate_policy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::core::Selector;

use crate::conditions;

/// The controller's judgement of one policy generation.
#[derive(Debug)]
pub(super) struct Verdict {
    pub(super) ready: bool,
    /// CamelCase, as condition reasons and event reasons are.
    pub(super) reason: &'static str,
    pub(super) message: String,
    /// The parsed workload selector, when it parses.
    pub(super) selector: Option<Selector>,
}

impl Verdict {
    pub(super) fn condition(&self, generation: Option<i64>) -> Condition {
        conditions::new(
            conditions::READY,
            self.ready,
            self.reason,
            self.message.clone(),
            generation,
        )
    }
}

/// Validates `policy` with the validator the webhook and the sidecar share.
pub(super) fn judge(namespace: &str, policy: &DatabaseAccessPolicy) -> Verdict {
    let selector = Selector::try_from(policy.spec.workload_selector.clone());
    let validation = validate_policy(&format!("{namespace}/{}", policy.name_any()), &policy.spec);
    match (validation, selector) {
        (Err(invalid), selector) => Verdict {
            ready: false,
            reason: "Invalid",
            message: invalid.to_string(),
            selector: selector.ok(),
        },
        (Ok(()), Err(error)) => Verdict {
            ready: false,
            reason: "InvalidSelector",
            message: format!("spec.workloadSelector: {error}"),
            selector: None,
        },
        (Ok(()), Ok(selector)) => Verdict {
            ready: true,
            reason: "Valid",
            message: "The policy is valid; sidecars of the selected pods enforce it.".into(),
            selector: Some(selector),
        },
    }
}
