//! Who may change an ApprovalRequest's status, and how a decision is recorded: the pure logic
//! of the mutating webhook on `approvalrequests/status`.
//!
//! A person decides by setting `status.phase` to `Approved` or `Denied` on a `Pending` request
//! and changing nothing else. The webhook then refuses the requester (four eyes) and anyone the
//! approval rule does not name, and otherwise rewrites the status itself: it appends the
//! decision stamped with the editor's authenticated name and groups (which the editor cannot
//! forge), counts distinct approvers, and keeps the phase `Pending` until `requiredApprovals`
//! is reached. One denial decides.
//!
//! Besides people, two actors write the status: the operator (expiry, conditions) and the
//! requesting workload's sidecar, which may only mark an `Approved` request `Executed`.

use dbwarden_crds::{
    ApprovalPhase, ApprovalRequest, ApprovalRequestStatus, DatabaseAccessPolicy, Decision,
    DecisionKind,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// The authenticated editor, from the AdmissionReview's `userInfo`.
#[derive(Debug, Clone)]
pub struct Editor<'a> {
    /// `userInfo.username`.
    pub username: &'a str,
    /// `userInfo.groups`.
    pub groups: &'a [String],
}

/// The webhook's answer to an allowed change.
#[derive(Debug, PartialEq)]
pub struct Allowed {
    /// The status to store instead of the one sent, when the webhook rewrites it.
    pub status: Option<ApprovalRequestStatus>,
    /// A note for the editor, shown by kubectl.
    pub warning: Option<String>,
}

impl Allowed {
    fn unchanged() -> Self {
        Self {
            status: None,
            warning: None,
        }
    }
}

/// Reviews the change from `old` to `new` by `editor`. `operator` is the operator's own user
/// name; `policy` is the policy named in the request's spec, if it still exists.
pub fn review(
    old: &ApprovalRequest,
    new: &ApprovalRequest,
    editor: &Editor<'_>,
    operator: &str,
    policy: Option<&DatabaseAccessPolicy>,
    now: Timestamp,
) -> Result<Allowed, String> {
    if editor.username == operator {
        return Ok(Allowed::unchanged());
    }
    let before = old.status.clone().unwrap_or_default();
    let after = new.status.clone().unwrap_or_default();
    let name = old.name_any();
    let namespace = old.namespace().unwrap_or_default();
    let spec = &old.spec;
    // The requesting pod's ServiceAccount (`namespace/name`), as the API server names it.
    let sidecar = spec
        .requester
        .service_account
        .as_ref()
        .map(|sa| format!("system:serviceaccount:{}", sa.replacen('/', ":", 1)));

    if sidecar.as_deref() == Some(editor.username) && after.phase == ApprovalPhase::Executed {
        if before.phase != ApprovalPhase::Approved {
            return Err(format!(
                "ApprovalRequest {name} is {:?}, not Approved; it cannot be executed",
                before.phase
            ));
        }
        let executed = ApprovalRequestStatus {
            phase: ApprovalPhase::Executed,
            executed_at: Some(Time(now)),
            ..before
        };
        return Ok(Allowed {
            status: Some(executed),
            warning: None,
        });
    }

    // A person: only a phase change to Approved or Denied, nothing else.
    let others_changed = ApprovalRequestStatus {
        phase: before.phase,
        ..after.clone()
    } != before;
    if others_changed || !matches!(after.phase, ApprovalPhase::Approved | ApprovalPhase::Denied) {
        return Err(format!(
            "only status.phase may be changed, to Approved or Denied (the operator records decisions); {} tried to change {}",
            editor.username,
            if others_changed {
                "other status fields".to_string()
            } else {
                format!("the phase to {:?}", after.phase)
            }
        ));
    }
    if before.phase != ApprovalPhase::Pending {
        return Err(format!(
            "ApprovalRequest {name} is already {:?}",
            before.phase
        ));
    }
    if editor.username == spec.requester.user || sidecar.as_deref() == Some(editor.username) {
        return Err(format!(
            "{} requested this statement and cannot decide it: someone else must (four eyes)",
            editor.username
        ));
    }
    let rule = policy.and_then(|p| p.spec.approvals.iter().find(|r| r.name == spec.rule)).ok_or_else(|| {
        format!(
            "policy {namespace}/{} has no approval rule {:?} any more, so nobody can approve this request",
            spec.policy, spec.rule
        )
    })?;
    let named = rule.approvers.users.iter().any(|u| u == editor.username)
        || rule
            .approvers
            .groups
            .iter()
            .any(|g| editor.groups.contains(g));
    if !named {
        return Err(format!(
            "{} is not an approver for rule {:?} of policy {}/{} (approvers: users {:?}, groups {:?})",
            editor.username,
            rule.name,
            namespace,
            spec.policy,
            rule.approvers.users,
            rule.approvers.groups
        ));
    }

    let mut status = before;
    let kind = if after.phase == ApprovalPhase::Denied {
        DecisionKind::Deny
    } else {
        DecisionKind::Approve
    };
    if kind == DecisionKind::Approve
        && status
            .decisions
            .iter()
            .any(|d| d.by == editor.username && d.decision == DecisionKind::Approve)
    {
        return Err(format!(
            "{} already approved; {} of {} approvals, another approver must approve",
            editor.username, status.approvals, rule.required_approvals
        ));
    }
    status.decisions.push(Decision {
        by: editor.username.to_string(),
        groups: editor.groups.to_vec(),
        decision: kind,
        at: Time(now),
        comment: None,
    });
    let mut approvers: Vec<&str> = status
        .decisions
        .iter()
        .filter(|d| d.decision == DecisionKind::Approve)
        .map(|d| d.by.as_str())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    status.approvals = i32::try_from(approvers.len()).unwrap_or(i32::MAX);
    let warning;
    (status.phase, warning) = match kind {
        DecisionKind::Deny => (ApprovalPhase::Denied, None),
        DecisionKind::Approve if status.approvals >= rule.required_approvals => {
            (ApprovalPhase::Approved, None)
        }
        DecisionKind::Approve => (
            ApprovalPhase::Pending,
            Some(format!(
                "approval recorded ({} of {}); the request stays Pending until another approver approves",
                status.approvals, rule.required_approvals
            )),
        ),
    };
    Ok(Allowed {
        status: Some(status),
        warning,
    })
}

#[cfg(test)]
mod tests;
