//! Mistakes in ApprovalRequests (creation; updates are in the control plane tests).

use serde_json::json;

use super::{Case, Kind::Approval as A, case, remove, set};

pub(super) fn cases() -> Vec<Case> {
    vec![
        // ApprovalRequests.
        case(
            "approval without fingerprint",
            A,
            vec![remove("/spec/fingerprint")],
            Some("spec.fingerprint: Required value"),
            "missing field `fingerprint`",
        ),
        case(
            "approval with unknown phase field",
            A,
            vec![set("/spec/approved", json!(true))],
            Some(r#"unknown field "spec.approved""#),
            "unknown field `approved`",
        ),
        case(
            "approval operation misspelled",
            A,
            vec![set("/spec/operation", json!("remove"))],
            Some(r#"spec.operation: Unsupported value: "remove""#),
            "unknown variant `remove`",
        ),
        case(
            "approval for a group operation",
            A,
            vec![set("/spec/operation", json!("ddl"))],
            None,
            "spec.operation: \"ddl\" is a group",
        ),
        case(
            "approval with unqualified table",
            A,
            vec![set("/spec/tables", json!(["orders"]))],
            None,
            "spec.tables[0]: \"orders\" must be a schema-qualified table name",
        ),
    ]
}
