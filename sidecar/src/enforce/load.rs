//! Reading `DatabaseAccessPolicy` files and compiling them into a [`PolicySet`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_crds::policy::Identity;
use dbwarden_policy::CompiledPolicy;
use dbwarden_policy::mask::{HashEncoding, HashKey};
use serde::Deserialize;

use super::EnforceError;
use crate::identity::IdentitySpec;

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "dbwarden.io/v1alpha1";
/// The only `kind` accepted.
pub const KIND: &str = "DatabaseAccessPolicy";

/// The compiled policies in force, indexed by `spec.database.name`.
#[derive(Debug, Default)]
pub struct PolicySet {
    by_database: HashMap<String, Vec<Arc<CompiledPolicy>>>,
    /// Databases refused whole because a policy for them could not be compiled (and no earlier
    /// version of it is known): leaving it out would loosen the rules, so nothing runs.
    broken: HashMap<String, String>,
    /// Every policy's `spec.identity`, for the identity hook.
    identities: Vec<IdentitySpec>,
}

impl PolicySet {
    /// Adds a compiled policy for `database`, with its `spec.identity`.
    pub fn insert(
        &mut self,
        database: String,
        policy: Arc<CompiledPolicy>,
        identity: Option<dbwarden_crds::policy::Identity>,
    ) {
        self.identities.push(IdentitySpec {
            policy: policy.name().to_owned(),
            database: database.clone(),
            identity,
        });
        self.by_database.entry(database).or_default().push(policy);
    }

    /// Refuses every statement on `database`; `why` is told to clients.
    pub fn refuse(&mut self, database: String, why: String) {
        self.broken.insert(database, why);
    }

    /// Why every statement on `database` is refused, when a policy for it is broken.
    pub fn refusal(&self, database: &str) -> Option<&str> {
        self.broken.get(database).map(String::as_str)
    }

    /// The policies that apply to `database` (empty: every statement is refused, as it is
    /// for a database with a broken policy).
    pub fn for_database(&self, database: &str) -> &[Arc<CompiledPolicy>] {
        if self.broken.contains_key(database) {
            return &[];
        }
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

    /// Each policy's database and `spec.identity`, in file order.
    pub fn identities(&self) -> &[IdentitySpec] {
        &self.identities
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
        let (database, policy, identity) = load_file(path, default_namespace, secrets_dir)?;
        set.insert(database, Arc::new(policy), identity);
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

/// Loads one file: its database name, its compiled policy and its `spec.identity`.
pub fn load_file(
    path: &Path,
    default_namespace: &str,
    secrets_dir: Option<&Path>,
) -> Result<(String, CompiledPolicy, Option<Identity>), EnforceError> {
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
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        resource.metadata.namespace = Some(default_namespace.to_owned());
    }
    let (database, policy) =
        compile_resource(&resource, secrets_dir).map_err(|error| error.at(path))?;
    Ok((database, policy, resource.spec.identity.clone()))
}

/// Compiles one policy object (from a file or the API server): its database name and the
/// compiled policy, with its `hash` key read from `secrets_dir`. Errors name the policy;
/// [`CompileFailure::at`] adds a file.
pub fn compile_resource(
    resource: &DatabaseAccessPolicy,
    secrets_dir: Option<&Path>,
) -> Result<(String, CompiledPolicy), CompileFailure> {
    if resource
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(CompileFailure::NoName);
    }
    let mut policy = CompiledPolicy::from_resource(resource).map_err(CompileFailure::Compile)?;
    if policy.needs_hash_key() {
        let secret = resource
            .spec
            .masking
            .as_ref()
            .and_then(|m| m.hash_key_secret_ref.as_ref());
        policy = policy.with_hash_key(hash_key(secrets_dir, secret)?);
    }
    Ok((resource.spec.database.name.clone(), policy))
}

/// Reads the `hash` key from `<secrets_dir>/<secret name>/<key>` (the layout of a Secret
/// mounted in the pod); its bytes are used as they are, trailing newline included.
fn hash_key(
    secrets_dir: Option<&Path>,
    secret: Option<&dbwarden_crds::SecretKeyRef>,
) -> Result<HashKey, CompileFailure> {
    let error = |key_file: String, problem: &str| CompileFailure::HashKey {
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

/// Why a policy object could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    /// `metadata.name` is missing.
    #[error("metadata.name is required")]
    NoName,
    /// The policy engine refused it (the message names the field).
    #[error(transparent)]
    Compile(dbwarden_policy::CompileError),
    /// The `hash` strategy's key file is missing, unreadable or empty.
    #[error("spec.masking.hashKeySecretRef: key file {key_file} {problem}")]
    HashKey {
        /// `<secrets_dir>/<secret name>/<key>`, or the missing setting.
        key_file: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl CompileFailure {
    /// The same failure, attributed to `path`.
    pub fn at(self, path: &Path) -> EnforceError {
        let path = path.to_owned();
        match self {
            Self::NoName => EnforceError::NoName { path },
            Self::Compile(error) => EnforceError::Compile {
                path,
                error: Box::new(error),
            },
            Self::HashKey { key_file, problem } => EnforceError::HashKey {
                path,
                key_file,
                problem,
            },
        }
    }

    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoName => "no_name",
            Self::Compile(error) => error.label(),
            Self::HashKey { .. } => "hash_key",
        }
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
