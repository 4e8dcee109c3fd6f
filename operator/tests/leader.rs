//! Two operator replicas: only one leads (holds the Lease and reconciles); when it dies, the
//! other takes over and reconciles from then on.

// Helpers outside #[test] report failure by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dbwarden_testbed::{ADMIN, ControlPlane, free_port};
use support::Operator;

mod support;

const POLICY: &str = r#"
apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: NAME, namespace: payments}
spec:
  database: {host: orders-db, name: orders, environment: production, credentialsSecretRef: {name: orders-db}}
  workloadSelector: {matchLabels: {app: reports}}
  rules: [{name: read, subjects: {groups: [analysts]}, operations: [select], tables: ["public.*"]}]
"#;

async fn jsonpath(cp: &ControlPlane, args: &[&str]) -> String {
    cp.kubectl(&ADMIN, args).await.unwrap().stdout
}

async fn holder(cp: &ControlPlane) -> String {
    jsonpath(
        cp,
        &[
            "get",
            "lease",
            "-n",
            "dbwarden-system",
            "dbwarden-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
    .await
}

/// Waits up to `limit` for `check` to return Some.
async fn eventually<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < limit, "gave up after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn becomes_ready(cp: &ControlPlane, name: &str) {
    eventually(Duration::from_secs(20), || async {
        let path = "jsonpath={.status.conditions[?(@.type=='Ready')].status}";
        (jsonpath(cp, &["get", "dap", name, "-n", "payments", "-o", path]).await == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_dies() {
    dbwarden_testbed::init_tracing();
    let cp = ControlPlane::start().await.unwrap();
    cp.install_dbwarden_crds().await.unwrap();
    for namespace in ["dbwarden-system", "payments"] {
        cp.kubectl_ok(&ADMIN, &["create", "namespace", namespace])
            .await
            .unwrap();
    }
    let kubeconfig = cp.kubeconfig(&ADMIN);
    // Renewed every few seconds: long enough that a busy machine's stall of a few seconds
    // does not hand the Lease over while both replicas live.
    let lease = ["--lease-duration-seconds", "8"];
    let mut replicas = [
        Some(
            Operator::start_with(
                &kubeconfig,
                free_port().unwrap(),
                &[&["--instance", "replica-a"][..], &lease[..]].concat(),
            )
            .await,
        ),
        Some(
            Operator::start_with(
                &kubeconfig,
                free_port().unwrap(),
                &[&["--instance", "replica-b"][..], &lease[..]].concat(),
            )
            .await,
        ),
    ];

    let first = eventually(Duration::from_secs(20), || async {
        let holder = holder(&cp).await;
        (!holder.is_empty()).then_some(holder)
    })
    .await;
    assert!(first == "replica-a" || first == "replica-b", "{first}");
    cp.apply(&ADMIN, &POLICY.replace("NAME", "before"))
        .await
        .unwrap();
    becomes_ready(&cp, "before").await;

    // Only the leader reconciles: every Event names it as the reporting instance.
    let events = jsonpath(
        &cp,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            "payments",
            "-o",
            "jsonpath={.items[*].reportingInstance}",
        ],
    )
    .await;
    assert!(
        events.split_whitespace().all(|instance| instance == first),
        "events from {events}, leader {first}"
    );

    // The leader dies without releasing the Lease; the other waits for it to expire and leads.
    let index = usize::from(first == "replica-b");
    replicas[index] = None;
    let second = eventually(Duration::from_secs(30), || async {
        let holder = holder(&cp).await;
        (!holder.is_empty() && holder != first).then_some(holder)
    })
    .await;
    let transitions = jsonpath(
        &cp,
        &[
            "get",
            "lease",
            "-n",
            "dbwarden-system",
            "dbwarden-operator",
            "-o",
            "jsonpath={.spec.leaseTransitions}",
        ],
    )
    .await;
    assert_eq!(transitions, "1");
    cp.apply(&ADMIN, &POLICY.replace("NAME", "after"))
        .await
        .unwrap();
    becomes_ready(&cp, "after").await;
    eprintln!("leadership moved from {first} to {second}");
}
