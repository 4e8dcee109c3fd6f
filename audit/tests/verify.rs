//! `verify` on exports with an edited, a deleted, a reordered event, duplicates, interleaving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;

use dbwarden_audit::{Chain, Decision, Event, Kind, Problem, verify};

fn export(instance: &str, n: u64) -> Vec<String> {
    let mut chain = Chain::new(instance);
    (0..n)
        .map(|i| {
            let ev = Event::at(
                Kind::Statement,
                format!("2026-01-01T00:00:{:02}.000000Z", i % 60),
            )
            .database("shop")
            .decision(Decision::Allowed, Some(format!("rule-{i}")));
            String::from_utf8(chain.stamp(ev).unwrap().line).unwrap()
        })
        .collect()
}

fn run(lines: &[String]) -> dbwarden_audit::Report {
    verify(lines.join("\n").as_bytes()).unwrap()
}

#[test]
fn a_clean_interleaved_export_with_duplicates_verifies() {
    let a = export("pod-a", 20);
    let b = export("pod-b", 20);
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.push(a[i].clone());
        lines.push(b[i].clone());
        if i % 5 == 0 {
            // At-least-once delivery: a batch sent twice.
            lines.push(a[i].clone());
        }
    }
    let report = run(&lines);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.instances["pod-a"].events, 20);
    assert_eq!(report.instances["pod-a"].duplicates, 4);
    assert_eq!(report.instances["pod-b"].last_seq, 19);
}

#[test]
fn an_edited_event_is_reported_with_its_line() {
    let mut lines = export("pod-a", 10);
    lines[4] = lines[4].replace("rule-4", "rule-x");
    let report = run(&lines);
    assert_eq!(
        report.problems,
        vec![Problem::Edited {
            line: 5,
            instance: "pod-a".into(),
            seq: 4
        }]
    );
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    let lines = export("pod-a", 10);
    let mut ev: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    ev.as_object_mut().unwrap().remove("hash");
    let mut event: Event = serde_json::from_value(ev).unwrap();
    event.rule = Some("rule-x".into());
    let resealed = dbwarden_audit::chain::seal(&event).unwrap();
    let mut lines = lines;
    lines[4] = String::from_utf8(resealed.line).unwrap();
    let report = run(&lines);
    assert_eq!(
        report.problems,
        vec![Problem::BrokenLink {
            line: 6,
            instance: "pod-a".into(),
            seq: 5
        }]
    );
}

#[test]
fn a_deleted_event_is_reported_as_a_gap() {
    let mut lines = export("pod-a", 10);
    lines.remove(6);
    let report = run(&lines);
    assert_eq!(
        report.problems,
        vec![Problem::Gap {
            instance: "pod-a".into(),
            from: 6,
            to: 6,
            after_line: 6,
            before_line: 7
        }]
    );
}

#[test]
fn a_reordered_event_is_reported() {
    let mut lines = export("pod-a", 10);
    lines.swap(2, 3);
    let report = run(&lines);
    assert_eq!(
        report.problems,
        vec![Problem::Reordered {
            line: 4,
            instance: "pod-a".into(),
            seq: 2,
            after_seq: 3,
            after_line: 3
        }]
    );
}

#[test]
fn a_conflicting_duplicate_and_garbage_are_reported() {
    let mut lines = export("pod-a", 5);
    let other = export("pod-a", 5)
        .pop()
        .unwrap()
        .replace("rule-4", "rule-y");
    lines.push(other);
    lines.push("not json".into());
    let report = run(&lines);
    assert!(
        matches!(
            report.problems[0],
            Problem::Conflict {
                seq: 4,
                first_line: 5,
                line: 6,
                ..
            }
        ),
        "{:?}",
        report.problems
    );
    assert!(matches!(
        report.problems[1],
        Problem::Unparseable { line: 7, .. }
    ));
}

#[test]
fn the_cli_exits_non_zero_and_names_the_lines() {
    let bin = env!("CARGO_BIN_EXE_dbwarden-audit");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ndjson");
    let bad = dir.path().join("bad.ndjson");
    let lines = export("pod-a", 8);
    std::fs::File::create(&good)
        .unwrap()
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let mut broken = lines.clone();
    broken.remove(3);
    broken[5] = broken[5].replace("shop", "shoq");
    std::fs::File::create(&bad)
        .unwrap()
        .write_all(broken.join("\n").as_bytes())
        .unwrap();

    let ok = Command::new(bin)
        .args(["verify", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("pod-a: 8 events, seq 0..=7"));

    let out = Command::new(bin)
        .args(["verify", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PROBLEM lines 3-4: pod-a seq 3..=3 missing"),
        "{text}"
    );
    assert!(
        text.contains("PROBLEM line 6: pod-a seq 6: edited"),
        "{text}"
    );
}
