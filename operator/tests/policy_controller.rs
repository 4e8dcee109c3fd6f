//! The policy controller on a real control plane: a valid policy becomes Ready with its pod
//! count, an invalid one gets Ready=False naming the field, and both leave Events.

// Helpers outside #[test] report failure by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_operator::{Context, Metrics, policy};
use dbwarden_testbed::{ADMIN, ControlPlane};
use kube::Api;

const POLICY: &str = r#"
apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata:
  name: orders
  namespace: payments
spec:
  database:
    host: orders-db.payments.svc
    name: orders
    environment: production
    credentialsSecretRef: {name: orders-db}
  workloadSelector:
    matchLabels: {app: reports}
  rules:
  - name: reports-read
    subjects: {serviceAccounts: [reports]}
    operations: [select]
    tables: [TABLES]
"#;

fn pod(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: payments, labels: {{app: {app}}}}}
spec:
  containers: [{{name: app, image: example.com/reports:1}}]
"
    )
}

async fn start() -> (ControlPlane, tokio::sync::oneshot::Sender<()>) {
    dbwarden_testbed::init_tracing();
    let cp = ControlPlane::start().await.unwrap();
    cp.install_dbwarden_crds().await.unwrap();
    cp.kubectl_ok(&ADMIN, &["create", "namespace", "payments"])
        .await
        .unwrap();

    let metrics = Arc::new(Metrics::new().unwrap());
    let ctx = Context::new(cp.admin_client(), metrics, Some("test".into()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(policy::run(ctx, async move {
        let _ = stopped.await;
    }));
    (cp, stop)
}

/// Waits until `kubectl get events` about policy `orders` shows what `done` looks for: an
/// Event is published after the status it goes with, so poll for up to 10 s.
async fn events_until(cp: &ControlPlane, done: impl Fn(&str) -> bool) {
    let mut events = String::new();
    for _ in 0..50 {
        events = cp
            .kubectl_ok(
                &ADMIN,
                &[
                    "get",
                    "events",
                    "-n",
                    "payments",
                    "--field-selector",
                    "involvedObject.name=orders",
                ],
            )
            .await
            .unwrap();
        if done(&events) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the events never showed what was expected: {events}");
}

/// Polls the policy until `done` holds, for at most 30 s.
async fn wait_for(
    cp: &ControlPlane,
    name: &str,
    done: impl Fn(&DatabaseAccessPolicy) -> bool,
) -> DatabaseAccessPolicy {
    let api: Api<DatabaseAccessPolicy> = Api::namespaced(cp.admin_client(), "payments");
    for _ in 0..300 {
        let policy = api.get(name).await.unwrap();
        if done(&policy) {
            return policy;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "policy {name} never reached the expected status: {:?}",
        api.get(name).await.unwrap().status
    );
}

fn ready(policy: &DatabaseAccessPolicy) -> Option<(String, String, String)> {
    let status = policy.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((
        ready.status.clone(),
        ready.reason.clone(),
        ready.message.clone(),
    ))
}

#[tokio::test]
async fn valid_policy_becomes_ready_and_counts_its_pods() {
    let (cp, _stop) = start().await;
    for (name, app) in [
        ("reports-1", "reports"),
        ("reports-2", "reports"),
        ("billing-1", "billing"),
    ] {
        cp.apply(&ADMIN, &pod(name, app)).await.unwrap();
    }
    cp.apply(&ADMIN, &POLICY.replace("TABLES", "public.orders"))
        .await
        .unwrap();

    let policy = wait_for(&cp, "orders", |p| {
        ready(p).is_some_and(|(s, _, _)| s == "True")
            && p.status.as_ref().and_then(|s| s.selected_pods) == Some(2)
    })
    .await;
    let status = policy.status.unwrap();
    assert_eq!(status.observed_generation, policy.metadata.generation);
    assert_eq!(status.conditions[0].reason, "Valid");

    // A third matching pod raises the count without any change to the policy.
    cp.apply(&ADMIN, &pod("reports-3", "reports"))
        .await
        .unwrap();
    wait_for(&cp, "orders", |p| {
        p.status.as_ref().and_then(|s| s.selected_pods) == Some(3)
    })
    .await;

    // People see it in kubectl: the Ready printer column and an Event.
    let table = cp
        .kubectl_ok(&ADMIN, &["get", "dap", "-n", "payments"])
        .await
        .unwrap();
    assert!(
        table.lines().nth(1).is_some_and(|row| row.contains("True")),
        "{table}"
    );
    events_until(&cp, |events| events.contains("Valid")).await;
}

#[tokio::test]
async fn invalid_policy_is_not_ready_and_says_why() {
    let (cp, _stop) = start().await;
    // The API server accepts this (the schema cannot see inside a glob); the validator cannot.
    cp.apply(&ADMIN, &POLICY.replace("TABLES", "public..orders"))
        .await
        .unwrap();

    let policy = wait_for(&cp, "orders", |p| {
        ready(p).is_some_and(|(s, _, _)| s == "False")
    })
    .await;
    let (_, reason, message) = ready(&policy).unwrap();
    assert_eq!(reason, "Invalid");
    assert!(
        message.contains(r#"spec.rules[0].tables[0]: "public..orders" is not a table pattern: it has an empty part"#),
        "{message}"
    );
    events_until(&cp, |events| {
        events.contains("Warning") && events.contains("Invalid")
    })
    .await;

    // Fixing the policy makes it Ready, for the new generation.
    cp.apply(&ADMIN, &POLICY.replace("TABLES", "public.orders"))
        .await
        .unwrap();
    let fixed = wait_for(&cp, "orders", |p| {
        ready(p).is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    assert_eq!(fixed.metadata.generation, Some(2));
    assert_eq!(fixed.status.unwrap().observed_generation, Some(2));
}
