//! A kubelet stand-in: what a kubelet would run for one container of an admitted pod.
//!
//! The control plane has no nodes, so pods are admitted but never run. Given the Pod as the API
//! server stored it (fetched after create, so mutating webhooks have had their say) and a
//! container name, [`prepare_container`] works out what the kubelet would start: the command
//! line, the environment with `valueFrom` resolved, and the files of its volume mounts. The
//! caller then runs a host binary that stands for the image's entrypoint
//! ([`PreparedContainer::command`]).
//!
//! One deviation, because there is no container filesystem: every mount is materialised under a
//! temporary folder that stands for the container's `/`, and every environment value and argument
//! that is an absolute path on, under or above a mount point is re-rooted into that folder
//! (`/var/run/x` becomes `<root>/var/run/x`). Everything else is as the kubelet does it.
//!
//! Anything not implemented here is an error naming it ([`Error::Kubelet`]), never skipped: a
//! story that silently lost a volume or a variable would prove nothing.
//!
//! Not modelled: the pod's network namespace (processes share the host's loopback), file modes
//! and `readOnly` (files are written with the test's user), the ServiceAccount token volume (the
//! test bed's API server runs without the `ServiceAccount` admission plugin, so pods have none;
//! give the process a `KUBECONFIG` instead), the image's own environment, and `$(VAR)`
//! references to variables that are not defined (left as written, as the kubelet does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeSource, EnvVar, ObjectFieldSelector, Pod, Secret,
    SecretVolumeSource, Volume,
};
use kube::{Api, ResourceExt};
use tempfile::TempDir;

use crate::{Error, Result};

/// What a kubelet would run for one container; its files are removed on drop.
#[derive(Debug)]
pub struct PreparedContainer {
    /// `namespace/pod/container`, for messages.
    pub name: String,
    /// The container's `args`, after `$(VAR)` expansion and re-rooting.
    pub args: Vec<String>,
    /// The container's environment in declaration order, resolved, expanded and re-rooted.
    pub env: Vec<(String, String)>,
    /// Each `mountPath` and the folder standing for it.
    pub mounts: Vec<(String, PathBuf)>,
    root: TempDir,
}

impl PreparedContainer {
    /// The folder standing for the container's `/`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Where a path of the container's filesystem is on the host.
    pub fn host_path(&self, container_path: &str) -> PathBuf {
        self.root
            .path()
            .join(container_path.trim_start_matches('/'))
    }

    /// The value of environment variable `name`, if the container sets it.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) environment variable `name`; for the deviations a test must make
    /// on purpose, such as a port that would clash because all "pods" share the host's network.
    pub fn set_env(&mut self, name: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), value.into()));
    }

    /// The process the kubelet would start, with `entrypoint` standing for the image's
    /// `ENTRYPOINT`: the container's `args` only, exactly its environment (nothing inherited
    /// from the test), the working directory at the container's root.
    pub fn command(&self, entrypoint: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(entrypoint);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.root.path())
            .kill_on_drop(true);
        command
    }
}

/// Prepares `container` (a container or an init container, e.g. a native sidecar) of `pod` as
/// a kubelet would, reading the Secrets and ConfigMaps it needs with `client` (an administrator:
/// the kubelet reads them with its node's rights).
pub async fn prepare_container(
    client: &kube::Client,
    pod: &Pod,
    container: &str,
) -> Result<PreparedContainer> {
    let namespace = pod.namespace().unwrap_or_else(|| "default".into());
    let name = format!("{namespace}/{}/{container}", pod.name_any());
    let unsupported = |what: String| fault(&name, what);
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| unsupported("the pod has no spec".into()))?;
    let found = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)
        .ok_or_else(|| unsupported("no container or init container of that name".into()))?;
    refuse_unsupported_container_fields(found).map_err(&unsupported)?;

    let root = tempfile::Builder::new()
        .prefix("dbwarden-kubelet-")
        .tempdir()
        .map_err(Error::io("creating the container's root folder"))?;

    let mut mounts = Vec::new();
    for mount in found.volume_mounts.iter().flatten() {
        if mount.sub_path.is_some() || mount.sub_path_expr.is_some() {
            return Err(unsupported(format!(
                "volume mount {:?}: subPath is not supported",
                mount.name
            )));
        }
        if !mount.mount_path.starts_with('/') {
            return Err(unsupported(format!(
                "volume mount {:?}: mountPath {:?} is not absolute",
                mount.name, mount.mount_path
            )));
        }
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| unsupported(format!("volume mount {:?}: no such volume", mount.name)))?;
        let dir = root.path().join(mount.mount_path.trim_start_matches('/'));
        create_dir(&dir)?;
        materialise(client, &name, &namespace, pod, volume, &dir).await?;
        mounts.push((mount.mount_path.clone(), dir));
    }

    let mut env: Vec<(String, String)> = Vec::new();
    for var in found.env.iter().flatten() {
        let value = env_value(client, &name, &namespace, pod, var).await?;
        let value = expand(&value, &env);
        env.push((var.name.clone(), value));
    }
    let args = found
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, &env))
        .map(|a| reroot(&a, &mounts, root.path()))
        .collect();
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let v = reroot(&v, &mounts, root.path());
            (k, v)
        })
        .collect();
    tracing::debug!(container = %name, root = %root.path().display(), "prepared as a kubelet would");
    Ok(PreparedContainer {
        name,
        args,
        env,
        mounts,
        root,
    })
}

/// Container fields that change what runs and that the stand-in cannot honour.
fn refuse_unsupported_container_fields(c: &Container) -> Result<(), String> {
    if c.command.is_some() {
        return Err(
            "`command` replaces the image's entrypoint, which the stand-in cannot \
                    resolve to a host program"
                .into(),
        );
    }
    if c.env_from.is_some() {
        return Err("envFrom is not supported".into());
    }
    if c.working_dir.is_some() {
        return Err("workingDir is not supported".into());
    }
    if c.volume_devices.is_some() {
        return Err("volumeDevices are not supported".into());
    }
    Ok(())
}

/// A variable's value, with `valueFrom` resolved from the pod or the API server.
async fn env_value(
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
fn field_value(pod: &Pod, field: &ObjectFieldSelector) -> Result<String, String> {
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

/// Writes the files of `volume` into `dir`.
async fn materialise(
    client: &kube::Client,
    container: &str,
    namespace: &str,
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
) -> Result<()> {
    let problem = |what: String| fault(container, format!("volume {:?}: {what}", volume.name));
    if let Some(secret) = &volume.secret {
        return secret_files(client, namespace, secret, dir)
            .await?
            .map_err(problem);
    }
    if let Some(downward) = &volume.downward_api {
        return downward_files(pod, downward, dir)?.map_err(problem);
    }
    if volume.empty_dir.is_some() {
        return Ok(());
    }
    Err(problem(
        "only secret, downwardAPI and emptyDir volumes are supported".into(),
    ))
}

/// The files of a Secret volume; the inner error is a problem with the pod, the outer one
/// with the API server or the disk.
async fn secret_files(
    client: &kube::Client,
    namespace: &str,
    source: &SecretVolumeSource,
    dir: &Path,
) -> Result<Result<(), String>> {
    let Some(name) = source.secret_name.as_deref() else {
        return Ok(Err("secretName is missing".into()));
    };
    let Some(secret) = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(if source.optional == Some(true) {
            Ok(())
        } else {
            Err(format!(
                "Secret {namespace}/{name} not found (the kubelet would not start the pod)"
            ))
        });
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .chain(
            secret
                .string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        )
        .collect();
    let files: Vec<(&str, &[u8])> = match &source.items {
        None => data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect(),
        Some(items) => {
            let mut files = Vec::new();
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    return Ok(Err(format!("Secret {name} has no key {:?}", item.key)));
                };
                files.push((item.path.as_str(), bytes.as_slice()));
            }
            files
        }
    };
    for (path, bytes) in files {
        if let Err(problem) = write_file(dir, path, bytes)? {
            return Ok(Err(problem));
        }
    }
    Ok(Ok(()))
}

/// The files of a downward API volume; errors as in [`secret_files`].
fn downward_files(
    pod: &Pod,
    source: &DownwardAPIVolumeSource,
    dir: &Path,
) -> Result<Result<(), String>> {
    for item in source.items.iter().flatten() {
        if item.resource_field_ref.is_some() {
            return Ok(Err(format!(
                "{}: resourceFieldRef is not supported",
                item.path
            )));
        }
        let Some(field) = &item.field_ref else {
            return Ok(Err(format!("{}: no fieldRef", item.path)));
        };
        let value = match field_value(pod, field) {
            Ok(value) => value,
            Err(problem) => return Ok(Err(problem)),
        };
        if let Err(problem) = write_file(dir, &item.path, value.as_bytes())? {
            return Ok(Err(problem));
        }
    }
    Ok(Ok(()))
}

/// Writes `dir/relative`, refusing paths that would leave `dir` (the API server refuses them
/// too; this keeps a mistake from writing elsewhere on the host).
fn write_file(dir: &Path, relative: &str, bytes: &[u8]) -> Result<Result<(), String>> {
    let relative = Path::new(relative);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Ok(Err(format!(
            "file path {} leaves its volume",
            relative.display()
        )));
    }
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::write(&path, bytes).map_err(Error::io(format!("writing {}", path.display())))?;
    Ok(Ok(()))
}

/// The stand-in cannot do what `container` asks.
fn fault(container: &str, problem: impl Into<String>) -> Error {
    Error::Kubelet {
        container: container.to_string(),
        problem: problem.into(),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))
}

/// A map as the kubelet writes it into a downward API file: `key="value"` lines sorted by key,
/// the value quoted as Go's `%q` does, no newline after the last line.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` for the characters labels and annotations hold.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
fn reroot(value: &str, mounts: &[(String, PathBuf)], root: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn defined(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_file_is_sorted_go_quoted_without_a_final_newline() {
        let labels: BTreeMap<String, String> = [
            ("tier", "a \"b\"\\c"),
            ("app", "orders-api"),
            ("note", "x\ny\u{1}"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            format_map(&labels),
            "app=\"orders-api\"\nnote=\"x\\ny\\x01\"\ntier=\"a \\\"b\\\"\\\\c\""
        );
        assert_eq!(format_map(&BTreeMap::new()), "");
    }

    #[test]
    fn expands_references_like_the_kubelet() {
        let vars = defined(&[("A", "1"), ("B", "x$(A)")]);
        assert_eq!(expand("$(A)/$(B)", &vars), "1/x$(A)");
        assert_eq!(expand("$$(A) $(C) $ $(", &vars), "$(A) $(C) $ $(");
        assert_eq!(expand("no refs", &vars), "no refs");
    }

    #[test]
    fn reroots_paths_on_under_and_above_mounts_only() {
        let mounts = vec![(
            "/var/run/dbwarden/secrets/db".to_string(),
            PathBuf::from("/r/var/run/dbwarden/secrets/db"),
        )];
        let root = Path::new("/r");
        let r = |v: &str| reroot(v, &mounts, root);
        assert_eq!(
            r("/var/run/dbwarden/secrets"),
            "/r/var/run/dbwarden/secrets"
        );
        assert_eq!(
            r("/var/run/dbwarden/secrets/db/password"),
            "/r/var/run/dbwarden/secrets/db/password"
        );
        assert_eq!(r("/etc/other"), "/etc/other");
        assert_eq!(r("/"), "/");
        assert_eq!(r("0.0.0.0:15020"), "0.0.0.0:15020");
        assert_eq!(
            r("/var/run/dbwarden/secrets-x"),
            "/var/run/dbwarden/secrets-x"
        );
    }

    /// A client for an address where nothing listens: the cases below must not need the API.
    fn offline_client() -> kube::Client {
        let url: http::Uri = "http://127.0.0.1:9".parse().unwrap_or_default();
        kube::Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pod(container: serde_json::Value, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "api", "tier": "web"}},
            "spec": {"serviceAccountName": "api", "containers": [container], "volumes": volumes},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn resolves_the_downward_api_and_reroots_mount_paths() {
        let pod = pod(
            serde_json::json!({"name": "c", "args": ["--labels", "$(LABELS)"],
                "env": [
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                    {"name": "LABELS", "value": "/etc/podinfo/labels"},
                    {"name": "SPOOL", "value": "/var/spool"}],
                "volumeMounts": [{"name": "info", "mountPath": "/etc/podinfo"},
                                 {"name": "spool", "mountPath": "/var/spool"}]}),
            serde_json::json!([
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "spool", "emptyDir": {}}]),
        );
        let prepared = prepare_container(&offline_client(), &pod, "c")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let labels = prepared.host_path("/etc/podinfo/labels");
        assert_eq!(prepared.env_value("POD"), Some("api-1"));
        assert_eq!(prepared.env_value("SA"), Some("api"));
        assert_eq!(prepared.env_value("TIER"), Some("web"));
        assert_eq!(prepared.env_value("LABELS"), labels.to_str());
        assert_eq!(
            prepared.args,
            ["--labels".to_string(), labels.display().to_string()]
        );
        assert_eq!(
            std::fs::read_to_string(&labels).ok().as_deref(),
            Some("app=\"api\"\ntier=\"web\"")
        );
        assert!(prepared.host_path("/var/spool").is_dir());
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_do_as_a_kubelet_would() {
        let cases = [
            (
                serde_json::json!({"name": "c", "command": ["/bin/app"]}),
                serde_json::json!([]),
                "`command` replaces the image's entrypoint",
            ),
            (
                serde_json::json!({"name": "c", "volumeMounts": [{"name": "cm", "mountPath": "/cfg"}]}),
                serde_json::json!([{"name": "cm", "configMap": {"name": "x"}}]),
                "volume \"cm\": only secret, downwardAPI and emptyDir volumes are supported",
            ),
            (
                serde_json::json!({"name": "c",
                    "volumeMounts": [{"name": "e", "mountPath": "/d", "subPath": "x"}]}),
                serde_json::json!([{"name": "e", "emptyDir": {}}]),
                "subPath is not supported",
            ),
            (
                serde_json::json!({"name": "c", "env": [{"name": "IP",
                    "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}),
                serde_json::json!([]),
                "env IP: fieldRef status.podIP: the pod has no value",
            ),
            (
                serde_json::json!({"name": "c", "env": [{"name": "CPU",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}),
                serde_json::json!([]),
                "env CPU: only valueFrom.fieldRef, secretKeyRef and configMapKeyRef",
            ),
        ];
        for (container, volumes, expected) in cases {
            let pod = pod(container, volumes);
            let error = prepare_container(&offline_client(), &pod, "c")
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.starts_with("kubelet stand-in, container shop/api-1/c: ")
                    && error.contains(expected),
                "expected {expected:?}, got {error:?}"
            );
        }
        let missing = prepare_container(
            &offline_client(),
            &pod(serde_json::json!({"name": "c"}), serde_json::json!([])),
            "other",
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            missing.contains("no container or init container of that name"),
            "{missing}"
        );
    }
}
