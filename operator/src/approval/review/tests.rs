use dbwarden_crds::{ApprovalRequestSpec, DatabaseAccessPolicySpec, Operation, Requester};
use k8s_openapi::jiff::Timestamp;

use super::*;

const OPERATOR: &str = "system:serviceaccount:dbwarden-system:dbwarden";

fn policy(required: i32) -> DatabaseAccessPolicy {
    let mut spec = DatabaseAccessPolicySpec::builder()
        .approval("ddl", [Operation::Ddl], ["dba"])
        .build();
    spec.approvals[0].required_approvals = required;
    spec.approvals[0].approvers.users = vec!["erin".into()];
    let mut policy = DatabaseAccessPolicy::new("orders", spec);
    policy.metadata.namespace = Some("payments".into());
    policy
}

fn request(phase: ApprovalPhase, decisions: &[(&str, DecisionKind)]) -> ApprovalRequest {
    let mut ar = ApprovalRequest::new(
        "orders-ddl-1",
        ApprovalRequestSpec {
            policy: "orders".into(),
            rule: "ddl".into(),
            database: "orders".into(),
            environment: "production".into(),
            requester: Requester {
                user: "bob".into(),
                groups: vec!["developers".into()],
                service_account: Some("payments/orders-api".into()),
                pod: None,
            },
            statement: "DROP TABLE ?".into(),
            fingerprint: "f".into(),
            operation: Operation::Ddl,
            tables: vec![],
            reason: None,
            expires_at: Time(Timestamp::now()),
        },
    );
    ar.metadata.namespace = Some("payments".into());
    let decisions: Vec<Decision> = decisions
        .iter()
        .map(|(by, kind)| Decision {
            by: by.to_string(),
            groups: vec![],
            decision: *kind,
            at: Time(Timestamp::now()),
            comment: None,
        })
        .collect();
    let approvals = decisions
        .iter()
        .filter(|d| d.decision == DecisionKind::Approve)
        .count() as i32;
    ar.status = Some(ApprovalRequestStatus {
        phase,
        decisions,
        approvals,
        ..Default::default()
    });
    ar
}

fn with_phase(ar: &ApprovalRequest, phase: ApprovalPhase) -> ApprovalRequest {
    let mut new = ar.clone();
    new.status.get_or_insert_with(Default::default).phase = phase;
    new
}

fn as_user<'a>(username: &'a str, groups: &'a [String]) -> Editor<'a> {
    Editor { username, groups }
}

fn dba() -> Vec<String> {
    vec!["dba".to_string(), "system:authenticated".to_string()]
}

#[test]
fn one_approver_of_one_decides_and_is_recorded() {
    let old = request(ApprovalPhase::Pending, &[]);
    let groups = dba();
    let allowed = review(
        &old,
        &with_phase(&old, ApprovalPhase::Approved),
        &as_user("alice", &groups),
        OPERATOR,
        Some(&policy(1)),
        Timestamp::now(),
    )
    .unwrap();
    let status = allowed.status.unwrap();
    assert_eq!(status.phase, ApprovalPhase::Approved);
    assert_eq!(status.approvals, 1);
    assert_eq!(status.decisions[0].by, "alice");
    assert_eq!(status.decisions[0].groups, groups);
    assert_eq!(allowed.warning, None);
}

#[test]
fn two_required_approvals_need_two_distinct_people() {
    let (alice, dave) = (dba(), dba());
    let p = policy(2);
    let old = request(ApprovalPhase::Pending, &[]);
    let first = review(
        &old,
        &with_phase(&old, ApprovalPhase::Approved),
        &as_user("alice", &alice),
        OPERATOR,
        Some(&p),
        Timestamp::now(),
    )
    .unwrap();
    let after_first = first.status.unwrap();
    assert_eq!(
        (after_first.phase, after_first.approvals),
        (ApprovalPhase::Pending, 1)
    );
    assert!(first.warning.unwrap().contains("1 of 2"));

    let mut old = old.clone();
    old.status = Some(after_first);
    let again = review(
        &old,
        &with_phase(&old, ApprovalPhase::Approved),
        &as_user("alice", &alice),
        OPERATOR,
        Some(&p),
        Timestamp::now(),
    )
    .unwrap_err();
    assert_eq!(
        again,
        "alice already approved; 1 of 2 approvals, another approver must approve"
    );

    let second = review(
        &old,
        &with_phase(&old, ApprovalPhase::Approved),
        &as_user("dave", &dave),
        OPERATOR,
        Some(&p),
        Timestamp::now(),
    )
    .unwrap();
    let status = second.status.unwrap();
    assert_eq!(
        (status.phase, status.approvals, status.decisions.len()),
        (ApprovalPhase::Approved, 2, 2)
    );
}

#[test]
fn named_users_approve_too_and_one_denial_decides() {
    let old = request(ApprovalPhase::Pending, &[("alice", DecisionKind::Approve)]);
    let none: Vec<String> = vec![];
    let denied = review(
        &old,
        &with_phase(&old, ApprovalPhase::Denied),
        &as_user("erin", &none),
        OPERATOR,
        Some(&policy(2)),
        Timestamp::now(),
    )
    .unwrap();
    let status = denied.status.unwrap();
    assert_eq!(status.phase, ApprovalPhase::Denied);
    assert_eq!(
        status.decisions.last().unwrap().decision,
        DecisionKind::Deny
    );
}

#[test]
fn refusals_say_why() {
    let old = request(ApprovalPhase::Pending, &[]);
    let approve = with_phase(&old, ApprovalPhase::Approved);
    let execute = with_phase(&old, ApprovalPhase::Executed);
    let p = policy(1);
    let dev = vec!["developers".to_string()];
    let groups = dba();
    let cases: Vec<(
        Editor<'_>,
        &ApprovalRequest,
        &ApprovalRequest,
        Option<&DatabaseAccessPolicy>,
        &str,
    )> = vec![
        (
            as_user("bob", &groups),
            &old,
            &approve,
            Some(&p),
            "bob requested this statement and cannot decide it: someone else must (four eyes)",
        ),
        (
            as_user("carol", &dev),
            &old,
            &approve,
            Some(&p),
            r#"carol is not an approver for rule "ddl" of policy payments/orders (approvers: users ["erin"], groups ["dba"])"#,
        ),
        (
            as_user("alice", &groups),
            &old,
            &approve,
            None,
            r#"policy payments/orders has no approval rule "ddl" any more, so nobody can approve this request"#,
        ),
        (
            as_user("alice", &groups),
            &old,
            &execute,
            Some(&p),
            "only status.phase may be changed, to Approved or Denied (the operator records decisions); alice tried to change the phase to Executed",
        ),
    ];
    for (editor, old, new, policy, expected) in cases {
        assert_eq!(
            review(old, new, &editor, OPERATOR, policy, Timestamp::now()).unwrap_err(),
            expected
        );
    }

    // Forging a decision in the status is refused, even with a legitimate phase change.
    let mut forged = approve.clone();
    forged.status.as_mut().unwrap().decisions.push(Decision {
        by: "dave".into(),
        groups: vec![],
        decision: DecisionKind::Approve,
        at: Time(Timestamp::now()),
        comment: None,
    });
    let err = review(
        &old,
        &forged,
        &as_user("alice", &groups),
        OPERATOR,
        Some(&p),
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(
        err.ends_with("alice tried to change other status fields"),
        "{err}"
    );

    let decided = request(ApprovalPhase::Denied, &[("dave", DecisionKind::Deny)]);
    let err = review(
        &decided,
        &with_phase(&decided, ApprovalPhase::Approved),
        &as_user("alice", &groups),
        OPERATOR,
        Some(&p),
        Timestamp::now(),
    )
    .unwrap_err();
    assert_eq!(err, "ApprovalRequest orders-ddl-1 is already Denied");
}

#[test]
fn the_requesting_sidecar_marks_an_approved_request_executed_and_nothing_else() {
    let sidecar = "system:serviceaccount:payments:orders-api";
    let none: Vec<String> = vec![];
    let approved = request(ApprovalPhase::Approved, &[("alice", DecisionKind::Approve)]);
    let done = review(
        &approved,
        &with_phase(&approved, ApprovalPhase::Executed),
        &as_user(sidecar, &none),
        OPERATOR,
        Some(&policy(1)),
        Timestamp::now(),
    )
    .unwrap();
    let status = done.status.unwrap();
    assert_eq!(status.phase, ApprovalPhase::Executed);
    assert!(status.executed_at.is_some());
    assert_eq!(status.decisions.len(), 1);

    let pending = request(ApprovalPhase::Pending, &[]);
    let err = review(
        &pending,
        &with_phase(&pending, ApprovalPhase::Approved),
        &as_user(sidecar, &none),
        OPERATOR,
        Some(&policy(1)),
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(err.contains("cannot decide it"), "{err}");
}

#[test]
fn the_operator_passes_unchanged() {
    let old = request(ApprovalPhase::Pending, &[]);
    let none: Vec<String> = vec![];
    let allowed = review(
        &old,
        &with_phase(&old, ApprovalPhase::Expired),
        &as_user(OPERATOR, &none),
        OPERATOR,
        None,
        Timestamp::now(),
    )
    .unwrap();
    assert_eq!(
        allowed,
        Allowed {
            status: None,
            warning: None
        }
    );
}
