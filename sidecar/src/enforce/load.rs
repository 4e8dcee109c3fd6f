//! Reading `DatabaseAccessPolicy` files and compiling them into a [`PolicySet`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_policy::CompiledPolicy;
use dbwarden_policy::mask::{HashEncoding, HashKey};
use serde::Deserialize;

use super::EnforceError;

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "dbwarden.io/v1alpha1";
/// The only `kind` accepted.
pub const KIND: &str = "DatabaseAccessPolicy";

/// The compiled policies in force, indexed by `spec.database.name`.
#[derive(Debug, Default)]
pub struct PolicySet {
    by_database: HashMap<String, Vec<Arc<CompiledPolicy>>>,
}

impl PolicySet {
    /// The policies that apply to `database` (empty: every statement is refused).
    pub fn for_database(&self, database: &str) -> &[Arc<CompiledPolicy>] {
        self.by_database.get(database).map_or(&[], Vec::as_slice)
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.by_database.values().map(Vec::len).sum()
    }

    /// True when no policy is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_database.is_empty()
    }

    /// The databases some policy governs.
    pub fn databases(&self) -> impl Iterator<Item = &str> {
        self.by_database.keys().map(String::as_str)
    }
}

/// What a file looked like when it was last read: a change in any field means reload (the
/// inode catches a same-size replacement by rename within the clock's granularity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of every file, in order (`None` for a file that cannot be examined).
pub fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p).ok().map(|m| Stamp {
                modified: m.modified().ok(),
                len: m.len(),
                inode: std::os::unix::fs::MetadataExt::ino(&m),
            })
        })
        .collect()
}

/// Loads and compiles every file; the first failure is the error (nothing is half-loaded).
/// `default_namespace` stands in for a missing `metadata.namespace` (the workload's own, where
/// `kubectl apply` would have put it).
/// `secrets_dir` holds the `hash` keys (`<secrets_dir>/<secret name>/<key>`).
pub fn load_all(
    paths: &[PathBuf],
    default_namespace: &str,
    secrets_dir: Option<&Path>,
) -> Result<PolicySet, EnforceError> {
    let mut set = PolicySet::default();
    for path in paths {
        let (database, policy) = load_file(path, default_namespace, secrets_dir)?;
        set.by_database
            .entry(database)
            .or_default()
            .push(Arc::new(policy));
    }
    Ok(set)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Loads one file: its database name and its compiled policy.
pub fn load_file(
    path: &Path,
    default_namespace: &str,
    secrets_dir: Option<&Path>,
) -> Result<(String, CompiledPolicy), EnforceError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnforceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |error| EnforceError::Parse {
        path: path.to_owned(),
        error,
    };
    let meta: TypeMeta = serde_yaml::from_str(&text).map_err(parse_error)?;
    if meta.api_version != API_VERSION || meta.kind != KIND {
        return Err(EnforceError::Kind {
            path: path.to_owned(),
            found: format!("{:?}/{:?}", meta.api_version, meta.kind),
        });
    }
    let mut resource: DatabaseAccessPolicy = serde_yaml::from_str(&text).map_err(parse_error)?;
    if resource
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(EnforceError::NoName {
            path: path.to_owned(),
        });
    }
    if resource
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        resource.metadata.namespace = Some(default_namespace.to_owned());
    }
    let mut policy =
        CompiledPolicy::from_resource(&resource).map_err(|error| EnforceError::Compile {
            path: path.to_owned(),
            error,
        })?;
    if policy.needs_hash_key() {
        let secret = resource
            .spec
            .masking
            .as_ref()
            .and_then(|m| m.hash_key_secret_ref.as_ref());
        policy = policy.with_hash_key(hash_key(path, secrets_dir, secret)?);
    }
    Ok((resource.spec.database.name.clone(), policy))
}

/// Reads the `hash` key from `<secrets_dir>/<secret name>/<key>` (the layout of a Secret
/// mounted in the pod); its bytes are used as they are, trailing newline included.
fn hash_key(
    path: &Path,
    secrets_dir: Option<&Path>,
    secret: Option<&dbwarden_crds::SecretKeyRef>,
) -> Result<HashKey, EnforceError> {
    let error = |key_file: String, problem: &str| EnforceError::HashKey {
        path: path.to_owned(),
        key_file,
        problem: problem.to_owned(),
    };
    let Some(secret) = secret else {
        return Err(error(
            "(none)".into(),
            "is not named (hashKeySecretRef is required)",
        ));
    };
    let Some(dir) = secrets_dir else {
        return Err(error(
            format!("<secrets_dir>/{}/{}", secret.name, secret.key),
            "cannot be found: secrets_dir is not set in the configuration",
        ));
    };
    // Secret names and keys cannot hold '/' or be '..': refuse rather than leave the directory.
    let safe = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
    let file = dir.join(&secret.name).join(&secret.key);
    let shown = file.display().to_string();
    if !safe(&secret.name) || !safe(&secret.key) {
        return Err(error(shown, "is not a valid Secret name and key"));
    }
    match std::fs::read(&file) {
        Ok(bytes) if bytes.is_empty() => Err(error(shown, "is empty")),
        Ok(bytes) => Ok(HashKey::new(&bytes, HashEncoding::Hex)),
        Err(e) => Err(error(shown, &format!("cannot be read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) const POLICY: &str = "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: app-access}
spec:
  database:
    host: db
    name: app
    environment: dev
    credentialsSecretRef: {name: app-db}
  workloadSelector: {matchLabels: {app: api}}
  rules:
    - name: api-crud
      subjects: {serviceAccounts: [api]}
      operations: [select, insert, update, delete]
      tables: ['public.*']
";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loads_a_policy_into_its_database_and_the_workload_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "p.yaml", POLICY);
        let set = load_all(&[path], "shop", None).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.for_database("app")[0].name(), "shop/app-access");
        assert!(set.for_database("other").is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            (
                POLICY.replace("kind: DatabaseAccessPolicy", "kind: ConfigMap"),
                "kind",
            ),
            (
                POLICY.replace("    name: app\n", "    name: app\n    colour: red\n"),
                "colour",
            ),
            (POLICY.replace("api-crud", "Not A Name!"), "rules"),
            (POLICY.replace("{name: app-access}", "{}"), "metadata.name"),
            ("[".to_string(), "not a dbwarden.io"),
        ] {
            let path = write(dir.path(), "bad.yaml", &text);
            let err = load_all(std::slice::from_ref(&path), "shop", None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let err = load_all(&[dir.path().join("missing.yaml")], "shop", None).unwrap_err();
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }

    #[test]
    fn stamps_change_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "p.yaml", POLICY);
        let before = stamps(std::slice::from_ref(&path));
        write(dir.path(), "p.yaml", &format!("{POLICY}\n"));
        assert_ne!(before, stamps(&[path]));
    }
}
