//! Tests of the generated CustomResourceDefinitions' shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::{ApprovalRequest, DatabaseAccessPolicy};

fn columns(crd: &CustomResourceDefinition) -> Vec<(String, i32)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| (c.name.clone(), c.priority.unwrap_or(0)))
        .collect()
}

#[test]
fn names_scope_and_subresources() {
    for (crd, plural, short) in [
        (DatabaseAccessPolicy::crd(), "databaseaccesspolicies", "dap"),
        (ApprovalRequest::crd(), "approvalrequests", "ar"),
    ] {
        assert_eq!(crd.spec.group, "dbwarden.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["dbwarden".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
}

#[test]
fn printer_columns_put_the_essentials_first() {
    let policy: Vec<_> = columns(&DatabaseAccessPolicy::crd())
        .into_iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0)
        .collect();
    assert_eq!(policy, ["Database", "Environment", "Ready", "Age"]);
    let approval = columns(&ApprovalRequest::crd());
    let narrow: Vec<_> = approval
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(
        narrow,
        ["Phase", "Requester", "Operation", "Database", "Age"]
    );
    let wide: Vec<_> = approval
        .iter()
        .filter(|c| c.1 == 1)
        .map(|c| c.0.as_str())
        .collect();
    assert!(
        wide.contains(&"Policy") && wide.contains(&"Fingerprint"),
        "{wide:?}"
    );
}

/// Walks a schema, calling `f` with each node's path.
fn walk(schema: &JSONSchemaProps, path: &str, f: &mut impl FnMut(&str, &JSONSchemaProps)) {
    f(path, schema);
    for (name, sub) in schema.properties.iter().flatten() {
        walk(sub, &format!("{path}.{name}"), f);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
        &schema.items
    {
        walk(items, &format!("{path}[]"), f);
    }
}

#[test]
fn schemas_are_structural_and_bounded() {
    for crd in [DatabaseAccessPolicy::crd(), ApprovalRequest::crd()] {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        walk(schema, "", &mut |path, node| {
            assert!(
                node.type_.is_some() || node.x_kubernetes_int_or_string.is_some(),
                "{path} has no type"
            );
            assert!(
                node.any_of.is_none() && node.one_of.is_none() && node.all_of.is_none(),
                "{path}"
            );
            // Unbounded lists and strings make the API server's CEL cost estimate explode.
            if node.type_.as_deref() == Some("array") && !path.contains("workloadSelector") {
                assert!(node.max_items.is_some(), "{path} has no maxItems");
            }
            let user_string = path.starts_with(".spec") && !path.contains("workloadSelector");
            if node.type_.as_deref() == Some("string")
                && node.enum_.is_none()
                && node.format.is_none()
                && user_string
            {
                assert!(node.max_length.is_some(), "{path} has no maxLength");
            }
            if !path.is_empty()
                && !path.ends_with("[]")
                && path != ".spec"
                && path != ".status"
                && !path.contains("workloadSelector")
                && !path.contains("conditions")
            {
                assert!(
                    node.description.is_some(),
                    "{path} has no description (kubectl explain shows it)"
                );
            }
        });
    }
}

#[test]
fn the_approval_spec_is_immutable_and_the_phase_guarded() {
    let crd = ApprovalRequest::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    let spec = &schema.properties.as_ref().unwrap()["spec"];
    let rules = spec.x_kubernetes_validations.as_ref().unwrap();
    assert!(rules.iter().any(|r| r.rule == "self == oldSelf"));
    let root = schema.x_kubernetes_validations.as_ref().unwrap();
    assert!(root.iter().any(|r| r.rule.contains("oldSelf.status.phase")
        && r.field_path.as_deref() == Some(".status.phase")));
}

#[test]
fn committed_yaml_is_current() {
    // The same check as `crdgen --check`, so `cargo test` alone catches a forgotten regeneration.
    for (file, crd) in crate::crds() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let committed: CustomResourceDefinition = serde_yaml::from_str(&committed).unwrap();
        assert_eq!(
            committed, crd,
            "{file} is stale: run `cargo run -p dbwarden-crds --bin crdgen`"
        );
    }
}
