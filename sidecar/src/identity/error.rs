//! Why a token or a verifier was refused.

use std::path::PathBuf;

/// Why a token was refused. The message is shown to the client: it names the reason and
/// never echoes the token or a claim's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Over [`super::MAX_TOKEN_BYTES`].
    #[error("token is larger than 8 KiB")]
    TooLarge,
    /// Not three base64url parts with a JSON header and claims.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// `alg: none`: an unsigned token.
    #[error("unsigned tokens (alg none) are not accepted")]
    Unsigned,
    /// HS256/384/512: a shared secret is never a key the sidecar accepts.
    #[error(
        "HMAC-signed tokens (HS256/HS384/HS512) are not accepted; the issuer must sign with RSA, EC or Ed25519"
    )]
    Hmac,
    /// An algorithm the sidecar does not know.
    #[error("token algorithm is not supported")]
    UnsupportedAlgorithm,
    /// The header's algorithm does not fit the key it names.
    #[error("token algorithm does not match its signing key")]
    AlgorithmMismatch,
    /// No key of the issuer has the token's `kid` (after a re-fetch).
    #[error("token signing key is unknown to the issuer's key set")]
    UnknownKey,
    /// The issuer's keys could not be fetched yet.
    #[error("the issuer's signing keys are unavailable; try again later")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer (or no policy has it).
    #[error("issuer not accepted")]
    Issuer,
    /// `aud` names none of the configured audiences.
    #[error("token audience not accepted")]
    Audience,
    /// A registered claim the sidecar requires is absent or malformed.
    #[error("token lacks a valid {0} claim")]
    Claim(&'static str),
    /// The user-name claim is absent, not a string, or not a usable name.
    #[error("token claim {claim:?} (the user name) is missing or not a usable string")]
    Username {
        /// The claim's name (from the policy, harmless).
        claim: String,
    },
    /// The groups claim is present but not a list of strings.
    #[error("token claim {claim:?} (the groups) is not a list of strings")]
    Groups {
        /// The claim's name (from the policy).
        claim: String,
    },
    /// Several policies accept the issuer but disagree on the user.
    #[error("policies of this database disagree on the token's user")]
    Conflict,
    /// The policy's identity settings could not be used (reported at load).
    #[error("the identity settings of policy {policy} are unusable")]
    Unusable {
        /// The policy.
        policy: String,
    },
}

impl TokenError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Unsigned => "alg_none",
            Self::Hmac => "alg_hmac",
            Self::UnsupportedAlgorithm => "alg_unsupported",
            Self::AlgorithmMismatch => "alg_key_mismatch",
            Self::UnknownKey => "unknown_kid",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claim(_) => "claim",
            Self::Username { .. } => "username_claim",
            Self::Groups { .. } => "groups_claim",
            Self::Conflict => "conflict",
            Self::Unusable { .. } => "unusable_policy",
        }
    }

    /// Maps a `jsonwebtoken` error (after the header and key checks) to the reason.
    pub(super) fn from_jwt(error: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match error.kind() {
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::Issuer,
            K::InvalidAudience => Self::Audience,
            K::InvalidSignature => Self::BadSignature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => Self::AlgorithmMismatch,
            K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) => {
                Self::Claim(match c.as_str() {
                    "exp" => "exp",
                    "nbf" => "nbf",
                    "iss" => "iss",
                    "aud" => "aud",
                    _ => "registered",
                })
            }
            // A key that ring cannot use is the issuer's fault, but to the client it is a
            // signature that does not verify.
            K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidEddsaKey | K::InvalidKeyFormat => {
                Self::BadSignature
            }
            _ => Self::Malformed,
        }
    }
}

/// Why a [`super::JwtVerifier`] could not be built from a policy's `spec.identity.jwt`.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The inline `jwks` is not a usable key set.
    #[error("identity.jwt.jwks: {0}")]
    Jwks(#[source] JwksError),
    /// Neither or both of `jwks` and `jwksUri`.
    #[error("identity.jwt: set exactly one of jwksUri and jwks")]
    KeySource,
    /// `jwksUri` is not an `https://` URL with a host.
    #[error("identity.jwt.jwksUri {uri:?}: {reason}")]
    Uri {
        /// The URI (configuration, not a secret).
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The extra CA bundle could not be read.
    #[error("JWKS CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the TLS settings.
    #[error("JWKS TLS settings")]
    Tls(#[from] rustls::Error),
}

impl VerifierError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Jwks(_) => "jwks",
            Self::KeySource => "key_source",
            Self::Uri { .. } => "jwks_uri",
            Self::CaFile { .. } => "ca_file",
            Self::Tls(_) => "tls",
        }
    }
}

/// Why a JWKS document was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON of the form `{"keys": [...]}`.
    #[error("not a JSON Web Key Set ({{\"keys\": [...]}})")]
    NotAKeySet,
    /// No RSA, EC (P-256/P-384) or Ed25519 signing key in it.
    #[error("no usable public signing key (RSA, EC P-256/P-384 or Ed25519) in the key set")]
    NoUsableKey,
}

/// Why a JWKS fetch failed (the last good key set stays in use).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// TCP connect.
    #[error("connecting")]
    Connect(#[source] std::io::Error),
    /// TLS handshake (certificate not trusted, ...).
    #[error("TLS handshake")]
    Tls(#[source] std::io::Error),
    /// HTTP exchange.
    #[error("HTTP")]
    Http(#[source] hyper::Error),
    /// The request could not be built.
    #[error("building the request")]
    Request(#[source] http::Error),
    /// A non-2xx answer (redirects are not followed).
    #[error("HTTP status {0}")]
    Status(u16),
    /// Over [`super::MAX_JWKS_BYTES`].
    #[error("key set larger than 1 MiB")]
    TooLarge,
    /// Reading the body failed.
    #[error("reading the body")]
    Body,
    /// Over [`super::FETCH_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The document is not a usable key set.
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

impl FetchError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Tls(_) => "tls",
            Self::Http(_) => "http",
            Self::Request(_) => "request",
            Self::Status(_) => "status",
            Self::TooLarge => "too_large",
            Self::Body => "body",
            Self::Timeout => "timeout",
            Self::Jwks(_) => "jwks",
        }
    }
}
