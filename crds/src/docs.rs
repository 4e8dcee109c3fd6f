//! Markdown reference of the resources, written from the CRD schemas (so from the doc comments).

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use serde_json::Value;

/// Renders one section per resource: a table of every field with type, default, an example value
/// (the first one found in `examples`, objects of any kind) and the description with
/// constraints, required fields first at each level.
pub fn markdown(crds: &[CustomResourceDefinition], examples: &[Value]) -> String {
    let mut out = String::new();
    for crd in crds {
        let names = &crd.spec.names;
        let examples: Vec<&Value> = examples
            .iter()
            .filter(|e| e["kind"] == names.kind.as_str())
            .collect();
        let Some(version) = crd.spec.versions.first() else {
            continue;
        };
        let _ = write!(
            out,
            "\n### {} (`{}/{}`)\n\nShort name: `{}`; category: `{}`; {}.\n\n",
            names.kind,
            crd.spec.group,
            version.name,
            names
                .short_names
                .as_deref()
                .unwrap_or_default()
                .join("`, `"),
            names.categories.as_deref().unwrap_or_default().join("`, `"),
            crd.spec.scope.to_lowercase(),
        );
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            continue;
        };
        if let Some(d) = &schema.description {
            let _ = writeln!(out, "{d}\n");
        }
        out.push_str(
            "| Field | Type | Default | Example | Description |\n| --- | --- | --- | --- | --- |\n",
        );
        let required = schema.required.clone().unwrap_or_default();
        for section in ["spec", "status"] {
            if let Some(props) = schema.properties.as_ref().and_then(|p| p.get(section)) {
                let required = required.iter().any(|r| r == section);
                fields(&mut out, &examples, section, props, required);
            }
        }
        rules(&mut out, schema, "");
    }
    out
}

fn fields(
    out: &mut String,
    examples: &[&Value],
    path: &str,
    schema: &JSONSchemaProps,
    required: bool,
) {
    let mut kind = schema.type_.clone().unwrap_or_else(|| "object".into());
    if let Some(items) = schema.items.as_ref().and_then(|i| match i {
        JSONSchemaPropsOrArray::Schema(s) => Some(s),
        _ => None,
    }) {
        kind = format!(
            "[]{}",
            items.type_.clone().unwrap_or_else(|| "object".into())
        );
        if let Some(values) = &items.enum_ {
            kind = format!("[]{}", one_of(values));
        }
    }
    if let Some(values) = &schema.enum_ {
        kind = one_of(values);
    }
    if let Some(format) = schema.format.as_deref().filter(|f| *f == "date-time") {
        kind = format!("{kind} ({format})");
    }
    let mut notes = Vec::new();
    if required {
        notes.push("required".to_string());
    }
    if let (Some(min), Some(max)) = (schema.minimum, schema.maximum) {
        notes.push(format!("{min}..{max}"));
    } else if let Some(min) = schema.minimum {
        notes.push(format!(">= {min}"));
    }
    if let Some(max) = schema.max_length {
        notes.push(format!("max {max} chars"));
    }
    if let Some(max) = schema.max_items {
        notes.push(format!("max {max} items"));
    }
    if let Some(p) = &schema.pattern {
        notes.push(format!("pattern `{p}`"));
    }
    // An object's default is the sum of its fields' defaults, listed on those rows.
    let default = schema
        .default
        .as_ref()
        .filter(|_| schema.type_.as_deref() != Some("object"))
        .map(|d| format!("`{}`", d.0).replace('|', "\\|"))
        .unwrap_or_default();
    let description = schema
        .description
        .clone()
        .unwrap_or_default()
        .replace('\n', " ")
        .replace('|', "\\|");
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" _({})_", notes.join(", "))
    };
    let example = examples
        .iter()
        .find_map(|e| example(e, &path.split('.').collect::<Vec<_>>()))
        .map(|e| format!("`{e}`").replace('|', "\\|"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "| `{path}` | {kind} | {default} | {example} | {description}{notes} |"
    );

    let required_set = schema.required.clone().unwrap_or_default();
    let child = |name: &str| required_set.iter().any(|r| r == name);
    let props = schema.properties.as_ref().or(match &schema.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => s.properties.as_ref(),
        _ => None,
    });
    let is_list = schema.items.is_some();
    // Kubernetes' own types (selectors, conditions, timestamps) are documented upstream.
    if path.ends_with("workloadSelector") || path.ends_with("conditions") {
        return;
    }
    if let Some(props) = props {
        let mut names: Vec<&String> = props.keys().collect();
        names.sort_by_key(|n| (!child(n), n.as_str()));
        let item_required = match &schema.items {
            Some(JSONSchemaPropsOrArray::Schema(s)) => s.required.clone().unwrap_or_default(),
            _ => Vec::new(),
        };
        for name in names {
            let sub = format!("{path}{}.{name}", if is_list { "[]" } else { "" });
            let req = if is_list {
                item_required.contains(name)
            } else {
                child(name)
            };
            fields(out, examples, &sub, &props[name], req);
        }
    }
}

fn one_of(values: &[JSON]) -> String {
    // The statement kinds are many and explained in their own section of the page.
    if values.len() > 12 && values.iter().any(|v| v.0 == "select") {
        return "operation (see [Operations](#operations))".into();
    }
    values
        .iter()
        .map(|v| match &v.0 {
            Value::String(s) => format!("`{s}`"),
            other => format!("`{other}`"),
        })
        .collect::<Vec<_>>()
        .join(" \\| ")
}

fn rules(out: &mut String, schema: &JSONSchemaProps, path: &str) {
    // Collected after the table: the CEL rules with their messages, so readers know what the
    // API server refuses.
    let mut found = Vec::new();
    collect_rules(schema, path, &mut found);
    if found.is_empty() {
        return;
    }
    out.push_str("\nThe API server also refuses (CEL rules):\n\n");
    for (at, message) in found {
        let at = if at.is_empty() {
            "the object".to_string()
        } else {
            format!("`{at}`")
        };
        let _ = writeln!(out, "- at {at}: {message}");
    }
}

fn collect_rules(schema: &JSONSchemaProps, path: &str, found: &mut Vec<(String, String)>) {
    for rule in schema
        .x_kubernetes_validations
        .as_deref()
        .unwrap_or_default()
    {
        let message = match (&rule.message, &rule.message_expression) {
            (Some(message), _) => message.clone(),
            (None, Some(expression)) => literals(expression),
            (None, None) => format!("`{}`", rule.rule),
        };
        found.push((path.to_string(), message));
    }
    if let Some(props) = &schema.properties {
        for (name, sub) in props {
            let sub_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            collect_rules(sub, &sub_path, found);
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(s)) = &schema.items {
        collect_rules(s, &format!("{path}[]"), found);
    }
}

/// The readable part of a CEL message expression: its first and last string literals, with `…`
/// for what is computed between them.
fn literals(expression: &str) -> String {
    let pieces: Vec<&str> = expression.split('\'').collect();
    match (
        pieces.get(1),
        pieces.len().checked_sub(2).and_then(|i| pieces.get(i)),
    ) {
        (Some(first), Some(last)) if pieces.len() > 3 => format!("{} …{}", first.trim_end(), last),
        (Some(only), _) => (*only).to_string(),
        _ => format!("`{expression}`"),
    }
}

/// The value at `path` (`spec`, `rules[]`, `tables`) in `value`, searching every element of lists,
/// rendered compactly; only scalars and lists of scalars, as objects are shown field by field.
fn example(value: &Value, path: &[&str]) -> Option<String> {
    let Some((first, rest)) = path.split_first() else {
        return match value {
            Value::Object(_) => None,
            Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
        .filter(|text| text.chars().count() <= 60);
    };
    match first.strip_suffix("[]") {
        Some(name) => value
            .get(name)?
            .as_array()?
            .iter()
            .find_map(|item| example(item, rest)),
        None => example(value.get(*first)?, rest),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn examples_are_found_in_any_list_element() {
        let object = json!({"spec": {"rules": [
            {"name": "a", "subjects": {"users": ["u"]}},
            {"name": "b", "subjects": {"groups": ["dba", "ops"]}}
        ]}});
        let find = |path: &str| example(&object, &path.split('.').collect::<Vec<_>>());
        assert_eq!(find("spec.rules[].name").as_deref(), Some("a"));
        assert_eq!(
            find("spec.rules[].subjects.groups").as_deref(),
            Some(r#"["dba","ops"]"#)
        );
        assert_eq!(
            find("spec.rules[].subjects"),
            None,
            "objects are shown field by field"
        );
        assert_eq!(find("spec.rules[].action"), None);
    }

    #[test]
    fn the_reference_lists_every_field_with_its_default() {
        let text = markdown(
            &crate::crds()
                .into_iter()
                .map(|(_, crd)| crd)
                .collect::<Vec<_>>(),
            &[],
        );
        assert!(
            text.contains("| `spec.listenPort` | integer | `15432` |"),
            "{text}"
        );
        assert!(text.contains("| `status.phase` |"));
        assert!(
            text.contains("- at `spec`: spec is immutable; create a new ApprovalRequest instead")
        );
        assert!(!text.contains("\n\n\n"));
    }
}
