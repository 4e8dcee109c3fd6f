#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dbwarden_crds::policy::{Identity as IdentitySettings, Jwt};
use serde_json::json;

use super::*;
use crate::frontend::{AuthRequest, IdentityHook};

#[path = "../../tests/proxy/jwt_support.rs"]
mod support;
use support::{AUDIENCE, ISSUER, JwksServer, TestKey, claims, hs256, jwks, now, unsigned};

fn spec(jwks_text: Option<String>, uri: Option<String>) -> Jwt {
    Jwt {
        issuer: ISSUER.into(),
        audiences: vec!["other".into(), AUDIENCE.into()],
        jwks_uri: uri,
        jwks: jwks_text,
        username_claim: "sub".into(),
        groups_claim: "groups".into(),
        require_end_user_token: false,
    }
}

fn inline(keys: &[&TestKey]) -> JwtVerifier {
    JwtVerifier::new(&spec(Some(jwks(keys)), None), None).unwrap()
}

async fn refused(v: &JwtVerifier, token: &str) -> TokenError {
    v.verify(token).await.expect_err("token must be refused")
}

#[tokio::test]
async fn accepts_es256_and_ed25519_tokens_and_reads_user_and_groups() {
    let (ec, ed) = (TestKey::es256("ec1"), TestKey::ed25519("ed1"));
    let v = inline(&[&ec, &ed]);
    let user = v
        .verify(&ec.sign(&claims("alice", &["dev", "ops"])))
        .await
        .unwrap();
    assert_eq!(user.username, "alice");
    assert_eq!(user.groups, ["dev", "ops"]);
    let user = v.verify(&ed.sign(&claims("bob", &[]))).await.unwrap();
    assert_eq!(user.username, "bob");

    // No groups claim: no groups. A single audience string works as well as a list.
    let mut c = claims("carol", &[]);
    c.as_object_mut().unwrap().remove("groups");
    c["aud"] = json!(AUDIENCE);
    assert_eq!(
        v.verify(&ec.sign(&c)).await.unwrap().groups,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn refuses_expired_and_not_yet_valid_tokens_beyond_a_30s_leeway() {
    let key = TestKey::es256("k");
    let v = inline(&[&key]);
    let mut c = claims("alice", &[]);
    c["exp"] = json!(now() - 10);
    assert!(v.verify(&key.sign(&c)).await.is_ok(), "within the leeway");
    c["exp"] = json!(now() - 60);
    assert_eq!(refused(&v, &key.sign(&c)).await, TokenError::Expired);
    assert_eq!(TokenError::Expired.to_string(), "token expired");

    let mut c = claims("alice", &[]);
    c["nbf"] = json!(now() + 120);
    assert_eq!(refused(&v, &key.sign(&c)).await, TokenError::NotYetValid);
    c.as_object_mut().unwrap().remove("exp");
    c["nbf"] = json!(now());
    assert_eq!(refused(&v, &key.sign(&c)).await, TokenError::Claim("exp"));
}

#[tokio::test]
async fn refuses_wrong_issuer_and_audience() {
    let key = TestKey::es256("k");
    let v = inline(&[&key]);
    let mut c = claims("alice", &[]);
    c["iss"] = json!("https://evil.example");
    assert_eq!(refused(&v, &key.sign(&c)).await, TokenError::Issuer);
    let mut c = claims("alice", &[]);
    c["aud"] = json!(["someone-else"]);
    assert_eq!(refused(&v, &key.sign(&c)).await, TokenError::Audience);
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(refused(&v, &key.sign(&c)).await, TokenError::Claim("aud"));
}

#[tokio::test]
async fn refuses_unsigned_hmac_and_algorithm_key_mismatch() {
    let (ec, ed) = (TestKey::es256("ec"), TestKey::ed25519("ed"));
    let v = inline(&[&ec, &ed]);
    let c = claims("alice", &[]);
    assert_eq!(refused(&v, &unsigned(&c)).await, TokenError::Unsigned);
    // The classic confusion: HMAC keyed with the public key's bytes.
    let public = ec.jwk().to_string();
    assert_eq!(
        refused(&v, &hs256(public.as_bytes(), "ec", &c)).await,
        TokenError::Hmac
    );
    // A key set with a symmetric key does not make HMAC acceptable either.
    let with_oct = json!({"keys": [ec.jwk(), {"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]});
    let v2 = JwtVerifier::new(&spec(Some(with_oct.to_string()), None), None).unwrap();
    assert_eq!(
        refused(&v2, &hs256(b"secret", "s", &c)).await,
        TokenError::Hmac
    );

    // EdDSA header naming the EC key; ES384 header naming a P-256 key.
    let t = ed.sign_with_header(&json!({"alg": "EdDSA", "kid": "ec"}), &c);
    assert_eq!(refused(&v, &t).await, TokenError::AlgorithmMismatch);
    let t = ec.sign_with_header(&json!({"alg": "ES384", "kid": "ec"}), &c);
    assert_eq!(refused(&v, &t).await, TokenError::AlgorithmMismatch);
    let t = ec.sign_with_header(&json!({"alg": "XS999", "kid": "ec"}), &c);
    assert_eq!(refused(&v, &t).await, TokenError::UnsupportedAlgorithm);
}

/// RSA keys: RS256 tokens are accepted; HMAC keyed with the RSA public key (the classic
/// confusion) and headers naming the RSA key with another algorithm are refused.
#[tokio::test]
async fn accepts_rs256_and_refuses_hmac_and_other_algorithms_on_rsa_keys() {
    let (rsa, ec) = (TestKey::rs256("rsa"), TestKey::es256("ec"));
    let v = inline(&[&rsa, &ec]);
    let c = claims("alice", &["dev"]);
    let user = v.verify(&rsa.sign(&c)).await.unwrap();
    assert_eq!((user.username.as_str(), user.groups.len()), ("alice", 1));
    for secret in [rsa.jwk().to_string(), rsa.jwk()["n"].to_string()] {
        assert_eq!(
            refused(&v, &hs256(secret.as_bytes(), "rsa", &c)).await,
            TokenError::Hmac
        );
    }
    for alg in ["ES256", "EdDSA"] {
        let t = rsa.sign_with_header(&json!({"alg": alg, "kid": "rsa"}), &c);
        assert_eq!(
            refused(&v, &t).await,
            TokenError::AlgorithmMismatch,
            "{alg}"
        );
    }
    // An RS256 header naming the EC key.
    let t = rsa.sign_with_header(&json!({"alg": "RS256", "kid": "ec"}), &c);
    assert_eq!(refused(&v, &t).await, TokenError::AlgorithmMismatch);
    // The right header, the wrong key's signature.
    let t = ec.sign_with_header(&json!({"alg": "RS256", "kid": "rsa"}), &c);
    assert_eq!(refused(&v, &t).await, TokenError::BadSignature);
}

#[tokio::test]
async fn refuses_unknown_kid_bad_signature_oversize_and_garbage() {
    let key = TestKey::es256("k");
    let v = inline(&[&key]);
    let c = claims("alice", &[]);
    assert_eq!(
        refused(&v, &TestKey::es256("nope").sign(&c)).await,
        TokenError::UnknownKey
    );
    // Another key claiming the known kid.
    assert_eq!(
        refused(&v, &TestKey::es256("k").sign(&c)).await,
        TokenError::BadSignature
    );
    let mut big = claims("alice", &[]);
    big["pad"] = json!("x".repeat(9000));
    assert_eq!(refused(&v, &key.sign(&big)).await, TokenError::TooLarge);
    assert_eq!(refused(&v, "not-a-token").await, TokenError::Malformed);
    assert_eq!(refused(&v, "a.b.c").await, TokenError::Malformed);
}

#[tokio::test]
async fn refuses_bad_username_and_groups_claims() {
    let key = TestKey::es256("k");
    let v = inline(&[&key]);
    for bad in [json!(null), json!(42), json!(""), json!("a\nb")] {
        let mut c = claims("x", &[]);
        c["sub"] = bad;
        let e = refused(&v, &key.sign(&c)).await;
        assert_eq!(e.label(), "username_claim");
        assert_eq!(
            e.to_string(),
            "token claim \"sub\" (the user name) is missing or not a usable string"
        );
    }
    for bad in [
        json!("admins"),
        json!([1]),
        json!(["ok", null]),
        json!(null),
    ] {
        let mut c = claims("alice", &[]);
        c["groups"] = bad;
        assert_eq!(refused(&v, &key.sign(&c)).await.label(), "groups_claim");
    }
}

#[test]
fn refuses_unusable_settings() {
    let oct_only = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    let e = JwtVerifier::new(&spec(Some(oct_only), None), None).unwrap_err();
    assert_eq!(e.label(), "jwks");
    let e = JwtVerifier::new(&spec(None, Some("http://idp/jwks".into())), None).unwrap_err();
    assert!(e.to_string().contains("https://"), "{e}");
    let e = JwtVerifier::new(&spec(None, None), None).unwrap_err();
    assert_eq!(e.label(), "key_source");
}

fn from_uri(server: &JwksServer, timing: Timing) -> JwtVerifier {
    let s = spec(None, Some(server.uri.clone()));
    JwtVerifier::with_timing(&s, Some(&server.ca_file), timing).unwrap()
}

#[tokio::test]
async fn fetches_keys_over_https_and_picks_up_a_rotated_key_after_one_refetch() {
    let (k1, k2) = (TestKey::es256("k1"), TestKey::ed25519("k2"));
    let server = JwksServer::start(jwks(&[&k1])).await;
    let timing = Timing {
        min_interval: Duration::ZERO,
        refresh_every: Duration::from_secs(600),
    };
    let v = from_uri(&server, timing);
    let c = claims("alice", &[]);
    v.verify(&k1.sign(&c)).await.unwrap();
    assert_eq!(server.hits(), 1);
    v.verify(&k1.sign(&c)).await.unwrap();
    assert_eq!(server.hits(), 1, "known keys are served from the cache");

    server.set(jwks(&[&k1, &k2]));
    v.verify(&k2.sign(&c)).await.unwrap();
    assert_eq!(
        server.hits(),
        2,
        "the unknown kid caused exactly one re-fetch"
    );

    // A broken answer keeps the last good set.
    server.set("{not json".into());
    assert_eq!(
        refused(&v, &TestKey::es256("k3").sign(&c)).await,
        TokenError::UnknownKey
    );
    assert_eq!(server.hits(), 3);
    v.verify(&k2.sign(&c)).await.unwrap();
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_issuer_at_most_one_fetch_per_interval() {
    let k1 = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let v = from_uri(&server, Timing::default());
    v.verify(&k1.sign(&claims("alice", &[]))).await.unwrap();
    for i in 0..20 {
        let t = TestKey::es256(&format!("made-up-{i}")).sign(&claims("alice", &[]));
        assert_eq!(refused(&v, &t).await, TokenError::UnknownKey);
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn refreshes_old_keys_in_the_background() {
    let k1 = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let timing = Timing {
        min_interval: Duration::ZERO,
        refresh_every: Duration::ZERO,
    };
    let v = from_uri(&server, timing);
    v.verify(&k1.sign(&claims("alice", &[]))).await.unwrap();
    v.verify(&k1.sign(&claims("alice", &[]))).await.unwrap();
    // Up to 10 s: the re-fetch runs in the background, which a busy machine delays.
    for _ in 0..500 {
        if server.hits() >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no periodic re-fetch: {} fetches", server.hits());
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_refuse_tokens_clearly() {
    let k1 = TestKey::es256("k1");
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = spec(None, Some(format!("https://127.0.0.1:{port}/jwks")));
    let v = JwtVerifier::new(&s, None).unwrap();
    let e = refused(&v, &k1.sign(&claims("alice", &[]))).await;
    assert_eq!(e, TokenError::KeysUnavailable);
}

// --- PolicyIdentity ---

fn policy(name: &str, database: &str, jwt: Option<Jwt>) -> IdentitySpec {
    IdentitySpec {
        policy: format!("shop/{name}"),
        database: database.into(),
        identity: jwt.map(|jwt| IdentitySettings { jwt }),
    }
}

async fn auth(
    hook: &PolicyIdentity,
    listener: &str,
    token: Option<&str>,
) -> Result<crate::hook::Identity, String> {
    let request = AuthRequest {
        listener,
        user: "app",
        token,
        peer: "127.0.0.1:1".parse().unwrap(),
    };
    hook.authenticate(request).await.map_err(|d| d.message)
}

#[tokio::test]
async fn policy_identity_applies_the_listeners_policies() {
    let key = TestKey::es256("k");
    let hook = PolicyIdentity::new(
        "shop/api",
        [
            ("main".to_string(), "app".to_string()),
            ("other".into(), "reports".into()),
        ],
        None,
    );
    let mut required = spec(Some(jwks(&[&key])), None);
    required.require_end_user_token = true;
    hook.update(&[
        policy("app-access", "app", Some(required)),
        policy("reports", "reports", None),
    ]);
    let token = key.sign(&claims("alice", &["dev"]));

    let id = auth(&hook, "main", Some(&token)).await.unwrap();
    assert_eq!((id.subject.as_str(), id.end_user), ("alice", true));
    assert_eq!(id.groups, ["dev"]);

    let e = auth(&hook, "main", None).await.unwrap_err();
    assert!(
        e.contains("requires an end-user token as the password"),
        "{e}"
    );

    let mut other = claims("alice", &[]);
    other["iss"] = json!("https://other.example");
    let e = auth(&hook, "main", Some(&key.sign(&other)))
        .await
        .unwrap_err();
    assert_eq!(e, "dbwarden: end-user token refused: issuer not accepted");

    // `reports` has no identity.jwt: no token is the workload, a token is refused.
    let id = auth(&hook, "other", None).await.unwrap();
    assert_eq!((id.subject.as_str(), id.end_user), ("shop/api", false));
    let e = auth(&hook, "other", Some(&token)).await.unwrap_err();
    assert!(
        e.contains("no policy of this database sets identity.jwt"),
        "{e}"
    );
    assert!(!e.contains(&token));

    // A password that is no JWT at all (libpq apps must send something): the workload where no
    // token is required, refused where one is.
    let id = auth(&hook, "other", Some("placeholder")).await.unwrap();
    assert_eq!((id.subject.as_str(), id.end_user), ("shop/api", false));
    let e = auth(&hook, "main", Some("placeholder")).await.unwrap_err();
    assert!(e.contains("not a well-formed JWT"), "{e}");
}

#[tokio::test]
async fn policy_identity_keeps_verifiers_and_their_keys_across_updates() {
    let key = TestKey::es256("k");
    let server = JwksServer::start(jwks(&[&key])).await;
    let hook = PolicyIdentity::new(
        "shop/api",
        [("main".to_string(), "app".to_string())],
        Some(server.ca_file.clone()),
    );
    let specs = [policy(
        "app-access",
        "app",
        Some(spec(None, Some(server.uri.clone()))),
    )];
    hook.update(&specs);
    let token = key.sign(&claims("alice", &[]));
    auth(&hook, "main", Some(&token)).await.unwrap();
    let fetched = server.hits();
    assert!(fetched >= 1);
    hook.update(&specs);
    auth(&hook, "main", Some(&token)).await.unwrap();
    assert_eq!(
        server.hits(),
        fetched,
        "an unchanged spec keeps its cached keys"
    );
    // Policies removed: a token is refused, no token is the workload again.
    hook.update(&[]);
    assert!(auth(&hook, "main", Some(&token)).await.is_err());
    assert!(!auth(&hook, "main", None).await.unwrap().end_user);
}
