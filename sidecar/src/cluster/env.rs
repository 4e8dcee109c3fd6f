//! The environment the operator's injector gives the sidecar container (see
//! `operator/src/inject/sidecar.rs` for the other side of this contract).

use std::net::SocketAddr;
use std::path::PathBuf;

/// A variable of the contract that is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The variable is not set (or empty).
    #[error(
        "environment variable {name} is not set: --kubernetes expects the environment the dbwarden injector adds to the pod"
    )]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// The variable's value cannot be used.
    #[error("environment variable {name}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Who and where the sidecar is, as injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEnv {
    /// `DBWARDEN_POD_NAME`.
    pub pod: String,
    /// `DBWARDEN_POD_NAMESPACE`: policies are read, and approval requests filed, here.
    pub namespace: String,
    /// `DBWARDEN_POD_UID`.
    pub uid: String,
    /// `DBWARDEN_SERVICE_ACCOUNT`: the workload's identity for `subjects.serviceAccounts`.
    pub service_account: String,
    /// `DBWARDEN_POD_LABELS_FILE`: the pod's labels, to match `workloadSelector`.
    pub labels_file: PathBuf,
    /// `DBWARDEN_POLICIES`: the policies that selected the pod at admission; each has a
    /// listener on its `listenPort` and its Secrets mounted.
    pub policies: Vec<String>,
    /// `DBWARDEN_SECRETS_DIR`: Secrets mounted as `<dir>/<secret>/<key>`.
    pub secrets_dir: PathBuf,
    /// `DBWARDEN_SPOOL_DIR`: a writable folder for the audit spool.
    pub spool_dir: PathBuf,
    /// `DBWARDEN_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` listen.
    pub health_addr: SocketAddr,
}

impl PodEnv {
    /// Reads the contract from the process environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the contract through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &'static str| -> Result<String, EnvError> {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(EnvError::Missing { name })
        };
        let name_like = |name: &'static str| -> Result<String, EnvError> {
            let value = get(name)?;
            if is_dns_label(&value) || is_dns_subdomain(&value) {
                Ok(value)
            } else {
                Err(EnvError::Invalid {
                    name,
                    value,
                    reason: "not a Kubernetes object name",
                })
            }
        };
        let policies_value = get("DBWARDEN_POLICIES")?;
        let policies: Vec<String> = policies_value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if policies.is_empty() || !policies.iter().all(|p| is_dns_subdomain(p)) {
            return Err(EnvError::Invalid {
                name: "DBWARDEN_POLICIES",
                value: policies_value,
                reason: "expected comma-separated DatabaseAccessPolicy names",
            });
        }
        let health_value = get("DBWARDEN_HEALTH_ADDR")?;
        let health_addr = health_value.parse().map_err(|_| EnvError::Invalid {
            name: "DBWARDEN_HEALTH_ADDR",
            value: health_value.clone(),
            reason: "expected ip:port",
        })?;
        Ok(Self {
            pod: name_like("DBWARDEN_POD_NAME")?,
            namespace: name_like("DBWARDEN_POD_NAMESPACE")?,
            uid: get("DBWARDEN_POD_UID")?,
            service_account: name_like("DBWARDEN_SERVICE_ACCOUNT")?,
            labels_file: get("DBWARDEN_POD_LABELS_FILE")?.into(),
            policies,
            secrets_dir: get("DBWARDEN_SECRETS_DIR")?.into(),
            spool_dir: get("DBWARDEN_SPOOL_DIR")?.into(),
            health_addr,
        })
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;

    fn contract() -> HashMap<&'static str, String> {
        [
            ("DBWARDEN_POD_NAME", "api-7d9f-abcde"),
            ("DBWARDEN_POD_NAMESPACE", "payments"),
            ("DBWARDEN_POD_UID", "0d9a7c1e-1111-2222-3333-444455556666"),
            ("DBWARDEN_SERVICE_ACCOUNT", "api"),
            ("DBWARDEN_POD_LABELS_FILE", "/etc/dbwarden/podinfo/labels"),
            ("DBWARDEN_POLICIES", "orders-db,reports.v2"),
            ("DBWARDEN_SECRETS_DIR", "/var/run/dbwarden/secrets"),
            ("DBWARDEN_SPOOL_DIR", "/var/lib/dbwarden/spool"),
            ("DBWARDEN_HEALTH_ADDR", "0.0.0.0:15020"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
    }

    fn read(env: &HashMap<&'static str, String>) -> Result<PodEnv, EnvError> {
        PodEnv::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn reads_the_injected_contract() {
        let env = read(&contract()).unwrap();
        assert_eq!(env.namespace, "payments");
        assert_eq!(env.policies, ["orders-db", "reports.v2"]);
        assert_eq!(env.health_addr.port(), 15020);
    }

    #[test]
    fn names_the_variable_that_is_missing_or_wrong() {
        for (name, value, needle) in [
            ("DBWARDEN_POD_NAMESPACE", "", "is not set"),
            ("DBWARDEN_POLICIES", " , ", "comma-separated"),
            ("DBWARDEN_POLICIES", "Orders", "comma-separated"),
            ("DBWARDEN_HEALTH_ADDR", "15020", "ip:port"),
            (
                "DBWARDEN_SERVICE_ACCOUNT",
                "system:serviceaccount:a:b",
                "object name",
            ),
        ] {
            let mut env = contract();
            env.insert(name, value.into());
            let error = read(&env).unwrap_err().to_string();
            assert!(error.contains(name) && error.contains(needle), "{error}");
        }
    }
}
