//! Sidecar injection: the pure part of the mutating webhook. Given a pod and the policies in its
//! namespace, decide whether to inject and compute the mutated pod; the webhook turns the
//! difference into a JSON patch.
//!
//! Opt-in and opt-out:
//! - a pod annotated `dbwarden.io/inject: "true"` is injected;
//! - in a namespace labelled `dbwarden.io/inject=enabled` every pod is, unless annotated
//!   `dbwarden.io/inject: "false"`;
//! - a pod already carrying `dbwarden.io/injected: "true"` is left as it is (admission may see the
//!   same pod twice, e.g. when another webhook asks for reinvocation).
//!
//! The contract with the sidecar (what it reads at start-up) is in [`sidecar`].

mod settings;
pub mod sidecar;

use std::collections::BTreeMap;

use dbwarden_crds::DatabaseAccessPolicy;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

pub use settings::{InjectSettings, Overrides};

/// The annotation that asks for (or, with "false", refuses) injection.
pub const INJECT_ANNOTATION: &str = "dbwarden.io/inject";
/// The namespace label that opts every pod of the namespace in.
pub const NAMESPACE_LABEL: &str = "dbwarden.io/inject";
/// Set on injected pods; its presence makes injection idempotent.
pub const INJECTED_ANNOTATION: &str = "dbwarden.io/injected";
/// Set on injected pods: the policies the sidecar was configured for, comma-separated.
pub const POLICIES_ANNOTATION: &str = "dbwarden.io/policies";

/// How the pod reached the webhook: each has its own webhook entry and failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The pod's namespace opted in: inject unless the pod opts out.
    Namespace,
    /// Any other namespace: inject only pods annotated `dbwarden.io/inject: "true"`.
    Annotated,
}

/// What the webhook should do with a pod.
#[derive(Debug)]
pub enum Outcome {
    /// Admit unchanged; `why` is for the logs.
    Skip { why: &'static str },
    /// Admit unchanged, with a warning the user sees in kubectl.
    Warn { warning: String },
    /// Admit the mutated pod.
    Inject {
        pod: Box<Pod>,
        policies: Vec<String>,
    },
}

/// A pod that asked for injection but cannot be injected as asked: refuse it, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// An override annotation has a value the operator will not use.
    #[error("annotation {annotation}: {value:?} {reason}")]
    BadAnnotation {
        /// The annotation key.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two policies selecting the same pod want the same local port.
    #[error(
        "policies {first} and {second} both listen on port {port}; give one another listenPort"
    )]
    PortClash {
        /// One policy.
        first: String,
        /// The other.
        second: String,
        /// The port.
        port: i32,
    },
}

/// Decides about `pod` given every policy in its namespace.
pub fn mutate(
    pod: &Pod,
    scope: Scope,
    policies: &[&DatabaseAccessPolicy],
    settings: &InjectSettings,
) -> Result<Outcome, InjectError> {
    let annotations = pod.annotations();
    if annotations
        .get(INJECTED_ANNOTATION)
        .is_some_and(|v| v == "true")
    {
        return Ok(Outcome::Skip {
            why: "already injected",
        });
    }
    let asked = annotations.get(INJECT_ANNOTATION).map(String::as_str);
    let wanted = match (scope, asked) {
        (_, Some("false")) => false,
        (Scope::Namespace, _) => true,
        (Scope::Annotated, Some("true")) => true,
        (Scope::Annotated, _) => false,
    };
    if !wanted {
        return Ok(Outcome::Skip {
            why: "not asked for",
        });
    }

    let selecting = selecting(pod, policies);
    if selecting.is_empty() {
        return Ok(Outcome::Warn {
            warning: format!(
                "dbwarden: no DatabaseAccessPolicy in namespace {} selects this pod's labels; the sidecar was not injected",
                pod.namespace().unwrap_or_default()
            ),
        });
    }
    check_ports(&selecting)?;
    let overrides = Overrides::from_annotations(annotations)?;

    let mut mutated = pod.clone();
    let names: Vec<String> = selecting.iter().map(|p| p.name_any()).collect();
    let spec = mutated.spec.get_or_insert_with(Default::default);
    let (container, volumes) = sidecar::container(&selecting, settings, &overrides);
    if settings.native_sidecar {
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .insert(0, container);
    } else {
        spec.containers.push(container);
    }
    spec.volumes.get_or_insert_with(Vec::new).extend(volumes);

    let app_env = app_env(&selecting);
    let app_containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
        .filter(|c| c.name != sidecar::CONTAINER_NAME);
    for app in app_containers {
        add_env(app, &app_env);
    }

    let annotations = mutated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(INJECTED_ANNOTATION.into(), "true".into());
    annotations.insert(POLICIES_ANNOTATION.into(), names.join(","));
    Ok(Outcome::Inject {
        pod: Box::new(mutated),
        policies: names,
    })
}

/// The policies whose workload selector matches the pod's labels, by name for a stable order.
fn selecting<'a>(
    pod: &Pod,
    policies: &[&'a DatabaseAccessPolicy],
) -> Vec<&'a DatabaseAccessPolicy> {
    let mut matching: Vec<&DatabaseAccessPolicy> = policies
        .iter()
        .copied()
        .filter(|policy| policy.namespace() == pod.namespace())
        .filter(|policy| {
            Selector::try_from(policy.spec.workload_selector.clone())
                .is_ok_and(|selector| selector.matches(pod.labels()))
        })
        .collect();
    matching.sort_by_key(|p| p.name_any());
    matching
}

fn check_ports(policies: &[&DatabaseAccessPolicy]) -> Result<(), InjectError> {
    let mut seen: BTreeMap<i32, String> = BTreeMap::new();
    for policy in policies {
        if let Some(first) = seen.insert(policy.spec.listen_port, policy.name_any()) {
            return Err(InjectError::PortClash {
                first,
                second: policy.name_any(),
                port: policy.spec.listen_port,
            });
        }
    }
    Ok(())
}

/// `DBWARDEN_<POLICY>_{HOST,PORT,URL}` for each policy, so the app finds its local endpoint.
fn app_env(policies: &[&DatabaseAccessPolicy]) -> Vec<EnvVar> {
    let mut env = Vec::new();
    for policy in policies {
        let prefix = format!("DBWARDEN_{}", env_name(&policy.name_any()));
        let port = policy.spec.listen_port;
        let database = &policy.spec.database.name;
        for (suffix, value) in [
            ("HOST", "127.0.0.1".to_string()),
            ("PORT", port.to_string()),
            ("URL", format!("postgresql://127.0.0.1:{port}/{database}")),
        ] {
            env.push(EnvVar {
                name: format!("{prefix}_{suffix}"),
                value: Some(value),
                value_from: None,
            });
        }
    }
    env
}

/// `orders-db.v2` -> `ORDERS_DB_V2`.
fn env_name(policy: &str) -> String {
    policy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Adds `env` to `container`, leaving any variable the user already set as it is.
fn add_env(container: &mut Container, env: &[EnvVar]) {
    let existing = container.env.get_or_insert_with(Vec::new);
    for var in env {
        if !existing.iter().any(|e| e.name == var.name) {
            existing.push(var.clone());
        }
    }
}

#[cfg(test)]
mod tests;
