//! Which uses of masked columns are refused (docs/masking.md lists the same cases).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbwarden_crds::policy::{Strategy, Unparseable};
use dbwarden_crds::{DatabaseAccessPolicySpec, Operation, Subjects};
use dbwarden_policy::analyze::analyze;
use dbwarden_policy::mask::check_masked_column_use;
use dbwarden_policy::{CompiledPolicy, Decision, Identity};

fn policy() -> CompiledPolicy {
    CompiledPolicy::compile("shop", "p", &spec()).unwrap()
}

fn spec() -> DatabaseAccessPolicySpec {
    let mut spec = DatabaseAccessPolicySpec::builder()
        .allow(
            "all",
            Subjects::service_accounts(["api"]),
            [Operation::All],
            [],
        )
        .mask("users.email", Strategy::Email)
        .mask("*.ssn", Strategy::Redact)
        .build();
    if let Some(masking) = spec.masking.as_mut() {
        masking.exempt_subjects = Some(Subjects::groups(["privacy"]));
    }
    spec
}

/// `ok`, or the reason's distinctive words.
const CASES: &[(&str, &str)] = &[
    ("SELECT email FROM users", "ok"),
    ("SELECT id, email AS e FROM users WHERE id = 1", "ok"),
    ("SELECT * FROM users", "ok"),
    ("SELECT u.* FROM users u WHERE u.id = 3", "ok"),
    (
        "SELECT u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id",
        "ok",
    ),
    ("SELECT id, name FROM orders WHERE email = 'x'", "ok"),
    ("SELECT count(*) FROM users", "ok"),
    ("SELECT upper(email) FROM users", "expression"),
    ("SELECT email || '' FROM users", "expression"),
    ("SELECT substring(ssn, 1, 3) FROM people", "expression"),
    ("SELECT id FROM users WHERE email LIKE 'a%'", "expression"),
    (
        "SELECT id FROM orders WHERE ssn = '123-45-6789'",
        "expression",
    ),
    ("SELECT email FROM users ORDER BY email", "expression"),
    ("SELECT email AS e FROM users ORDER BY e", "expression"),
    ("SELECT count(*) FROM users GROUP BY email", "expression"),
    ("SELECT (SELECT email FROM users LIMIT 1)", "expression"),
    ("SELECT email FROM users UNION SELECT 'x'", "expression"),
    ("INSERT INTO copy_t SELECT email FROM users", "expression"),
    (
        "UPDATE users SET name = 'x' WHERE email = 'a@b.c'",
        "expression",
    ),
    (
        "UPDATE users SET name = 'x' WHERE id = 1 RETURNING email",
        "expression",
    ),
    ("SELECT email FROM users ORDER BY 1", "position"),
    (
        "SELECT * FROM users UNION ALL SELECT * FROM users",
        "outermost SELECT",
    ),
    ("SELECT * FROM (SELECT * FROM users) s", "outermost SELECT"),
    ("INSERT INTO copy_t SELECT * FROM users", "outermost SELECT"),
    (
        "DELETE FROM users WHERE id = 1 RETURNING *",
        "outermost SELECT",
    ),
    ("SELECT u FROM users u", "whole row"),
    ("SELECT row_to_json(u.*) FROM users u", "whole row"),
    ("SELECT to_jsonb(users) FROM users", "whole row"),
    ("SELECT upper(e) FROM users AS u(i, e)", "renamed"),
    (
        "WITH c(x) AS (SELECT email FROM users) SELECT x FROM c",
        "renamed",
    ),
    ("COPY users TO STDOUT", "COPY TO"),
    // A SQL-level prepared statement is checked as the statement its EXECUTEs run.
    ("PREPARE p AS SELECT upper(email) FROM users", "expression"),
    (
        "PREPARE p AS SELECT id, email FROM users WHERE id = $1",
        "ok",
    ),
    // Joins that compare a masked column without an expression: the same oracle as a filter.
    (
        "SELECT u.id FROM users u JOIN orders o USING (email)",
        "expression",
    ),
    (
        "SELECT u.id FROM users u LEFT JOIN (SELECT 'a@b.c' AS email) x USING (email)",
        "expression",
    ),
    (
        "SELECT u.id FROM users u NATURAL JOIN (SELECT 'a@b.c' AS email) x",
        "expression",
    ),
    (
        "SELECT id FROM (SELECT u.id FROM users u JOIN orders USING (email)) s",
        "expression",
    ),
    (
        "UPDATE orders SET total = 0 FROM users u JOIN contacts c USING (email) WHERE u.id = 1",
        "expression",
    ),
    (
        "DELETE FROM orders USING users u JOIN contacts c USING (email) WHERE u.id = 1",
        "expression",
    ),
    ("SELECT u.id FROM users u JOIN orders o USING (id)", "ok"),
    (
        "SELECT email FROM users; SELECT upper(email) FROM users",
        "expression",
    ),
];

#[test]
fn masked_columns_are_only_usable_as_plain_result_columns() {
    let policy = policy();
    let me = Identity::service_account("shop", "api");
    let mut failures = Vec::new();
    for (sql, expected) in CASES {
        let analysis = analyze(sql).unwrap();
        let got = match check_masked_column_use(&policy, &me, sql, &analysis) {
            Ok(()) => "ok".to_string(),
            Err(denial) => denial.reason,
        };
        let pass = if *expected == "ok" {
            got == "ok"
        } else {
            got.contains(expected)
        };
        if !pass {
            failures.push(format!("{sql}\n    expected {expected}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn exempt_identities_are_not_checked() {
    let policy = policy();
    let officer = Identity::user("shop", "api", "olga", ["privacy"]);
    let sql = "SELECT upper(email) FROM users";
    let analysis = analyze(sql).unwrap();
    assert!(check_masked_column_use(&policy, &officer, sql, &analysis).is_ok());
}

#[test]
fn refusals_cite_the_policy_and_the_guardrail() {
    let policy = policy();
    let me = Identity::service_account("shop", "api");
    let sql = "SELECT upper(email) FROM users WHERE email = 'jane@example.com'";
    let denial = check_masked_column_use(&policy, &me, sql, &analyze(sql).unwrap()).unwrap_err();
    assert!(denial.reason.contains("shop/p"));
    assert!(!denial.reason.contains("jane@example.com"));
    assert_eq!(denial.cause.label(), "masked_column_use");
}

#[test]
fn decide_string_folds_the_check_into_the_decisions() {
    let policy = policy();
    let me = Identity::service_account("shop", "api");
    let sql = "SELECT email FROM users; SELECT id FROM users WHERE email LIKE 'a%'";
    let decided = policy.decide_string(&me, sql, &analyze(sql).unwrap());
    assert!(decided.decisions[0].is_allowed());
    let (index, refused) = decided.first_refused().unwrap();
    assert_eq!(index, 1);
    assert_eq!(refused.denial().unwrap().cause.label(), "masked_column_use");
}

#[test]
fn long_operator_chains_do_not_overflow_the_stack() {
    let policy = policy();
    let me = Identity::service_account("shop", "api");
    let sql = format!(
        "SELECT email FROM users WHERE {}id = 0",
        "id = 1 OR ".repeat(2_000)
    );
    let analysis = analyze(&sql).unwrap();
    // Run on a small stack, like a tokio worker's.
    let denied = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || check_masked_column_use(&policy, &me, &sql, &analysis).is_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(!denied, "a filter on unmasked columns is fine");
}

#[test]
fn masking_is_never_only_observed() {
    let mut spec = spec();
    spec.guardrails.observe_only = true;
    let policy = CompiledPolicy::compile("shop", "p", &spec).unwrap();
    let me = Identity::service_account("shop", "api");
    let decide = |sql: &str| {
        let decided = policy.decide_string(&me, sql, &analyze(sql).unwrap());
        decided.decisions.into_iter().next().unwrap()
    };
    // Observe-only lets what a rule or guardrail refuses run, recording it...
    assert_eq!(decide("DROP TABLE orders").label(), "observed_deny");
    assert_eq!(decide("DELETE FROM orders").label(), "observed_deny");
    // ...but not a masked column turned into something masking cannot follow: the result
    // would carry the value in clear.
    let refused = decide("SELECT upper(email) FROM users");
    assert_eq!(refused.label(), "deny", "{refused:?}");
    assert_eq!(refused.denial().unwrap().cause.label(), "masked_column_use");
    assert_eq!(decide("SELECT email FROM users").label(), "allow");
}

#[test]
fn statements_that_cannot_be_analysed_are_refused_where_columns_are_masked() {
    let mut spec = spec();
    spec.guardrails.unparseable = Unparseable::Allow;
    let lenient = CompiledPolicy::compile("shop", "p", &spec).unwrap();
    let error = analyze("SELEC upper(email) FROM users").unwrap_err();
    let me = Identity::service_account("shop", "api");
    let Decision::Deny(denial) = lenient.decide_unparsed(&me, &error) else {
        panic!("an unanalysed statement could use a masked column")
    };
    assert!(
        denial
            .reason
            .contains("columns are masked for this identity"),
        "{}",
        denial.reason
    );
    // The same with observeOnly: not only observed.
    spec.guardrails.observe_only = true;
    let observing = CompiledPolicy::compile("shop", "p", &spec).unwrap();
    assert_eq!(observing.decide_unparsed(&me, &error).label(), "deny");
    // An identity exempt from masking gets `unparseable: allow` as written.
    spec.guardrails.observe_only = false;
    if let Some(masking) = spec.masking.as_mut() {
        masking.exempt_subjects = Some(Subjects::service_accounts(["api"]));
    }
    let exempting = CompiledPolicy::compile("shop", "p", &spec).unwrap();
    assert_eq!(exempting.decide_unparsed(&me, &error).label(), "allow");
}
