//! Generated events against the checked-in JSON Schema (docs/audit-event.schema.json), and the
//! docs naming every field.
//!
//! A focused validator for the keywords that schema uses (type, const, enum, pattern, minimum,
//! minItems, required, properties, additionalProperties: false, items, local $ref) instead of
//! the `jsonschema` crate, whose dependency tree costs more to build on CI than this file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use dbwarden_audit::{Approval, ApprovalPhase, Chain, Event, Kind, StatementText};
use regex::Regex;
use serde_json::Value;

fn schema() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/audit-event.schema.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").unwrap();
        return check(root, &root["$defs"][name], v, path, errors);
    }
    let mut fail = |what: String| errors.push(format!("{path}: {what}"));
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            other => panic!("type {other} not supported by this check"),
        };
        if !ok {
            return fail(format!("want {t}, got {v}"));
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        fail(format!("want {c}, got {v}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        fail(format!("{v} not in {e:?}"));
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str())
        && !Regex::new(p).unwrap().is_match(s)
    {
        fail(format!("{s:?} does not match {p}"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_i64), v.as_i64())
        && n < min
    {
        fail(format!("{n} < {min}"));
    }
    if let (Some(min), Some(a)) = (schema.get("minItems").and_then(Value::as_u64), v.as_array())
        && (a.len() as u64) < min
    {
        fail(format!("fewer than {min} items"));
    }
    if let Some(items) = schema.get("items") {
        for (i, item) in v.as_array().into_iter().flatten().enumerate() {
            check(root, items, item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(req.as_str().unwrap()) {
                errors.push(format!("{path}: missing {req}"));
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(root, s, val, &format!("{path}.{k}"), errors),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{path}: unexpected {k}"));
                }
                None => {}
            }
        }
    }
}

fn validate(v: &Value) -> Vec<String> {
    let root = schema();
    let mut errors = Vec::new();
    check(&root, &root, v, "$", &mut errors);
    errors
}

fn every_kind_of_event() -> Vec<Value> {
    let mut chain = Chain::new("reporting-7d9f-abcde.4c1f");
    let events = vec![
        Event::new(Kind::ConnectionOpen)
            .identity(common::statement(0).identity)
            .database("shop")
            .connection(1)
            .peer("127.0.0.1:50312"),
        common::statement(1),
        common::statement(2)
            .statement(StatementText::None, "x", "y")
            .error("permission denied by rule analysts-read"),
        Event::new(Kind::StatementResult)
            .identity(common::statement(0).identity)
            .database("shop")
            .connection(1)
            .statement_id("reporting-7d9f-abcde.4c1f-1")
            .decision(dbwarden_audit::Decision::Masked, None)
            .rows(3)
            .masked(vec!["public.users.email".into()], 3)
            .durations(Some(412), None),
        Event::new(Kind::StatementResult)
            .connection(1)
            .statement_id("reporting-7d9f-abcde.4c1f-2")
            .decision(dbwarden_audit::Decision::Allowed, None)
            .sqlstate("23505"),
        Event::new(Kind::AuthFailure).error("token expired"),
        Event::new(Kind::ApprovalRequested).approval(Approval {
            request: "drop-orders-x7k2".into(),
            phase: ApprovalPhase::Pending,
            decided_by: None,
        }),
        Event::new(Kind::ApprovalDecided).approval(Approval {
            request: "drop-orders-x7k2".into(),
            phase: ApprovalPhase::Approved,
            decided_by: Some("bob@example.com".into()),
        }),
        Event::new(Kind::ConnectionClose)
            .connection(1)
            .reason("client_closed")
            .session_duration(1_250_000),
    ];
    events
        .into_iter()
        .map(|e| serde_json::from_slice(&chain.stamp(e).unwrap().line).unwrap())
        .collect()
}

#[test]
fn generated_events_match_the_schema() {
    for ev in every_kind_of_event() {
        assert_eq!(validate(&ev), Vec::<String>::new(), "{ev}");
    }
}

#[test]
fn the_check_rejects_what_the_schema_forbids() {
    let mut ev = every_kind_of_event().remove(1);
    ev["kind"] = "statement.maybe".into();
    ev["seq"] = (-1).into();
    ev["prev_hash"] = "ABC".into();
    ev["surprise"] = true.into();
    ev.as_object_mut().unwrap().remove("identity");
    let errors = validate(&ev);
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

#[test]
fn docs_describe_every_schema_field() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit.md")).unwrap();
    let root = schema();
    let mut names: Vec<String> = root["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for nested in ["identity", "masked", "durations", "approval"] {
        for k in root["properties"][nested]["properties"]
            .as_object()
            .unwrap()
            .keys()
        {
            names.push(format!("{nested}.{k}"));
        }
    }
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/audit.md does not describe `{name}`"
        );
    }
}
