//! Decisions beyond the table: reasons, approvals, observe-only, unparseable statements,
//! multi-statement strings, prepared statements and policy compilation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dbwarden_crds::policy::{ApprovalMode, Unparseable};
use dbwarden_crds::{DatabaseAccessPolicySpec, Operation as Op};
use std::sync::Arc;

use dbwarden_policy::analyze::{StatementAnalysis, analyze};
use dbwarden_policy::decide::Observed;
use dbwarden_policy::{CompiledPolicy, Decision};
use support::{compile, decide_one, identity, spec, string_summary, summary};

#[test]
fn denials_name_policy_rule_and_reason_without_literals() {
    let policy = compile(&spec());
    let denial = decide_one(
        &policy,
        "alice",
        "SELECT * FROM public.pii_users WHERE ssn = '123-45-6789'",
    );
    let Decision::Deny(denial) = denial else {
        panic!("{denial:?}")
    };
    assert_eq!(denial.policy.as_ref(), "shop/orders");
    assert!(denial.reason.contains("shop/orders"), "{}", denial.reason);
    assert!(denial.reason.contains("\"no-pii\""), "{}", denial.reason);
    assert!(
        denial.reason.contains("public.pii_users"),
        "{}",
        denial.reason
    );
    assert!(!denial.reason.contains("123-45-6789"), "{}", denial.reason);
    let Decision::Deny(default) = decide_one(
        &policy,
        "api",
        "UPDATE customers SET name = 'x' WHERE id = 1",
    ) else {
        panic!()
    };
    assert!(
        default
            .reason
            .contains("no rule allows update on customers"),
        "{}",
        default.reason
    );
    assert!(
        default.reason.contains("serviceaccount shop/api"),
        "{}",
        default.reason
    );
    let Decision::Deny(guard) = decide_one(&policy, "dan", "DROP TABLE orders") else {
        panic!()
    };
    assert!(
        guard.reason.contains("guardrails.blockDrop"),
        "{}",
        guard.reason
    );
    assert_eq!(Decision::SQLSTATE_DENIED, "42501");
}

#[test]
fn approvals_carry_what_the_request_needs() {
    let policy = compile(&spec());
    let Decision::NeedsApproval(needed) =
        decide_one(&policy, "api", "DELETE FROM orders WHERE id = 7")
    else {
        panic!()
    };
    assert_eq!(needed.operation, Op::Delete);
    assert_eq!(needed.tables, vec!["orders".to_string()]);
    assert_eq!(needed.allowed_by.as_deref(), Some("api-rw"));
    assert_eq!(needed.ttl, std::time::Duration::from_secs(3600));
    assert_eq!(needed.fingerprint.len(), 64);
    // The same shape with another literal has the same fingerprint.
    let Decision::NeedsApproval(again) =
        decide_one(&policy, "api", "DELETE FROM orders WHERE id = 8")
    else {
        panic!()
    };
    assert_eq!(needed.fingerprint, again.fingerprint);
    // In production the DDL approval applies; guardrails still win over it.
    let production = compile(&{
        let mut s = spec();
        s.database.environment = "production".into();
        s.approvals[0].when.environments = vec!["production".into()];
        let mut with_ddl = DatabaseAccessPolicySpec::builder()
            .approval("schema-changes", [Op::Ddl], ["dba"])
            .build();
        with_ddl.approvals[0].when.environments = vec!["production".into()];
        with_ddl.approvals[0].mode = ApprovalMode::Hold;
        s.approvals.push(with_ddl.approvals.remove(0));
        s
    });
    assert_eq!(
        summary(&decide_one(&production, "dan", "CREATE TABLE t (id int)")),
        "approval:schema-changes"
    );
    assert_eq!(
        summary(&decide_one(&production, "dan", "DROP TABLE t")),
        "guard:drop"
    );
}

#[test]
fn observe_only_records_but_allows() {
    let mut s = spec();
    s.guardrails.observe_only = true;
    let policy = compile(&s);
    let decision = decide_one(&policy, "dan", "DROP TABLE orders");
    assert!(decision.is_allowed());
    assert_eq!(decision.label(), "observed_deny");
    let Decision::Allow(allowed) = decision else {
        panic!()
    };
    assert!(
        matches!(allowed.observed, Some(Observed::Denied(ref d)) if d.reason.contains("blockDrop"))
    );
    let decision = decide_one(&policy, "nobody", "SELECT * FROM orders");
    assert_eq!(decision.label(), "observed_deny");
    let decision = decide_one(&policy, "api", "DELETE FROM orders WHERE id = 1");
    assert_eq!(decision.label(), "observed_approval");
    assert_eq!(
        summary(&decide_one(&policy, "api", "SELECT * FROM orders")),
        "allow:api-rw"
    );
}

#[test]
fn unparseable_statements_follow_the_guardrail() {
    let error = analyze("SELEC * FROM orders").unwrap_err();
    let policy = compile(&spec());
    assert_eq!(
        summary(&policy.decide_unparsed(&identity("api"), &error)),
        "guard:unparseable"
    );
    let mut s = spec();
    s.guardrails.unparseable = Unparseable::Allow;
    let lenient = compile(&s);
    let Decision::Allow(allowed) = lenient.decide_unparsed(&identity("api"), &error) else {
        panic!()
    };
    assert!(allowed.unparsed);
    assert_eq!(
        summary(&lenient.decide_unparsed(&identity("nobody"), &error)),
        "guard:unparseable"
    );
}

#[test]
fn block_ddl_refuses_schema_changes_even_for_all() {
    let mut s = spec();
    s.guardrails.block_ddl = true;
    let policy = compile(&s);
    assert_eq!(
        summary(&decide_one(&policy, "dan", "CREATE TABLE t (id int)")),
        "guard:ddl"
    );
    assert_eq!(
        summary(&decide_one(
            &policy,
            "dan",
            "COMMENT ON TABLE orders IS 'x'"
        )),
        "guard:ddl"
    );
    assert_eq!(
        summary(&decide_one(&policy, "dan", "SELECT * FROM orders")),
        "allow:dba-all"
    );
}

#[test]
fn multi_statement_strings_report_the_first_refusal() {
    let policy = compile(&spec());
    let analysis = analyze("BEGIN; SELECT * FROM orders; UPDATE customers SET name = 'x' WHERE id = 1; DROP TABLE orders; COMMIT").unwrap();
    let decided = policy.decide_all(&identity("api"), &analysis);
    assert_eq!(decided.decisions.len(), 5);
    let (index, first) = decided.first_refused().unwrap();
    assert_eq!(index, 2);
    assert_eq!(summary(first), "deny:default");
    assert_eq!(summary(&decided.decisions[3]), "guard:drop");
    assert!(!decided.all_allowed());
    let fine = policy.decide_all(
        &identity("api"),
        &analyze("BEGIN; SELECT 1 FROM orders; COMMIT").unwrap(),
    );
    assert!(fine.all_allowed());
}

#[test]
fn execute_is_decided_with_its_prepared_statement() {
    let policy = compile(&spec());
    let prepare = analyze("PREPARE q AS DELETE FROM orders WHERE id = $1").unwrap();
    let inner = prepare.single().unwrap().prepared.as_deref().unwrap();
    let execute = analyze("EXECUTE q(1)").unwrap();
    let execute = execute.single().unwrap();
    let dan = identity("dan");
    assert_eq!(
        summary(&policy.decide_execute(&dan, execute, Some(inner))),
        "approval:big-deletes"
    );
    assert_eq!(
        summary(&policy.decide_execute(&dan, execute, None)),
        "guard:unknown_prepared"
    );
    assert_eq!(
        summary(&policy.decide_execute(&identity("api"), execute, Some(inner))),
        "deny:default"
    );
}

#[test]
fn a_connection_following_its_names_decides_execute_by_what_was_prepared() {
    let policy = compile(&spec());
    let dan = identity("dan");
    let decide = |sql: &str, known: &dyn Fn(&str) -> Option<Arc<StatementAnalysis>>| {
        let analysis = analyze(sql).unwrap();
        string_summary(&policy.decide_string_with(&dan, sql, &analysis, known))
    };
    let nothing = |_: &str| None;
    // Prepared earlier in the same string, under any case of an unquoted name.
    assert_eq!(
        decide("PREPARE Q AS SELECT * FROM orders; EXECUTE q", &nothing),
        "allow:dba-all, allow:dba-all"
    );
    assert_eq!(decide("EXECUTE q", &nothing), "guard:unknown_prepared");
    // Prepared by an earlier string: decided as what it runs.
    let prepared = analyze("PREPARE q AS UPDATE customers SET name = $1").unwrap();
    let stored = Arc::new(*prepared.single().unwrap().prepared.clone().unwrap());
    let known = move |name: &str| (name == "q").then(|| Arc::clone(&stored));
    assert_eq!(decide("EXECUTE q('x')", &known), "guard:missing_where");
    // A name is prepared once per connection: the server would keep the old statement.
    let again = decide("PREPARE q AS SELECT 1", &known);
    assert_eq!(again, "guard:unknown_prepared");
    assert_eq!(
        decide("PREPARE r AS SELECT 1; PREPARE R AS SELECT 2", &nothing),
        "guard:unknown_prepared (statement 2)"
    );
    // Quoted names keep their case.
    assert_eq!(
        decide("PREPARE \"Q\" AS SELECT * FROM orders; EXECUTE q", &nothing),
        "guard:unknown_prepared (statement 2)"
    );
}

#[test]
fn invalid_policies_do_not_compile() {
    let mut s = spec();
    s.rules[0].tables = vec!["public..orders".into()];
    let error = CompiledPolicy::compile("shop", "orders", &s).unwrap_err();
    assert_eq!(error.label(), "invalid_policy");
    assert!(error.to_string().contains("public..orders"), "{error}");
}

#[test]
fn max_rows_is_exposed_for_the_sidecar() {
    let mut s = spec();
    assert_eq!(compile(&s).max_rows(), None);
    s.guardrails.max_rows = Some(100);
    s.guardrails.on_max_rows = dbwarden_crds::policy::OnMaxRows::Truncate;
    let limit = compile(&s).max_rows().unwrap();
    assert_eq!(limit.limit, 100);
    assert_eq!(limit.on_exceed, dbwarden_crds::policy::OnMaxRows::Truncate);
}
