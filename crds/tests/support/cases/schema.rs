//! Mistakes the OpenAPI schema catches: missing fields, enum values, types, unknown fields, ranges, patterns.

use serde_json::json;

use super::{Case, Kind::Policy as P, case, remove, set};

pub(super) fn cases() -> Vec<Case> {
    vec![
        // Missing fields.
        case(
            "missing host",
            P,
            vec![remove("/spec/database/host")],
            Some("spec.database.host: Required value"),
            "missing field `host`",
        ),
        case(
            "missing workloadSelector",
            P,
            vec![remove("/spec/workloadSelector")],
            Some("spec.workloadSelector: Required value"),
            "missing field `workloadSelector`",
        ),
        case(
            "missing credentials",
            P,
            vec![remove("/spec/database/credentialsSecretRef")],
            Some("spec.database.credentialsSecretRef: Required value"),
            "missing field `credentialsSecretRef`",
        ),
        case(
            "rule without operations",
            P,
            vec![remove("/spec/rules/0/operations")],
            Some("spec.rules[0].operations: Required value"),
            "missing field `operations`",
        ),
        // Wrong enum values.
        case(
            "tls mode spelled like libpq",
            P,
            vec![set("/spec/database/tls/mode", json!("verify-full"))],
            Some(r#"spec.database.tls.mode: Unsupported value: "verify-full""#),
            "unknown variant `verify-full`",
        ),
        case(
            "unknown engine",
            P,
            vec![set("/spec/database/engine", json!("oracle"))],
            Some(r#"Unsupported value: "oracle""#),
            "unknown variant `oracle`",
        ),
        case(
            "misspelled operation",
            P,
            vec![set("/spec/rules/0/operations", json!(["selct"]))],
            Some(r#"spec.rules[0].operations[0]: Unsupported value: "selct""#),
            "unknown variant `selct`",
        ),
        case(
            "action permit",
            P,
            vec![set("/spec/rules/0/action", json!("permit"))],
            Some(r#"Unsupported value: "permit""#),
            "unknown variant `permit`",
        ),
        case(
            "masking strategy scramble",
            P,
            vec![set("/spec/masking/columns/0/strategy", json!("scramble"))],
            Some(r#"Unsupported value: "scramble""#),
            "unknown variant `scramble`",
        ),
        case(
            "detector creditCard",
            P,
            vec![set("/spec/masking/detectors/0/kind", json!("creditCard"))],
            Some(r#"Unsupported value: "creditCard""#),
            "unknown variant `creditCard`",
        ),
        case(
            "approval mode wait",
            P,
            vec![set("/spec/approvals/0/mode", json!("wait"))],
            Some(r#"Unsupported value: "wait""#),
            "unknown variant `wait`",
        ),
        case(
            "audit statementText partial",
            P,
            vec![set("/spec/audit/statementText", json!("partial"))],
            Some(r#"Unsupported value: "partial""#),
            "unknown variant `partial`",
        ),
        case(
            "onMaxRows drop",
            P,
            vec![set(
                "/spec/guardrails",
                json!({"maxRows": 100, "onMaxRows": "drop"}),
            )],
            Some(r#"Unsupported value: "drop""#),
            "unknown variant `drop`",
        ),
        // Wrong types and unknown fields.
        case(
            "boolean as string",
            P,
            vec![set("/spec/guardrails", json!({"blockDdl": "yes"}))],
            Some("spec.guardrails.blockDdl: Invalid value: \"string\""),
            "invalid type: string \"yes\", expected a boolean",
        ),
        case(
            "unknown field in database",
            P,
            vec![set("/spec/database/hostname", json!("db"))],
            Some(r#"unknown field "spec.database.hostname""#),
            "unknown field `hostname`",
        ),
        case(
            "unknown field in a rule",
            P,
            vec![set("/spec/rules/0/verbs", json!(["get"]))],
            Some(r#"unknown field "spec.rules[0].verbs""#),
            "unknown field `verbs`",
        ),
        // Ranges and patterns.
        case(
            "database port 0",
            P,
            vec![set("/spec/database/port", json!(0))],
            Some(
                "spec.database.port: Invalid value: 0: spec.database.port in body should be greater than or equal to 1",
            ),
            "spec.database.port: \"0\" must be a port from 1 to 65535",
        ),
        case(
            "listen port too high",
            P,
            vec![set("/spec/listenPort", json!(70000))],
            Some("should be less than or equal to 65535"),
            "spec.listenPort: \"70000\" must be a port from 1 to 65535",
        ),
        case(
            "environment with capitals",
            P,
            vec![set("/spec/database/environment", json!("Production"))],
            Some("spec.database.environment in body should match"),
            "must be a lower-case DNS label",
        ),
        case(
            "rule name with spaces",
            P,
            vec![set("/spec/rules/0/name", json!("Developers read"))],
            Some("spec.rules[0].name in body should match"),
            "spec.rules[0].name: \"Developers read\" must be a lower-case DNS label",
        ),
        case(
            "duplicate rule names",
            P,
            vec![set("/spec/rules/1/name", json!("developers-read"))],
            Some("spec.rules[1]: Duplicate value"),
            "spec.rules[1].name: \"developers-read\" is used by an earlier entry",
        ),
        case(
            "maxRows 0",
            P,
            vec![set("/spec/guardrails", json!({"maxRows": 0}))],
            Some("spec.guardrails.maxRows in body should be greater than or equal to 1"),
            "spec.guardrails.maxRows: \"0\" must be at least 1",
        ),
        case(
            "requiredApprovals 0",
            P,
            vec![set("/spec/approvals/0/requiredApprovals", json!(0))],
            Some(
                "spec.approvals[0].requiredApprovals in body should be greater than or equal to 1",
            ),
            "spec.approvals[0].requiredApprovals: \"0\" must be at least 1",
        ),
        case(
            "negative ttl",
            P,
            vec![set("/spec/approvals/0/ttl", json!("-1h"))],
            Some("spec.approvals[0].ttl in body should match"),
            "spec.approvals[0].ttl: \"-1h\" is not a duration: it has '-'",
        ),
        case(
            "fractional ttl",
            P,
            vec![set("/spec/approvals/0/ttl", json!("1.5h"))],
            Some("spec.approvals[0].ttl in body should match"),
            "spec.approvals[0].ttl: \"1.5h\" is not a duration: it has '.'",
        ),
        case(
            "ttl units out of order",
            P,
            vec![set("/spec/approvals/0/ttl", json!("30m1h"))],
            Some("spec.approvals[0].ttl in body should match"),
            "has the unit 'h' out of order",
        ),
        case(
            "zero ttl",
            P,
            vec![set("/spec/approvals/0/ttl", json!("0s"))],
            None,
            "spec.approvals[0].ttl: \"0s\" is not a duration: it is zero",
        ),
        case(
            "issuer over http",
            P,
            vec![set(
                "/spec/identity/jwt/issuer",
                json!("http://login.example.com"),
            )],
            Some("spec.identity.jwt.issuer in body should match '^https://'"),
            "spec.identity.jwt.issuer: \"http://login.example.com\" must use https://",
        ),
        case(
            "audit sink ftp",
            P,
            vec![set("/spec/audit/sinkUrl", json!("ftp://audit.example.com"))],
            Some("spec.audit.sinkUrl in body should match"),
            "is not a URL starting with http:// or https://",
        ),
    ]
}
