//! Approvals decided with kubectl by real users on a real control plane: the operator records
//! who decided, refuses the requester (four eyes) and non-approvers, counts distinct approvers,
//! lets one denial decide, expires requests, and publishes Events for each step.

// Helpers outside #[test] report failure by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dbwarden_crds::{ApprovalPhase, ApprovalRequest, DecisionKind};
use dbwarden_testbed::{ADMIN, ALICE, BOB, CAROL, ControlPlane, DAVE};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use support::{Operator, decide, installed};

mod support;

const POLICY: &str = r#"
apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: orders, namespace: payments}
spec:
  database: {host: orders-db, name: orders, environment: production, credentialsSecretRef: {name: orders-db}}
  workloadSelector: {matchLabels: {app: orders-api}}
  rules: [{name: api, subjects: {serviceAccounts: [orders-api]}, operations: [read, write], tables: ["public.*"]}]
  approvals:
  - {name: ddl, when: {operations: [ddl]}, approvers: {groups: [dba]}, requiredApprovals: 2}
  - {name: deletes, when: {operations: [delete]}, approvers: {groups: [dba]}}
"#;

fn request(name: &str, rule: &str, requester: &str, expires_in: SignedDuration) -> String {
    let expires = Timestamp::now().checked_add(expires_in).unwrap();
    format!(
        r#"
apiVersion: dbwarden.io/v1alpha1
kind: ApprovalRequest
metadata: {{name: {name}, namespace: payments}}
spec:
  policy: orders
  rule: {rule}
  database: orders
  environment: production
  requester: {{user: {requester}, serviceAccount: payments/orders-api}}
  statement: DROP TABLE public.archive
  fingerprint: 0f3c
  operation: {operation}
  tables: [public.archive]
  expiresAt: "{expires}"
"#,
        operation = if rule == "ddl" { "ddl" } else { "delete" },
        expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
}

async fn status_of(cp: &ControlPlane, name: &str) -> dbwarden_crds::ApprovalRequestStatus {
    let api: Api<ApprovalRequest> = Api::namespaced(cp.admin_client(), "payments");
    api.get(name).await.unwrap().status.unwrap_or_default()
}

async fn events_for(cp: &ControlPlane, name: &str) -> String {
    let selector = format!("regarding.name={name}");
    cp.kubectl_ok(
        &ADMIN,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            "payments",
            "--field-selector",
            &selector,
            "-o",
            "custom-columns=REASON:.reason,NOTE:.note",
        ],
    )
    .await
    .unwrap()
}

async fn eventually(limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "gave up after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A control plane with the chart installed (webhooks by URL) and the operator running with the
/// chart's RBAC, plus namespace `payments` and its policy.
async fn install(operator_args: &[&str]) -> (ControlPlane, Operator) {
    let (cp, operator) = installed(&["payments"], operator_args).await;
    cp.apply(&ADMIN, POLICY).await.unwrap();
    (cp, operator)
}

#[tokio::test]
async fn decided_requests_are_deleted_after_the_retention_period() {
    let (cp, _operator) = install(&["--approval-retention", "2s"]).await;
    cp.apply(
        &ADMIN,
        &request(
            "short-lived",
            "deletes",
            "bob",
            SignedDuration::from_secs(1),
        ),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), async || {
        !cp.kubectl(&ADMIN, &["get", "ar", "short-lived", "-n", "payments"])
            .await
            .unwrap()
            .status
            .success()
    })
    .await;
    let events = events_for(&cp, "short-lived").await;
    assert!(events.contains("Expired"), "{events}");
}

#[tokio::test]
async fn approvals_are_decided_with_kubectl_by_allowed_approvers_only() {
    let (cp, _operator) = install(&[]).await;

    // The chart's approver role, granted to the DBAs and (to show the webhook, not RBAC, refuses
    // them) to the contractors; the developers get nothing.
    for group in ["dba", "contractors"] {
        cp.kubectl_ok(
            &ADMIN,
            &[
                "create",
                "rolebinding",
                &format!("approve-{group}"),
                "-n",
                "payments",
                "--clusterrole=dbwarden-approver",
                &format!("--group={group}"),
            ],
        )
        .await
        .unwrap();
    }
    let hour = SignedDuration::from_hours(1);
    cp.apply(&ADMIN, &request("drop-archive", "ddl", "bob", hour))
        .await
        .unwrap();
    cp.apply(&ADMIN, &request("alice-delete", "deletes", "alice", hour))
        .await
        .unwrap();
    cp.apply(
        &ADMIN,
        &request("lapses", "deletes", "bob", SignedDuration::from_secs(3)),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(20), async || {
        status_of(&cp, "drop-archive")
            .await
            .conditions
            .iter()
            .any(|c| c.reason == "Requested")
    })
    .await;

    // The operator marks a new request Pending, so kubectl shows it.
    let phase = cp
        .kubectl_ok(
            &ADMIN,
            &[
                "get",
                "ar",
                "drop-archive",
                "-n",
                "payments",
                "-o",
                "jsonpath={.status.phase}",
            ],
        )
        .await
        .unwrap();
    assert_eq!(phase, "Pending");

    // Two approvals needed: alice's is recorded but the request stays Pending.
    let first = decide(&cp, &ALICE, "payments", "drop-archive", "Approved").await;
    assert!(first.status.success(), "{}", first.stderr);
    assert!(
        first.stderr.contains("approval recorded (1 of 2)"),
        "{}",
        first.stderr
    );
    let status = status_of(&cp, "drop-archive").await;
    assert_eq!(
        (status.phase, status.approvals),
        (ApprovalPhase::Pending, 1)
    );

    // The same approver twice counts once.
    let twice = decide(&cp, &ALICE, "payments", "drop-archive", "Approved").await;
    assert!(!twice.status.success());
    assert!(
        twice
            .stderr
            .contains("alice already approved; 1 of 2 approvals"),
        "{}",
        twice.stderr
    );

    // A second DBA approves: Approved, with both decisions stamped by the API server's identity.
    let second = decide(&cp, &DAVE, "payments", "drop-archive", "Approved").await;
    assert!(second.status.success(), "{}", second.stderr);
    let status = status_of(&cp, "drop-archive").await;
    assert_eq!(
        (status.phase, status.approvals),
        (ApprovalPhase::Approved, 2)
    );
    let deciders: Vec<(&str, DecisionKind)> = status
        .decisions
        .iter()
        .map(|d| (d.by.as_str(), d.decision))
        .collect();
    assert_eq!(
        deciders,
        [
            ("alice", DecisionKind::Approve),
            ("dave", DecisionKind::Approve)
        ]
    );
    assert!(status.decisions[1].groups.contains(&"dba".to_string()));

    // Four eyes: alice cannot decide her own request.
    let own = decide(&cp, &ALICE, "payments", "alice-delete", "Approved").await;
    assert!(!own.status.success());
    assert!(
        own.stderr.contains(
            "alice requested this statement and cannot decide it: someone else must (four eyes)"
        ),
        "{}",
        own.stderr
    );
    // carol may edit statuses (RBAC) but the rule does not name her; bob may not even edit.
    let outsider = decide(&cp, &CAROL, "payments", "alice-delete", "Approved").await;
    assert!(
        outsider
            .stderr
            .contains(r#"carol is not an approver for rule "deletes" of policy payments/orders"#),
        "{}",
        outsider.stderr
    );
    let no_rbac = decide(&cp, &BOB, "payments", "alice-delete", "Approved").await;
    assert!(
        no_rbac.stderr.contains("Forbidden")
            && no_rbac
                .stderr
                .contains(r#"User "bob" cannot get resource "approvalrequests/status""#),
        "{}",
        no_rbac.stderr
    );
    // Nobody can write a decision into the status by hand.
    let forged = cp
        .kubectl(
            &DAVE,
            &[
                "patch",
                "ar",
                "alice-delete",
                "-n",
                "payments",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"approvals":5}}"#,
            ],
        )
        .await
        .unwrap();
    assert!(
        forged
            .stderr
            .contains("only status.phase may be changed, to Approved or Denied"),
        "{}",
        forged.stderr
    );
    // One denial decides.
    let denied = decide(&cp, &DAVE, "payments", "alice-delete", "Denied").await;
    assert!(denied.status.success(), "{}", denied.stderr);
    assert_eq!(
        status_of(&cp, "alice-delete").await.phase,
        ApprovalPhase::Denied
    );
    let late = decide(&cp, &ALICE, "payments", "alice-delete", "Approved").await;
    assert!(!late.status.success());

    // A request nobody decides expires.
    eventually(Duration::from_secs(20), async || {
        status_of(&cp, "lapses").await.phase == ApprovalPhase::Expired
    })
    .await;

    // Each step is an Event people see with kubectl.
    eventually(Duration::from_secs(10), async || {
        events_for(&cp, "drop-archive")
            .await
            .contains("approved by alice, dave")
    })
    .await;
    eventually(Duration::from_secs(10), async || {
        events_for(&cp, "alice-delete")
            .await
            .contains("denied by dave")
    })
    .await;
    eventually(Duration::from_secs(10), async || {
        events_for(&cp, "lapses").await.contains("Expired")
    })
    .await;
    let requested = events_for(&cp, "drop-archive").await;
    assert!(
        requested.contains("Requested")
            && requested
                .contains("bob asks to run ddl on public.archive (rule ddl of policy orders)"),
        "{requested}"
    );

    let table = cp
        .kubectl_ok(&ADMIN, &["get", "ar", "-n", "payments"])
        .await
        .unwrap();
    for (name, phase) in [
        ("drop-archive", "Approved"),
        ("alice-delete", "Denied"),
        ("lapses", "Expired"),
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(name) && l.contains(phase)),
            "{table}"
        );
    }
}

/// A one-route HTTP server that keeps the bodies POSTed to it.
async fn webhook_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

#[tokio::test]
async fn new_requests_are_announced_to_the_notification_webhook() {
    let (port, received) = webhook_receiver().await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (cp, operator) = install(&["--approval-webhook-url", &url]).await;
    cp.apply(
        &ADMIN,
        &request("drop-archive", "ddl", "bob", SignedDuration::from_hours(1)),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(20), async || {
        !received.lock().unwrap().is_empty()
    })
    .await;
    let body: serde_json::Value = serde_json::from_str(&received.lock().unwrap()[0]).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("bob asks to run ddl on public.archive"),
        "{text}"
    );
    assert!(
        text.contains("kubectl patch ar drop-archive -n payments --subresource=status"),
        "{text}"
    );
    // Announced once, not at every reconcile; counted in the operator's metrics.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received.lock().unwrap().len(), 1);
    let metrics = dbwarden_testbed::http_get(operator.metrics_port, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("dbwarden_operator_approval_notifications_total{result=\"sent\"} 1"),
        "{metrics}"
    );
}
