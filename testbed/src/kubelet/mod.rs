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

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use tempfile::TempDir;

use crate::{Error, Result};

mod env;
mod volumes;

pub use env::expand;
pub use volumes::format_map;

use env::{env_value, reroot};
use volumes::materialise;

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

/// The stand-in cannot do what `container` asks.
pub(super) fn fault(container: &str, problem: impl Into<String>) -> Error {
    Error::Kubelet {
        container: container.to_string(),
        problem: problem.into(),
    }
}

pub(super) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))
}

#[cfg(test)]
mod tests;
