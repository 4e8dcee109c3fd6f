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
//! - `spec.masking` is refused at load: this build does not mask results yet.
//! - Statements that need an approval are refused in standalone mode; in Kubernetes mode they go
//!   to the [`ApprovalDesk`] (see [`approval`]).
//! - Fast-path FunctionCalls are refused; SQL-level `EXECUTE` is refused by the engine (the
//!   session does not track SQL-level `PREPARE`).
//! - `guardrails.observeOnly` is honoured: the statement runs and the refusal is logged.

pub mod approval;
mod check;
mod hooks;
pub mod load;

use std::path::PathBuf;

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
        /// The cause (in the message: it names the field).
        error: dbwarden_policy::CompileError,
    },
    /// The policy masks results, which this build cannot enforce.
    #[error(
        "policy file {path}: masking is not yet enforced by dbwarden-sidecar; remove spec.masking or wait for the masking release"
    )]
    Masking {
        /// The file.
        path: PathBuf,
    },
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
            Self::Masking { .. } => "masking_unsupported",
            Self::Config(_) => "config",
        }
    }
}

#[cfg(test)]
mod tests;
