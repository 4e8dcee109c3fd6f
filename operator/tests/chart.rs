//! The Helm chart: lint, render with default and non-default values, refuse bad values, and the
//! default rendering accepted by a real API server (server-side dry run). Installing it for real
//! is in `webhooks.rs`, which runs the operator with the chart's RBAC.

use dbwarden_testbed::{ADMIN, ControlPlane, workspace_root};

#[tokio::test]
async fn chart_lints_renders_and_is_accepted_by_the_api_server() {
    let cp = ControlPlane::start().await.unwrap();
    let chart = workspace_root()
        .join("charts/dbwarden")
        .display()
        .to_string();

    let lint = cp.helm(&["lint", "--strict", &chart]).await.unwrap();
    assert!(lint.status.success(), "{}{}", lint.stdout, lint.stderr);

    let default = cp
        .helm(&["template", "dbwarden", &chart, "-n", "dbwarden-system"])
        .await
        .unwrap()
        .ok("helm template")
        .unwrap();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(
            default.contains(&format!("kind: {kind}\n")),
            "no {kind} in the default rendering"
        );
    }
    assert!(
        default.contains("name: dbwarden-approver"),
        "the approver ClusterRole is missing"
    );
    assert!(default.contains("replicas: 2"));

    let custom = cp
        .helm(&[
            "template",
            "dbwarden",
            &chart,
            "-n",
            "dbwarden-system",
            "--set",
            "webhook.certManager.enabled=true",
            "--set",
            "operator.replicas=3",
            "--set",
            "operator.podDisruptionBudget.enabled=false",
        ])
        .await
        .unwrap()
        .ok("helm template (cert-manager)")
        .unwrap();
    assert!(
        custom.contains("kind: Certificate\n")
            && custom
                .contains("cert-manager.io/inject-ca-from: dbwarden-system/dbwarden-webhook-tls")
    );
    assert!(custom.contains("replicas: 3") && !custom.contains("kind: PodDisruptionBudget"));

    let external = cp
        .helm(&[
            "template",
            "dbwarden",
            &chart,
            "--set",
            "operator.enabled=false",
            "--set",
            "webhook.url=https://127.0.0.1:9443",
        ])
        .await
        .unwrap()
        .ok("helm template (external)")
        .unwrap();
    assert!(external.contains(r#"url: "https://127.0.0.1:9443/inject/namespace""#));
    assert!(!external.contains("kind: Deployment"));

    // Bad values are refused with a message that names them.
    let bad = cp
        .helm(&[
            "template",
            "dbwarden",
            &chart,
            "--set",
            "webhook.port=70000",
        ])
        .await
        .unwrap();
    assert!(
        !bad.status.success() && bad.stderr.contains("at '/webhook/port'"),
        "{}",
        bad.stderr
    );
    let missing_url = cp
        .helm(&[
            "template",
            "dbwarden",
            &chart,
            "--set",
            "operator.enabled=false",
        ])
        .await
        .unwrap();
    assert!(
        missing_url
            .stderr
            .contains("webhook.url is required when operator.enabled is false"),
        "{}",
        missing_url.stderr
    );

    // The API server accepts every object of the default rendering.
    cp.kubectl_ok(&ADMIN, &["create", "namespace", "dbwarden-system"])
        .await
        .unwrap();
    cp.install_dbwarden_crds().await.unwrap();
    let dry_run = cp
        .kubectl_with_input(
            &ADMIN,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&default),
        )
        .await
        .unwrap();
    assert!(dry_run.status.success(), "{}", dry_run.stderr);
    assert!(
        dry_run
            .stdout
            .contains("deployment.apps/dbwarden-operator created (server dry run)"),
        "{}",
        dry_run.stdout
    );
}
