//! A focused checker for the OpenAPI v3 subset Kubernetes structural schemas use, to run many
//! values through the generated CRD schema without an API server (the CEL rules are left to the
//! API server tests).

use std::collections::BTreeSet;

use serde_json::Value;

/// Validates `value` against `schema`; returns every violation as `path: message`.
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, value, "", &mut errors);
    errors
}

/// The `openAPIV3Schema` of a CRD's first version, as JSON.
pub fn crd_schema(crd: &impl serde::Serialize) -> Value {
    let crd = serde_json::to_value(crd).unwrap_or_default();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn walk(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let flag = |name: &str| schema.get(name).and_then(Value::as_bool).unwrap_or(false);
    if value.is_null() {
        if !flag("nullable") {
            errors.push(format!("{path}: must not be null"));
        }
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        errors.push(format!("{path}: Unsupported value: {value}"));
    }
    if flag("x-kubernetes-int-or-string") {
        if !(value.is_i64() || value.is_string()) {
            errors.push(format!("{path}: must be an integer or a string"));
        }
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => object(schema, value, path, errors),
        Some("array") => array(schema, value, path, errors),
        Some("string") => string(schema, value, path, errors),
        Some("integer") => number(schema, value, path, errors, true),
        Some("number") => number(schema, value, path, errors, false),
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: must be a boolean")),
        Some("boolean") => {}
        Some(other) => errors.push(format!("{path}: schema has unknown type {other}")),
        None if flag("x-kubernetes-preserve-unknown-fields") => {}
        None => errors.push(format!("{path}: schema has no type (not structural)")),
    }
}

fn object(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        errors.push(format!("{path}: must be an object"));
        return;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = required.as_str()
            && !map.contains_key(name)
        {
            errors.push(format!("{path}.{name}: Required value"));
        }
    }
    for (key, field) in map {
        let sub = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(s), _) | (None, Some(s)) => walk(s, field, &sub, errors),
            (None, None)
                if preserve
                    || (path.is_empty()
                        && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")) => {}
            (None, None) => errors.push(format!("{sub}: unknown field")),
        }
    }
}

fn array(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(items) = value.as_array() else {
        errors.push(format!("{path}: must be an array"));
        return;
    };
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        errors.push(format!("{path}: Too many: {} (max {max})", items.len()));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        errors.push(format!("{path}: needs at least {min} item(s)"));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let unique: BTreeSet<String> = items.iter().map(Value::to_string).collect();
            if unique.len() != items.len() {
                errors.push(format!("{path}: Duplicate value"));
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let unique: BTreeSet<String> = items
                .iter()
                .map(|i| {
                    keys.iter()
                        .map(|k| i[*k].to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect();
            if unique.len() != items.len() {
                errors.push(format!("{path}: Duplicate value"));
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn string(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(text) = value.as_str() else {
        errors.push(format!("{path}: must be a string"));
        return;
    };
    let length = text.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        errors.push(format!(
            "{path}: Too long: may not be more than {max} bytes"
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        errors.push(format!("{path}: should be at least {min} chars long"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(text) => {
                errors.push(format!("{path}: should match '{pattern}'"))
            }
            Ok(_) => {}
            Err(e) => errors.push(format!("{path}: bad pattern {pattern}: {e}")),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>(
            value.clone(),
        )
        .is_err()
    {
        errors.push(format!("{path}: not an RFC 3339 date-time"));
    }
}

fn number(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>, integer: bool) {
    let Some(n) = value.as_f64() else {
        errors.push(format!("{path}: must be a number"));
        return;
    };
    if integer && !(value.is_i64() || value.is_u64()) {
        errors.push(format!("{path}: must be an integer"));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        errors.push(format!("{path}: should be greater than or equal to {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        errors.push(format!("{path}: should be less than or equal to {max}"));
    }
}
