//! The mutating webhook on `approvalrequests/status`: records who decided, from the request's
//! authenticated `userInfo`, and refuses what [`review`](crate::approval::review) refuses.

use axum::Json;
use axum::extract::State;
use dbwarden_crds::ApprovalRequest;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

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
    let policies = state.policies.state();
    let policy = policies
        .iter()
        .find(|p| p.namespace() == namespace && p.name_any() == old.spec.policy);
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
        policy.map(|p| p.as_ref()),
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
