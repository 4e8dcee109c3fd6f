//! What the chart decides about injected sidecars, and what a pod may override.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::InjectError;

const IMAGE_ANNOTATION: &str = "dbwarden.io/sidecar-image";
const CPU_ANNOTATION: &str = "dbwarden.io/sidecar-cpu";
const MEMORY_ANNOTATION: &str = "dbwarden.io/sidecar-memory";

/// Operator-wide injection settings (from the chart's values).
#[derive(Debug, Clone)]
pub struct InjectSettings {
    /// The sidecar image, e.g. `ghcr.io/dbwarden/sidecar:0.1.0`.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    pub image_pull_policy: String,
    /// Requests and limits of the sidecar container.
    pub resources: ResourceRequirements,
    /// Inject as a native sidecar (an init container with `restartPolicy: Always`, Kubernetes
    /// 1.29 and later) rather than as a regular container.
    pub native_sidecar: bool,
    /// The port of the sidecar's `/healthz` and `/readyz`, used by the probes.
    pub health_port: i32,
}

impl InjectSettings {
    /// Defaults for `image`: 50m CPU and 64Mi memory requested, 128Mi memory limit.
    pub fn new(image: impl Into<String>) -> Self {
        let quantities = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        };
        Self {
            image: image.into(),
            image_pull_policy: "IfNotPresent".into(),
            resources: ResourceRequirements {
                requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
                limits: Some(quantities(&[("memory", "128Mi")])),
                ..Default::default()
            },
            native_sidecar: true,
            health_port: 15020,
        }
    }
}

/// Per-pod overrides from annotations, checked before use: a typo refuses the pod rather than
/// being ignored.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `dbwarden.io/sidecar-image`.
    pub image: Option<String>,
    /// `dbwarden.io/sidecar-cpu`: the CPU request.
    pub cpu: Option<Quantity>,
    /// `dbwarden.io/sidecar-memory`: the memory request and limit.
    pub memory: Option<Quantity>,
}

impl Overrides {
    pub(super) fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, InjectError> {
        let image = match annotations.get(IMAGE_ANNOTATION) {
            Some(image) if image.is_empty() || image.chars().any(char::is_whitespace) => {
                return Err(InjectError::BadAnnotation {
                    annotation: IMAGE_ANNOTATION,
                    value: image.clone(),
                    reason: "is not an image reference",
                });
            }
            other => other.cloned(),
        };
        Ok(Self {
            image,
            cpu: quantity(annotations, CPU_ANNOTATION)?,
            memory: quantity(annotations, MEMORY_ANNOTATION)?,
        })
    }
}

/// A Kubernetes quantity such as `100m`, `0.5`, `128Mi` or `1G`.
fn quantity(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<Quantity>, InjectError> {
    let Some(value) = annotations.get(key) else {
        return Ok(None);
    };
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(number_end);
    let number_ok = !number.is_empty() && number.parse::<f64>().is_ok_and(|n| n > 0.0);
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "Ki" | "Mi" | "Gi" | "Ti"
    );
    if number_ok && suffix_ok {
        Ok(Some(Quantity(value.clone())))
    } else {
        Err(InjectError::BadAnnotation {
            annotation: key,
            value: value.clone(),
            reason: "is not a positive quantity such as 100m, 0.5, 128Mi or 1Gi",
        })
    }
}
