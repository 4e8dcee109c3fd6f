//! The mutating webhook for pods: injection.

use axum::Json;
use axum::extract::State;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use super::WebhookState;
use crate::inject::{self, Outcome, Scope};

pub(super) async fn inject_namespace(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(admit(&state, Scope::Namespace, review).into_review())
}

pub(super) async fn inject_annotated(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(admit(&state, Scope::Annotated, review).into_review())
}

fn admit(state: &WebhookState, scope: Scope, review: AdmissionReview<Pod>) -> AdmissionResponse {
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(error) => return AdmissionResponse::invalid(error),
    };
    let response = AdmissionResponse::from(&request);
    let Some(original) = &request.object else {
        return response;
    };
    // On CREATE the pod may not carry its namespace yet; the request does.
    let mut pod = original.clone();
    if pod.metadata.namespace.is_none() {
        pod.metadata.namespace = request.namespace.clone();
    }
    let namespace = pod.namespace();
    let policies = state.policies.state();
    let in_namespace: Vec<_> = policies
        .iter()
        .filter(|p| p.namespace() == namespace)
        .map(|p| p.as_ref())
        .collect();
    let pod_name = pod
        .metadata
        .name
        .clone()
        .or(pod.metadata.generate_name.clone())
        .unwrap_or_default();

    match inject::mutate(&pod, scope, &in_namespace, &state.settings) {
        Ok(Outcome::Skip { why }) => {
            tracing::debug!(pod = %pod_name, namespace = ?namespace, why, "not injected");
            response
        }
        Ok(Outcome::Warn { warning }) => {
            tracing::info!(pod = %pod_name, namespace = ?namespace, %warning, "not injected");
            let mut response = response;
            response.warnings = Some(vec![warning]);
            response
        }
        Ok(Outcome::Inject {
            pod: mutated,
            policies,
        }) => {
            let (Ok(before), Ok(after)) =
                (serde_json::to_value(&pod), serde_json::to_value(&mutated))
            else {
                return response.deny("dbwarden: the pod could not be serialized for injection");
            };
            match response
                .clone()
                .with_patch(json_patch::diff(&before, &after))
            {
                Ok(patched) => {
                    tracing::info!(pod = %pod_name, namespace = ?namespace, policies = %policies.join(","), "injected the sidecar");
                    patched
                }
                Err(error) => response.deny(format!(
                    "dbwarden: building the injection patch failed: {error}"
                )),
            }
        }
        Err(error) => {
            tracing::info!(pod = %pod_name, namespace = ?namespace, %error, "refused");
            response.deny(format!("dbwarden: {error}"))
        }
    }
}
