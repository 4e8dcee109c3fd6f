//! Signature checks for `jsonwebtoken` on `ring`, which the sidecar already carries for rustls
//! (jsonwebtoken's own backends would add aws-lc or the RustCrypto RSA stack).
//!
//! Verification only, public keys only: HMAC and any algorithm whose family differs from the
//! key's are refused here too, whatever the caller checked before (algorithm confusion).

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as ring_sig;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes this the process's jsonwebtoken provider (once; a provider installed earlier by
/// someone else stays, and the verifier re-checks key and algorithm families itself).
pub(super) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("a jsonwebtoken crypto provider was already installed");
        }
    });
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

/// The key material, owned (the factory only borrows the `DecodingKey`).
enum PublicKey {
    /// SEC1 point (EC), raw 32 bytes (Ed25519) or PKCS#1 DER (RSA).
    Bytes(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

struct RingVerifier {
    algorithm: Algorithm,
    key: PublicKey,
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let family = algorithm.family();
    if family == AlgorithmFamily::Hmac || family != key.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => PublicKey::Bytes(bytes.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => PublicKey::Rsa {
            n: strip_zeros(n).to_vec(),
            e: strip_zeros(e).to_vec(),
        },
    };
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        key,
    }))
}

/// ring wants minimal big-endian integers; some issuers pad the modulus with a zero byte.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn params(algorithm: Algorithm) -> Option<&'static dyn ring_sig::VerificationAlgorithm> {
    Some(match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &ring_sig::ED25519,
        // HMAC, and anything added to the non-exhaustive enum later.
        _ => return None,
    })
}

fn rsa_params(algorithm: Algorithm) -> Option<&'static ring_sig::RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match &self.key {
            PublicKey::Rsa { n, e } => rsa_params(self.algorithm).is_some_and(|p| {
                ring_sig::RsaPublicKeyComponents { n, e }
                    .verify(p, message, sig)
                    .is_ok()
            }),
            PublicKey::Bytes(key) => params(self.algorithm).is_some_and(|p| {
                ring_sig::UnparsedPublicKey::new(p, key)
                    .verify(message, sig)
                    .is_ok()
            }),
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
