//! A JSON Web Key Set reduced to the public signing keys the sidecar accepts.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::error::JwksError;

/// More keys than any issuer publishes; the rest are ignored.
const MAX_KEYS: usize = 64;

/// Which algorithms a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Self::Rsa => matches!(
                alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
            Self::P256 => alg == A::ES256,
            Self::P384 => alg == A::ES384,
            Self::Ed25519 => alg == A::EdDSA,
        }
    }
}

/// One usable key.
#[derive(Debug)]
pub(super) struct Key {
    pub(super) kid: Option<String>,
    kind: KeyKind,
    /// The key's own `alg`, when it pins one.
    alg: Option<Algorithm>,
    pub(super) decoding: DecodingKey,
}

impl Key {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The outcome of looking a token's key up.
#[derive(Debug)]
pub(super) enum Lookup<'a> {
    Found(&'a Key),
    /// The key exists but cannot verify the token's algorithm.
    Mismatch,
    Unknown,
}

/// The usable keys of one issuer.
#[derive(Debug, Default)]
pub(super) struct KeySet {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document, keeping RSA, EC P-256/P-384 and Ed25519 signing keys and
    /// skipping the rest (symmetric `oct` keys, encryption keys, other curves).
    pub(super) fn parse(text: &[u8]) -> Result<Self, JwksError> {
        let raw: RawSet = serde_json::from_slice(text).map_err(|_| JwksError::NotAKeySet)?;
        let mut keys: Vec<Key> = Vec::new();
        let mut skipped = 0usize;
        for value in raw.keys.into_iter().take(MAX_KEYS) {
            match usable(value) {
                Some(key) if key.kid.is_none() || !keys.iter().any(|k| k.kid == key.kid) => {
                    keys.push(key);
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::debug!(skipped, kept = keys.len(), "JWKS keys skipped");
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    /// How many usable keys the set holds.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// True before the first successful fetch.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token with header `kid` and `alg`. Without a `kid` only a set of exactly
    /// one key answers (guessing among several would try keys the issuer did not name).
    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let key = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        };
        match key {
            Some(k) if k.accepts(alg) => Lookup::Found(k),
            Some(_) => Lookup::Mismatch,
            None => Lookup::Unknown,
        }
    }
}

/// One JWK as a usable key, or None.
fn usable(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if !matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    ) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        // Symmetric keys never verify tokens here (algorithm confusion).
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    if alg.is_some_and(|a| !kind.accepts(a)) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        kind,
        alg,
        decoding,
    })
}
