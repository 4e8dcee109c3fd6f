//! Shared by the offline tests and the control plane tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cases;
pub mod cluster;
pub mod generate;
pub mod schema;

use dbwarden_crds::validate::{validate_approval_request, validate_policy};
use dbwarden_crds::{ApprovalRequest, DatabaseAccessPolicy};
use serde_json::Value;

/// The Rust side's verdict on an object: serde's error, or the semantic validator's, or `None`.
pub fn rust_refusal(value: &Value) -> Option<String> {
    match value["kind"].as_str() {
        Some("DatabaseAccessPolicy") => {
            match serde_json::from_value::<DatabaseAccessPolicy>(value.clone()) {
                Err(e) => Some(e.to_string()),
                Ok(policy) => validate_policy("test", &policy.spec)
                    .err()
                    .map(|e| e.to_string()),
            }
        }
        Some("ApprovalRequest") => match serde_json::from_value::<ApprovalRequest>(value.clone()) {
            Err(e) => Some(e.to_string()),
            Ok(ar) => validate_approval_request("test", &ar.spec)
                .err()
                .map(|e| e.to_string()),
        },
        other => Some(format!("unknown kind {other:?}")),
    }
}
