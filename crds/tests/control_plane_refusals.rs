//! Refusals on a real control plane: the bad-input table, edits of an ApprovalRequest's spec and
//! illegal phase moves are refused with the expected messages; generated values are accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dbwarden_crds::{ApprovalPhase, ApprovalRequest, DatabaseAccessPolicy};
use dbwarden_testbed::{ADMIN, ALICE, BOB, ControlPlane};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::cluster::{TestResult, control_plane};
use support::{cases, generate};

#[tokio::test]
async fn the_api_server_refuses_the_bad_input_table() -> TestResult {
    let cp = control_plane().await?;
    let mut failures = Vec::new();
    for (i, case) in cases::cases().into_iter().enumerate() {
        let object = cases::object(&case, &format!("bad-{i}"));
        let out = cp
            .kubectl_with_input(
                &ADMIN,
                &["create", "--dry-run=server", "-n", "payments", "-f", "-"],
                Some(&object.to_string()),
            )
            .await?;
        match (case.server, out.status.success()) {
            (Some(expected), false) if out.stderr.contains(expected) => {}
            (Some(expected), false) => failures.push(format!(
                "{}: expected {expected:?} in\n    {}",
                case.name,
                out.stderr.trim()
            )),
            (Some(_), true) => failures.push(format!("{}: accepted", case.name)),
            (None, true) => {}
            (None, false) => failures.push(format!(
                "{}: refused, though only the validator should: {}",
                case.name,
                out.stderr.trim()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// `kubectl patch` of an ApprovalRequest's status phase as `user`; returns stderr on refusal.
async fn set_phase(
    cp: &ControlPlane,
    user: &dbwarden_testbed::User,
    name: &str,
    phase: &str,
) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let patch = json!({"status": {"phase": phase}}).to_string();
    let out = cp
        .kubectl(
            user,
            &[
                "patch",
                "ar",
                name,
                "-n",
                "payments",
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
        )
        .await?;
    Ok(if out.status.success() {
        None
    } else {
        Some(out.stderr)
    })
}

#[tokio::test]
async fn approval_requests_are_immutable_and_move_only_forward() -> TestResult {
    let cp = control_plane().await?;
    // The approver role the chart ships, reduced to what this walk-through needs.
    cp.apply(
        &ADMIN,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dbwarden-approver, namespace: payments}
rules:
- apiGroups: [dbwarden.io]
  resources: [approvalrequests]
  verbs: [get, list, watch]
- apiGroups: [dbwarden.io]
  resources: [approvalrequests/status]
  verbs: [get, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dba-approves, namespace: payments}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dbwarden-approver}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: dba}
"#,
    )
    .await?;

    for name in ["walk", "deny", "jump"] {
        let mut request = cases::base_approval(name);
        request["metadata"]["namespace"] = json!("payments");
        cp.apply(&ADMIN, &request.to_string()).await?;
    }

    // The spec cannot change, not even by the administrator.
    let out = cp
        .kubectl(
            &ADMIN,
            &[
                "patch",
                "ar",
                "walk",
                "-n",
                "payments",
                "--type=merge",
                "-p",
                r#"{"spec":{"statement":"DELETE FROM public.orders"}}"#,
            ],
        )
        .await?;
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("spec is immutable; create a new ApprovalRequest instead"),
        "{}",
        out.stderr
    );

    // A fresh request cannot jump to Executed.
    let refused = set_phase(&cp, &ADMIN, "jump", "Executed")
        .await?
        .expect("refused");
    assert!(
        refused.contains("status.phase cannot change from Pending to Executed"),
        "{refused}"
    );

    // The walk-through: a DBA approves, the statement runs; nothing moves backwards.
    assert_eq!(set_phase(&cp, &ADMIN, "walk", "Pending").await?, None);
    let refused = set_phase(&cp, &BOB, "walk", "Approved")
        .await?
        .expect("bob has no right to approve");
    assert!(refused.contains("forbidden"), "{refused}");
    assert_eq!(set_phase(&cp, &ALICE, "walk", "Approved").await?, None);
    let refused = set_phase(&cp, &ALICE, "walk", "Pending")
        .await?
        .expect("refused");
    assert!(
        refused.contains("status.phase cannot change from Approved to Pending"),
        "{refused}"
    );
    assert!(
        refused.contains(
            "allowed: Pending to Approved, Denied or Expired; Approved to Executed or Expired"
        ),
        "{refused}"
    );
    assert_eq!(set_phase(&cp, &ADMIN, "walk", "Executed").await?, None);
    let refused = set_phase(&cp, &ADMIN, "walk", "Expired")
        .await?
        .expect("refused");
    assert!(
        refused.contains("cannot change from Executed to Expired"),
        "{refused}"
    );

    // A denial is final.
    assert_eq!(set_phase(&cp, &ALICE, "deny", "Denied").await?, None);
    let refused = set_phase(&cp, &ALICE, "deny", "Approved")
        .await?
        .expect("refused");
    assert!(
        refused.contains("cannot change from Denied to Approved"),
        "{refused}"
    );
    let refused = set_phase(&cp, &ALICE, "deny", "Finished")
        .await?
        .expect("refused");
    assert!(
        refused.contains(r#"Unsupported value: "Finished""#),
        "{refused}"
    );

    let api: Api<ApprovalRequest> = Api::namespaced(cp.admin_client(), "payments");
    assert_eq!(
        api.get("walk").await?.status.map(|s| s.phase),
        Some(ApprovalPhase::Executed)
    );
    assert_eq!(
        api.get("deny").await?.status.map(|s| s.phase),
        Some(ApprovalPhase::Denied)
    );
    Ok(())
}

#[tokio::test]
async fn generated_values_are_accepted_and_read_back_equal() -> TestResult {
    let cp = control_plane().await?;
    let client = cp.admin_client();
    let policies: Api<DatabaseAccessPolicy> = Api::namespaced(client.clone(), "payments");
    let approvals: Api<ApprovalRequest> = Api::namespaced(client, "payments");
    let params = PostParams::default();
    for seed in 0..25u64 {
        let mut rng = generate::Rng::new(1000 + seed);
        let policy =
            DatabaseAccessPolicy::new(&format!("generated-{seed}"), generate::policy(&mut rng));
        let created = policies
            .create(&params, &policy)
            .await
            .map_err(|e| format!("seed {seed}: {e}"))?;
        assert_eq!(created.spec, policy.spec, "seed {seed}");

        let request =
            ApprovalRequest::new(&format!("generated-{seed}"), generate::approval(&mut rng));
        let created = approvals
            .create(&params, &request)
            .await
            .map_err(|e| format!("seed {seed}: {e}"))?;
        assert_eq!(created.spec, request.spec, "seed {seed}");
        let status = generate::approval_status(&mut rng);
        // Walk the state machine to the generated phase.
        if status.phase == ApprovalPhase::Executed {
            let approved = dbwarden_crds::ApprovalRequestStatus {
                phase: ApprovalPhase::Approved,
                ..status.clone()
            };
            approvals
                .patch_status(
                    &request.metadata.name.clone().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": approved})),
                )
                .await?;
        }
        let name = request.metadata.name.clone().unwrap_or_default();
        let patched = approvals
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map_err(|e| format!("seed {seed}: {e}"))?;
        assert_eq!(patched.status.as_ref(), Some(&status), "seed {seed}");
    }
    Ok(())
}
