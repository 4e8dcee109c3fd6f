//! The table of bad input: each case is a valid object with one mistake, the message the API
//! server answers with (None: the API server accepts it and the semantic validator is the line of
//! defence), and the message the Rust side (serde, or the semantic validator) answers with.

mod approval;
mod schema;
mod semantic;

use serde_json::{Value, json};

/// Which resource a case is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Policy,
    Approval,
}

/// One mistake and its expected refusals.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub kind: Kind,
    /// JSON pointer and new value (`None` removes the field).
    pub edits: Vec<(&'static str, Option<Value>)>,
    /// Substring of the API server's refusal; `None` when the API server accepts the object.
    pub server: Option<&'static str>,
    /// True when only a CEL rule (not the plain schema) refuses it on the server.
    pub cel: bool,
    /// Substring of the Rust-side refusal (serde error or semantic validator).
    pub local: &'static str,
}

/// A valid production policy every policy case starts from.
pub fn base_policy(name: &str) -> Value {
    json!({
        "apiVersion": "dbwarden.io/v1alpha1",
        "kind": "DatabaseAccessPolicy",
        "metadata": {"name": name},
        "spec": {
            "database": {
                "host": "orders-db.payments.svc",
                "name": "orders",
                "environment": "production",
                "credentialsSecretRef": {"name": "orders-db-login"},
                "tls": {"mode": "verifyFull"}
            },
            "workloadSelector": {"matchLabels": {"app": "orders-api"}},
            "identity": {"jwt": {
                "issuer": "https://login.example.com/realms/acme",
                "audiences": ["dbwarden"],
                "jwksUri": "https://login.example.com/realms/acme/certs"
            }},
            "rules": [
                {"name": "developers-read", "subjects": {"groups": ["developers"]}, "operations": ["select"], "tables": ["public.*"]},
                {"name": "api-writes", "subjects": {"serviceAccounts": ["orders-api"]}, "operations": ["select", "insert", "update"]}
            ],
            "masking": {
                "columns": [{"columns": ["public.customers.email"], "strategy": "email"}],
                "detectors": [{"kind": "cardNumber", "strategy": "partial", "partial": {"keepLast": 4}}]
            },
            "approvals": [{
                "name": "risky-changes",
                "when": {"operations": ["delete", "ddl"]},
                "approvers": {"groups": ["dba"]},
                "ttl": "1h"
            }],
            "audit": {"sinkUrl": "https://audit.example.com/v1/events"}
        }
    })
}

/// A valid ApprovalRequest every approval case starts from.
pub fn base_approval(name: &str) -> Value {
    json!({
        "apiVersion": "dbwarden.io/v1alpha1",
        "kind": "ApprovalRequest",
        "metadata": {"name": name},
        "spec": {
            "policy": "orders-production",
            "rule": "risky-changes",
            "database": "orders-db.payments.svc/orders",
            "environment": "production",
            "requester": {"user": "bob@example.com", "groups": ["developers"], "serviceAccount": "payments/orders-api", "pod": "orders-api-7d9f8-x2x9z"},
            "statement": "DELETE FROM public.orders WHERE created_at < ?",
            "fingerprint": "9f2c51d0a7be4c11",
            "operation": "delete",
            "tables": ["public.orders"],
            "reason": "GDPR erasure ticket OPS-1234",
            "expiresAt": "2031-01-01T12:00:00Z"
        }
    })
}

/// Applies a case's edits to its base object.
pub fn object(case: &Case, name: &str) -> Value {
    let mut value = match case.kind {
        Kind::Policy => base_policy(name),
        Kind::Approval => base_approval(name),
    };
    for (pointer, new) in &case.edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        let Some(target) = value.pointer_mut(parent) else {
            panic!("{}: no {parent}", case.name)
        };
        match (target, new) {
            (Value::Object(map), Some(v)) => {
                map.insert(key.to_string(), v.clone());
            }
            (Value::Object(map), None) => {
                map.remove(key);
            }
            (Value::Array(list), Some(v)) => {
                let i: usize = key.parse().unwrap_or(list.len());
                if i < list.len() {
                    list[i] = v.clone()
                } else {
                    list.push(v.clone())
                }
            }
            (Value::Array(list), None) => {
                list.remove(key.parse::<usize>().unwrap_or(0));
            }
            (other, _) => panic!("{}: {parent} is {other}", case.name),
        }
    }
    value
}

pub(super) fn case(
    name: &'static str,
    kind: Kind,
    edits: Vec<(&'static str, Option<Value>)>,
    server: Option<&'static str>,
    local: &'static str,
) -> Case {
    Case {
        name,
        kind,
        edits,
        server,
        cel: false,
        local,
    }
}

pub(super) fn cel(mut c: Case) -> Case {
    c.cel = true;
    c
}

pub(super) fn set(pointer: &'static str, value: Value) -> (&'static str, Option<Value>) {
    (pointer, Some(value))
}

pub(super) fn remove(pointer: &'static str) -> (&'static str, Option<Value>) {
    (pointer, None)
}
/// Every bad-input case.
pub fn cases() -> Vec<Case> {
    let mut all = schema::cases();
    all.extend(semantic::cases());
    all.extend(approval::cases());
    all
}
