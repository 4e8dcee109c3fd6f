//! End-user identity: the client's password is an optional JSON Web Token, verified against
//! the `spec.identity.jwt` of the policies that govern the listener's database.
//!
//! - [`JwtVerifier`]: one policy's issuer, audiences and keys (inline JWKS or fetched over
//!   HTTPS, cached, rotated); [`JwtVerifier::verify`] turns a token into an [`EndUser`].
//! - [`PolicyIdentity`]: the [`crate::frontend::IdentityHook`] that picks the verifiers of a
//!   listener's policies and applies `requireEndUserToken`.
//! - `crypto`: the signature checks, on `ring` (keys are public RSA/EC/Ed25519; HMAC never).
//!
//! Tokens are never logged, and refusals never echo a token or its claims.

mod crypto;
mod error;
mod fetch;
mod hook;
mod jwks;
mod verifier;

pub use error::{TokenError, VerifierError};
pub use hook::{CA_FILE_ENV, IdentitySpec, PolicyIdentity};
pub use verifier::{JwtVerifier, Timing};

use std::time::Duration;

/// Largest token accepted, checked before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// Largest JWKS document fetched.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Time allowed for one JWKS fetch, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The end user a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// The user name (from the policy's `usernameClaim`).
    pub username: String,
    /// The groups (from `groupsClaim`; empty when the token has none).
    pub groups: Vec<String>,
}

#[cfg(test)]
mod tests;
