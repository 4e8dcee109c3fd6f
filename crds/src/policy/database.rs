//! `spec.database`: where the sidecar forwards to, and how it logs in.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// The database the sidecar forwards to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Database {
    /// Wire protocol and SQL dialect of the database.
    #[serde(default)]
    pub engine: Engine,
    /// Host name or IP address of the database server, e.g. `orders-db.payments.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the database server.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Name of the database on the server. Clients connect to the sidecar with this name (or none).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Environment the database belongs to, e.g. `production` or `staging`. Approval rules and
    /// audit events refer to it.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub environment: String,
    /// The Secret holding the login the sidecar uses upstream. Applications never see it.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// TLS from the sidecar to the database.
    #[serde(default)]
    pub tls: Tls,
}

fn default_port() -> i32 {
    5432
}

/// Database engines the sidecar speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Engine {
    /// PostgreSQL, protocol v3 (PostgreSQL 10 or newer).
    #[default]
    Postgres,
}

/// The Secret with the upstream login.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the user name in the Secret.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,
    /// Key of the password in the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// TLS from the sidecar to the database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || self.mode == 'verifyFull'")
    .message("caSecretRef is only used with mode: verifyFull"))]
pub struct Tls {
    /// `disable`: plain TCP. `require`: TLS without checking the certificate.
    /// `verifyFull`: TLS, certificate chain and host name checked.
    #[serde(default)]
    pub mode: TlsMode,
    /// CA certificate (PEM) to verify the server with; without it the system roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// How the sidecar secures its connection to the database.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// Plain TCP; only for databases on a trusted network.
    Disable,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, with the certificate chain and the host name checked.
    #[default]
    VerifyFull,
}
