//! End-user tokens: a standalone sidecar whose policy verifies JWTs against a JWKS served over
//! HTTPS, in front of a real PostgreSQL.

use std::sync::Arc;

use dbwarden_policy::ServiceAccount;
use dbwarden_sidecar::enforce::EnforcingHooks;
use dbwarden_sidecar::identity::PolicyIdentity;
use dbwarden_testbed::APP;
use serde_json::json;
use tokio_postgres::error::SqlState;

use crate::common::{Proxy, Setup, TestResult, proxy, start_pg};
use crate::jwt_support::{AUDIENCE, ISSUER, JwksServer, TestKey, claims, hs256, jwks, now};

/// Only alice may select; a token is required.
fn policy(jwks_uri: &str) -> String {
    format!(
        "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {{name: app-access, namespace: shop}}
spec:
  database: {{host: db.shop.svc, name: app, environment: dev, credentialsSecretRef: {{name: app-db}}}}
  workloadSelector: {{matchLabels: {{app: api}}}}
  identity:
    jwt:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwksUri: {jwks_uri}
      requireEndUserToken: true
  rules:
    - name: alice-reads
      subjects: {{users: [alice]}}
      operations: [select]
      tables: ['public.*']
"
    )
}

async fn connect(
    p: &Proxy,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(p.addr.port())
        .user("app")
        .dbname("app")
        .password(password)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Connecting with `password` fails with 28P01 and a message containing `reason`.
async fn refused(p: &Proxy, password: &str, reason: &str) {
    let Err(error) = connect(p, password).await else {
        panic!("the connection must be refused ({reason})");
    };
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {error}"));
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{db:?}");
    assert!(
        db.message().contains(reason),
        "{:?} lacks {reason:?}",
        db.message()
    );
    assert!(!db.message().contains(password) || password.is_empty());
}

#[tokio::test]
async fn jwt_end_users_are_verified_against_an_https_jwks_and_policies_see_them() -> TestResult {
    let pg = start_pg().await?;
    pg.psql(
        &APP,
        "CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1), (2);",
    )
    .await?
    .ok("create table")?;
    let key = TestKey::es256("key-1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy(&server.uri))?;
    let hooks = EnforcingHooks::load(vec![file], ServiceAccount::new("shop", "api"), None)?;
    let identity = Arc::new(PolicyIdentity::new(
        "shop/api",
        [("app".to_string(), "app".to_string())],
        Some(server.ca_file.clone()),
    ));
    hooks.attach_identity(Arc::clone(&identity));
    let p = proxy(
        &pg,
        Setup {
            hooks: Some(Arc::new(hooks)),
            identity: Some(identity),
            ..Setup::default()
        },
    )
    .await?;

    // alice's token: the policy's rule lets her select.
    let alice = connect(&p, &key.sign(&claims("alice", &["dev"]))).await?;
    let rows = alice
        .query("SELECT id FROM public.t ORDER BY id", &[])
        .await?;
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        [1, 2]
    );

    // bob's token is valid, but no rule allows him: the statement is refused, not the login.
    let bob = connect(&p, &key.sign(&claims("bob", &[]))).await?;
    let error = bob.query("SELECT id FROM public.t", &[]).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{error:?}"
    );
    let message = error
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("bob"), "{message}");

    let mut expired = claims("alice", &[]);
    expired["exp"] = json!(now() - 300);
    refused(&p, &key.sign(&expired), "token expired").await;
    let forged = TestKey::es256("key-1").sign(&claims("alice", &[]));
    refused(&p, &forged, "token signature is invalid").await;
    let public = key.jwk().to_string();
    let hmac = hs256(public.as_bytes(), "key-1", &claims("alice", &[]));
    refused(&p, &hmac, "HMAC-signed tokens").await;
    refused(
        &p,
        "",
        "this database requires an end-user token as the password",
    )
    .await;
    refused(&p, "hunter2", "token is not a well-formed JWT").await;
    Ok(())
}
