//! Semantic checks of an `ApprovalRequest`.

use std::collections::BTreeSet;

use super::{Report, ValidationError, checks};
use crate::approval::{ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus, DecisionKind};

/// Checks an ApprovalRequest's spec as the sidecar writes it.
pub fn validate_approval_request(
    name: &str,
    spec: &ApprovalRequestSpec,
) -> Result<(), ValidationError> {
    let mut r = Report::default();
    if !checks::dns_subdomain(&spec.policy) {
        r.push(
            "spec.policy",
            &spec.policy,
            "is not a DatabaseAccessPolicy name",
        );
    }
    if !checks::dns_label(&spec.rule) {
        r.push("spec.rule", &spec.rule, "is not an approval rule name");
    }
    if spec.operation.is_group() {
        r.push(
            "spec.operation",
            spec.operation,
            "is a group; a request names the statement's own kind (e.g. delete, create)",
        );
    }
    for (i, table) in spec.tables.iter().enumerate() {
        let qualified = table.split_once('.').is_some_and(|(schema, name)| {
            !schema.is_empty() && !name.is_empty() && !name.contains('.')
        });
        if !qualified || table.contains('*') {
            r.push(
                format!("spec.tables[{i}]"),
                table,
                "must be a schema-qualified table name, e.g. public.orders",
            );
        }
    }
    if spec.statement.trim().is_empty() {
        r.push("spec.statement", &spec.statement, "is blank");
    }
    if let Some(account) = &spec.requester.service_account
        && let Err(reason) = checks::service_account(account)
    {
        r.push("spec.requester.serviceAccount", account, reason);
    }
    r.finish("ApprovalRequest", name.to_string())
}

/// Checks a status change: the phase moves along the state machine (as the CEL rule says), and
/// `approvals` counts distinct approvers; `old` is `None` when the request had no status yet.
pub fn validate_approval_status(
    name: &str,
    old: Option<&ApprovalRequestStatus>,
    new: &ApprovalRequestStatus,
) -> Result<(), ValidationError> {
    let mut r = Report::default();
    let from = old.map(|s| s.phase).unwrap_or_default();
    if !from.can_become(new.phase) {
        r.push(
            "status.phase",
            format!("{:?}", new.phase),
            format!(
                "cannot follow {from:?}; allowed: Pending to Approved, Denied or Expired; Approved to Executed or Expired"
            ),
        );
    }
    let approvers: BTreeSet<&str> = new
        .decisions
        .iter()
        .filter(|d| d.decision == DecisionKind::Approve)
        .map(|d| d.by.as_str())
        .collect();
    if usize::try_from(new.approvals).ok() != Some(approvers.len()) {
        r.push(
            "status.approvals",
            new.approvals,
            format!(
                "does not match the {} distinct approvers in status.decisions",
                approvers.len()
            ),
        );
    }
    if new.phase == ApprovalPhase::Denied
        && !new
            .decisions
            .iter()
            .any(|d| d.decision == DecisionKind::Deny)
    {
        r.push(
            "status.phase",
            "Denied",
            "needs a Deny decision in status.decisions",
        );
    }
    r.finish("ApprovalRequest", name.to_string())
}
