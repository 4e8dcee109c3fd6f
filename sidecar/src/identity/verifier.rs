//! [`JwtVerifier`]: one policy's `spec.identity.jwt`, its cached keys and their rotation.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dbwarden_crds::policy::Jwt;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Header, Validation};
use serde_json::{Map, Value};

use super::error::{TokenError, VerifierError};
use super::fetch::JwksClient;
use super::jwks::{KeySet, Lookup};
use super::{EndUser, LEEWAY, MAX_TOKEN_BYTES};

/// When the keys of a `jwksUri` are fetched again.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Least time between two fetches, whatever asks (an unknown `kid`, the periodic refresh):
    /// a flood of tokens with made-up key ids costs the issuer one request per interval.
    pub min_interval: Duration,
    /// Age after which the keys are re-fetched in the background (rotation of keys that
    /// were published before first use).
    pub refresh_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(10),
            refresh_every: Duration::from_secs(600),
        }
    }
}

/// Longest user name accepted (it goes to logs and audit events).
const MAX_USERNAME: usize = 256;

/// Verifies end-user tokens against one policy's `spec.identity.jwt`. Clones share the key
/// cache.
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    spec: Jwt,
    client: Option<JwksClient>,
    timing: Timing,
    keys: ArcSwap<KeySet>,
    /// When the keys were last fetched successfully.
    fetched: Mutex<Option<Instant>>,
    /// When a fetch was last started (successful or not): the rate limit.
    attempted: Mutex<Option<Instant>>,
    /// One fetch at a time; waiters then see its result.
    fetching: tokio::sync::Mutex<()>,
}

impl JwtVerifier {
    /// A verifier for `spec`; `ca_file` adds PEM roots for a `jwksUri` (beside the webpki
    /// roots). Inline `jwks` are parsed now; a `jwksUri` is fetched on first use (or
    /// [`Self::prefetch`]).
    pub fn new(spec: &Jwt, ca_file: Option<&Path>) -> Result<Self, VerifierError> {
        Self::with_timing(spec, ca_file, Timing::default())
    }

    /// As [`Self::new`], with other refresh intervals.
    pub fn with_timing(
        spec: &Jwt,
        ca_file: Option<&Path>,
        timing: Timing,
    ) -> Result<Self, VerifierError> {
        super::crypto::install();
        let (client, keys) = match (&spec.jwks_uri, &spec.jwks) {
            (Some(uri), None) => (Some(JwksClient::new(uri, ca_file)?), KeySet::default()),
            (None, Some(text)) => (
                None,
                KeySet::parse(text.as_bytes()).map_err(VerifierError::Jwks)?,
            ),
            _ => return Err(VerifierError::KeySource),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                spec: spec.clone(),
                client,
                timing,
                keys: ArcSwap::from_pointee(keys),
                fetched: Mutex::new(None),
                attempted: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The settings this verifier was built from.
    pub fn spec(&self) -> &Jwt {
        &self.inner.spec
    }

    /// Starts fetching a `jwksUri` in the background (no-op for inline keys or without a
    /// tokio runtime), so the first client does not wait for it.
    pub fn prefetch(&self) {
        if self.inner.client.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let inner = Arc::clone(&self.inner);
            runtime.spawn(async move { inner.refresh().await });
        }
    }

    /// Verifies `token` and returns the end user it names.
    pub async fn verify(&self, token: &str) -> Result<EndUser, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = header(token)?;
        let keys = self
            .inner
            .keys_for(header.kid.as_deref(), header.alg)
            .await?;
        let Lookup::Found(key) = keys.find(header.kid.as_deref(), header.alg) else {
            return Err(TokenError::UnknownKey);
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.inner.spec.issuer]);
        validation.set_audience(&self.inner.spec.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::from_jwt(&e))?;
        self.end_user(&data.claims)
    }

    fn end_user(&self, claims: &Map<String, Value>) -> Result<EndUser, TokenError> {
        let spec = &self.inner.spec;
        let username = match claims.get(&spec.username_claim) {
            Some(Value::String(s))
                if !s.is_empty() && s.len() <= MAX_USERNAME && !s.chars().any(char::is_control) =>
            {
                s.clone()
            }
            _ => {
                return Err(TokenError::Username {
                    claim: spec.username_claim.clone(),
                });
            }
        };
        let groups_error = || TokenError::Groups {
            claim: spec.groups_claim.clone(),
        };
        let groups = match claims.get(&spec.groups_claim) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(groups_error)?,
            Some(_) => return Err(groups_error()),
        };
        Ok(EndUser { username, groups })
    }
}

/// The header, with the refusals that need no key: `none`, HMAC, unknown algorithms.
fn header(token: &str) -> Result<Header, TokenError> {
    match jsonwebtoken::decode_header(token) {
        Ok(h) if h.alg.family() == AlgorithmFamily::Hmac => Err(TokenError::Hmac),
        Ok(h) => Ok(h),
        // jsonwebtoken has no `none`: look at the raw `alg` to say why.
        Err(_) => Err(match raw_alg(token) {
            Some(alg) if alg.eq_ignore_ascii_case("none") => TokenError::Unsigned,
            Some(_) => TokenError::UnsupportedAlgorithm,
            None => TokenError::Malformed,
        }),
    }
}

fn raw_alg(token: &str) -> Option<String> {
    let first = token.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(first).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&json).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// The token's `iss`, unverified: only to pick which policy's verifier to use.
pub(super) fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&json).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// The key set to look `kid` up in: fetched first if never fetched, re-fetched (at most
    /// once, rate-limited) when `kid` is unknown, refreshed in the background when old.
    async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, TokenError> {
        if self.client.is_none() {
            return self.lookup(self.keys.load_full(), kid, alg);
        }
        let mut keys = self.keys.load_full();
        if keys.is_empty() {
            self.refresh().await;
            keys = self.keys.load_full();
            if keys.is_empty() {
                return Err(TokenError::KeysUnavailable);
            }
        } else {
            self.refresh_if_old();
        }
        if kid.is_some() && matches!(keys.find(kid, alg), Lookup::Unknown) {
            self.refresh().await;
            keys = self.keys.load_full();
        }
        self.lookup(keys, kid, alg)
    }

    fn lookup(
        &self,
        keys: Arc<KeySet>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, TokenError> {
        match keys.find(kid, alg) {
            Lookup::Found(_) => Ok(keys),
            Lookup::Mismatch => Err(TokenError::AlgorithmMismatch),
            Lookup::Unknown => Err(TokenError::UnknownKey),
        }
    }

    fn refresh_if_old(self: &Arc<Self>) {
        let old = lock(&self.fetched).is_none_or(|t| t.elapsed() >= self.timing.refresh_every);
        // No task per connection while the issuer is down: only when a fetch may start.
        let due = lock(&self.attempted).is_none_or(|t| t.elapsed() >= self.timing.min_interval);
        if old
            && due
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let inner = Arc::clone(self);
            runtime.spawn(async move { inner.refresh().await });
        }
    }

    /// Fetches the keys unless a fetch started less than `min_interval` ago; a failure keeps
    /// the last good set.
    async fn refresh(&self) {
        let Some(client) = &self.client else { return };
        let _one = self.fetching.lock().await;
        {
            let mut attempted = lock(&self.attempted);
            if attempted.is_some_and(|t| t.elapsed() < self.timing.min_interval) {
                return;
            }
            *attempted = Some(Instant::now());
        }
        let issuer = &self.spec.issuer;
        match client
            .fetch()
            .await
            .and_then(|body| Ok(KeySet::parse(&body)?))
        {
            Ok(set) => {
                tracing::info!(%issuer, keys = set.len(), "JWKS fetched");
                self.keys.store(Arc::new(set));
                *lock(&self.fetched) = Some(Instant::now());
            }
            Err(error) => tracing::warn!(
                %issuer, error = %error, label = error.label(),
                "JWKS fetch failed: the last good keys stay in use"
            ),
        }
    }
}
