//! The operator as a process on a real control plane, installed with the Helm chart in its
//! "operator outside the cluster" mode (webhooks called by URL) and running with exactly the
//! chart's RBAC (impersonating its ServiceAccount): annotated pods come back injected, others do
//! not, injection is idempotent, namespaces opt in by label, and a semantically invalid policy is
//! refused at apply time.

// Helpers outside #[test] report failure by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dbwarden_testbed::{ADMIN, ControlPlane};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use support::installed;

mod support;

const POLICY: &str = r#"
apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: orders, namespace: NAMESPACE}
spec:
  database:
    host: orders-db.payments.svc
    name: orders
    environment: production
    credentialsSecretRef: {name: orders-db}
  workloadSelector: {matchLabels: {app: reports}}
  listenPort: 15432
  rules:
  - name: reports-read
    subjects: {serviceAccounts: [reports]}
    operations: [select]
    tables: [TABLES]
"#;

fn pod(namespace: &str, name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app: reports}}
  annotations: {{{annotations}}}
spec:
  serviceAccountName: reports
  containers: [{{name: app, image: example.com/reports:1}}]
"
    )
}

/// Waits (up to 20 s) until a server-side dry run of `pod` comes back with the sidecar.
async fn injects_on_dry_run(cp: &ControlPlane, pod: &str) {
    for _ in 0..100 {
        let out = cp
            .kubectl_with_input(
                &ADMIN,
                &["create", "--dry-run=server", "-o", "yaml", "-f", "-"],
                Some(pod),
            )
            .await
            .unwrap();
        if out.stdout.contains("name: dbwarden-sidecar") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the webhook never injected:\n{pod}");
}

fn sidecars(pod: &Pod) -> usize {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter(|c| c.name == "dbwarden-sidecar")
        .count()
}

#[tokio::test]
async fn operator_injects_annotated_pods_and_refuses_invalid_policies() {
    let (cp, _operator) = installed(&["payments", "reporting"], &[]).await;

    // The operator stored its certificate and handed its CA to the API server.
    let bundle = cp
        .kubectl_ok(
            &ADMIN,
            &[
                "get",
                "mutatingwebhookconfiguration",
                "dbwarden-injector",
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ],
        )
        .await
        .unwrap();
    assert!(!bundle.is_empty(), "caBundle not set");
    cp.kubectl_ok(
        &ADMIN,
        &[
            "get",
            "secret",
            "-n",
            "dbwarden-system",
            "dbwarden-webhook-tls",
        ],
    )
    .await
    .unwrap();

    // The validating webhook refuses what only the semantic validator can see.
    let refused = cp
        .kubectl_with_input(
            &ADMIN,
            &["apply", "-f", "-"],
            Some(
                &POLICY
                    .replace("NAMESPACE", "payments")
                    .replace("TABLES", "public..orders"),
            ),
        )
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains(r#"admission webhook "policies.validate.dbwarden.io" denied the request"#)
            && refused.stderr.contains(r#"spec.rules[0].tables[0]: "public..orders" is not a table pattern: it has an empty part"#),
        "{}",
        refused.stderr
    );
    for namespace in ["payments", "reporting"] {
        cp.apply(
            &ADMIN,
            &POLICY
                .replace("NAMESPACE", namespace)
                .replace("TABLES", "public.orders"),
        )
        .await
        .unwrap();
    }
    // With the chart's RBAC the controller can report status: the policy becomes Ready.
    let mut ready = String::new();
    for _ in 0..100 {
        ready = cp
            .kubectl_ok(
                &ADMIN,
                &[
                    "get",
                    "dap",
                    "orders",
                    "-n",
                    "payments",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                ],
            )
            .await
            .unwrap();
        if ready == "True" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ready, "True",
        "the policy never became Ready under the chart's RBAC"
    );

    // The webhook answers from its own watch of the policies, which may lag the controller's:
    // ask it with server-side dry runs until it injects, then create the pods for real.
    injects_on_dry_run(
        &cp,
        &pod("payments", "annotated", r#"dbwarden.io/inject: "true""#),
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(cp.admin_client(), "payments");
    cp.apply(
        &ADMIN,
        &pod("payments", "annotated", r#"dbwarden.io/inject: "true""#),
    )
    .await
    .unwrap();
    cp.apply(&ADMIN, &pod("payments", "plain", ""))
        .await
        .unwrap();
    let annotated = pods.get("annotated").await.unwrap();
    assert_eq!(sidecars(&annotated), 1);
    let spec = annotated.spec.as_ref().unwrap();
    let sidecar = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        sidecar.image.as_deref(),
        Some("example.com/dbwarden-sidecar:test")
    );
    assert_eq!(
        sidecar.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar on 1.34"
    );
    let app_env = spec.containers[0].env.as_ref().unwrap();
    assert!(app_env.iter().any(|e| e.name == "DBWARDEN_ORDERS_URL"
        && e.value.as_deref() == Some("postgresql://127.0.0.1:15432/orders")));
    assert_eq!(
        annotated.metadata.annotations.as_ref().unwrap()["dbwarden.io/injected"],
        "true"
    );
    assert_eq!(sidecars(&pods.get("plain").await.unwrap()), 0);

    // Admitting an injected pod again leaves it with one sidecar.
    let mut again = annotated.clone();
    again.metadata = kube::api::ObjectMeta {
        name: Some("again".into()),
        namespace: Some("payments".into()),
        labels: annotated.metadata.labels.clone(),
        annotations: annotated.metadata.annotations.clone(),
        ..Default::default()
    };
    again.status = None;
    cp.apply(&ADMIN, &serde_json::to_string(&again).unwrap())
        .await
        .unwrap();
    assert_eq!(sidecars(&pods.get("again").await.unwrap()), 1);

    // A labelled namespace opts every pod in, unless a pod opts out.
    cp.kubectl_ok(
        &ADMIN,
        &[
            "label",
            "namespace",
            "reporting",
            "dbwarden.io/inject=enabled",
        ],
    )
    .await
    .unwrap();
    injects_on_dry_run(&cp, &pod("reporting", "unannotated", "")).await;
    cp.apply(&ADMIN, &pod("reporting", "unannotated", ""))
        .await
        .unwrap();
    cp.apply(
        &ADMIN,
        &pod("reporting", "opted-out", r#"dbwarden.io/inject: "false""#),
    )
    .await
    .unwrap();
    let reporting: Api<Pod> = Api::namespaced(cp.admin_client(), "reporting");
    assert_eq!(sidecars(&reporting.get("unannotated").await.unwrap()), 1);
    assert_eq!(sidecars(&reporting.get("opted-out").await.unwrap()), 0);

    // A pod that asks but no policy selects is admitted untouched, with a warning in kubectl.
    let unselected = pod("payments", "unselected", r#"dbwarden.io/inject: "true""#)
        .replace("app: reports", "app: billing");
    let out = cp
        .kubectl_with_input(&ADMIN, &["apply", "-f", "-"], Some(&unselected))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no DatabaseAccessPolicy in namespace payments selects this pod"),
        "{}",
        out.stderr
    );
    assert_eq!(sidecars(&pods.get("unselected").await.unwrap()), 0);
}
