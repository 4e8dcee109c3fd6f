//! The table-driven SQL corpus (`corpus.yaml`): every case's expected operation, tables, WHERE and
//! dangerous functions, checked against `analyze`, and its expected decision under one fixed policy
//! and identity, checked against `decide_string` / `decide_unparsed`. All mismatches of each check
//! are reported together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use dbwarden_crds::policy::Strategy;
use dbwarden_crds::{DatabaseAccessPolicySpec, Operation as Op, Subjects};
use dbwarden_policy::analyze::{AnalyzeError, StatementAnalysis, analyze};
use dbwarden_policy::{CompiledPolicy, Identity};
use serde::Deserialize;
use support::{string_summary, summary};

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
    /// The decision on the whole string (format in the header of corpus.yaml).
    decision: Option<String>,
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

fn cases() -> Vec<Case> {
    serde_yaml::from_str(include_str!("corpus.yaml")).expect("corpus.yaml parses")
}

/// What `analyze` gets wrong about `case`, one line each.
fn analysis_problems(case: Case) -> Vec<String> {
    let sql = case.sql.clone();
    let result = analyze(&sql);
    if let Some(label) = &case.error {
        return match result {
            Err(error) if error.label() == label => Vec::new(),
            Err(error) => vec![format!("{sql:?}: want error {label}, got {error}")],
            Ok(analysis) => vec![format!(
                "{sql:?}: want error {label}, got {:?}",
                analysis
                    .statements
                    .iter()
                    .map(StatementAnalysis::label)
                    .collect::<Vec<_>>()
            )],
        };
    }
    let analysis = match result {
        Ok(analysis) => analysis,
        Err(error) => return vec![format!("{sql:?}: {error}")],
    };
    let expectations = case.expectations();
    if expectations.len() != analysis.statements.len() {
        return vec![format!(
            "{sql:?}: want {} statements, got {}",
            expectations.len(),
            analysis.statements.len()
        )];
    }
    let mut problems = Vec::new();
    for (index, (expect, got)) in expectations.iter().zip(&analysis.statements).enumerate() {
        for problem in check(expect, got) {
            problems.push(format!("{sql:?} [{index}]: {problem}"));
        }
    }
    problems
}

#[test]
fn corpus() {
    let cases = cases();
    assert!(cases.len() >= 150, "the corpus keeps at least 150 cases");
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        let known = known_discrepancy(&case.sql).filter(|k| k.analysis);
        let sql = case.sql.clone();
        let problems = analysis_problems(case);
        match known {
            None => failures.extend(problems),
            Some(known) if problems.is_empty() => failures.push(format!(
                "{sql:?}: now analysed as the corpus says; update KNOWN_DISCREPANCIES ({})",
                known.why
            )),
            Some(_) => {}
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

/// The policy every corpus decision is taken under; corpus.yaml's header describes it, and the two
/// must change together.
fn corpus_policy() -> CompiledPolicy {
    let app = || Subjects::service_accounts(["app"]);
    let spec = DatabaseAccessPolicySpec::builder()
        .allow("app-read", app(), [Op::Read], [])
        .allow(
            "app-write",
            app(),
            [Op::Insert, Op::Update, Op::Delete, Op::Merge],
            [
                "t", "a", "b", "archive", "log", "audit", "sessions", "public.*",
            ],
        )
        .allow("app-copy", app(), [Op::Copy], ["t", "users"])
        .deny("no-pii", app(), [Op::All], ["pii_*"])
        .deny("ledger-only", app(), [Op::Update, Op::Delete], ["accounts"])
        .guardrails(|g| g.blocked_functions.push("pg_sleep".into()))
        .mask("users.email", Strategy::Email)
        .approval("merges", [Op::Merge], ["dba"])
        .build();
    CompiledPolicy::compile("shop", "corpus", &spec).unwrap()
}

/// The connection every corpus decision is taken for: the pod's ServiceAccount, no end-user token.
fn corpus_identity() -> Identity {
    Identity::service_account("shop", "app")
}

/// A corpus case whose documented decision (the one corpus.yaml gives) the code does not give yet.
struct Known {
    sql: &'static str,
    /// The analysis in corpus.yaml is not what `analyze` says either (the cause).
    analysis: bool,
    /// Why the documentation, not the code, is taken to be right.
    why: &'static str,
}

/// Suspected bugs, kept in the corpus with the documented decision. They are not counted as
/// failures; one that starts to pass must leave this list, so that a fix is noticed and kept.
const KNOWN_DISCREPANCIES: &[Known] = &[];

fn known_discrepancy(sql: &str) -> Option<&'static Known> {
    KNOWN_DISCREPANCIES.iter().find(|k| k.sql == sql)
}

/// The decision on a whole client string, as corpus.yaml's header writes it.
fn decide(policy: &CompiledPolicy, identity: &Identity, sql: &str) -> String {
    let analysis = match analyze(sql) {
        Ok(analysis) => analysis,
        Err(error) => return summary(&policy.decide_unparsed(identity, &error)),
    };
    string_summary(&policy.decide_string(identity, sql, &analysis))
}

/// The outcome a decision counts for in the spread check: `guard:drop (statement 2)` ->
/// `guard:drop`, `deny:no-pii` -> `deny`, `allow:app-read` -> `allow`; `deny:default` and `allow:-`
/// stay whole.
fn family(decision: &str) -> &str {
    let first = decision.split([' ', ',']).next().unwrap_or(decision);
    match first.split_once(':') {
        Some(("guard", _) | ("deny", "default") | ("allow", "-")) | None => first,
        Some((outcome, _)) => outcome,
    }
}

#[test]
fn corpus_decisions() {
    let policy = corpus_policy();
    let identity = corpus_identity();
    let cases = cases();
    let total = cases.len();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    let mut known_seen = Vec::new();
    for case in &cases {
        let Some(want) = &case.decision else {
            continue;
        };
        let sql = &case.sql;
        let got = decide(&policy, &identity, sql);
        if let Some(known) = known_discrepancy(sql) {
            known_seen.push(known.sql);
            if got == *want {
                failures.push(format!(
                    "{sql:?}: now decided {got} as documented; remove it from KNOWN_DISCREPANCIES \
                     ({})",
                    known.why
                ));
            }
            continue;
        }
        checked += 1;
        *spread.entry(family(want).to_owned()).or_default() += 1;
        if got != *want {
            failures.push(format!("{sql:?}: want {want}, got {got}"));
        }
    }
    for Known { sql, .. } in KNOWN_DISCREPANCIES {
        if !known_seen.contains(sql) {
            failures.push(format!(
                "KNOWN_DISCREPANCIES names {sql:?}, which is not a corpus case with a decision"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus decisions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked >= 150,
        "only {checked} corpus cases carry a checked decision; keep at least 150"
    );
    // A policy that decides almost everything alike would make the decisions say little.
    for outcome in [
        "allow",
        "allow:-",
        "deny",
        "deny:default",
        "approval",
        "guard:drop",
        "guard:missing_where",
        "guard:blocked_function",
        "guard:set_role",
        "guard:masked_column_use",
        "guard:unparseable",
    ] {
        assert!(
            spread.contains_key(outcome),
            "no corpus case is decided {outcome}: {spread:?}"
        );
    }
}
