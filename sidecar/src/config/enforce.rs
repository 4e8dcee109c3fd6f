//! The standalone configuration of policy enforcement: `policies:` and `identity:`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Who the workload is, for the policies' `subjects.serviceAccounts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIdentityConfig {
    /// The pod's ServiceAccount as `namespace/name` (`serviceAccount` is accepted too).
    #[serde(alias = "serviceAccount")]
    pub service_account: String,
    /// The pod's name, for logs.
    #[serde(default)]
    pub pod: Option<String>,
    /// Extra PEM CA certificates trusted for `identity.jwt.jwksUri` fetches, beside the
    /// webpki roots (an issuer behind a private CA).
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
}

impl WorkloadIdentityConfig {
    /// The ServiceAccount split into `(namespace, name)`.
    pub fn service_account_parts(&self) -> Result<(&str, &str), ConfigError> {
        match self.service_account.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok((namespace, name))
            }
            _ => Err(invalid(
                "identity.service_account",
                &self.service_account,
                "must be namespace/name",
            )),
        }
    }
}

/// Checks `policies` and `identity` together: policies need an identity to decide for.
pub(super) fn validate(
    policies: Option<&[PathBuf]>,
    identity: Option<&WorkloadIdentityConfig>,
) -> Result<(), ConfigError> {
    if let Some(identity) = identity {
        identity.service_account_parts()?;
        if identity.pod.as_deref() == Some("") {
            return Err(invalid("identity.pod", "", "must not be empty when set"));
        }
        if identity
            .jwks_ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid(
                "identity.jwks_ca_file",
                "",
                "must not be empty when set",
            ));
        }
    }
    let Some(policies) = policies else {
        return Ok(());
    };
    if identity.is_none() {
        return Err(invalid(
            "identity",
            "none",
            "policies need the workload's identity (identity.service_account: namespace/name)",
        ));
    }
    for (i, path) in policies.iter().enumerate() {
        if path.as_os_str().is_empty() {
            return Err(invalid(format!("policies[{i}]"), "", "must not be empty"));
        }
        if policies[..i].contains(path) {
            return Err(invalid(
                format!("policies[{i}]"),
                path.display(),
                "listed twice",
            ));
        }
    }
    Ok(())
}
