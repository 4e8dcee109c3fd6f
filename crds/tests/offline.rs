//! The bad-input table and property tests, without an API server: serde, the semantic validator
//! and the generated schema (checked by `support::schema`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dbwarden_crds::validate::{
    validate_approval_request, validate_approval_status, validate_policy,
};
use dbwarden_crds::{
    ApprovalRequest, ApprovalRequestSpec, DatabaseAccessPolicy, DatabaseAccessPolicySpec,
};
use kube::CustomResourceExt;
use support::cases::{self, Kind};
use support::{generate, rust_refusal, schema};

#[test]
fn the_table_has_enough_cases_with_unique_names() {
    let all = cases::cases();
    assert!(all.len() >= 25, "only {} cases", all.len());
    let mut names: Vec<_> = all.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "case names must be unique");
}

#[test]
fn base_objects_are_valid_everywhere() {
    for base in [cases::base_policy("base"), cases::base_approval("base")] {
        assert_eq!(rust_refusal(&base), None);
        let crd_schema = match base["kind"].as_str() {
            Some("DatabaseAccessPolicy") => schema::crd_schema(&DatabaseAccessPolicy::crd()),
            _ => schema::crd_schema(&ApprovalRequest::crd()),
        };
        assert_eq!(schema::check(&crd_schema, &base), Vec::<String>::new());
    }
}

#[test]
fn every_bad_input_is_refused_by_the_rust_side_with_its_message() {
    let mut failures = Vec::new();
    for case in cases::cases() {
        let object = cases::object(&case, "bad");
        match rust_refusal(&object) {
            Some(message) if message.contains(case.local) => {}
            Some(message) => failures.push(format!(
                "{}: expected {:?} in\n    {message}",
                case.name, case.local
            )),
            None => failures.push(format!("{}: accepted", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn schema_refusals_are_seen_by_the_schema_checker_too() {
    // Cases the API server refuses by plain schema (not CEL) must fail the local schema check,
    // so the checker used by the property tests is not blind to what the server enforces.
    let policy = schema::crd_schema(&DatabaseAccessPolicy::crd());
    let approval = schema::crd_schema(&ApprovalRequest::crd());
    let mut failures = Vec::new();
    for case in cases::cases() {
        let object = cases::object(&case, "bad");
        let crd_schema = if case.kind == Kind::Policy {
            &policy
        } else {
            &approval
        };
        let errors = schema::check(crd_schema, &object);
        match (case.server, case.cel) {
            (Some(_), false) if errors.is_empty() => {
                failures.push(format!("{}: schema accepted it", case.name))
            }
            (None, _) | (Some(_), true) if !errors.is_empty() => {
                failures.push(format!("{}: schema refused it: {errors:?}", case.name))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn generated_policies_fit_the_schema_validator_and_round_trip() {
    let crd_schema = schema::crd_schema(&DatabaseAccessPolicy::crd());
    for seed in 0..500 {
        let mut rng = generate::Rng::new(seed);
        let spec = generate::policy(&mut rng);
        let object = DatabaseAccessPolicy::new("generated", spec.clone());
        let json = serde_json::to_value(&object).unwrap();
        let errors = schema::check(&crd_schema, &json);
        assert!(
            errors.is_empty(),
            "seed {seed}: schema refused {json}:\n{errors:#?}"
        );
        validate_policy("generated", &spec).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let back: DatabaseAccessPolicySpec = serde_json::from_value(json["spec"].clone()).unwrap();
        assert_eq!(back, spec, "seed {seed}: JSON round trip changed the spec");
        let yaml = serde_yaml::to_string(&spec).unwrap();
        let back: DatabaseAccessPolicySpec = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, spec, "seed {seed}: YAML round trip changed the spec");
    }
}

#[test]
fn generated_approval_requests_fit_the_schema_validator_and_round_trip() {
    let crd_schema = schema::crd_schema(&ApprovalRequest::crd());
    for seed in 0..500 {
        let mut rng = generate::Rng::new(seed);
        let mut object = ApprovalRequest::new("generated", generate::approval(&mut rng));
        let status = generate::approval_status(&mut rng);
        validate_approval_status("generated", None, &status)
            .or_else(|_| {
                validate_approval_status(
                    "generated",
                    Some(&pending_then_approved(&status)),
                    &status,
                )
            })
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        object.status = Some(status);
        let json = serde_json::to_value(&object).unwrap();
        let errors = schema::check(&crd_schema, &json);
        assert!(
            errors.is_empty(),
            "seed {seed}: schema refused {json}:\n{errors:#?}"
        );
        validate_approval_request("generated", &object.spec)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let back: ApprovalRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.spec, object.spec, "seed {seed}");
        assert_eq!(back.status, object.status, "seed {seed}");
    }
}

/// The status an `Executed` request had just before: `Approved`.
fn pending_then_approved(
    status: &dbwarden_crds::ApprovalRequestStatus,
) -> dbwarden_crds::ApprovalRequestStatus {
    dbwarden_crds::ApprovalRequestStatus {
        phase: dbwarden_crds::ApprovalPhase::Approved,
        ..status.clone()
    }
}

#[test]
fn defaults_in_the_schema_equal_serde_defaults() {
    // What the API server fills in must be what serde fills in, or objects read back differ from
    // what the sidecar parsed from a file.
    let minimal = serde_json::json!({
        "database": {"host": "db", "name": "app", "environment": "dev", "credentialsSecretRef": {"name": "s"}},
        "workloadSelector": {},
        "rules": [{"name": "r", "subjects": {"users": ["u"]}, "operations": ["select"]}],
        "approvals": [{"name": "a", "when": {"operations": ["delete"]}, "approvers": {"groups": ["dba"]}}]
    });
    let spec: DatabaseAccessPolicySpec = serde_json::from_value(minimal).unwrap();
    let filled = serde_json::to_value(&spec).unwrap();
    let crd_schema = schema::crd_schema(&DatabaseAccessPolicy::crd());
    let spec_schema = &crd_schema["properties"]["spec"];
    let default_of = |path: &[&str]| {
        let mut s = spec_schema;
        for p in path {
            s = if *p == "[]" {
                &s["items"]
            } else {
                &s["properties"][*p]
            };
        }
        s["default"].clone()
    };
    assert_eq!(default_of(&["listenPort"]), filled["listenPort"]);
    assert_eq!(default_of(&["guardrails"]), filled["guardrails"]);
    assert_eq!(
        default_of(&["database", "port"]),
        filled["database"]["port"]
    );
    assert_eq!(default_of(&["database", "tls"]), filled["database"]["tls"]);
    assert_eq!(
        default_of(&["database", "engine"]),
        filled["database"]["engine"]
    );
    assert_eq!(
        default_of(&["rules", "[]", "tables"]),
        filled["rules"][0]["tables"]
    );
    assert_eq!(
        default_of(&["rules", "[]", "action"]),
        filled["rules"][0]["action"]
    );
    assert_eq!(
        default_of(&["approvals", "[]", "ttl"]),
        filled["approvals"][0]["ttl"]
    );
    assert_eq!(
        default_of(&["approvals", "[]", "mode"]),
        filled["approvals"][0]["mode"]
    );
    assert_eq!(
        default_of(&["approvals", "[]", "requiredApprovals"]),
        filled["approvals"][0]["requiredApprovals"]
    );
    assert_eq!(filled["listenPort"], 15432);
    assert_eq!(filled["guardrails"]["blockDrop"], true);
    assert_eq!(filled["guardrails"]["unparseable"], "deny");
    assert_eq!(filled["database"]["tls"]["mode"], "verifyFull");
}

#[test]
fn examples_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut policies = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            if value["kind"] == "DatabaseAccessPolicy" {
                policies += 1;
                assert_eq!(rust_refusal(&value), None, "{}", path.display());
                let errors =
                    schema::check(&schema::crd_schema(&DatabaseAccessPolicy::crd()), &value);
                assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            }
        }
    }
    assert!(
        policies >= 2,
        "found {policies} policies in {}",
        dir.display()
    );
}

#[test]
fn an_approval_spec_parses_from_the_sidecar_shape() {
    let spec: ApprovalRequestSpec =
        serde_json::from_value(cases::base_approval("x")["spec"].clone()).unwrap();
    assert_eq!(spec.operation, dbwarden_crds::Operation::Delete);
}
