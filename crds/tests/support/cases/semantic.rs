//! Mistakes only CEL rules or the semantic validator catch.

use serde_json::json;

use super::{Case, Kind::Policy as P, case, cel, remove, set};

pub(super) fn cases() -> Vec<Case> {
    vec![
        // CEL rules.
        cel(case(
            "rule without subjects",
            P,
            vec![set("/spec/rules/0/subjects", json!({}))],
            Some(
                "spec.rules[0].subjects: Invalid value: \"object\": name at least one subject: users, groups or serviceAccounts",
            ),
            "spec.rules[0].subjects: \"{}\" name at least one subject",
        )),
        cel(case(
            "approval without approvers",
            P,
            vec![set("/spec/approvals/0/approvers", json!({}))],
            Some("name at least one approver: users or groups"),
            "spec.approvals[0].approvers: \"{}\" name at least one approver",
        )),
        cel(case(
            "more approvals than approvers",
            P,
            vec![
                set("/spec/approvals/0/approvers", json!({"users": ["alice"]})),
                set("/spec/approvals/0/requiredApprovals", json!(2)),
            ],
            Some(
                "spec.approvals[0].requiredApprovals: Invalid value: \"object\": requiredApprovals is more than the number of approvers",
            ),
            "spec.approvals[0].requiredApprovals: \"2\" is more than the number of approvers",
        )),
        cel(case(
            "holdTimeout in reject mode",
            P,
            vec![set("/spec/approvals/0/holdTimeout", json!("5m"))],
            Some(
                "spec.approvals[0].holdTimeout: Invalid value: \"object\": holdTimeout is only used with mode: hold",
            ),
            "spec.approvals[0].holdTimeout: \"5m\" is only used with mode: hold",
        )),
        cel(case(
            "both jwksUri and jwks",
            P,
            vec![set(
                "/spec/identity/jwt/jwks",
                json!(r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}"#),
            )],
            Some("set exactly one of jwksUri (keys fetched over HTTPS) or jwks (inline keys)"),
            "set exactly one of jwksUri or jwks, not both",
        )),
        cel(case(
            "neither jwksUri nor jwks",
            P,
            vec![remove("/spec/identity/jwt/jwksUri")],
            Some("set exactly one of jwksUri (keys fetched over HTTPS) or jwks (inline keys)"),
            "set jwksUri (keys fetched over HTTPS) or jwks (inline keys)",
        )),
        cel(case(
            "partial settings with redact",
            P,
            vec![set("/spec/masking/detectors/0/strategy", json!("redact"))],
            Some(
                "spec.masking.detectors[0].partial: Invalid value: \"object\": partial settings are only used with strategy: partial",
            ),
            "spec.masking.detectors[0].partial: \"set\" is only used with strategy: partial",
        )),
        cel(case(
            "hash without key",
            P,
            vec![set("/spec/masking/columns/0/strategy", json!("hash"))],
            Some(
                "spec.masking.hashKeySecretRef: Invalid value: \"object\": strategy hash needs hashKeySecretRef",
            ),
            "spec.masking.hashKeySecretRef: \"\" is required when a mask uses strategy: hash",
        )),
        cel(case(
            "CA with tls require",
            P,
            vec![set(
                "/spec/database/tls",
                json!({"mode": "require", "caSecretRef": {"name": "db-ca", "key": "ca.crt"}}),
            )],
            Some("caSecretRef is only used with mode: verifyFull"),
            "spec.database.tls.caSecretRef: \"db-ca\" is only used with mode: verifyFull",
        )),
        // Only the semantic validator can tell.
        case(
            "table glob with empty part",
            P,
            vec![set("/spec/rules/0/tables", json!(["public..orders"]))],
            None,
            "spec.rules[0].tables[0]: \"public..orders\" is not a table pattern: it has an empty part",
        ),
        case(
            "table glob with semicolon",
            P,
            vec![set("/spec/rules/0/tables", json!(["orders;drop"]))],
            None,
            "spec.rules[0].tables[0]: \"orders;drop\" is not a table pattern: it has ';'",
        ),
        case(
            "column glob without table",
            P,
            vec![set("/spec/masking/columns/0/columns", json!(["email"]))],
            None,
            "spec.masking.columns[0].columns[0]: \"email\" is not a column pattern: it has 1 part(s)",
        ),
        case(
            "partial keeps nothing",
            P,
            vec![set(
                "/spec/masking/detectors/0/partial",
                json!({"keepFirst": 0, "keepLast": 0}),
            )],
            None,
            "spec.masking.detectors[0].partial: \"keepFirst: 0, keepLast: 0\" keeps nothing; use strategy: redact",
        ),
        case(
            "email strategy on phone numbers",
            P,
            vec![set(
                "/spec/masking/detectors/0",
                json!({"kind": "phone", "strategy": "email"}),
            )],
            None,
            "spec.masking.detectors[0].strategy: \"email\" keeps an email address's shape",
        ),
        case(
            "symmetric inline key",
            P,
            vec![
                remove("/spec/identity/jwt/jwksUri"),
                set(
                    "/spec/identity/jwt/jwks",
                    json!(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
                ),
            ],
            None,
            "spec.identity.jwt.jwks: \"{\\\"keys\\\":[{\\\"kty\\\":\\\"oct\\\",\\\"k\\\":\\\"c2VjcmV0\\\"}]}\" has a symmetric key",
        ),
        case(
            "inline keys not JSON",
            P,
            vec![
                remove("/spec/identity/jwt/jwksUri"),
                set("/spec/identity/jwt/jwks", json!("keys: [rsa]")),
            ],
            None,
            "spec.identity.jwt.jwks: \"keys: [rsa]\" is not JSON",
        ),
        case(
            "blocked function with parentheses",
            P,
            vec![set(
                "/spec/guardrails",
                json!({"blockedFunctions": ["pg_sleep()"]}),
            )],
            None,
            "spec.guardrails.blockedFunctions[0]: \"pg_sleep()\" is not a function name",
        ),
        case(
            "host with port",
            P,
            vec![set("/spec/database/host", json!("orders-db:5432"))],
            None,
            "spec.database.host: \"orders-db:5432\" has a port; put it in spec.database.port",
        ),
        case(
            "approval for another environment",
            P,
            vec![set(
                "/spec/approvals/0/when/environments",
                json!(["staging"]),
            )],
            None,
            "spec.approvals[0].when.environments: \"staging\" never matches",
        ),
        case(
            "holdTimeout longer than ttl",
            P,
            vec![
                set("/spec/approvals/0/mode", json!("hold")),
                set("/spec/approvals/0/ttl", json!("10m")),
                set("/spec/approvals/0/holdTimeout", json!("1h")),
            ],
            None,
            "spec.approvals[0].holdTimeout: \"1h\" is longer than ttl 10m",
        ),
        case(
            "service account in token form",
            P,
            vec![set(
                "/spec/rules/1/subjects",
                json!({"serviceAccounts": ["system:serviceaccount:payments:orders-api"]}),
            )],
            None,
            "write namespace/name, not system:serviceaccount:namespace:name",
        ),
    ]
}
