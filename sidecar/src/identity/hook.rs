//! [`PolicyIdentity`]: the identity hook that verifies end-user tokens with the verifiers of
//! the policies governing the listener's database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dbwarden_crds::policy::{Identity as IdentitySettings, Jwt};

use super::error::TokenError;
use super::verifier::{JwtVerifier, unverified_issuer};
use super::{EndUser, MAX_TOKEN_BYTES};
use crate::config::Config;
use crate::frontend::{AuthRequest, BoxFuture, IdentityHook};
use crate::hook::{Denial, Identity};

/// The environment variable naming extra PEM roots for JWKS fetches.
pub const CA_FILE_ENV: &str = "DBWARDEN_JWKS_CA_FILE";

/// One policy's identity settings, as the policy loaders report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySpec {
    /// The policy (`namespace/name`), for messages and logs.
    pub policy: String,
    /// The database it governs (`spec.database.name`).
    pub database: String,
    /// Its `spec.identity`, if any.
    pub identity: Option<IdentitySettings>,
}

/// One policy's verifier, or why it could not be built.
#[derive(Debug, Clone)]
struct Entry {
    policy: String,
    require_token: bool,
    jwt: Option<(Jwt, Result<JwtVerifier, String>)>,
}

/// The [`IdentityHook`] of enforced policies: a token is verified by the policies of the
/// listener's database; without one the client is the workload, unless a policy sets
/// `requireEndUserToken`.
#[derive(Debug)]
pub struct PolicyIdentity {
    workload: String,
    /// Listener name -> upstream database.
    listeners: HashMap<String, String>,
    ca_file: Option<PathBuf>,
    by_database: ArcSwap<HashMap<String, Vec<Entry>>>,
}

impl PolicyIdentity {
    /// A hook for `workload` (its name when no token is sent), serving `listeners` as
    /// `(listener name, upstream database)`, trusting `ca_file` for JWKS fetches beside the
    /// webpki roots. No policy is known until [`Self::update`].
    pub fn new(
        workload: impl Into<String>,
        listeners: impl IntoIterator<Item = (String, String)>,
        ca_file: Option<PathBuf>,
    ) -> Self {
        Self {
            workload: workload.into(),
            listeners: listeners.into_iter().collect(),
            ca_file,
            by_database: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The hook for a standalone `config`: the workload is `identity.service_account`, the
    /// JWKS CA file `identity.jwks_ca_file`, else the environment's `DBWARDEN_JWKS_CA_FILE`
    /// (how the injected sidecar gets it).
    pub fn from_config(config: &Config) -> Self {
        let identity = config.identity.as_ref();
        let ca_file = identity
            .and_then(|i| i.jwks_ca_file.clone())
            .or_else(|| std::env::var_os(CA_FILE_ENV).map(PathBuf::from));
        Self::new(
            identity.map_or("workload", |i| i.service_account.as_str()),
            config
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.upstream.database.clone())),
            ca_file,
        )
    }

    /// Replaces the policies' identity settings. Verifiers whose settings did not change are
    /// kept, with their cached keys; new ones start fetching their keys.
    pub fn update(&self, specs: &[IdentitySpec]) {
        let old = self.by_database.load();
        let mut next: HashMap<String, Vec<Entry>> = HashMap::new();
        for spec in specs {
            let jwt = spec.identity.as_ref().map(|i| &i.jwt);
            let entry = Entry {
                policy: spec.policy.clone(),
                require_token: jwt.is_some_and(|j| j.require_end_user_token),
                jwt: jwt.map(|jwt| (jwt.clone(), self.verifier(&old, jwt, &spec.policy))),
            };
            next.entry(spec.database.clone()).or_default().push(entry);
        }
        self.by_database.store(Arc::new(next));
    }

    fn verifier(
        &self,
        old: &HashMap<String, Vec<Entry>>,
        jwt: &Jwt,
        policy: &str,
    ) -> Result<JwtVerifier, String> {
        let same = old
            .values()
            .flatten()
            .filter_map(|e| e.jwt.as_ref())
            .find(|(spec, _)| spec == jwt);
        if let Some((_, verifier)) = same {
            return verifier.clone();
        }
        match JwtVerifier::new(jwt, self.ca_file.as_deref()) {
            Ok(v) => {
                v.prefetch();
                Ok(v)
            }
            Err(error) => {
                tracing::error!(
                    %policy, error = %error, label = error.label(),
                    "identity.jwt is unusable: tokens for this policy's issuer are refused"
                );
                Err(error.to_string())
            }
        }
    }

    async fn decide(&self, request: AuthRequest<'_>) -> Result<Identity, Denial> {
        let all = self.by_database.load_full();
        let entries = self
            .listeners
            .get(request.listener)
            .and_then(|db| all.get(db))
            .map_or(&[][..], Vec::as_slice);
        // A password not even shaped like a JWT is no token: apps without one often cannot send
        // an empty password (libpq cannot), so they send any string. Where no policy requires
        // a token that means the workload, as no password would; where one does, it is refused.
        let required = entries.iter().any(|e| e.require_token);
        let token = request
            .token
            .filter(|token| required || shaped_like_jwt(token));
        let Some(token) = token else {
            if let Some(e) = entries.iter().find(|e| e.require_token) {
                tracing::info!(listener = request.listener, policy = %e.policy, "connection without an end-user token refused");
                return Err(Denial::new(format!(
                    "dbwarden: this database requires an end-user token as the password \
                     (policy {} sets identity.jwt.requireEndUserToken)",
                    e.policy
                )));
            }
            return Ok(Identity::workload(self.workload.clone()));
        };
        if !entries.iter().any(|e| e.jwt.is_some()) {
            tracing::info!(
                listener = request.listener,
                "token sent where no policy accepts one"
            );
            return Err(Denial::new(
                "dbwarden: a password (end-user token) was sent, but no policy of this database \
                 sets identity.jwt; connect without a password to run as the workload",
            ));
        }
        match verify(entries, token).await {
            Ok(user) => {
                tracing::debug!(listener = request.listener, user = %user.username, "end-user token accepted");
                Ok(Identity {
                    subject: user.username,
                    groups: user.groups,
                    end_user: true,
                })
            }
            Err(error) => {
                tracing::info!(
                    listener = request.listener,
                    reason = error.label(),
                    "end-user token refused"
                );
                Err(Denial::new(format!(
                    "dbwarden: end-user token refused: {error}"
                )))
            }
        }
    }
}

/// Three non-empty base64url segments separated by dots: what a JWS compact token looks like.
fn shaped_like_jwt(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segment.is_empty()
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        {
            return false;
        }
    }
    segments == 3
}

/// Every policy whose issuer is the token's must accept it, and they must agree on the user.
async fn verify(entries: &[Entry], token: &str) -> Result<EndUser, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let issuer = unverified_issuer(token).ok_or(TokenError::Malformed)?;
    let mut user: Option<EndUser> = None;
    for entry in entries {
        let Some((jwt, verifier)) = &entry.jwt else {
            continue;
        };
        if jwt.issuer != issuer {
            continue;
        }
        let verifier = verifier.as_ref().map_err(|_| TokenError::Unusable {
            policy: entry.policy.clone(),
        })?;
        let found = verifier.verify(token).await?;
        match &user {
            Some(u) if *u != found => return Err(TokenError::Conflict),
            _ => user = Some(found),
        }
    }
    user.ok_or(TokenError::Issuer)
}

impl IdentityHook for PolicyIdentity {
    fn authenticate<'a>(
        &'a self,
        request: AuthRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Denial>> {
        Box::pin(self.decide(request))
    }

    /// Only where some policy of the listener's database sets `identity.jwt`.
    fn wants_token(&self, listener: &str) -> bool {
        let all = self.by_database.load();
        self.listeners
            .get(listener)
            .and_then(|db| all.get(db))
            .is_some_and(|entries| entries.iter().any(|e| e.jwt.is_some()))
    }
}
