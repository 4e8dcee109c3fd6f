//! Test support for end-user tokens: signing keys made in the test, tokens, and a local HTTPS
//! JWKS server. Shared by the unit tests (`src/identity/tests.rs`, through `#[path]`) and the
//! proxy tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.example.test";
pub const AUDIENCE: &str = "dbwarden";

enum Signer {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A 2048-bit RSA key made for these tests only (ring cannot generate RSA keys), PKCS#8 DER.
const RSA_TEST_KEY: &[u8] = include_bytes!("testdata/rsa-2048-test-only.pk8");

/// A signing key with its key id.
pub struct TestKey {
    pub kid: String,
    signer: Signer,
}

impl TestKey {
    /// A fresh ECDSA P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Self {
            kid: kid.into(),
            signer: Signer::Es256(pair),
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self {
            kid: kid.into(),
            signer: Signer::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
        }
    }

    /// The test RSA key (RS256); every call gives the same key.
    pub fn rs256(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            signer: Signer::Rs256(RsaKeyPair::from_pkcs8(RSA_TEST_KEY).unwrap()),
        }
    }

    /// The header algorithm this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::Ed25519(_) => "EdDSA",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": self.kid,
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Signer::Ed25519(pair) => json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid,
                                            "x": b64(pair.public_key().as_ref())}),
            Signer::Rs256(pair) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "use": "sig", "kid": self.kid,
                       "n": b64(&public.n), "e": b64(&public.e)})
            }
        }
    }

    /// A token over `claims` with the usual header (`alg`, `typ`, `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// A token with any header, signed by this key.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64_json(header), b64_json(claims));
        let sig = match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), message.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::Ed25519(pair) => pair.sign(message.as_bytes()).as_ref().to_vec(),
            Signer::Rs256(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
        };
        format!("{message}.{}", b64(&sig))
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// An HS256 token (what an attacker makes with a public key as the "secret").
pub fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64_json(&json!({"alg": "HS256", "typ": "JWT", "kid": kid})),
        b64_json(claims)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", b64(tag.as_ref()))
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64_json(&json!({"alg": "none", "typ": "JWT"})),
        b64_json(claims)
    )
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims for `user` from [`ISSUER`] to [`AUDIENCE`], valid from now for an hour.
pub fn claims(user: &str, groups: &[&str]) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": user, "groups": groups,
           "iat": now, "nbf": now, "exp": now + 3600})
}

/// A local HTTPS server answering every GET with the current JWKS document.
pub struct JwksServer {
    pub uri: String,
    /// PEM of the CA that signed the server's certificate.
    pub ca_file: PathBuf,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(body: String) -> Self {
        let ca = dbwarden_testbed::pki::TestCa::new("jwks test").unwrap();
        let cert = ca.issue_server(&["127.0.0.1"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("jwks-ca.crt");
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();
        let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (Arc::clone(&body), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, b, h) = (acceptor.clone(), Arc::clone(&b), Arc::clone(&h));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let text = b.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(text),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            uri: format!("https://127.0.0.1:{port}/jwks.json"),
            ca_file,
            body,
            hits,
            task,
            _dir: dir,
        }
    }

    /// Serves `body` from now on.
    pub fn set(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    /// GETs answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
