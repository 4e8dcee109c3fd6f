//! Volumes: Secret, downwardAPI and emptyDir mounts written under the stand-in root.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeSource, Pod, Secret, SecretVolumeSource, Volume,
};
use kube::Api;

use crate::{Error, Result};

use super::env::field_value;
use super::{create_dir, fault};

/// Writes the files of `volume` into `dir`.
pub(super) async fn materialise(
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
pub(super) async fn secret_files(
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
pub(super) fn downward_files(
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
pub(super) fn write_file(dir: &Path, relative: &str, bytes: &[u8]) -> Result<Result<(), String>> {
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

/// A map as the kubelet writes it into a downward API file: `key="value"` lines sorted by key,
/// the value quoted as Go's `%q` does, no newline after the last line.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` for the characters labels and annotations hold.
pub(super) fn go_quote(value: &str) -> String {
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
