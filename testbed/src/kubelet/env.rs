//! Environment: `valueFrom` resolved from the pod, `$(VAR)` expansion, paths re-rooted.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, ObjectFieldSelector, Pod, Secret};
use kube::{Api, ResourceExt};

use crate::Result;

use super::fault;
use super::volumes::format_map;

/// A variable's value, with `valueFrom` resolved from the pod or the API server.
pub(super) async fn env_value(
    client: &kube::Client,
    container: &str,
    namespace: &str,
    pod: &Pod,
    var: &EnvVar,
) -> Result<String> {
    let problem = |what: String| fault(container, format!("env {}: {what}", var.name));
    let Some(from) = &var.value_from else {
        return Ok(var.value.clone().unwrap_or_default());
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, field).map_err(problem);
    }
    if let Some(key) = &from.secret_key_ref {
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&key.name)
            .await?;
        let value = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(&key.key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        return match (value, key.optional) {
            (Some(v), _) => Ok(v),
            (None, Some(true)) => Ok(String::new()),
            (None, _) => Err(problem(format!(
                "key {:?} of Secret {:?} not found (the kubelet would not start the container)",
                key.key, key.name
            ))),
        };
    }
    if let Some(key) = &from.config_map_key_ref {
        let map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(&key.name)
            .await?;
        let value = map
            .as_ref()
            .and_then(|m| m.data.as_ref())
            .and_then(|d| d.get(&key.key))
            .cloned();
        return match (value, key.optional) {
            (Some(v), _) => Ok(v),
            (None, Some(true)) => Ok(String::new()),
            (None, _) => Err(problem(format!(
                "key {:?} of ConfigMap {:?} not found (the kubelet would not start the container)",
                key.key, key.name
            ))),
        };
    }
    Err(problem(
        "only valueFrom.fieldRef, secretKeyRef and configMapKeyRef are supported".into(),
    ))
}

/// A downward API field of the pod, as the kubelet renders it.
pub(super) fn field_value(pod: &Pod, field: &ObjectFieldSelector) -> Result<String, String> {
    if let Some(version) = &field.api_version
        && version != "v1"
    {
        return Err(format!("fieldRef apiVersion {version:?} is not supported"));
    }
    let path = field.field_path.as_str();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
    };
    let missing = || format!("fieldRef {path}: the pod has no value (it is not scheduled)");
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "metadata.labels" => format_map(pod.labels()),
        "metadata.annotations" => format_map(pod.annotations()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).ok_or_else(missing)?,
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            return Err(missing());
        }
        _ => {
            if let Some(key) = subscript("metadata.labels['") {
                pod.labels().get(key).cloned().unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations['") {
                pod.annotations().get(key).cloned().unwrap_or_default()
            } else {
                return Err(format!("fieldRef {path} is not supported"));
            }
        }
    })
}

/// Kubernetes' `$(VAR)` expansion in env values and args: a reference to a variable defined
/// earlier is replaced, `$$` is a literal `$`, anything else stays as written.
pub fn expand(text: &str, defined: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match defined.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `value` moved under `root` when it is an absolute path on, under or above a mount point.
pub(super) fn reroot(value: &str, mounts: &[(String, PathBuf)], root: &Path) -> String {
    if !value.starts_with('/') {
        return value.to_string();
    }
    let path = Path::new(value);
    let touches_a_mount = mounts.iter().any(|(mount_path, _)| {
        let mount = Path::new(mount_path);
        path.starts_with(mount) || mount.starts_with(path)
    });
    if touches_a_mount && path != Path::new("/") {
        root.join(value.trim_start_matches('/'))
            .display()
            .to_string()
    } else {
        value.to_string()
    }
}
