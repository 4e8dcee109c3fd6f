//! The mutating webhook on `approvalrequests/status`: records who decided, from the request's
//! authenticated `userInfo`, and refuses what [`review`](crate::approval::review) refuses.

use axum::Json;
use axum::extract::State;
use std::sync::Arc;

use dbwarden_crds::{ApprovalRequest, DatabaseAccessPolicy};
use k8s_openapi::jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::{Api, ResourceExt};

use super::WebhookState;
use crate::approval::review::{Allowed, Editor, review};

pub(super) async fn decide(
    State(state): State<WebhookState>,
    Json(admission): Json<AdmissionReview<ApprovalRequest>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<ApprovalRequest> = match admission.try_into() {
        Ok(request) => request,
        Err(error) => return Json(AdmissionResponse::invalid(error).into_review()),
    };
    let response = AdmissionResponse::from(&request);
    let (Some(new), Some(old)) = (&request.object, &request.old_object) else {
        return Json(response.into_review());
    };
    let namespace = request.namespace.clone().or(old.namespace());
    let cached = state
        .policies
        .state()
        .into_iter()
        .find(|p| p.namespace() == namespace && p.name_any() == old.spec.policy);
    // The reflector may lag behind a policy applied or changed a moment ago: before refusing a
    // decision for want of its policy or rule, ask the API server.
    let has_rule =
        |p: &DatabaseAccessPolicy| p.spec.approvals.iter().any(|r| r.name == old.spec.rule);
    let policy = match (cached, &namespace) {
        (Some(policy), _) if has_rule(&policy) => Some(policy),
        (cached, Some(ns)) => {
            let api: Api<DatabaseAccessPolicy> = Api::namespaced(state.client.clone(), ns);
            match api.get_opt(&old.spec.policy).await {
                Ok(found) => found.map(Arc::new),
                Err(error) => {
                    tracing::warn!(%error, policy = %old.spec.policy, "reading the policy of an approval request failed");
                    cached
                }
            }
        }
        (cached, None) => cached,
    };
    let groups = request.user_info.groups.clone().unwrap_or_default();
    let editor = Editor {
        username: request.user_info.username.as_deref().unwrap_or_default(),
        groups: &groups,
    };

    let response = match review(
        old,
        new,
        &editor,
        &state.operator_username,
        policy.as_deref(),
        Timestamp::now(),
    ) {
        Ok(Allowed { status, warning }) => {
            let mut response = match status {
                None => response,
                Some(status) => {
                    let mut rewritten = new.clone();
                    rewritten.status = Some(status);
                    match (serde_json::to_value(new), serde_json::to_value(&rewritten)) {
                        (Ok(before), Ok(after)) => match response
                            .clone()
                            .with_patch(json_patch::diff(&before, &after))
                        {
                            Ok(patched) => patched,
                            Err(error) => response
                                .deny(format!("dbwarden: recording the decision failed: {error}")),
                        },
                        _ => response.deny("dbwarden: the request could not be serialized"),
                    }
                }
            };
            if let Some(warning) = warning {
                response.warnings = Some(vec![warning]);
            }
            tracing::info!(request = %old.name_any(), namespace = ?namespace, user = editor.username, "status change allowed");
            response
        }
        Err(reason) => {
            tracing::info!(request = %old.name_any(), namespace = ?namespace, user = editor.username, %reason, "status change refused");
            response.deny(format!("dbwarden: {reason}"))
        }
    };
    Json(response.into_review())
}
