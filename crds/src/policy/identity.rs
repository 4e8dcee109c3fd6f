//! `spec.identity`: how the sidecar learns who the end user is.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How clients prove who their end user is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// End-user JSON Web Tokens, sent by the client as its database password.
    pub jwt: Jwt,
}

/// JWT verification settings. Exactly one of `jwksUri` and `jwks` gives the signing keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.jwksUri) != has(self.jwks)")
    .message("set exactly one of jwksUri (keys fetched over HTTPS) or jwks (inline keys)"))]
pub struct Jwt {
    /// Expected `iss` claim; an `https://` URL.
    #[schemars(length(min = 9, max = 2048), regex(pattern = "^https://"))]
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one of them.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub audiences: Vec<String>,
    /// HTTPS URL of the issuer's JSON Web Key Set, re-fetched when a token names an unknown key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 2048), regex(pattern = "^https://"))]
    pub jwks_uri: Option<String>,
    /// The JSON Web Key Set itself, as JSON text (`{"keys":[...]}`); public keys only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 65536))]
    pub jwks: Option<String>,
    /// Claim holding the user name recorded in audit events and matched by `subjects.users`.
    #[serde(default = "default_username_claim")]
    #[schemars(length(min = 1, max = 253))]
    pub username_claim: String,
    /// Claim holding the user's groups (a list of strings), matched by `subjects.groups`.
    #[serde(default = "default_groups_claim")]
    #[schemars(length(min = 1, max = 253))]
    pub groups_claim: String,
    /// When true, a connection without a token is refused; when false, it runs as the pod's
    /// ServiceAccount.
    #[serde(default)]
    pub require_end_user_token: bool,
}

fn default_username_claim() -> String {
    "sub".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}
