//! The webhook certificate is renewed before it lapses, and the API server keeps trusting the
//! webhooks through the renewal.

// Helpers outside #[test] report failure by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dbwarden_testbed::{ADMIN, ControlPlane};
use support::installed;

mod support;

const POLICY: &str = r#"
apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: orders, namespace: payments}
spec:
  database: {host: orders-db, name: orders, environment: production, credentialsSecretRef: {name: orders-db}}
  workloadSelector: {matchLabels: {app: orders-api}}
  rules: [{name: api, subjects: {serviceAccounts: [orders-api]}, operations: [read], tables: ["public.*"]}]
"#;

/// The Secret's CA certificate, as `-o` output.
const CA: &str = r#"go-template={{index .data "ca.crt" | base64decode}}"#;

/// The serving certificate's Secret, shown with `output` (`-o`).
async fn webhook_secret(cp: &ControlPlane, output: &str) -> String {
    cp.kubectl_ok(
        &ADMIN,
        &[
            "get",
            "secret",
            "dbwarden-webhook-tls",
            "-n",
            "dbwarden-system",
            "-o",
            output,
        ],
    )
    .await
    .unwrap()
}

/// The serving certificate, base64.
async fn serving_cert(cp: &ControlPlane) -> String {
    webhook_secret(cp, r"jsonpath={.data.tls\.crt}").await
}

#[tokio::test]
async fn certificate_is_renewed_before_it_lapses_and_stays_trusted() {
    // Valid 40 s, renewed 30 s before it lapses: due 10 s after it is made.
    let flags = [
        "--webhook-cert-validity",
        "40s",
        "--webhook-cert-renew-before",
        "30s",
        "--webhook-cert-check-interval",
        "1s",
    ];
    let (cp, _operator) = installed(&["payments"], &flags).await;
    let first = serving_cert(&cp).await;
    let first_ca = webhook_secret(&cp, CA).await;

    let start = Instant::now();
    while serving_cert(&cp).await == first {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the certificate was not renewed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The API server trusts both the old and the new CA while replicas switch over. The
    // operator updates the webhook configurations after the Secret, so give it a moment.
    let new_ca = webhook_secret(&cp, CA).await;
    let start = Instant::now();
    loop {
        let pem = validator_bundle(&cp).await;
        if pem.contains(first_ca.trim()) && pem.contains(new_ca.trim()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the caBundle does not hold both the old and the new CA: {pem}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // After the switch the validating webhook (failure policy Fail) still answers: a policy
    // goes through it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    validator_answers(&cp, Duration::ZERO).await;
}

/// A caBundle that lost the serving certificate's CA (an edit, or an update that failed) is
/// made whole at the next check, with no renewal due.
#[tokio::test]
async fn a_ca_bundle_that_lost_the_ca_is_repaired() {
    let flags = ["--webhook-cert-check-interval", "1s"];
    let (cp, _operator) = installed(&["payments"], &flags).await;
    // Here the caBundle is replaced by the serving certificate itself, which is no CA.
    let leaf = serving_cert(&cp).await;
    let patch = format!(
        r#"[{{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"{leaf}"}}]"#
    );
    cp.kubectl_ok(
        &ADMIN,
        &[
            "patch",
            "validatingwebhookconfiguration",
            "dbwarden-validator",
            "--type=json",
            "-p",
            &patch,
        ],
    )
    .await
    .unwrap();
    let ca = webhook_secret(&cp, CA).await;
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    let start = Instant::now();
    loop {
        let pem = validator_bundle(&cp).await;
        if pem.contains(ca.trim()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the caBundle was not repaired: {pem}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    validator_answers(&cp, Duration::from_secs(15)).await;
}

/// A policy goes through the validating webhook (failure policy Fail), so the API server
/// trusts the certificate it serves; retried for up to `within` (the API server learns of a
/// changed webhook configuration through a watch).
async fn validator_answers(cp: &ControlPlane, within: Duration) {
    let start = Instant::now();
    loop {
        let applied = cp
            .kubectl_with_input(
                &ADMIN,
                &["apply", "--dry-run=server", "-f", "-"],
                Some(POLICY),
            )
            .await
            .unwrap();
        if applied.status.success() {
            return;
        }
        assert!(start.elapsed() < within, "{}", applied.stderr);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The PEM certificates the validating webhook's `caBundle` holds.
async fn validator_bundle(cp: &ControlPlane) -> String {
    let template = r#"go-template={{ (index .webhooks 0).clientConfig.caBundle | base64decode }}"#;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "get",
            "validatingwebhookconfiguration",
            "dbwarden-validator",
            "-o",
            template,
        ],
    )
    .await
    .unwrap()
}
