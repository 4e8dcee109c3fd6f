//! The table-driven SQL corpus (`corpus.yaml`): every case's expected operation, tables, WHERE and
//! dangerous functions, checked against `analyze`. All mismatches are reported together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbwarden_policy::analyze::{AnalyzeError, StatementAnalysis, analyze};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    sql: String,
    error: Option<String>,
    statements: Option<Vec<Expect>>,
    op: Option<String>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    written: Vec<String>,
    #[serde(rename = "where")]
    has_where: Option<bool>,
    #[serde(default)]
    dangerous: Vec<String>,
    write: Option<bool>,
    locking: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    op: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    written: Vec<String>,
    #[serde(rename = "where")]
    has_where: Option<bool>,
    #[serde(default)]
    dangerous: Vec<String>,
    write: Option<bool>,
    locking: Option<bool>,
}

impl Case {
    fn expectations(self) -> Vec<Expect> {
        if let Some(statements) = self.statements {
            return statements;
        }
        vec![Expect {
            op: self.op.expect("a case needs op, statements or error"),
            read: self.read,
            written: self.written,
            has_where: self.has_where,
            dangerous: self.dangerous,
            write: self.write,
            locking: self.locking,
        }]
    }
}

fn display<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn check(expect: &Expect, got: &StatementAnalysis) -> Vec<String> {
    let mut problems = Vec::new();
    let mut compare = |what: &str, want: String, have: String| {
        if want != have {
            problems.push(format!("{what}: want {want}, got {have}"));
        }
    };
    compare("op", expect.op.clone(), got.label().to_owned());
    compare(
        "read",
        format!("{:?}", expect.read),
        format!("{:?}", display(&got.tables_read)),
    );
    compare(
        "written",
        format!("{:?}", expect.written),
        format!("{:?}", display(&got.tables_written)),
    );
    compare(
        "dangerous",
        format!("{:?}", expect.dangerous),
        format!("{:?}", display(&got.dangerous_functions)),
    );
    if let Some(want) = expect.has_where {
        compare(
            "where",
            format!("{:?}", Some(want)),
            format!("{:?}", got.has_where),
        );
    }
    if let Some(want) = expect.write {
        compare("write", want.to_string(), got.is_write.to_string());
    }
    if let Some(want) = expect.locking {
        compare("locking", want.to_string(), got.locking.to_string());
    }
    problems
}

#[test]
fn corpus() {
    let text = include_str!("corpus.yaml");
    let cases: Vec<Case> = serde_yaml::from_str(text).expect("corpus.yaml parses");
    assert!(cases.len() >= 150, "the corpus keeps at least 150 cases");
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        let sql = case.sql.clone();
        let result = analyze(&sql);
        if let Some(label) = &case.error {
            match result {
                Err(error) if error.label() == label => {}
                Err(error) => failures.push(format!("{sql:?}: want error {label}, got {error}")),
                Ok(analysis) => failures.push(format!(
                    "{sql:?}: want error {label}, got {:?}",
                    analysis
                        .statements
                        .iter()
                        .map(StatementAnalysis::label)
                        .collect::<Vec<_>>()
                )),
            }
            continue;
        }
        let analysis = match result {
            Ok(analysis) => analysis,
            Err(error) => {
                failures.push(format!("{sql:?}: {error}"));
                continue;
            }
        };
        let expectations = case.expectations();
        if expectations.len() != analysis.statements.len() {
            failures.push(format!(
                "{sql:?}: want {} statements, got {}",
                expectations.len(),
                analysis.statements.len()
            ));
            continue;
        }
        for (index, (expect, got)) in expectations.iter().zip(&analysis.statements).enumerate() {
            for problem in check(expect, got) {
                failures.push(format!("{sql:?} [{index}]: {problem}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn error_names_the_limit() {
    let big = format!("SELECT '{}'", "x".repeat(2 * 1024 * 1024));
    let error = analyze(&big).unwrap_err();
    assert!(matches!(
        error,
        AnalyzeError::TooLarge {
            limit: 1_048_576,
            ..
        }
    ));
    assert!(error.to_string().contains("1048576"), "{error}");
}
