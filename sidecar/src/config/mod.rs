//! Standalone configuration: a YAML file, validated once at load (see [`validate`]).

mod audit;
mod enforce;
mod validate;

pub(crate) use audit::valid_instance;
pub use audit::{AuditFileConfig, AuditFormat, FailureMode, FsyncMode, TextMode};
pub use enforce::WorkloadIdentityConfig;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::Limits;
use crate::protocol::codec::{DEFAULT_MAX_MESSAGE, DEFAULT_MAX_STARTUP};

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// A field holds a value the sidecar cannot use.
    #[error("invalid {field} = {value:?}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `listeners[0].upstream.tls.ca_file`.
        field: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(
    field: impl Into<String>,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One listener per governed database.
    pub listeners: Vec<ListenerConfig>,
    /// TLS towards clients that send SSLRequest; without it, clients are told 'N'.
    #[serde(default)]
    pub client_tls: Option<ClientTlsConfig>,
    /// How clients authenticate to the sidecar.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Sizes and timeouts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The HTTP health endpoint (`/healthz`, `/readyz`); off when absent.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// `DatabaseAccessPolicy` YAML files to enforce (see `crate::enforce`); absent: no policy,
    /// everything allowed. Present (even empty): statements no loaded policy allows are refused.
    #[serde(default)]
    pub policies: Option<Vec<PathBuf>>,
    /// The workload's identity; required with `policies`.
    #[serde(default)]
    pub identity: Option<WorkloadIdentityConfig>,
    /// Where Secret keys are files, `<secrets_dir>/<secret name>/<key>` (in a pod,
    /// `/var/run/dbwarden/secrets`); needed for the masking strategy `hash`.
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
    /// Audit events (see `crate::audit`); absent: no events are recorded.
    #[serde(default)]
    pub audit: Option<AuditFileConfig>,
}

/// One local port in front of one upstream database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs and hooks.
    pub name: String,
    /// Local address, normally `127.0.0.1:<port>` (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The database behind it.
    pub upstream: UpstreamConfig,
}

/// The real database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database name (clients' own `database` parameter is ignored).
    pub database: String,
    /// TLS towards the database.
    #[serde(default)]
    pub tls: UpstreamTlsConfig,
    /// Where the database credentials come from; the client never supplies them.
    pub credentials: CredentialsConfig,
}

fn default_pg_port() -> u16 {
    5432
}

/// TLS mode towards the database, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS without certificate verification (protects against passive eavesdropping only).
    #[default]
    Require,
    /// TLS with the certificate chain checked against `ca_file` and the host name verified.
    VerifyFull,
}

/// TLS settings towards the database.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// disable | require | verify-full.
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file with the CA certificates for verify-full.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name to verify instead of `host`.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Database credentials: each value inline-free, from a file or an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// The role name.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the role name.
    #[serde(default)]
    pub username_env: Option<String>,
    /// File holding the role name (trailing newline ignored), e.g. a mounted Secret.
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// File holding the password (trailing newline ignored), e.g. a mounted Secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// A password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolved database credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The role name.
    pub username: String,
    /// Its password.
    pub password: Secret,
}

impl CredentialsConfig {
    /// Reads the credentials from their file or environment; `field` names this block in errors.
    pub fn resolve(&self, field: &str) -> Result<Credentials, ConfigError> {
        let username = match (&self.username, &self.username_env, &self.username_file) {
            (Some(u), None, None) => u.clone(),
            (None, Some(var), None) => std::env::var(var)
                .map_err(|e| invalid(format!("{field}.username_env"), var, e.to_string()))?,
            (None, None, Some(path)) => read_secret_file(path, &format!("{field}.username_file"))?,
            _ => {
                return Err(invalid(
                    field,
                    "username",
                    "set exactly one of username, username_env and username_file",
                ));
            }
        };
        let password = match (&self.password_file, &self.password_env) {
            (Some(path), None) => read_secret_file(path, &format!("{field}.password_file"))?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|e| invalid(format!("{field}.password_env"), var, e.to_string()))?,
            _ => {
                return Err(invalid(
                    field,
                    "password",
                    "set exactly one of password_file and password_env",
                ));
            }
        };
        if username.is_empty() {
            return Err(invalid(
                format!("{field}.username"),
                "",
                "must not be empty",
            ));
        }
        Ok(Credentials {
            username,
            password: Secret(password),
        })
    }
}

/// Reads a one-line secret file (a mounted Secret key), without its trailing newline.
fn read_secret_file(path: &std::path::Path, field: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| invalid(field, path.display(), e.to_string()))
}

/// Certificate and key the sidecar presents to clients that ask for TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// How the sidecar authenticates its clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// Ask for a cleartext password: an optional end-user token for the identity hook.
    #[default]
    Password,
    /// Ask for nothing: every client is the workload (for drivers that cannot send a password).
    Trust,
}

/// Default `limits.max_unanswered_messages`: more than socket buffers hold of any real
/// pipeline, about 20 MiB of notes at most.
pub const DEFAULT_MAX_UNANSWERED: usize = 1 << 18;

/// Sizes and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest startup packet in bytes (before authentication, so small).
    pub max_startup_message_bytes: usize,
    /// Largest single message in bytes, either direction (results are streamed; only one
    /// message at a time is held).
    pub max_message_bytes: usize,
    /// Seconds a client has from connecting to finishing authentication.
    pub startup_timeout_secs: u64,
    /// Seconds a session may sit idle with nothing in flight; 0 disables.
    pub idle_timeout_secs: u64,
    /// Seconds to connect and authenticate to the database.
    pub connect_timeout_secs: u64,
    /// Most messages of one session the sidecar follows while they wait for the database's
    /// answer (a Describe, an Execute). After an error the database answers nothing until the
    /// next Sync, so a client that never sends one would otherwise grow this without end.
    pub max_unanswered_messages: usize,
    /// Seconds statements in flight get to finish at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_startup_message_bytes: DEFAULT_MAX_STARTUP,
            max_message_bytes: DEFAULT_MAX_MESSAGE,
            startup_timeout_secs: 10,
            idle_timeout_secs: 0,
            connect_timeout_secs: 10,
            max_unanswered_messages: DEFAULT_MAX_UNANSWERED,
            shutdown_grace_secs: 30,
        }
    }
}

impl LimitsConfig {
    /// The decoder's size limits.
    pub fn codec(&self) -> Limits {
        Limits {
            max_startup: self.max_startup_message_bytes,
            max_message: self.max_message_bytes,
        }
    }

    /// The startup timeout.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs)
    }

    /// The idle timeout, if enabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// The upstream connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// The health endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Address for `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

#[cfg(test)]
mod readme {
    /// The sidecar configuration shown in the top-level README parses, so the README stays true
    /// (the files it names do not exist here, so only the schema is checked).
    #[test]
    fn readme_config_parses() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("```yaml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.starts_with("listeners:"))
            .expect("README.md shows a sidecar configuration");
        let config: super::Config =
            serde_yaml::from_str(block).expect("the README's configuration parses");
        assert_eq!(config.listeners.len(), 1);
    }
}
