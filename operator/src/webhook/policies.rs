//! The validating webhook for DatabaseAccessPolicy: the semantic validator at apply time, so a
//! mistake the schema cannot see is refused by `kubectl apply` with the same message the
//! controller would put in the `Ready` condition.

use axum::Json;
use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_crds::validate::validate_policy;
use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

pub(super) async fn validate(
    Json(review): Json<AdmissionReview<DatabaseAccessPolicy>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DatabaseAccessPolicy> = match review.try_into() {
        Ok(request) => request,
        Err(error) => return Json(AdmissionResponse::invalid(error).into_review()),
    };
    let response = AdmissionResponse::from(&request);
    let response = match &request.object {
        Some(policy) => {
            let namespace = request
                .namespace
                .clone()
                .or(policy.namespace())
                .unwrap_or_default();
            match validate_policy(&format!("{namespace}/{}", policy.name_any()), &policy.spec) {
                Ok(()) => response,
                Err(invalid) => response.deny(invalid.to_string()),
            }
        }
        None => response,
    };
    Json(response.into_review())
}
