//! Policy enforcement in standalone mode: `DatabaseAccessPolicy` files from the configuration,
//! compiled by `dbwarden-policy` and applied to every statement through the [`crate::hook`] seam.
//!
//! - [`load`]: reading and compiling the files into a [`PolicySet`], indexed by database.
//! - [`EnforcingHooks`]: the [`crate::hook::HookFactory`]; holds the current set behind an
//!   `ArcSwap`, the shared analysis cache and the workload identity, and reloads changed files.
//! - [`check`]: the per-session [`crate::hook::StatementHook`].
//!
//! # Which policy applies
//!
//! A policy applies to a listener when its `spec.database.name` equals the listener's
//! `upstream.database`. When several apply, each decides and any refusal wins. A listener no
//! policy applies to refuses every statement (fail closed), as does an empty `policies: []`.
//!
//! # Fail closed
//!
//! - A file that cannot be read, parsed or compiled stops the sidecar at start-up; on reload the
//!   last good set stays in force and the error is logged (never a fall back to allow).
//! - `spec.masking` is enforced by [`mask`] (the row hook) with column sources from [`catalog`];
//!   a result that cannot be resolved or masked is refused. A `hash` strategy needs its key file
//!   at `<secrets_dir>/<secret name>/<key>`, or the policy does not load.
//! - Statements that need an approval are refused in standalone mode; in Kubernetes mode they go
//!   to the [`ApprovalDesk`] (see [`approval`]).
//! - Fast-path FunctionCalls are refused. SQL-level `EXECUTE name` is decided as the statement
//!   the session's `PREPARE name` stored (`prepared.rs`); unknown names are refused.
//! - `guardrails.observeOnly` is honoured: the statement runs and the refusal is logged.

pub mod approval;
pub mod catalog;
mod check;
mod hooks;
pub mod load;
mod mask;
mod prepared;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{TargetError, UpstreamTarget};
use crate::config::Config;
use catalog::Catalog;

pub use approval::{ApprovalAsk, ApprovalDesk};
pub use hooks::{EnforcingHooks, RELOAD_INTERVAL};
pub use load::PolicySet;

/// Why policies could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The file could not be read.
    #[error("policy file {path}: cannot be read")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not one `DatabaseAccessPolicy` in YAML.
    #[error("policy file {path}: not a dbwarden.io/v1alpha1 DatabaseAccessPolicy: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause (in the message: it names the field).
        error: serde_yaml::Error,
    },
    /// The file's `apiVersion` or `kind` is not the policy's.
    #[error(
        "policy file {path}: expected apiVersion dbwarden.io/v1alpha1 and kind DatabaseAccessPolicy, found {found}"
    )]
    Kind {
        /// The file.
        path: PathBuf,
        /// `apiVersion/kind` as found.
        found: String,
    },
    /// `metadata.name` is missing.
    #[error("policy file {path}: metadata.name is required")]
    NoName {
        /// The file.
        path: PathBuf,
    },
    /// The policy engine refused the policy.
    #[error("policy file {path}: {error}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// The cause (in the message: it names the field); boxed, it is large and rare.
        error: Box<dbwarden_policy::CompileError>,
    },
    /// The `hash` strategy's key file is missing, unreadable or empty.
    #[error("policy file {path}: spec.masking.hashKeySecretRef: key file {key_file} {problem}")]
    HashKey {
        /// The file.
        path: PathBuf,
        /// `<secrets_dir>/<secret name>/<key>`, or the missing setting.
        key_file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A listener's upstream (for its catalog connection) could not be set up.
    #[error("catalog connection: {0}")]
    Upstream(#[from] TargetError),
    /// The configuration has no usable identity.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl EnforceError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Parse { .. } => "parse",
            Self::Kind { .. } => "kind",
            Self::NoName { .. } => "no_name",
            Self::Compile { error, .. } => error.label(),
            Self::HashKey { .. } => "hash_key",
            Self::Upstream(_) => "upstream",
            Self::Config(_) => "config",
        }
    }
}

/// The variable naming the secrets directory when the configuration does not
/// (`/var/run/dbwarden/secrets` in a pod the operator injected).
pub const SECRETS_DIR_ENV: &str = "DBWARDEN_SECRETS_DIR";

/// What masking needs beyond the policy files.
#[derive(Debug, Default)]
pub struct MaskingOptions {
    /// Where Secret keys are files, `<secrets_dir>/<secret name>/<key>` (hash keys).
    pub secrets_dir: Option<PathBuf>,
    /// Each listener's catalog, by listener name.
    pub catalogs: HashMap<String, Arc<Catalog>>,
}

impl MaskingOptions {
    /// The secrets directory (`secrets_dir`, else `DBWARDEN_SECRETS_DIR`) and one catalog per
    /// listener of `config`, each reached with the
    /// listener's own upstream target (credentials and TLS), connected on first use.
    pub fn from_config(config: &Config) -> Result<Self, EnforceError> {
        let mut catalogs = HashMap::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let target = Arc::new(UpstreamTarget::for_listener(config, i)?);
            catalogs.insert(l.name.clone(), Arc::new(Catalog::new(target)));
        }
        // In a pod the injected container says where the Secrets are mounted.
        let secrets_dir = config
            .secrets_dir
            .clone()
            .or_else(|| std::env::var_os(SECRETS_DIR_ENV).map(PathBuf::from));
        Ok(Self {
            secrets_dir,
            catalogs,
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mask_tests;
