//! OTLP/HTTP logs, JSON encoding: an `ExportLogsServiceRequest` with one `resourceLogs` entry
//! per instance and one `logRecord` per event.
//!
//! Follows the OTLP JSON rules: lowerCamelCase field names, 64-bit integers (`timeUnixNano`,
//! `intValue`) as decimal strings, enums (`severityNumber`) as numbers. The record `body` is
//! the event line as chained (a string), so the collector can still verify the chain byte for
//! byte; the attributes repeat the fields one filters on (`dbwarden.audit.*`).

use serde_json::{Value, json};

use crate::clock;

/// Errors encoding a batch.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// A spool record is not an event object.
    #[error("spool record is not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
}

fn string_attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn int_attr(key: &str, value: u64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

/// Encodes event lines as one OTLP logs request body.
pub fn encode<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, OtlpError> {
    let observed = clock::now_unix_nanos().to_string();
    // Group by instance, keeping order within each.
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for raw in records {
        let event: Value = serde_json::from_slice(raw)?;
        let text = String::from_utf8_lossy(raw);
        let s = |k: &str| {
            event
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let instance = s("instance");
        let time = event
            .get("time")
            .and_then(Value::as_str)
            .and_then(clock::parse_rfc3339_nanos)
            .map(|n| n.to_string())
            .unwrap_or_else(|| observed.clone());
        let denied = matches!(s("decision").as_str(), "denied" | "would_deny")
            || event.get("error").is_some();
        let auth_failure = s("kind") == "auth.failure";
        let (severity_number, severity_text) = if denied || auth_failure {
            (13, "WARN")
        } else {
            (9, "INFO")
        };
        let mut attributes = vec![
            string_attr("event.name", &format!("dbwarden.audit.{}", s("kind"))),
            string_attr("dbwarden.audit.id", &s("id")),
            string_attr("dbwarden.audit.kind", &s("kind")),
            int_attr(
                "dbwarden.audit.seq",
                event.get("seq").and_then(Value::as_u64).unwrap_or_default(),
            ),
            string_attr("dbwarden.audit.hash", &s("hash")),
        ];
        for key in ["decision", "rule", "operation", "database"] {
            if let Some(v) = event.get(key).and_then(Value::as_str) {
                attributes.push(string_attr(&format!("dbwarden.audit.{key}"), v));
            }
        }
        if let Some(identity) = event.get("identity") {
            for key in ["user", "service_account", "pod", "namespace"] {
                if let Some(v) = identity.get(key).and_then(Value::as_str) {
                    attributes.push(string_attr(&format!("dbwarden.audit.identity.{key}"), v));
                }
            }
        }
        let record = json!({
            "timeUnixNano": time,
            "observedTimeUnixNano": observed,
            "severityNumber": severity_number,
            "severityText": severity_text,
            "body": { "stringValue": text },
            "attributes": attributes,
        });
        match groups.iter_mut().find(|(i, _)| *i == instance) {
            Some((_, list)) => list.push(record),
            None => groups.push((instance, vec![record])),
        }
    }
    let resource_logs: Vec<Value> = groups
        .into_iter()
        .map(|(instance, records)| {
            json!({
                "resource": { "attributes": [
                    string_attr("service.name", "dbwarden-sidecar"),
                    string_attr("service.instance.id", &instance),
                ]},
                "scopeLogs": [{
                    "scope": { "name": "dbwarden.audit", "version": "1" },
                    "logRecords": records,
                }],
            })
        })
        .collect();
    Ok(serde_json::to_vec(
        &json!({ "resourceLogs": resource_logs }),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, Decision, Event, Kind};

    #[test]
    fn groups_by_instance_and_keeps_the_line_as_body() {
        let mut a = Chain::new("pod-a");
        let mut b = Chain::new("pod-b");
        let ev = || {
            Event::at(Kind::Statement, "2026-01-01T00:00:01.000002Z".into())
                .decision(Decision::Denied, Some("r".into()))
        };
        let lines = [
            a.stamp(ev()).unwrap().line,
            b.stamp(ev()).unwrap().line,
            a.stamp(ev()).unwrap().line,
        ];
        let body: Value =
            serde_json::from_slice(&encode(lines.iter().map(Vec::as_slice)).unwrap()).unwrap();
        let rl = body["resourceLogs"].as_array().unwrap();
        assert_eq!(rl.len(), 2);
        assert_eq!(
            rl[0]["resource"]["attributes"][1]["value"]["stringValue"],
            "pod-a"
        );
        let recs = rl[0]["scopeLogs"][0]["logRecords"].as_array().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["timeUnixNano"], "1767225601000002000");
        assert_eq!(recs[0]["severityNumber"], 13);
        assert_eq!(
            recs[1]["body"]["stringValue"].as_str().unwrap().as_bytes(),
            lines[2].as_slice()
        );
        let seq = recs[1]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "dbwarden.audit.seq")
            .unwrap();
        assert_eq!(seq["value"]["intValue"], "1");
    }
}
